//! What the stream-store writes into a stream's record besides the
//! stream: the change of each revision (its tags' moves and its cause) and
//! the ids of the events applied, to drop redeliveries.

use super::*;

/// How the revision that wrote a record came about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOp {
    /// The stream was created by this revision.
    Created,
    /// The stream existed and was changed.
    #[default]
    Updated,
}

/// One tag whose current image changed in a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagChange {
    /// The tag.
    pub tag: String,
    /// The previous current image; empty when the tag is new.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub old_image: String,
    /// The new current image (a digest).
    pub new_image: String,
    /// The pinned pull spec of the new image.
    pub docker_image_reference: String,
    /// The generation of the new history item.
    pub generation: i64,
}

/// What made a change (see `ChangeCause` in `events.proto`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    /// What kind of write.
    pub kind: CauseKind,
    /// Who: a user or service account, or the registry's pusher.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// The event that made it, when one did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
}

/// The kinds of [`Cause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseKind {
    /// A push notification of the integrated registry.
    Push,
    /// An import asked for.
    Import,
    /// A scheduled import.
    ScheduledImport,
    /// `tag`.
    Tag,
    /// An update or patch.
    Update,
    /// A create with status tags.
    Create,
}

impl CauseKind {
    /// How the CLI and the REST answer spell it.
    pub fn label(self) -> &'static str {
        match self {
            CauseKind::Push => "push",
            CauseKind::Import => "import",
            CauseKind::ScheduledImport => "scheduled-import",
            CauseKind::Tag => "tag",
            CauseKind::Update => "update",
            CauseKind::Create => "create",
        }
    }
}

impl Cause {
    /// A cause of `kind` by `actor`.
    pub fn new(kind: CauseKind, actor: impl Into<String>) -> Self {
        Cause {
            kind,
            actor: actor.into(),
            event_id: String::new(),
        }
    }

    /// The same, made by the event `id`.
    pub fn with_event(mut self, id: impl Into<String>) -> Self {
        self.event_id = id.into();
        self
    }
}

impl From<&Cause> for proto::ChangeCause {
    fn from(cause: &Cause) -> Self {
        let kind = match cause.kind {
            CauseKind::Push => proto::ChangeCauseKind::Push,
            CauseKind::Import => proto::ChangeCauseKind::Import,
            CauseKind::ScheduledImport => proto::ChangeCauseKind::ScheduledImport,
            CauseKind::Tag => proto::ChangeCauseKind::Tag,
            CauseKind::Update => proto::ChangeCauseKind::Update,
            CauseKind::Create => proto::ChangeCauseKind::Create,
        };
        proto::ChangeCause {
            kind: kind.into(),
            actor: cause.actor.clone(),
            event_id: cause.event_id.clone(),
        }
    }
}

impl Cause {
    /// The cause an event carries; `None` when it carries none (or one of
    /// a kind this build does not know).
    pub fn of_event(cause: Option<&proto::ChangeCause>) -> Option<Cause> {
        let cause = cause?;
        let kind = match cause.kind() {
            proto::ChangeCauseKind::Unspecified => return None,
            proto::ChangeCauseKind::Push => CauseKind::Push,
            proto::ChangeCauseKind::Import => CauseKind::Import,
            proto::ChangeCauseKind::ScheduledImport => CauseKind::ScheduledImport,
            proto::ChangeCauseKind::Tag => CauseKind::Tag,
            proto::ChangeCauseKind::Update => CauseKind::Update,
            proto::ChangeCauseKind::Create => CauseKind::Create,
        };
        Some(Cause {
            kind,
            actor: cause.actor.clone(),
            event_id: cause.event_id.clone(),
        })
    }
}

/// The tag changes one revision made: the source of its `TagsChanged` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When the change was made (RFC 3339).
    pub time: String,
    /// One entry per changed tag.
    pub tags: Vec<TagChange>,
    /// The W3C `traceparent` of the span that wrote the change: the KV write
    /// carries no headers, so the changefeed continues the trace from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// What made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

