//! How a write reaches the bucket: the compare-and-swap of the header that
//! commits it (in parts when its changes outgrow one header), the tag records
//! it carries inline written to their keys after it, or by the next write
//! before its own header.

use super::*;

/// How many tag records a write puts on their keys at once.
pub(super) const TAG_WRITES_AT_ONCE: usize = 64;

/// What a tag's entry in a header's change may take beside its record: the
/// images' digests and pull spec.
pub(super) const CHANGE_ENTRY_BYTES: usize = 512;

/// The tag records `tags` changes over `before` (`None` for a new stream):
/// those that differ, and `None` for the tags `before` holds that are gone.
pub(super) fn changed_tags(
    before: Option<&Record>,
    tags: &BTreeMap<String, (TagRecord, Bytes)>,
) -> BTreeMap<String, Option<TagRecord>> {
    let before = before.map(|b| layout::split(b).1).unwrap_or_default();
    let mut changed = BTreeMap::new();
    for (tag, (record, _)) in tags {
        if before.get(tag) != Some(record) {
            changed.insert(tag.clone(), Some(record.clone()));
        }
    }
    for tag in before.keys() {
        if !tags.contains_key(tag) {
            changed.insert(tag.clone(), None);
        }
    }
    changed
}

/// Keeps in the change of `header` only the tags of `part`.
pub(super) fn restrict_change(header: &mut Record, part: &BTreeMap<String, Option<TagRecord>>) {
    if let Some(change) = header.change.as_mut() {
        change.tags.retain(|c| part.contains_key(&c.tag));
    }
    if header.change.as_ref().is_some_and(|c| c.tags.is_empty()) {
        header.change = None;
    }
}

