//! Tag history you can ask (`imagestreams history`, the `History` RPC and
//! the `…/imagestreams/{name}/history` subresource): every change of a
//! stream's tags with who or what caused it and what fired, and what each
//! tag pointed to at a given time.
//!
//! Answered from what the mesh keeps already, newest source first:
//!
//! - **the event log**: the stream's `TagsChanged` events in JetStream
//!   (kept [`DEFAULT_EVENT_MAX_AGE`](imagestreams_common::nats::DEFAULT_EVENT_MAX_AGE)
//!   by default, `nats.events_max_age`/`nats.events_max_bytes` to keep more),
//!   each a committed change with its time, old and new image and cause;
//! - **the tags' own histories** (at most `stream_store.history_limit` items
//!   per tag): the changes older than the log's first event, without a
//!   cause (the record does not keep one);
//! - **the stream key's KV history** (64 revisions): when the stream was
//!   deleted, so that a time after a delete points at nothing;
//! - **the firings** of the namespace's triggers: what each change fired.
//!
//! The assembling ([`assemble`]) is pure; [`gather`] does the reading.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Extension, Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Timelike as _, Utc};
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::ApiError,
    model::ImageStream,
    nats,
    subjects::Kind,
};
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::{
    Cause, StreamReader,
    history::{HistoryView, time_of, timestamp},
};
use imagestreams_trigger_api::{Firing, TriggerReader};
use prost::Message as _;

use crate::{
    kube::Ask,
    rest::{ObjectPath, RestError},
    streams::Streams,
};

/// What a history request asks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    /// The stream's namespace.
    pub namespace: String,
    /// The stream's name.
    pub name: String,
    /// One tag, or all.
    pub tag: Option<String>,
    /// Only changes at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Also say what each tag pointed to at this time.
    pub at: Option<DateTime<Utc>>,
}

/// One change of one tag's current image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub tag: String,
    pub time: DateTime<Utc>,
    /// Empty when the tag was new.
    pub old_image: String,
    pub new_image: String,
    /// The pinned pull spec of the new image.
    pub reference: String,
    /// The stream (incarnation) it happened to.
    pub uid: String,
    /// Who or what caused it; `None` when only the tag's history tells of
    /// it (older than the event log reaches).
    pub cause: Option<Cause>,
    /// What it fired.
    pub fired: Vec<Fired>,
}

/// A trigger firing caused by a change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    pub trigger: String,
    /// `Build` or `Deployment`.
    pub kind: String,
    /// The firing's id (its event's `Nats-Msg-Id`).
    pub firing: String,
    /// Where its webhook delivery stands (`Delivered`, `Pending`, …; empty
    /// without a webhook).
    pub delivery: String,
}

/// What a tag pointed to at the asked time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pointed {
    pub tag: String,
    pub image: String,
    pub reference: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// The answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct History {
    /// Newest first.
    pub changes: Vec<Change>,
    /// With `at`: per tag that pointed somewhere then, by tag name.
    pub at: Option<Vec<Pointed>>,
    /// The time of the stream's oldest event still in the log (`None`:
    /// none kept), so the caller knows where causes stop.
    pub log_reaches: Option<DateTime<Utc>>,
}

