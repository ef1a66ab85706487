//! The in-memory index of triggers by the ImageStreamTag they follow, so a
//! `TagsChanged` finds its triggers without a scan. It is filled from the KV
//! (list at start and every resync), kept fresh by a KV watch and by this
//! replica's own writes; an entry only moves forward in revision, so a late
//! or replayed value never overwrites a newer one. A stale entry is harmless:
//! every write compare-and-swaps against the KV and re-reads on conflict.

use std::collections::{BTreeSet, HashMap};

use imagestreams_trigger_api::{Stored, TagRef, Trigger};

#[derive(Debug, Clone)]
struct Slot {
    revision: u64,
    trigger: Option<Trigger>,
}

/// Triggers by key and by the tag they follow.
#[derive(Debug, Default)]
pub struct Index {
    slots: HashMap<String, Slot>,
    by_from: HashMap<TagRef, BTreeSet<String>>,
}

impl Index {
    /// Records the value of `key` at `revision` (`None`: deleted), unless the
    /// index already holds a newer one. Returns whether it changed.
    pub fn apply(&mut self, key: &str, revision: u64, trigger: Option<Trigger>) -> bool {
        if self.slots.get(key).is_some_and(|s| s.revision >= revision) {
            return false;
        }
        if let Some(old) = self.slots.get(key).and_then(|s| s.trigger.as_ref()) {
            let from = old.spec.from.clone();
            if let Some(keys) = self.by_from.get_mut(&from) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_from.remove(&from);
                }
            }
        }
        if let Some(t) = &trigger {
            self.by_from
                .entry(t.spec.from.clone())
                .or_default()
                .insert(key.to_owned());
        }
        self.slots
            .insert(key.to_owned(), Slot { revision, trigger });
        true
    }

    /// Records a stored trigger.
    pub fn upsert(&mut self, stored: &Stored<Trigger>) -> bool {
        self.apply(
            &stored.value.key(),
            stored.revision,
            Some(stored.value.clone()),
        )
    }

    /// Merges a full listing read after the bucket was at `snapshot`: listed
    /// entries are applied, and unlisted ones not newer than `snapshot` are
    /// dropped (they were deleted).
    pub fn merge(&mut self, listed: &[Stored<Trigger>], snapshot: u64) {
        for stored in listed {
            self.upsert(stored);
        }
        let listed: BTreeSet<String> = listed.iter().map(|s| s.value.key()).collect();
        let gone: Vec<(String, u64)> = self
            .slots
            .iter()
            .filter(|(k, s)| s.trigger.is_some() && s.revision <= snapshot && !listed.contains(*k))
            .map(|(k, s)| (k.clone(), s.revision))
            .collect();
        for (key, revision) in gone {
            self.apply(&key, revision + 1, None);
        }
        // tombstones the bucket has moved past are no longer needed
        self.slots
            .retain(|_, s| s.trigger.is_some() || s.revision > snapshot);
    }

    /// The triggers following `from`.
    pub fn matching(&self, from: &TagRef) -> Vec<Stored<Trigger>> {
        self.by_from
            .get(from)
            .into_iter()
            .flatten()
            .filter_map(|key| self.get(key))
            .collect()
    }

    /// One trigger by key.
    pub fn get(&self, key: &str) -> Option<Stored<Trigger>> {
        let slot = self.slots.get(key)?;
        Some(Stored {
            value: slot.trigger.clone()?,
            revision: slot.revision,
        })
    }

    /// How many live triggers it holds.
    pub fn len(&self) -> usize {
        self.slots.values().filter(|s| s.trigger.is_some()).count()
    }

    /// Whether it holds no live trigger.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagestreams_trigger_api::{TriggerKind, TriggerSpec, TriggerStatus};

    fn trigger(name: &str, tag: &str) -> Trigger {
        Trigger {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            creation_timestamp: String::new(),
            spec: TriggerSpec {
                from: TagRef {
                    namespace: "ns".into(),
                    stream: "app".into(),
                    tag: tag.into(),
                },
                kind: TriggerKind::Build,
                paused: false,
                container: String::new(),
                webhook: None,
                mirror: None,
            },
            status: TriggerStatus::default(),
        }
    }

    #[test]
    fn only_newer_revisions_apply() {
        let mut index = Index::default();
        let t = trigger("a", "latest");
        assert!(index.apply(&t.key(), 5, Some(t.clone())));
        assert!(!index.apply(&t.key(), 4, None), "older delete ignored");
        assert_eq!(index.matching(&t.spec.from).len(), 1);
        let moved = trigger("a", "v2");
        assert!(index.apply(&t.key(), 6, Some(moved.clone())));
        assert!(index.matching(&t.spec.from).is_empty());
        assert_eq!(index.matching(&moved.spec.from)[0].revision, 6);
        assert!(index.apply(&t.key(), 7, None));
        assert!(index.is_empty());
    }

    #[test]
    fn merge_drops_unlisted_old_entries_but_keeps_newer_ones() {
        let mut index = Index::default();
        let (a, b) = (trigger("a", "latest"), trigger("b", "latest"));
        index.apply(&a.key(), 3, Some(a.clone()));
        index.apply(&b.key(), 12, Some(b.clone()));
        index.merge(&[], 10);
        assert!(index.get(&a.key()).is_none(), "deleted before the snapshot");
        assert!(index.get(&b.key()).is_some(), "written after the snapshot");
    }
}