impl Change {
    /// The `TagsChanged` event of this change, committed at `revision`.
    /// Its id `<uid>:<revision>` is deterministic, so a republish dedupes.
    pub fn to_event(&self, stream: &ImageStream, revision: u64) -> proto::TagsChanged {
        let time = imagestreams_common::time::timestamp_of_rfc3339(&self.time);
        proto::TagsChanged {
            event_id: format!("{}:{revision}", stream.metadata.uid),
            namespace: stream.metadata.namespace.clone(),
            stream: stream.metadata.name.clone(),
            uid: stream.metadata.uid.clone(),
            resource_version: revision.to_string(),
            time,
            changes: self
                .tags
                .iter()
                .map(|c| proto::TagChange {
                    tag: c.tag.clone(),
                    old_image: c.old_image.clone(),
                    new_image: c.new_image.clone(),
                    docker_image_reference: c.docker_image_reference.clone(),
                    generation: c.generation,
                })
                .collect(),
            cause: self.cause.as_ref().map(proto::ChangeCause::from),
        }
    }
}

/// The value of one KV entry: the stream plus what the writer needs to stay
/// idempotent and to emit `TagsChanged` from the changefeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The stream, with an empty `resourceVersion`.
    pub stream: ImageStream,
    /// How this revision came about.
    #[serde(default)]
    pub op: RecordOp,
    /// The ids of the last [`APPLIED_EVENTS_KEPT`] events applied, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub applied: VecDeque<String>,
    /// The tag changes this revision made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// Per tag, the registry time (unix nanoseconds) of the newest push
    /// applied to it: a push older than that lands in the history behind
    /// the current image instead of replacing it, whatever order replicas
    /// apply pushes in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pushed_at: BTreeMap<String, i64>,
    /// The tag records this revision changed (`None`: removed), until they
    /// are written to their own keys (see [`layout`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline: BTreeMap<String, Option<TagRecord>>,
    /// The revision of each tag's key as read (absent: never written), for
    /// the compare-and-swap that writes a tag record to its key. Never
    /// stored.
    #[serde(skip)]
    pub tag_revisions: BTreeMap<String, u64>,
    /// The tags `stream.status.tags` holds when they are not all of the
    /// stored ones: a writer that read only the tags it changes (a push)
    /// leaves the others as stored. `None`: every tag. Never stored.
    #[serde(skip)]
    pub partial: Option<BTreeSet<String>>,
}

impl Record {
    /// A record of a stream as created.
    pub fn created(stream: ImageStream) -> Record {
        Record {
            stream,
            op: RecordOp::Created,
            applied: VecDeque::new(),
            change: None,
            pushed_at: BTreeMap::new(),
            inline: BTreeMap::new(),
            tag_revisions: BTreeMap::new(),
            partial: None,
        }
    }

    /// Decodes a KV value written at `revision`; the stream gets that revision
    /// as its `resourceVersion`.
    pub fn decode(value: &[u8], revision: u64) -> Result<Record, ApiError> {
        let mut record: Record = serde_json::from_slice(value)
            .map_err(|e| ApiError::Internal(format!("undecodable stored stream: {e}")))?;
        record.stream.metadata.resource_version = revision.to_string();
        Ok(record)
    }

    /// Encodes the record for the KV; the `resourceVersion` is not stored.
    pub fn encode(&self) -> Result<Bytes, ApiError> {
        let encoded = if self.stream.metadata.resource_version.is_empty() {
            serde_json::to_vec(self)
        } else {
            let mut record = self.clone();
            record.stream.metadata.resource_version.clear();
            serde_json::to_vec(&record)
        };
        encoded
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("cannot encode stream: {e}")))
    }

    /// Whether the event `id` was applied already.
    pub fn has_applied(&self, id: &str) -> bool {
        self.applied.iter().any(|a| a == id)
    }

    /// Says what made this revision's change (nothing when it changed no
    /// tag's current image).
    pub fn caused_by(mut self, cause: Cause) -> Self {
        if let Some(change) = &mut self.change {
            change.cause = Some(cause);
        }
        self
    }

    /// Remembers that event `id` was applied, forgetting the oldest beyond
    /// [`APPLIED_EVENTS_KEPT`].
    pub fn remember_applied(&mut self, id: &str) {
        if self.has_applied(id) {
            return;
        }
        self.applied.push_back(id.to_owned());
        while self.applied.len() > APPLIED_EVENTS_KEPT {
            self.applied.pop_front();
        }
    }
}
