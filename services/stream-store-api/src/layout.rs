//! How one stream is laid out in the bucket: a **header** under
//! [`subjects::stream_key`](imagestreams_common::subjects::stream_key) (`<ns>.<name>`: metadata, spec, the status
//! without its tags, the applied-event ids and the change of the revision)
//! and one **tag record** per status tag under [`subjects::tag_key`](imagestreams_common::subjects::tag_key)
//! (`<ns>.<name>.<tag>`: that tag's history and conditions, and the registry
//! time of its newest push).
//!
//! So a push rewrites the header and one tag record, whatever the number of
//! tags or the length of their histories, and a stream can hold more tags
//! than one NATS message.
//!
//! **The header commits.** A write is one compare-and-swap of the header,
//! which carries the tag records the write changed (`inline`); the tag keys
//! are written from it afterwards. So the stream at header revision `H` is
//! its tag keys as of `H`, overlaid with `H`'s inline records, and a write
//! cut short after its header leaves nothing half done: the next writer
//! first writes the inline records it finds to their keys (each with
//! compare-and-swap: once), then its own header. Tag records carry the
//! stream's uid, so that those of a deleted stream never join a new one of
//! the same name. The header's revision is the stream's `resourceVersion`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Record, RecordOp};
use imagestreams_common::{
    error::ApiError,
    model::{ImageStream, NamedTagEventList},
};

/// The value of a tag key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRecord {
    /// The tag's history and conditions, as in `status.tags`.
    pub list: NamedTagEventList,
    /// The registry time (unix nanoseconds) of the newest push applied to
    /// the tag (see [`Record::pushed_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<i64>,
    /// The uid of the stream the record belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl TagRecord {
    /// Encodes the record for the KV.
    pub fn encode(&self) -> Result<Bytes, ApiError> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("cannot encode tag record: {e}")))
    }

    /// Decodes a stored tag record.
    pub fn decode(value: &[u8]) -> Result<TagRecord, ApiError> {
        serde_json::from_slice(value)
            .map_err(|e| ApiError::Internal(format!("undecodable stored tag: {e}")))
    }
}

/// One stream as stored: its header's value and revision, and the values of
/// its tag records, by tag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredEntry {
    /// The header's value.
    pub header: Bytes,
    /// The header's revision: the stream's `resourceVersion`.
    pub revision: u64,
    /// The tag records on their keys, by tag.
    pub tags: BTreeMap<String, Bytes>,
    /// The revisions of those keys, where known (a writer's read).
    pub revisions: BTreeMap<String, u64>,
}

impl StoredEntry {
    /// A stream stored at `revision` with `header` and no tag records yet.
    pub fn new(header: Bytes, revision: u64) -> Self {
        StoredEntry {
            header,
            revision,
            tags: BTreeMap::new(),
            revisions: BTreeMap::new(),
        }
    }

    /// Values of their own, not windows on network buffers that would keep
    /// whole buffers alive in a long-lived cache.
    pub fn detached(self) -> Self {
        StoredEntry {
            header: Bytes::copy_from_slice(&self.header),
            revision: self.revision,
            tags: self
                .tags
                .into_iter()
                .map(|(tag, value)| (tag, Bytes::copy_from_slice(&value)))
                .collect(),
            revisions: BTreeMap::new(),
        }
    }

    /// The stream and how its revision came about; its `resourceVersion`
    /// is the header's revision.
    pub fn decode_stream(&self) -> Result<(ImageStream, RecordOp), ApiError> {
        let mut stored: StoredStream = serde_json::from_slice(&self.header)
            .map_err(|e| ApiError::Internal(format!("undecodable stored stream: {e}")))?;
        stored.stream.metadata.resource_version = self.revision.to_string();
        let tags = self.tags(&stored.stream.metadata.uid, stored.inline)?;
        merge_tags(&mut stored.stream, tags.into_values().map(|r| r.list));
        Ok((stored.stream, stored.op))
    }