/// What was read, for [`assemble`].
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// The stream's `TagsChanged` events kept in JetStream, oldest first.
    pub events: Vec<proto::TagsChanged>,
    /// The stream as it is now, if it exists.
    pub current: Option<ImageStream>,
    /// When the stream key was deleted, as far as its KV history reaches.
    pub deletes: Vec<DateTime<Utc>>,
    /// The firings of the stream's namespace.
    pub firings: Vec<Firing>,
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Puts the sources together for `query`.
pub(crate) fn assemble(query: &Query, sources: Sources) -> History {
    let wanted = |tag: &str| query.tag.as_deref().is_none_or(|t| t == tag);
    let mut changes = Vec::new();
    let log_reaches = sources
        .events
        .iter()
        .filter_map(|e| time_of(e.time.as_ref()))
        .min();
    for event in &sources.events {
        let Some(time) = time_of(event.time.as_ref()) else {
            continue;
        };
        let cause = Cause::of_event(event.cause.as_ref());
        for change in event.changes.iter().filter(|c| wanted(&c.tag)) {
            changes.push(Change {
                tag: change.tag.clone(),
                time,
                old_image: change.old_image.clone(),
                new_image: change.new_image.clone(),
                reference: change.docker_image_reference.clone(),
                uid: event.uid.clone(),
                cause: cause.clone(),
                fired: Vec::new(),
            });
        }
    }
    // the tags' own histories, where the log does not reach (their times
    // are whole seconds, the log's finer)
    let log_second = log_reaches.and_then(|t| t.with_nanosecond(0));
    if let Some(stream) = &sources.current {
        let lists = stream.status.iter().flat_map(|s| &s.tags);
        for list in lists.filter(|l| wanted(&l.tag)) {
            // oldest first, as the log (reversed below as a whole)
            for (i, item) in list.items.iter().enumerate().rev() {
                let Some(time) = parse_time(&item.created) else {
                    continue;
                };
                if log_second.is_some_and(|first| time >= first) {
                    continue;
                }
                changes.push(Change {
                    tag: list.tag.clone(),
                    time,
                    old_image: list
                        .items
                        .get(i + 1)
                        .map(|o| o.image.clone())
                        .unwrap_or_default(),
                    new_image: item.image.clone(),
                    reference: item.docker_image_reference.clone(),
                    uid: stream.metadata.uid.clone(),
                    cause: None,
                    fired: Vec::new(),
                });
            }
        }
    }
    // newest first; within one time, as the log listed them
    changes.reverse();
    changes.sort_by_key(|c| std::cmp::Reverse(c.time));
    attach_firings(
        &mut changes,
        &query.namespace,
        &query.name,
        &sources.firings,
    );
    let at = query
        .at
        .map(|at| pointed_at(at, &changes, &sources.deletes, sources.current.as_ref()));
    if let Some(since) = query.since {
        changes.retain(|c| c.time >= since);
    }
    History {
        changes,
        at,
        log_reaches,
    }
}

/// Puts each firing of a trigger on `namespace/name` on the change it
/// answered: the newest change of its tag to its image at or before it
/// fired (a trigger fires once per image, and may skip changes it saw late).
fn attach_firings(changes: &mut [Change], namespace: &str, name: &str, firings: &[Firing]) {
    for firing in firings {
        if firing.from.namespace != namespace || firing.from.stream != name {
            continue;
        }
        let fired_at = parse_time(&firing.time);
        // `changes` is newest first
        let same = |c: &Change| c.tag == firing.from.tag && c.new_image == firing.image;
        let at = changes
            .iter()
            .position(|c| same(c) && fired_at.is_none_or(|t| c.time <= t))
            .or_else(|| changes.iter().rposition(same));
        if let Some(i) = at {
            changes[i].fired.push(Fired {
                trigger: firing.trigger.clone(),
                kind: firing.kind.firing_noun().to_owned(),
                firing: firing.id.clone(),
                delivery: firing.delivery.state.label().to_owned(),
            });
        }
    }
}

/// What each tag pointed to at `at`: its newest change at or before `at`,
/// unless the stream was deleted (or replaced by another of the same name)
/// between that change and `at`.
fn pointed_at(
    at: DateTime<Utc>,
    changes: &[Change],
    deletes: &[DateTime<Utc>],
    current: Option<&ImageStream>,
) -> Vec<Pointed> {
    // when each incarnation began, as far as we know
    let mut began: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for change in changes {
        let first = began.entry(&change.uid).or_insert(change.time);
        *first = (*first).min(change.time);
    }
    if let Some(stream) = current
        && let Some(created) = stream
            .metadata
            .creation_timestamp
            .as_deref()
            .and_then(parse_time)
    {
        began.insert(&stream.metadata.uid, created);
    }
    let mut newest: BTreeMap<&str, &Change> = BTreeMap::new();
    // `changes` is newest first: the first seen per tag is its newest
    for change in changes.iter().filter(|c| c.time <= at) {
        newest.entry(&change.tag).or_insert(change);
    }
    newest
        .into_values()
        .filter(|change| {
            let deleted = deletes.iter().any(|d| *d > change.time && *d <= at);
            let replaced = began
                .iter()
                .any(|(uid, b)| *uid != change.uid && *b > change.time && *b <= at);
            !deleted && !replaced
        })
        .map(|change| Pointed {
            tag: change.tag.clone(),
            image: change.new_image.clone(),
            reference: change.reference.clone(),
            since: change.time,
        })
        .collect()
}

/// Reads the sources of a history and answers it.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    js: async_nats::jetstream::Context,
    streams: StreamReader,
    triggers: TriggerReader,
}

impl Reader {
    /// A reader of the event log in `js`, the streams bucket and the
    /// trigger buckets.
    pub fn new(
        js: async_nats::jetstream::Context,
        streams: StreamReader,
        triggers: TriggerReader,
    ) -> Self {
        Reader {
            js,
            streams,
            triggers,
        }
    }

