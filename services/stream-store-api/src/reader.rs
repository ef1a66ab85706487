//! The read side of the streams bucket: [`StreamReader`] (get, list pages,
//! watch, the namespace's headers) and how stored messages assemble into
//! streams, shared with the read cache ([`super::Mirror`]).

use super::*;

/// What happened to a stream, as a watch reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The stream was created (or existed when a watch without revision began).
    Added(ImageStream),
    /// The stream was changed.
    Modified(ImageStream),
    /// The stream was deleted; only name, namespace and resourceVersion are set.
    Deleted(ImageStream),
}

impl WatchEvent {
    /// The stream the event is about.
    pub fn object(&self) -> &ImageStream {
        match self {
            WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => s,
        }
    }

    /// Takes the stream out of the event.
    pub fn into_object(self) -> ImageStream {
        match self {
            WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => s,
        }
    }

    /// The revision the event was written at (the object's resourceVersion).
    pub fn revision(&self) -> u64 {
        self.object().metadata.resource_version.parse().unwrap_or(0)
    }
}

/// The changes a watch delivers, in revision order.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, ApiError>>;

/// How long a list waits for the next stored entry before it gives up.
pub const DEFAULT_SCAN_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`StreamReader::list_page`] lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    /// Only this namespace; every namespace when `None`.
    pub namespace: Option<&'a str>,
    /// Only streams whose labels match.
    pub selector: Option<&'a Selector>,
    /// At most this many items; all when `None`.
    pub limit: Option<usize>,
    /// Start after this `(namespace, name)` (exclusive): the last item of the previous page.
    pub after: Option<(&'a str, &'a str)>,
}

/// How current a read must be: Kubernetes' `resourceVersion` on a get or a
/// list (with `resourceVersionMatch` left at its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// `""`: the latest state; the read waits for one round trip to the
    /// server (shared with the reads waiting at the same time).
    #[default]
    Latest,
    /// `"0"`: whatever the gateway's cache holds now, which may be a few
    /// milliseconds behind the latest writes; no round trip.
    Any,
    /// `"N"`: the state at revision `N` or newer, e.g. the `resourceVersion`
    /// a write returned; no round trip once the cache has `N`.
    NotOlderThan(u64),
}

impl Freshness {
    /// Parses a `resourceVersion` parameter; `field` names it in the error.
    pub fn parse(resource_version: &str, field: &str) -> Result<Self, ApiError> {
        match resource_version {
            "" => Ok(Freshness::Latest),
            "0" => Ok(Freshness::Any),
            rv => rv.parse().map(Freshness::NotOlderThan).map_err(|_| {
                ApiError::invalid(
                    field,
                    format!("{field}: {rv:?} is not a resource version (a revision number)"),
                )
            }),
        }
    }
}

/// One page of streams, sorted by namespace and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    /// The streams of the page.
    pub items: Vec<ImageStream>,
    /// The revision the list was read at: a watch from it misses nothing.
    pub revision: u64,
    /// Whether more matching streams follow the last item.
    pub more: bool,
}

/// The streams under a key filter, by `(namespace, name)`, as stored at
/// `revision`.
pub(super) struct Snapshot {
    pub(super) entries: BTreeMap<(String, String), StoredEntry>,
    pub(super) revision: u64,
}

/// Decodes the stream of a stored header alone (without its tag records),
/// written at `revision`.
pub(super) fn decode_header(value: &[u8], revision: u64) -> Result<ImageStream, ApiError> {
    StoredEntry::new(Bytes::copy_from_slice(value), revision)
        .decode_stream()
        .map(|(stream, _)| stream)
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("storage unavailable: {e}"))
}