    /// The whole record, as a writer works on it; its `inline` records stay
    /// (they may not be on their keys yet).
    pub fn decode_record(&self) -> Result<Record, ApiError> {
        let mut record = Record::decode(&self.header, self.revision)?;
        record.tag_revisions.clone_from(&self.revisions);
        // a header written before tags were stored apart holds them: they
        // go to their keys with the next write, as inline records do
        let legacy = record
            .stream
            .status
            .as_mut()
            .map(|s| std::mem::take(&mut s.tags))
            .unwrap_or_default();
        for list in legacy {
            if !self.tags.contains_key(&list.tag) && !record.inline.contains_key(&list.tag) {
                let pushed_at = record.pushed_at.get(&list.tag).copied();
                let uid = record.stream.metadata.uid.clone();
                record.inline.insert(
                    list.tag.clone(),
                    Some(TagRecord {
                        list,
                        pushed_at,
                        uid,
                    }),
                );
            }
        }
        let tags = self.tags(&record.stream.metadata.uid, record.inline.clone())?;
        for tag in tags.values() {
            if let Some(at) = tag.pushed_at {
                record.pushed_at.insert(tag.list.tag.clone(), at);
            }
        }
        merge_tags(&mut record.stream, tags.into_values().map(|r| r.list));
        Ok(record)
    }

    /// The tag records of the stream whose uid is `uid`: those on their
    /// keys, overlaid with the header's `inline` ones.
    fn tags(
        &self,
        uid: &str,
        inline: BTreeMap<String, Option<TagRecord>>,
    ) -> Result<BTreeMap<String, TagRecord>, ApiError> {
        let mut tags = BTreeMap::new();
        for (tag, value) in &self.tags {
            let record = TagRecord::decode(value)?;
            if record.uid.is_empty() || record.uid == uid {
                tags.insert(tag.clone(), record);
            }
        }
        for (tag, record) in inline {
            match record {
                Some(record) => tags.insert(tag, record),
                None => tags.remove(&tag),
            };
        }
        Ok(tags)
    }
}

/// Puts `lists` into the status of `stream`, sorted by tag. A header written
/// before tags were stored apart holds its tags itself; a tag record of the
/// same tag replaces that one.
fn merge_tags(stream: &mut ImageStream, lists: impl IntoIterator<Item = NamedTagEventList>) {
    let mut lists = lists.into_iter().peekable();
    if lists.peek().is_none() {
        return;
    }
    let status = stream.status.get_or_insert_with(Default::default);
    let mut by_tag: BTreeMap<String, NamedTagEventList> = std::mem::take(&mut status.tags)
        .into_iter()
        .map(|list| (list.tag.clone(), list))
        .collect();
    for list in lists {
        by_tag.insert(list.tag.clone(), list);
    }
    status.tags = by_tag.into_values().collect();
}

/// What readers need of a stored header: the stream and how its revision
/// came about. The applied-event ids and the change are skipped without
/// being built.
#[derive(Deserialize)]
struct StoredStream {
    stream: ImageStream,
    #[serde(default)]
    op: RecordOp,
    #[serde(default)]
    inline: BTreeMap<String, Option<TagRecord>>,
}

/// Just the labels of a stored header, to filter without decoding the rest.
#[derive(Deserialize)]
struct LabelsOnly {
    stream: LabelsOnlyStream,
}

#[derive(Deserialize)]
struct LabelsOnlyStream {
    #[serde(default)]
    metadata: LabelsOnlyMeta,
}

