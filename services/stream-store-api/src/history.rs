//! The JSON (and YAML) form of a tag history, as the REST subresource
//! `…/imagestreams/{name}/history` answers and `imagestreams history -o
//! json|yaml` prints it: one shape for both, made from the `History` RPC's
//! reply.

use serde::{Deserialize, Serialize};

use imagestreams_common::model::API_VERSION;
use imagestreams_proto::v1 as proto;

/// The kind of a history answer.
pub const KIND_HISTORY: &str = "ImageStreamHistory";

/// A stream's tag history, and with `at`, what each tag pointed to then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    /// `image.openshift.io/v1`.
    pub api_version: String,
    /// [`KIND_HISTORY`].
    pub kind: String,
    /// The stream's namespace.
    pub namespace: String,
    /// The stream's name.
    pub name: String,
    /// The time asked with `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// With `at`: what each tag pointed to then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_at: Option<Vec<TagAtView>>,
    /// Every change, newest first (without `at`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeView>,
    /// The time of the stream's oldest event still kept: causes reach back
    /// to here, older changes come from the tags' histories.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_log_from: String,
}

/// One change of one tag's current image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    /// The tag.
    pub tag: String,
    /// RFC 3339.
    pub time: String,
    /// Empty when the tag was new.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// The new image (a digest).
    pub to: String,
    /// The pinned pull spec.
    pub docker_image_reference: String,
    /// The stream's uid then.
    pub uid: String,
    /// Who or what made it; absent when only the tag's history tells of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<CauseView>,
    /// The trigger firings it caused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fired: Vec<FiredView>,
}

/// What made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CauseView {
    /// `push`, `import`, `scheduled-import`, `tag`, `update`, `create`.
    pub kind: String,
    /// Who: a user, a service account or the registry's pusher.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// The event that made it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
}

/// A firing a change caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FiredView {
    /// The trigger.
    pub trigger: String,
    /// `Build` or `Deployment`.
    pub kind: String,
    /// The firing id.
    pub firing: String,
    /// Its webhook delivery: `Pending`, `Succeeded`, `Failed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub delivery: String,
}

/// What a tag pointed to at the asked time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagAtView {
    /// The tag.
    pub tag: String,
    /// The image (a digest).
    pub image: String,
    /// The pinned pull spec.
    pub docker_image_reference: String,
    /// Since when (RFC 3339).
    pub since: String,
}

pub use imagestreams_common::time::{time_of, timestamp};

/// RFC 3339 (UTC, seconds or finer as stored) of a protobuf time; empty when unset.
pub fn rfc3339(time: Option<&prost_types::Timestamp>) -> String {
    time_of(time)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// How a cause kind is spelt in views.
pub fn cause_kind(kind: proto::ChangeCauseKind) -> &'static str {
    match kind {
        proto::ChangeCauseKind::Unspecified => "unknown",
        proto::ChangeCauseKind::Push => "push",
        proto::ChangeCauseKind::Import => "import",
        proto::ChangeCauseKind::ScheduledImport => "scheduled-import",
        proto::ChangeCauseKind::Tag => "tag",
        proto::ChangeCauseKind::Update => "update",
        proto::ChangeCauseKind::Create => "create",
    }
}

impl HistoryView {
    /// The view of `reply` to a history of `namespace/name`, at `at` if asked.
    pub fn new(
        namespace: &str,
        name: &str,
        at: Option<&prost_types::Timestamp>,
        reply: proto::HistoryResponse,
    ) -> Self {
        HistoryView {
            api_version: API_VERSION.to_owned(),
            kind: KIND_HISTORY.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            at: at.map(|t| rfc3339(Some(t))),
            tags_at: at.map(|_| {
                reply
                    .at
                    .iter()
                    .map(|p| TagAtView {
                        tag: p.tag.clone(),
                        image: p.image.clone(),
                        docker_image_reference: p.docker_image_reference.clone(),
                        since: rfc3339(p.since.as_ref()),
                    })
                    .collect()
            }),
            changes: if at.is_some() {
                Vec::new()
            } else {
                reply.changes.into_iter().map(ChangeView::from).collect()
            },
            event_log_from: rfc3339(reply.log_reaches.as_ref()),
        }
    }
}

impl From<proto::TagHistoryChange> for ChangeView {
    fn from(c: proto::TagHistoryChange) -> Self {
        ChangeView {
            time: rfc3339(c.time.as_ref()),
            cause: c.cause.as_ref().map(|cause| CauseView {
                kind: cause_kind(cause.kind()).to_owned(),
                actor: cause.actor.clone(),
                event_id: cause.event_id.clone(),
            }),
            fired: c
                .fired
                .into_iter()
                .map(|f| FiredView {
                    trigger: f.trigger,
                    kind: f.kind,
                    firing: f.firing,
                    delivery: f.delivery,
                })
                .collect(),
            tag: c.tag,
            from: c.old_image,
            to: c.new_image,
            docker_image_reference: c.docker_image_reference,
            uid: c.uid,
        }
    }
}
