//! The pure firing decision: whether a trigger fires for a tag change, the
//! deterministic firing id, and the status a firing commits.

use imagestreams_trigger_api::{PendingFiring, TagRef, Trigger};
use sha2::{Digest as _, Sha256};

/// How many hex digits of the (uid, image, revision) hash a firing id carries (64 bits).
pub const FIRING_ID_HASH_LEN: usize = 16;

/// A change of a tag's current image, from a `TagsChanged` event, a resync
/// or a trigger's creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceChange {
    /// The tag that changed.
    pub from: TagRef,
    /// Its new current image (empty when the tag went away).
    pub image: String,
    /// The pinned pull spec of the image.
    pub docker_image_reference: String,
    /// The streams-bucket revision of the change; 0 when unknown.
    pub revision: u64,
    /// W3C `traceparent` of the event that carried the change, if any.
    pub traceparent: Option<String>,
}

/// Why a trigger does not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It follows another tag.
    OtherTag,
    /// It is paused.
    Paused,
    /// The tag holds no image.
    NoImage,
    /// The change is not newer than the one the trigger last acted on.
    Stale,
    /// It fired for this image already.
    AlreadyFired,
}

/// What a trigger does about a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Fire: commit this outbox entry with the status change.
    Fire(PendingFiring),
    /// Do nothing.
    Skip(Skip),
}

/// The firing id of `(trigger uid, image, revision)`: `<trigger name>-<hash>`,
/// the same on every replica and every retry of one change. The revision
/// tells a tag rolled back to an earlier image (a new firing, as OpenShift's
/// image change triggers do) from a redelivery of the change that fired it.
pub fn firing_id(trigger_name: &str, trigger_uid: &str, image: &str, revision: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(trigger_uid.as_bytes());
    hasher.update([0]);
    hasher.update(image.as_bytes());
    hasher.update([0]);
    hasher.update(revision.to_be_bytes());
    let hash = hex::encode(hasher.finalize());
    format!("{trigger_name}-{}", &hash[..FIRING_ID_HASH_LEN])
}

/// Decides whether `trigger` fires for `change` at `now` (RFC 3339): it must
/// follow the tag, be unpaused, the change must be newer than the last one it
/// acted on, and the image must differ from `lastTriggeredImage`.
pub fn decide(trigger: &Trigger, change: &SourceChange, now: &str) -> Decision {
    let status = &trigger.status;
    if trigger.spec.from != change.from {
        return Decision::Skip(Skip::OtherTag);
    }
    if trigger.spec.paused {
        return Decision::Skip(Skip::Paused);
    }
    if change.image.is_empty() {
        return Decision::Skip(Skip::NoImage);
    }
    if change.revision != 0 && change.revision <= status.last_source_revision {
        return Decision::Skip(Skip::Stale);
    }
    let id = firing_id(&trigger.name, &trigger.uid, &change.image, change.revision);
    if change.image == status.last_triggered_image || status.pending.iter().any(|p| p.id == id) {
        return Decision::Skip(Skip::AlreadyFired);
    }
    Decision::Fire(PendingFiring {
        id,
        image: change.image.clone(),
        docker_image_reference: change.docker_image_reference.clone(),
        previous_image: status.last_triggered_image.clone(),
        time: now.to_owned(),
        traceparent: change.traceparent.clone(),
    })
}

/// The trigger as the compare-and-swap writes it: the new
/// `lastTriggeredImage` and time, and the firing in the outbox.
pub fn commit(trigger: &Trigger, pending: &PendingFiring, revision: u64) -> Trigger {
    let mut next = trigger.clone();
    let status = &mut next.status;
    status.last_triggered_image = pending.image.clone();
    status.last_trigger_time = pending.time.clone();
    status.last_source_revision = status.last_source_revision.max(revision);
    status.last_firing = pending.id.clone();
    status.pending.push(pending.clone());
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagestreams_trigger_api::{TriggerKind, TriggerSpec, TriggerStatus};

    fn trigger() -> Trigger {
        Trigger {
            namespace: "ns".into(),
            name: "t".into(),
            uid: "uid-1".into(),
            creation_timestamp: String::new(),
            spec: TriggerSpec {
                from: TagRef {
                    namespace: "ns".into(),
                    stream: "app".into(),
                    tag: "latest".into(),
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

    fn change(image: &str, revision: u64) -> SourceChange {
        SourceChange {
            from: trigger().spec.from,
            image: image.into(),
            docker_image_reference: format!("r/ns/app@{image}"),
            revision,
            traceparent: None,
        }
    }

    #[test]
    fn fires_once_per_image() {
        let t = trigger();
        let Decision::Fire(p) = decide(&t, &change("sha256:a", 5), "now") else {
            panic!("should fire")
        };
        assert_eq!(p.id, firing_id("t", "uid-1", "sha256:a", 5));
        assert_eq!(p.previous_image, "");
        let t = commit(&t, &p, 5);
        assert_eq!(t.status.last_triggered_image, "sha256:a");
        assert_eq!(t.status.pending.len(), 1);
        assert_eq!(
            decide(&t, &change("sha256:a", 6), "now"),
            Decision::Skip(Skip::AlreadyFired)
        );
        let Decision::Fire(p2) = decide(&t, &change("sha256:b", 7), "now") else {
            panic!("a new image fires")
        };
        assert_eq!(p2.previous_image, "sha256:a");
        // rolled back to the first image: a firing of its own
        let t = commit(&t, &p2, 7);
        let Decision::Fire(p3) = decide(&t, &change("sha256:a", 8), "now") else {
            panic!("a rollback fires")
        };
        assert_ne!(p3.id, p.id);
        assert_eq!(p3.previous_image, "sha256:b");
    }

    #[test]
    fn skips_paused_foreign_stale_and_empty() {
        let mut t = trigger();
        let mut other = change("sha256:a", 1);
        other.from.tag = "v2".into();
        assert_eq!(decide(&t, &other, "now"), Decision::Skip(Skip::OtherTag));
        assert_eq!(
            decide(&t, &change("", 1), "now"),
            Decision::Skip(Skip::NoImage)
        );
        t.status.last_source_revision = 10;
        assert_eq!(
            decide(&t, &change("sha256:a", 10), "now"),
            Decision::Skip(Skip::Stale)
        );
        assert!(matches!(
            decide(&t, &change("sha256:a", 0), "now"),
            Decision::Fire(_)
        ));
        t.spec.paused = true;
        assert_eq!(
            decide(&t, &change("sha256:a", 11), "now"),
            Decision::Skip(Skip::Paused)
        );
    }

    #[test]
    fn firing_ids_are_deterministic_and_key_safe() {
        let a = firing_id("t", "uid-1", "sha256:a", 3);
        assert_eq!(a, firing_id("t", "uid-1", "sha256:a", 3));
        assert_ne!(a, firing_id("t", "uid-2", "sha256:a", 3));
        assert_ne!(a, firing_id("t", "uid-1", "sha256:b", 3));
        assert_ne!(a, firing_id("t", "uid-1", "sha256:a", 9));
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(a.len(), "t-".len() + FIRING_ID_HASH_LEN);
    }
}