/// The KV key filters of a watch or list (headers and tag records): one
/// stream, one namespace, or all.
pub(super) fn key_filters(namespace: Option<&str>, name: Option<&str>) -> Vec<String> {
    match (namespace, name) {
        (Some(ns), Some(name)) => vec![
            subjects::stream_key(ns, name),
            subjects::stream_tag_keys(ns, name),
        ],
        (Some(ns), None) => vec![format!("{}.>", subjects::encode_token(ns))],
        (None, Some(name)) => {
            let name = subjects::encode_token(name);
            vec![format!("*.{name}"), format!("*.{name}.*")]
        }
        (None, None) => vec![">".to_owned()],
    }
}

/// Reads streams from the KV bucket.
#[derive(Clone, Debug)]
pub struct StreamReader {
    pub(super) kv: kv::Store,
    pub(super) direct: DirectGet,
}

impl StreamReader {
    /// A reader of `kv`, the [`subjects::BUCKET_STREAMS`] bucket, over `nats`.
    pub fn new(kv: kv::Store, nats: async_nats::Client) -> Self {
        let direct = DirectGet::new(nats, kv.stream.clone());
        StreamReader { kv, direct }
    }

    /// The batch direct gets of the bucket.
    pub fn direct(&self) -> &DirectGet {
        &self.direct
    }