    /// The history `query` asks for.
    ///
    /// What one tag pointed to at `at` is asked of the log between `at` and
    /// windows of [`WINDOWS`] before it, each wider than the last: the
    /// first window in which the tag changed holds its newest change at or
    /// before `at`, so an answer reads about as many events as the window
    /// holds, not the whole log. For every tag, the whole log up to `at`.
    /// A list reads from `since` on.
    pub async fn answer(&self, query: &Query) -> Result<History, ApiError> {
        let read = |start, until: Option<DateTime<Utc>>| {
            // the log's times are when JetStream stored an event, which may
            // be a little after the change's own time that `at` is compared
            // with
            let until = until.map(|t| t + STORED_LATER);
            gather(&self.js, &self.streams, &self.triggers, query, start, until)
        };
        let Some(at) = query.at else {
            return Ok(assemble(query, read(query.since, None).await?));
        };
        if query.tag.is_some() {
            for window in WINDOWS {
                let mut history = assemble(query, read(Some(at - window), Some(at)).await?);
                if history.at.as_ref().is_some_and(|tags| !tags.is_empty()) {
                    // where the whole log begins was not asked
                    history.log_reaches = None;
                    return Ok(history);
                }
            }
        }
        Ok(assemble(query, read(None, Some(at)).await?))
    }
}

/// How much later than its change JetStream may store a `TagsChanged`.
const STORED_LATER: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The windows before `at` the log is read in, one after the other, for
/// one tag's `at` ([`Reader::answer`]).
const WINDOWS: [chrono::TimeDelta; 3] = [
    chrono::TimeDelta::minutes(10),
    chrono::TimeDelta::days(1),
    chrono::TimeDelta::days(30),
];