#[derive(Deserialize, Default)]
struct LabelsOnlyMeta {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Just the names of a stored header's inline records.
#[derive(Deserialize)]
struct InlineOnly {
    #[serde(default)]
    inline: BTreeMap<String, serde::de::IgnoredAny>,
}

/// The tags whose records a stored header carries (`inline`): for these,
/// the stream at the header's revision is the header's record, whatever
/// their keys hold.
pub fn inline_tags(header: &[u8]) -> Result<Vec<String>, ApiError> {
    serde_json::from_slice::<InlineOnly>(header)
        .map(|h| h.inline.into_keys().collect())
        .map_err(|e| ApiError::Internal(format!("undecodable stored stream: {e}")))
}

/// The labels of a stored header.
pub fn labels_of(header: &[u8]) -> Result<BTreeMap<String, String>, ApiError> {
    serde_json::from_slice::<LabelsOnly>(header)
        .map(|r| r.stream.metadata.labels.unwrap_or_default())
        .map_err(|e| ApiError::Internal(format!("undecodable stored stream: {e}")))
}

/// The header of `record` (without its tags and push times) and its tag
/// records, by tag.
pub fn split(record: &Record) -> (Record, BTreeMap<String, TagRecord>) {
    let mut header = Record {
        stream: record.stream.clone(),
        op: record.op,
        applied: record.applied.clone(),
        change: record.change.clone(),
        pushed_at: BTreeMap::new(),
        inline: BTreeMap::new(),
        tag_revisions: BTreeMap::new(),
        partial: None,
    };
    header.stream.metadata.resource_version.clear();
    let lists = header
        .stream
        .status
        .as_mut()
        .map(|s| std::mem::take(&mut s.tags))
        .unwrap_or_default();
    let tags = lists
        .into_iter()
        .map(|list| {
            let pushed_at = record.pushed_at.get(&list.tag).copied();
            let uid = record.stream.metadata.uid.clone();
            (
                list.tag.clone(),
                TagRecord {
                    list,
                    pushed_at,
                    uid,
                },
            )
        })
        .collect();
    (header, tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagestreams_common::model::TagEvent;

    fn record_with_tags(tags: &[&str]) -> Record {
        let mut stream = ImageStream::new("ns1", "app");
        stream.metadata.uid = "u1".into();
        for (i, tag) in tags.iter().enumerate() {
            stream.status_tag_mut(tag).items.push(TagEvent {
                created: "2025-01-01T00:00:00Z".into(),
                docker_image_reference: format!("r/ns1/app@sha256:{i:064x}"),
                image: format!("sha256:{i:064x}"),
                generation: Some(1),
            });
        }
        let mut record = Record::created(stream);
        record.pushed_at.insert(tags[0].to_owned(), 42);
        record
    }

    fn stored(record: &Record, revision: u64) -> StoredEntry {
        let (header, tags) = split(record);
        let mut entry = StoredEntry::new(header.encode().unwrap(), revision);
        for (tag, value) in tags {
            entry.tags.insert(tag, value.encode().unwrap());
        }
        entry
    }

    #[test]
    fn a_split_record_assembles_back_with_its_revision() {
        let record = record_with_tags(&["v2", "latest", "v1"]);
        let entry = stored(&record, 9);
        assert!(
            !String::from_utf8_lossy(&entry.header).contains("sha256:"),
            "the header holds no tag"
        );
        let mut back = entry.decode_record().unwrap();
        assert_eq!(back.stream.metadata.resource_version, "9");
        back.stream.metadata.resource_version.clear();
        assert_eq!(back, record);
        let (stream, op) = entry.decode_stream().unwrap();
        assert_eq!(op, RecordOp::Created);
        let tags: Vec<_> = stream
            .status
            .unwrap()
            .tags
            .into_iter()
            .map(|t| t.tag)
            .collect();
        assert_eq!(tags, ["latest", "v1", "v2"], "sorted by tag");
    }

    #[test]
    fn a_header_holding_its_tags_hands_them_to_the_next_write() {
        let old = record_with_tags(&["a", "b"]);
        let entry = StoredEntry::new(old.encode().unwrap(), 3);
        let record = entry.decode_record().unwrap();
        assert_eq!(
            record.inline.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "written to their keys by the next write"
        );
        assert_eq!(record.stream.status, old.stream.status);
        assert_eq!(record.pushed_at.get("a"), Some(&42));
    }

    #[test]
    fn a_header_holding_its_tags_is_read_with_tag_records_replacing_them() {
        let old = record_with_tags(&["a", "b"]);
        let mut entry = StoredEntry::new(old.encode().unwrap(), 3);
        let newer = record_with_tags(&["b"]);
        let (_, mut tags) = split(&newer);
        let mut b = tags.remove("b").unwrap();
        b.list.items[0].image = "sha256:newer".into();
        entry.tags.insert("b".into(), b.encode().unwrap());
        let stream = entry.decode_stream().unwrap().0;
        let status = stream.status.unwrap();
        assert_eq!(status.tags.len(), 2);
        assert_eq!(status.tags[1].items[0].image, "sha256:newer");
        assert_eq!(status.tags[0], old.stream.status.unwrap().tags[0]);
    }
}