impl Bucket {
    /// Writes `record` over `before` (and its revision; `None`: creates):
    /// first the inline records `before` left (once each), then the header,
    /// carrying the changed tag records, with compare-and-swap, then those
    /// records to their keys. A write whose changes do not fit one header
    /// goes in parts, each a header listing the changes of its part.
    /// Returns the last header's revision.
    pub(super) async fn commit(
        &self,
        before: Option<(&Record, u64)>,
        record: &mut Record,
        encoded: Encoded,
    ) -> Result<u64, BucketError> {
        let Encoded { header, tags } = encoded;
        let mut expected = match before {
            Some((before, revision)) => {
                self.write_inline(before, revision, &mut record.tag_revisions)
                    .await?;
                Some(revision)
            }
            None => None,
        };
        let changed = changed_tags(before.map(|(b, _)| b), &tags);
        let parts = self.parts(&header, changed)?;
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let last = index + 1 == count;
            let mut part_header = header.clone();
            if !last {
                part_header.applied = before.map(|(b, _)| b.applied.clone()).unwrap_or_default();
            }
            if index > 0 {
                part_header.op = RecordOp::Updated;
            }
            restrict_change(&mut part_header, &part);
            part_header.inline = part;
            let value = self.encode_header(&mut part_header)?;
            self.admit().await?;
            let key = subjects::stream_key(
                &record.stream.metadata.namespace,
                &record.stream.metadata.name,
            );
            let revision = match expected {
                None => self
                    .kv
                    .create(key, value)
                    .await
                    .map_err(|e| match e.kind() {
                        CreateErrorKind::AlreadyExists => BucketError::AlreadyExists,
                        _ => unavailable(e),
                    })?,
                Some(expected) => {
                    self.kv
                        .update(key, value, expected)
                        .await
                        .map_err(|e| match e.kind() {
                            UpdateErrorKind::WrongLastRevision => BucketError::Conflict,
                            _ => unavailable(e),
                        })?
                }
            };
            self.guard.written(revision);
            expected = Some(revision);
            let written = self
                .write_inline(&part_header, revision, &mut record.tag_revisions)
                .await;
            record.inline.clear();
            match written {
                // the next part's header replaces this one's records
                Err(error) if !last => return Err(error),
                // the next write of the stream writes them (this record,
                // kept as a hint, says so)
                Err(error) => {
                    tracing::debug!(
                        error = imagestreams_common::error::chain(&error),
                        "cannot write tag records to their keys yet"
                    );
                    record.inline = part_header.inline.clone();
                }
                Ok(()) => {}
            }
        }
        Ok(expected.unwrap_or_default())
    }

    /// Writes the inline records of `header` (stored at `revision`) to their
    /// keys, each with compare-and-swap on the key's revision in
    /// `revisions` (which it updates): a key written since the header needs
    /// nothing, and a lost race means another writer wrote it.
    pub(super) async fn write_inline(
        &self,
        header: &Record,
        revision: u64,
        revisions: &mut BTreeMap<String, u64>,
    ) -> Result<(), BucketError> {
        let (namespace, name) = (
            header.stream.metadata.namespace.as_str(),
            header.stream.metadata.name.as_str(),
        );
        let written = |tag: &String| revisions.get(tag).is_some_and(|&at| at > revision);
        if header.inline.keys().next_back().is_some_and(written) {
            // written in tag order: the last one on its key means all are
            return Ok(());
        }
        let mut pending = Vec::new();
        for (tag, record) in &header.inline {
            let seen = revisions.get(tag).copied().unwrap_or(0);
            if seen > revision {
                continue;
            }
            let value = match record {
                Some(record) => Some(record.encode().map_err(BucketError::Record)?),
                None => None,
            };
            pending.push((tag.clone(), value, seen));
        }
        // all but the last at once, then the last: so that the last on its
        // key still means all are
        let last = pending.pop();
        let written: Vec<(String, u64)> = futures::stream::iter(pending)
            .map(|(tag, value, seen)| async move {
                let key = subjects::tag_key(namespace, name, &tag);
                self.write_tag(&key, value, seen, revision)
                    .await
                    .map(|at| (tag, at))
            })
            .buffer_unordered(TAG_WRITES_AT_ONCE)
            .try_collect()
            .await?;
        revisions.extend(written);
        if let Some((tag, value, seen)) = last {
            let key = subjects::tag_key(namespace, name, &tag);
            let at = self.write_tag(&key, value, seen, revision).await?;
            revisions.insert(tag, at);
        }
        Ok(())
    }

    /// Writes `value` (`None`: a delete marker) to tag key `key`, last known
    /// at revision `seen`, for the header at `revision`: when the key moved
    /// since `seen`, a write after the header means it is written already,
    /// and one before it (a delete marker, say) is expected instead.
    pub(super) async fn write_tag(
        &self,
        key: &str,
        value: Option<Bytes>,
        mut seen: u64,
        revision: u64,
    ) -> Result<u64, BucketError> {
        for _ in 0..DEFAULT_MAX_ATTEMPTS {
            let written = match &value {
                Some(value) => self.kv.update(key, value.clone(), seen).await,
                None if seen == 0 => return Ok(0),
                None => self
                    .kv
                    .delete_expect_revision(key, Some(seen))
                    .await
                    .map(|()| seen),
            };
            match written {
                Ok(at) => return Ok(at),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    let found = self
                        .reader
                        .direct()
                        .last(&[self.subject(key)], None)
                        .await
                        .map_err(read_failed)?;
                    seen = found.first().map_or(0, |f| f.sequence);
                    if seen > revision {
                        return Ok(seen);
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(BucketError::Unavailable(
            format!("tag key {key} kept changing").into(),
        ))
    }

    /// The changed tag records in parts whose headers fit a value: one part
    /// unless the changes are large (an import of a big repository).
    pub(super) fn parts(
        &self,
        header: &Record,
        changed: BTreeMap<String, Option<TagRecord>>,
    ) -> Result<Vec<BTreeMap<String, Option<TagRecord>>>, BucketError> {
        let base = self.encode_header(&mut Record {
            change: None,
            ..header.clone()
        })?;
        let budget = self.limits.header_bytes().saturating_sub(base.len());
        let mut parts = vec![BTreeMap::new()];
        let mut used = 0;
        for (tag, record) in changed {
            // the record inline, and its entry in the change
            let cost = record
                .as_ref()
                .map_or(0, |r| serde_json::to_vec(r).map_or(0, |v| v.len()))
                + 2 * tag.len()
                + CHANGE_ENTRY_BYTES;
            if used + cost > budget && !parts.last().is_some_and(BTreeMap::is_empty) {
                parts.push(BTreeMap::new());
                used = 0;
            }
            used += cost;
            if let Some(part) = parts.last_mut() {
                part.insert(tag, record);
            }
        }
        Ok(parts)
    }
}