async fn gather(
    js: &async_nats::jetstream::Context,
    reader: &StreamReader,
    triggers: &TriggerReader,
    query: &Query,
    start: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<Sources, ApiError> {
    let (namespace, name) = (query.namespace.as_str(), query.name.as_str());
    let subject = Kind::TagsChanged.subject(namespace, name);
    let events = nats::replay(js, Kind::TagsChanged.stream(), &subject, start, until)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot read the event log: {e}")))?
        .0
        .iter()
        .filter_map(|m| proto::TagsChanged::decode(m.payload.clone()).ok())
        .collect();
    let current = match reader.get(namespace, name).await {
        Ok(stream) => Some(stream),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let deletes = reader.deletes(namespace, name).await?;
    let firings = triggers
        .firings(Some(namespace), None)
        .await?
        .into_iter()
        .map(|f| f.value)
        .collect();
    Ok(Sources {
        events,
        current,
        deletes,
        firings,
    })
}

impl TryFrom<proto::HistoryRequest> for Query {
    type Error = ApiError;

    fn try_from(request: proto::HistoryRequest) -> Result<Self, ApiError> {
        if request.namespace.is_empty() {
            return Err(ApiError::invalid("namespace", "namespace: Required value"));
        }
        if request.name.is_empty() {
            return Err(ApiError::invalid("name", "name: Required value"));
        }
        let time = |field: &str, t: Option<prost_types::Timestamp>| match t {
            None => Ok(None),
            Some(t) => time_of(Some(&t)).map(Some).ok_or_else(|| {
                ApiError::invalid(field, format!("{field}: Invalid value: not a time"))
            }),
        };
        Ok(Query {
            since: time("since", request.since)?,
            at: time("at", request.at)?,
            namespace: request.namespace,
            name: request.name,
            tag: Some(request.tag).filter(|t| !t.is_empty()),
        })
    }
}

impl From<History> for proto::HistoryResponse {
    fn from(history: History) -> Self {
        proto::HistoryResponse {
            changes: history
                .changes
                .into_iter()
                .map(|c| proto::TagHistoryChange {
                    tag: c.tag,
                    time: Some(timestamp(c.time)),
                    old_image: c.old_image,
                    new_image: c.new_image,
                    docker_image_reference: c.reference,
                    uid: c.uid,
                    cause: c.cause.as_ref().map(proto::ChangeCause::from),
                    fired: c
                        .fired
                        .into_iter()
                        .map(|f| proto::HistoryFiring {
                            trigger: f.trigger,
                            kind: f.kind,
                            firing: f.firing,
                            delivery: f.delivery,
                        })
                        .collect(),
                })
                .collect(),
            at: history
                .at
                .unwrap_or_default()
                .into_iter()
                .map(|p| proto::TagAtTime {
                    tag: p.tag,
                    image: p.image,
                    docker_image_reference: p.reference,
                    since: Some(timestamp(p.since)),
                })
                .collect(),
            log_reaches: history.log_reaches.map(timestamp),
        }
    }
}

/// `GET …/namespaces/{ns}/imagestreams/{name}/history`: `tag`, `since` and
/// `at` (RFC 3339) as in the RPC; the answer is an `ImageStreamHistory`
/// ([`HistoryView`]), what `imagestreams history -o json` prints.
pub(crate) async fn rest(
    State(streams): State<Arc<Streams>>,
    Extension(auth): Extension<Authenticated>,
    Path(path): Path<ObjectPath>,
    ask: Ask,
) -> Result<Response, RestError> {
    let about = |e| RestError::about_resource(e, "imagestreams/history", &path.name);
    auth.authorize(Some(&path.namespace), Verb::Get)
        .map_err(about)?;
    let time = |field: &str| -> Result<Option<prost_types::Timestamp>, ApiError> {
        match ask.param(field) {
            "" => Ok(None),
            text => parse_time(text).map(|t| Some(timestamp(t))).ok_or_else(|| {
                ApiError::invalid(
                    field,
                    format!("{field}: Invalid value: {text:?}: not an RFC 3339 time"),
                )
            }),
        }
    };
    let request = proto::HistoryRequest {
        namespace: path.namespace.clone(),
        name: path.name.clone(),
        tag: ask.param("tag").to_owned(),
        since: time("since").map_err(about)?,
        at: time("at").map_err(about)?,
    };
    let at = request.at;
    let query = Query::try_from(request).map_err(about)?;
    let answer = streams
        .deadline(streams.history.answer(&query))
        .await
        .map_err(about)?;
    let view = HistoryView::new(&path.namespace, &path.name, at.as_ref(), answer.into());
    Ok(Json(view).into_response())
}

#[cfg(test)]
mod tests {
    use imagestreams_common::model::{NamedTagEventList, TagEvent};
    use imagestreams_stream_store_api::CauseKind;
    use imagestreams_trigger_api::{TagRef, TriggerKind};

    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn event(uid: &str, time: &str, old: u8, new: u8, actor: &str) -> proto::TagsChanged {
        proto::TagsChanged {
            uid: uid.into(),
            time: Some(timestamp(t(time))),
            changes: vec![proto::TagChange {
                tag: "latest".into(),
                old_image: if old == 0 { String::new() } else { digest(old) },
                new_image: digest(new),
                docker_image_reference: format!("r/ns/app@{}", digest(new)),
                generation: 1,
            }],
            cause: Some((&Cause::new(CauseKind::Push, actor)).into()),
            ..Default::default()
        }
    }

    fn query(at: Option<&str>) -> Query {
        Query {
            namespace: "ns".into(),
            name: "app".into(),
            at: at.map(t),
            ..Query::default()
        }
    }

    fn current(uid: &str, created: &str, items: &[(&str, u8)]) -> ImageStream {
        let mut stream = ImageStream::new("ns", "app");
        stream.metadata.uid = uid.into();
        stream.metadata.creation_timestamp = Some(created.into());
        stream.status.get_or_insert_with(Default::default).tags = vec![NamedTagEventList {
            tag: "latest".into(),
            items: items
                .iter()
                .map(|(created, n)| TagEvent {
                    created: (*created).into(),
                    docker_image_reference: format!("r/ns/app@{}", digest(*n)),
                    image: digest(*n),
                    generation: Some(1),
                })
                .collect(),
            conditions: Vec::new(),
        }];
        stream
    }

    fn images_at(history: &History) -> Vec<String> {
        history
            .at
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.image.clone())
            .collect()
    }

    #[test]
    fn at_a_time_each_tag_points_where_its_last_change_before_put_it() {
        let sources = || Sources {
            events: vec![
                event("u1", "2026-01-01T10:00:00.100Z", 0, 1, "alice"),
                event("u1", "2026-01-01T10:00:00.200Z", 1, 2, "bob"),
            ],
            current: Some(current("u1", "2026-01-01T10:00:00Z", &[])),
            ..Sources::default()
        };
        let at = |time| images_at(&assemble(&query(Some(time)), sources()));
        assert!(at("2026-01-01T09:59:59Z").is_empty(), "before the stream");
        assert_eq!(at("2026-01-01T10:00:00.150Z"), [digest(1)]);
        assert_eq!(at("2026-01-01T10:00:00.200Z"), [digest(2)]);
        assert_eq!(at("2027-01-01T00:00:00Z"), [digest(2)]);

        let all = assemble(&query(None), sources());
        assert_eq!(all.changes.len(), 2);
        assert_eq!(all.changes[0].new_image, digest(2), "newest first");
        assert_eq!(all.changes[0].old_image, digest(1));
        assert_eq!(all.changes[0].cause.as_ref().unwrap().actor, "bob");
        assert!(all.at.is_none());
    }

    #[test]
    fn a_delete_or_a_new_stream_of_the_name_ends_what_the_old_one_pointed_to() {
        let deleted = Sources {
            events: vec![event("u1", "2026-01-01T10:00:00Z", 0, 1, "")],
            deletes: vec![t("2026-01-01T11:00:00Z")],
            ..Sources::default()
        };
        let history = assemble(&query(Some("2026-01-01T10:30:00Z")), deleted);
        assert_eq!(images_at(&history), [digest(1)], "before the delete");
        let deleted = Sources {
            events: vec![event("u1", "2026-01-01T10:00:00Z", 0, 1, "")],
            deletes: vec![t("2026-01-01T11:00:00Z")],
            ..Sources::default()
        };
        let history = assemble(&query(Some("2026-01-01T11:30:00Z")), deleted);
        assert!(images_at(&history).is_empty(), "after the delete");

        // the delete fell out of the KV history, but a new stream began
        let replaced = Sources {
            events: vec![
                event("u1", "2026-01-01T10:00:00Z", 0, 1, ""),
                event("u2", "2026-01-01T12:00:00Z", 0, 3, ""),
            ],
            current: Some(current("u2", "2026-01-01T11:30:00Z", &[])),
            ..Sources::default()
        };
        let history = assemble(&query(Some("2026-01-01T11:45:00Z")), replaced);
        assert!(
            images_at(&history).is_empty(),
            "the new stream had no image yet"
        );
    }

    #[test]
    fn changes_older_than_the_log_come_from_the_tag_history_without_a_cause() {
        let sources = Sources {
            events: vec![event("u1", "2026-01-01T10:00:05.500Z", 2, 3, "carol")],
            current: Some(current(
                "u1",
                "2026-01-01T09:00:00Z",
                &[
                    ("2026-01-01T10:00:05Z", 3),
                    ("2026-01-01T10:00:01Z", 2),
                    ("2026-01-01T10:00:00Z", 1),
                    ("2026-01-01T10:00:00Z", 4),
                ],
            )),
            ..Sources::default()
        };
        let history = assemble(&query(None), sources);
        let seen: Vec<(String, bool)> = history
            .changes
            .iter()
            .map(|c| (c.new_image.clone(), c.cause.is_some()))
            .collect();
        assert_eq!(
            seen,
            [
                (digest(3), true),
                (digest(2), false),
                (digest(1), false),
                (digest(4), false)
            ],
            "the logged change once, then the older items, newest first within a second too"
        );
        assert_eq!(history.changes[1].old_image, digest(1));
    }

    #[test]
    fn firings_go_to_the_change_they_answered() {
        let firing = |image: u8, time: &str| Firing {
            id: format!("build-{image}"),
            namespace: "ns".into(),
            trigger: "build".into(),
            kind: TriggerKind::Build,
            from: TagRef {
                namespace: "ns".into(),
                stream: "app".into(),
                tag: "latest".into(),
            },
            image: digest(image),
            time: time.into(),
            trigger_uid: "t1".into(),
            docker_image_reference: String::new(),
            previous_image: String::new(),
            cause: String::new(),
            container: String::new(),
            event_published: true,
            delivery: Default::default(),
            lease: Default::default(),
            traceparent: None,
        };
        let sources = Sources {
            events: vec![
                event("u1", "2026-01-01T10:00:00Z", 0, 1, ""),
                event("u1", "2026-01-01T10:01:00Z", 1, 2, ""),
                event("u1", "2026-01-01T10:02:00Z", 2, 1, ""),
            ],
            firings: vec![firing(1, "2026-01-01T10:00:00.300Z")],
            ..Sources::default()
        };
        let history = assemble(&query(None), sources);
        let fired: Vec<usize> = history.changes.iter().map(|c| c.fired.len()).collect();
        assert_eq!(
            fired,
            [0, 0, 1],
            "the first change to the image, not its return"
        );
        assert_eq!(history.changes[2].fired[0].kind, "Build");
    }
}