    /// The full subject of a key of the bucket.
    pub(super) fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.kv.name)
    }

    /// The tag records of `namespace/name` as committed at `revision`, the
    /// revision of `header`, by tag: the keys' last values, except those
    /// written after the header and not in it (a later write's), read as of
    /// `revision`. (A read "as of" makes the server search back through the
    /// stream, at a cost that grows with the bucket, so it is asked only for
    /// those; the keys the header carries are overlaid by its records.)
    pub async fn tags_at(
        &self,
        namespace: &str,
        name: &str,
        header: &[u8],
        revision: u64,
    ) -> Result<BTreeMap<String, (Bytes, u64)>, ApiError> {
        let filter = self.subject(&subjects::stream_tag_keys(namespace, name));
        let inline = layout::inline_tags(header)?;
        let prefix = format!("$KV.{}.", self.kv.name);
        let tag_of = |subject: &str| match subject
            .strip_prefix(&prefix)
            .and_then(subjects::parse_bucket_key)
        {
            Some(subjects::BucketKey::Tag(_, _, tag)) => Some(tag),
            _ => None,
        };
        let mut tags = BTreeMap::new();
        let mut later = Vec::new();
        for found in self.direct.last(&[filter], None).await? {
            let Some(tag) = tag_of(&found.subject) else {
                continue;
            };
            if found.sequence > revision && !inline.contains(&tag) {
                later.push(found.subject);
            } else if !found.deleted {
                tags.insert(tag, (found.value, found.sequence));
            }
        }
        if !later.is_empty() {
            for found in self.direct.last(&later, Some(revision)).await? {
                if let (Some(tag), false) = (tag_of(&found.subject), found.deleted) {
                    tags.insert(tag, (found.value, found.sequence));
                }
            }
        }
        Ok(tags)
    }

    /// The stored stream `namespace/name`, header and tag records, `None`
    /// when there is none.
    pub async fn entry(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<StoredEntry>, ApiError> {
        let header = self
            .kv
            .entry(subjects::stream_key(namespace, name))
            .await
            .map_err(unavailable)?;
        match header {
            Some(e) if e.operation == kv::Operation::Put => {
                let mut entry = StoredEntry::new(e.value, e.revision);
                let tags = self
                    .tags_at(namespace, name, &entry.header, e.revision)
                    .await?;
                for (tag, (value, revision)) in tags {
                    entry.tags.insert(tag.clone(), value);
                    entry.revisions.insert(tag, revision);
                }
                Ok(Some(entry))
            }
            _ => Ok(None),
        }
    }

    /// When the stream `namespace/name` was deleted, oldest first, as far as
    /// its key's KV history reaches (the bucket's history depth).
    pub async fn deletes(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, ApiError> {
        let history = self
            .kv
            .history(subjects::stream_key(namespace, name))
            .await
            .map_err(unavailable)?;
        let entries: Vec<kv::Entry> = history.try_collect().await.map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .filter(|e| e.operation != kv::Operation::Put)
            .filter_map(|e| {
                chrono::DateTime::from_timestamp(e.created.unix_timestamp(), e.created.nanosecond())
            })
            .collect())
    }

    /// The current record of a stream, with its revision.
    pub async fn record(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(Record, u64)>, ApiError> {
        match self.entry(namespace, name).await? {
            Some(entry) => Ok(Some((entry.decode_record()?, entry.revision))),
            None => Ok(None),
        }
    }

    /// One stream.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<ImageStream, ApiError> {
        match self.entry(namespace, name).await? {
            Some(entry) => Ok(entry.decode_stream()?.0),
            None => Err(ApiError::stream_not_found(namespace, name)),
        }
    }

    /// Every stream of `namespace` (all when `None`), sorted by namespace and
    /// name, and the revision the list is current at.
    pub async fn list(&self, namespace: Option<&str>) -> Result<(Vec<ImageStream>, u64), ApiError> {
        let page = self
            .list_page(ListQuery {
                namespace,
                ..ListQuery::default()
            })
            .await?;
        Ok((page.items, page.revision))
    }

    /// The streams of `namespace` as their headers have them: metadata and
    /// spec, without the status tags (each tag's record is not read), sorted
    /// by name. What is needed to know which streams follow what, at the
    /// cost of one record per stream whatever its number of tags.
    /// One batch direct get (no consumer is made).
    pub async fn specs(&self, namespace: &str) -> Result<Vec<ImageStream>, ApiError> {
        let filter = self.subject(&subjects::namespace_keys(namespace));
        let found = self.direct.last(&[filter], None).await?;
        let mut streams = found
            .into_iter()
            .filter(|f| !f.deleted)
            .map(|f| decode_header(&f.value, f.sequence))
            .collect::<Result<Vec<_>, _>>()?;
        streams.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(streams)
    }

    /// One page of streams, sorted by namespace and name. Only the streams of
    /// the page are decoded in full; a selector reads just the labels of the
    /// others.
    pub async fn list_page(&self, query: ListQuery<'_>) -> Result<ListPage, ApiError> {
        let snapshot = self.snapshot(&key_filters(query.namespace, None)).await?;
        page_of(&snapshot.entries, snapshot.revision, &query)
    }

    /// The bucket's last revision, as the server has it now: the sequence of
    /// the stream's last message, read by a direct get (served on the
    /// server's fast path, not queued behind the JetStream API as a stream
    /// info request is; `>` is the whole stream, O(1)).
    pub async fn last_revision(&self) -> Result<u64, ApiError> {
        match self.kv.stream.direct_get_last_for_subject(">").await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Reads the last entry of every key under `filters`. The result is the
    /// state at `revision`: every write under the filters up to it is
    /// applied (writes are atomic batches, so none is seen in part).
    pub(super) async fn snapshot(&self, filters: &[String]) -> Result<Snapshot, ApiError> {
        let mut stream = self.kv.stream.clone();
        let info = stream.info().await.map_err(unavailable)?;
        let mut revision = info.state.last_sequence;
        let prefix = format!("$KV.{}.", self.kv.name);
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subjects: filters.iter().map(|f| format!("{prefix}{f}")).collect(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        // deleted when done rather than left to expire, so that bursts of
        // listings and fresh watches don't pile up consumers on the stream
        let name = consumer.cached_info().name.clone();
        let mut state = Assembly::default();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(unavailable)?;
            loop {
                let message =
                    match tokio::time::timeout(DEFAULT_SCAN_IDLE_TIMEOUT, messages.next()).await {
                        Err(_) => return Err(unavailable("listing stalled")),
                        Ok(None) => break,
                        Ok(Some(message)) => message.map_err(unavailable)?,
                    };
                let info = message.info().map_err(unavailable)?;
                let (pending, sequence) = (info.pending, info.stream_sequence);
                // Writes made while listing are delivered too, in order: the
                // map ends up at the state of the last one.
                revision = revision.max(sequence);
                let key = message
                    .subject
                    .as_str()
                    .strip_prefix(&prefix)
                    .and_then(subjects::parse_bucket_key);
                if let Some(key) = key {
                    let value = (!imagestreams_common::nats::removes_key(&message))
                        .then(|| message.payload.clone());
                    state.apply(key, value, sequence);
                }
                if pending == 0 {
                    break;
                }
            }
        }
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(error = imagestreams_common::error::chain(&error), consumer = %name, "cannot delete a listing's consumer; it expires");
        }
        Ok(Snapshot {
            entries: state.into_entries(),
            revision,
        })
    }

    /// The header of a stream just before `revision` (its metadata and spec,
    /// without its tags): `None` when it did not exist then, or when the
    /// bucket no longer holds that revision.
    pub async fn previous(
        &self,
        namespace: &str,
        name: &str,
        revision: u64,
    ) -> Result<Option<ImageStream>, ApiError> {
        let mut history = self
            .kv
            .history(subjects::stream_key(namespace, name))
            .await
            .map_err(unavailable)?;
        let mut last = None;
        while let Some(entry) = history.next().await {
            let entry = entry.map_err(unavailable)?;
            if entry.revision >= revision {
                break;
            }
            last = Some(entry);
        }
        match last {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some(decode_header(&e.value, e.revision)?))
            }
            _ => Ok(None),
        }
    }

    /// Changes of the streams of `namespace` (all when `None`), or of one
    /// stream when `name` is given too.
    ///
    /// Without a revision it starts with `Added` for every current stream (in
    /// key order) and goes on with every later change. With one, it delivers
    /// every change after it, or fails with `Gone` when the bucket no longer
    /// holds changes that old, and `Invalid` when it is newer than the bucket.
    /// Changes come in revision order, each once.
    pub async fn watch(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        from_revision: Option<u64>,
    ) -> Result<WatchStream, ApiError> {
        let filters = key_filters(namespace, name);
        match from_revision {
            None => {
                let snapshot = self.snapshot(&filters).await?;
                let initial = snapshot
                    .entries
                    .values()
                    .map(|entry| entry.decode_stream().map(|(s, _)| WatchEvent::Added(s)))
                    .collect::<Vec<_>>();
                let live = self
                    .watch_after(&filters, snapshot.revision, snapshot.entries)
                    .await?;
                Ok(futures::stream::iter(initial).chain(live).boxed())
            }
            Some(revision) => {
                let mut stream = self.kv.stream.clone();
                let info = stream.info().await.map_err(unavailable)?;
                let state = &info.state;
                if revision > state.last_sequence {
                    return Err(ApiError::invalid(
                        "resourceVersion",
                        format!(
                            "resource version {revision} is newer than the store's current one ({})",
                            state.last_sequence
                        ),
                    ));
                }
                if revision + 1 < state.first_sequence {
                    return Err(ApiError::Gone(format!(
                        "too old resource version: {revision} (oldest available: {})",
                        state.first_sequence.saturating_sub(1)
                    )));
                }
                Ok(self
                    .watch_after(&filters, revision, BTreeMap::new())
                    .await?
                    .boxed())
            }
        }
    }

    /// Every change of the bucket after its current last revision, in order,
    /// with no initial state: the source of a shared feed.
    pub async fn feed(&self) -> Result<WatchStream, ApiError> {
        let mut stream = self.kv.stream.clone();
        let info = stream.info().await.map_err(unavailable)?;
        Ok(self
            .watch_after(
                &key_filters(None, None),
                info.state.last_sequence,
                BTreeMap::new(),
            )
            .await?
            .boxed())
    }

    /// The streams under `namespace` (and `name`) as `Added` events, and the
    /// revision they are the state at: the start of a watch without
    /// revision, to be followed by the changes after that revision.
    pub async fn initial(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<(Vec<WatchEvent>, u64), ApiError> {
        let snapshot = self.snapshot(&key_filters(namespace, name)).await?;
        let events = snapshot
            .entries
            .values()
            .map(|entry| entry.decode_stream().map(|(s, _)| WatchEvent::Added(s)))
            .collect::<Result<_, _>>()?;
        Ok((events, snapshot.revision))
    }

    /// The changes under `filters` after `revision`, as whole streams:
    /// `known` holds the streams as stored at `revision` (those missing are
    /// read as of the revision of their first change, once).
    pub(super) async fn watch_after(
        &self,
        filters: &[String],
        revision: u64,
        known: BTreeMap<(String, String), StoredEntry>,
    ) -> Result<impl Stream<Item = Result<WatchEvent, ApiError>> + Send + 'static, ApiError> {
        let prefix = format!("$KV.{}.", self.kv.name);
        let consumer = self
            .kv
            .stream
            .create_consumer(OrderedConfig {
                filter_subjects: filters.iter().map(|f| format!("{prefix}{f}")).collect(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: revision + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        let assembly = Arc::new(tokio::sync::Mutex::new(Assembly::with_entries(known)));
        let reader = self.clone();
        Ok(messages
            .map_err(unavailable)
            .and_then(move |message| {
                let (assembly, reader, prefix) = (assembly.clone(), reader.clone(), prefix.clone());
                async move {
                    let info = message.info().map_err(unavailable)?;
                    let sequence = info.stream_sequence;
                    let Some(key) = message
                        .subject
                        .as_str()
                        .strip_prefix(&prefix)
                        .and_then(subjects::parse_bucket_key)
                    else {
                        return Ok(None);
                    };
                    let value = (!imagestreams_common::nats::removes_key(&message))
                        .then(|| message.payload.clone());
                    let mut assembly = assembly.lock().await;
                    reader.assemble(&mut assembly, key, value, sequence).await
                }
            })
            .try_filter_map(|event| async move { Ok(event) }))
    }

    /// Applies one message of the bucket to `assembly`: the watch event of
    /// its stream when it was a header.
    pub(super) async fn assemble(
        &self,
        assembly: &mut Assembly,
        key: subjects::BucketKey,
        value: Option<Bytes>,
        sequence: u64,
    ) -> Result<Option<WatchEvent>, ApiError> {
        let Some(applied) = assembly.apply(key, value, sequence) else {
            return Ok(None);
        };
        let (namespace, name) = applied.key;
        let Some(entry) = assembly.entries.get_mut(&(namespace.clone(), name.clone())) else {
            let mut stream = ImageStream::new(namespace, name);
            stream.metadata.resource_version = sequence.to_string();
            return Ok(Some(WatchEvent::Deleted(stream)));
        };
        let (mut stream, op) = entry.decode_stream()?;
        if !applied.known && op != RecordOp::Created {
            // first seen after the watch began: its tags as of this revision
            entry.tags = self
                .tags_at(&namespace, &name, &entry.header, sequence)
                .await?
                .into_iter()
                .map(|(tag, (value, _))| (tag, value))
                .collect();
            stream = entry.decode_stream()?.0;
        }
        Ok(Some(if op == RecordOp::Created {
            WatchEvent::Added(stream)
        } else {
            WatchEvent::Modified(stream)
        }))
    }
}

/// A header written or deleted, as [`Assembly::apply`] reports it.
pub(super) struct HeaderApplied {
    pub(super) key: (String, String),
    /// Whether the stream was known before (its tag records are complete).
    pub(super) known: bool,
}

/// Streams assembled from the bucket's messages in stream order. Every write
/// ends with its stream's header, so tag records are held until the header
/// that commits them.
#[derive(Debug, Default)]
pub(super) struct Assembly {
    pub(super) entries: BTreeMap<(String, String), StoredEntry>,
    /// Tag records seen ahead of their header (`None`: deleted), by stream.
    pub(super) pending: HashMap<(String, String), BTreeMap<String, Option<Bytes>>>,
}

impl Assembly {
    pub(super) fn with_entries(entries: BTreeMap<(String, String), StoredEntry>) -> Self {
        Assembly {
            entries,
            pending: HashMap::new(),
        }
    }

    /// Applies one message (`value` `None`: a delete marker) written at
    /// `sequence`; reports a header.
    pub(super) fn apply(
        &mut self,
        key: subjects::BucketKey,
        value: Option<Bytes>,
        sequence: u64,
    ) -> Option<HeaderApplied> {
        match key {
            subjects::BucketKey::Tag(namespace, name, tag) => {
                self.pending
                    .entry((namespace, name))
                    .or_default()
                    .insert(tag, value);
                None
            }
            subjects::BucketKey::Stream(namespace, name) => {
                let key = (namespace, name);
                let pending = self.pending.remove(&key).unwrap_or_default();
                let known = self.entries.contains_key(&key);
                match value {
                    None => {
                        self.entries.remove(&key);
                    }
                    Some(header) => {
                        let entry = self.entries.entry(key.clone()).or_default();
                        entry.header = header;
                        entry.revision = sequence;
                        for (tag, value) in pending {
                            match value {
                                Some(value) => entry.tags.insert(tag, value),
                                None => entry.tags.remove(&tag),
                            };
                        }
                    }
                }
                Some(HeaderApplied { key, known })
            }
        }
    }

    /// The streams assembled; tag records without a header are dropped.
    pub(super) fn into_entries(mut self) -> BTreeMap<(String, String), StoredEntry> {
        // a snapshot delivers each key's last message once, a tag record
        // possibly after its header: apply what is left to known streams
        for (key, pending) in self.pending.drain() {
            if let Some(entry) = self.entries.get_mut(&key) {
                for (tag, value) in pending {
                    match value {
                        Some(value) => entry.tags.insert(tag, value),
                        None => entry.tags.remove(&tag),
                    };
                }
            }
        }
        self.entries
    }
}

/// The page `query` asks for, of `entries` (stored streams by
/// `(namespace, name)`, current at `revision`); only the page's streams are
/// decoded in full, and a selector reads just the labels of the others.
pub(super) fn page_of(
    entries: &BTreeMap<(String, String), StoredEntry>,
    revision: u64,
    query: &ListQuery<'_>,
) -> Result<ListPage, ApiError> {
    let start = match (query.after, query.namespace) {
        (Some((ns, name)), _) => Bound::Excluded((ns.to_owned(), name.to_owned())),
        (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
        (None, None) => Bound::Unbounded,
    };
    let selector = query.selector.filter(|s| !s.is_empty());
    let mut page = ListPage {
        revision,
        ..ListPage::default()
    };
    for ((namespace, _), entry) in entries.range((start, Bound::Unbounded)) {
        match query.namespace {
            Some(ns) if namespace.as_str() < ns => continue,
            Some(ns) if namespace.as_str() > ns => break,
            _ => {}
        }
        if let Some(selector) = selector
            && !selector.matches(&layout::labels_of(&entry.header)?)
        {
            continue;
        }
        if query.limit.is_some_and(|limit| page.items.len() >= limit) {
            page.more = true;
            break;
        }
        page.items.push(entry.decode_stream()?.0);
    }
    Ok(page)
}

/// Whether `message`, of the streams bucket, is a stream's header, not one
/// of its tag records.
pub fn is_header(message: &jetstream::Message) -> bool {
    let key = message
        .subject
        .as_str()
        .strip_prefix(&format!("$KV.{}.", subjects::BUCKET_STREAMS));
    matches!(
        key.and_then(subjects::parse_bucket_key),
        Some(subjects::BucketKey::Stream(..))
    )
}
