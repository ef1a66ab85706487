//! Receivers over REST, in our own group `imagestreams.io/v1`, so that
//! `kubectl get receivers`, `kubectl create -f receiver.yaml` and
//! `kubectl delete receiver NAME` work as `imagestreams get receivers`
//! does (issue 18):
//!
//! | method | path |
//! |---|---|
//! | GET (list, every namespace) | `/apis/imagestreams.io/v1/receivers` |
//! | GET (list), POST | `/apis/imagestreams.io/v1/namespaces/{ns}/receivers` |
//! | GET, DELETE | `/apis/imagestreams.io/v1/namespaces/{ns}/receivers/{name}` |
//!
//! ```yaml
//! apiVersion: imagestreams.io/v1
//! kind: Receiver
//! metadata: {name: ghcr-push}
//! spec:
//!   type: ghcr
//!   secret: …            # write-only; left out, one is generated
//!   repositories: [ghcr.io/acme/*]
//!   paused: false
//!   oidc: {audience: …, email: …}   # gar only
//! status:                # set by the server
//!   url: https://hooks.example.com/hooks/4f…
//!   path: /hooks/4f…
//!   weaklyAuthenticated: false
//!   lastDeliveryTime: …
//!   lastOutcome: accepted
//!   lastDeliveryID: …
//!   generatedSecret: …   # in the create answer only, when generated
//! ```
//!
//! `spec.secret` goes in and never comes out; a generated secret is in the
//! create answer's `status.generatedSecret` and nowhere else afterwards (as
//! Kubernetes' TokenRequest answers its token once). A receiver is not
//! changed in place: delete and create it again. Every call needs the
//! `secrets` right in the namespace, as the gRPC service does. The handlers
//! are those of every resource of our group ([`own`]).

use axum::Router;
use chrono::{DateTime, Utc};
use imagestreams_common::{
    auth::{Authenticated, Verb},
    error::ApiError,
    model::ObjectMeta,
};
use imagestreams_proto::v1 as proto;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ReceiversClient;
use crate::{
    kube::{OWN_GROUP_VERSION, table::Printable},
    rest::own::{self, OwnResource},
};

/// The resource name, as paths and `Status.details.kind` spell it.
pub const RESOURCE: &str = "receivers";
/// The kind.
pub const KIND: &str = "Receiver";
/// The kind of a list of receivers.
pub const LIST_KIND: &str = "ReceiverList";

/// A webhook receiver: a URL hosted registries (Docker Hub, GHCR, Quay,
/// Harbor, GitLab, ACR, GAR, ECR, Artifactory, Nexus, zot, any CNCF
/// distribution or CloudEvents sender) notify of pushes, which makes the
/// tags of the namespace that follow the pushed repository and tag be
/// imported again.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverObject {
    /// `imagestreams.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Receiver`.
    #[serde(default)]
    pub kind: String,
    /// The receiver's name, namespace, uid and creation time.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the receiver accepts.
    pub spec: ReceiverSpec,
    /// Its URL and last delivery: set by the server, ignored on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReceiverObjectStatus>,
}

/// What a receiver accepts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverSpec {
    /// The sender: dockerhub, quay, ghcr, harbor, gitlab, distribution, acr,
    /// gar, ecr, artifactory, nexus, zot, cloudevents or generic-hmac.
    #[serde(rename = "type")]
    pub kind: String,
    /// Write-only: the secret the sender signs or authenticates with; never
    /// returned. Left out, one is generated (but for dockerhub and quay,
    /// which cannot send one) and returned once, in the create answer's
    /// `status.generatedSecret`.
    #[serde(default, skip_serializing)]
    pub secret: String,
    /// Repositories the receiver may name (`host/path`, a trailing `*`
    /// matches any rest); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Deliveries are answered 503 and do nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// GAR: the token the push subscription sends must carry this audience
    /// and service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<ReceiverOidc>,
}

/// The identity a GAR push subscription's token must carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverOidc {
    /// The token's `aud`.
    #[serde(default)]
    pub audience: String,
    /// The service account the subscription pushes as (`email`).
    #[serde(default)]
    pub email: String,
}

/// A receiver's URL and last delivery.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverObjectStatus {
    /// The full URL to paste into the sender's webhook settings.
    #[serde(default)]
    pub url: String,
    /// Its path alone (`/hooks/<random id>`): unguessable, not derived from
    /// the name.
    #[serde(default)]
    pub path: String,
    /// The sender cannot authenticate (dockerhub, quay): the URL is the only
    /// secret.
    #[serde(default)]
    pub weakly_authenticated: bool,
    /// RFC 3339 UTC; absent before the first delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<String>,
    /// accepted, duplicate, ping, ignored, unmatched, refused or malformed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_outcome: String,
    /// The delivery id the sender gave, if any.
    #[serde(
        default,
        rename = "lastDeliveryID",
        skip_serializing_if = "String::is_empty"
    )]
    pub last_delivery_id: String,
    /// The secret generated because none was given: in the create answer
    /// only, shown this once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generated_secret: String,
}

impl ReceiverObject {
    /// The receiver as the API shows it.
    fn from_proto(receiver: proto::Receiver) -> Self {
        let status = receiver.status.unwrap_or_default();
        let oidc = (!receiver.oidc_audience.is_empty() || !receiver.oidc_email.is_empty())
            .then_some(ReceiverOidc {
                audience: receiver.oidc_audience,
                email: receiver.oidc_email,
            });
        ReceiverObject {
            api_version: OWN_GROUP_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: ObjectMeta {
                name: receiver.name,
                namespace: receiver.namespace,
                uid: receiver.uid,
                creation_timestamp: Some(receiver.creation_timestamp).filter(|t| !t.is_empty()),
                ..ObjectMeta::default()
            },
            spec: ReceiverSpec {
                kind: receiver.r#type,
                secret: String::new(),
                repositories: receiver.repositories,
                paused: receiver.paused,
                oidc,
            },
            status: Some(ReceiverObjectStatus {
                url: receiver.url,
                path: receiver.path,
                weakly_authenticated: receiver.weakly_authenticated,
                last_delivery_time: Some(status.last_delivery_time).filter(|t| !t.is_empty()),
                last_outcome: status.last_outcome,
                last_delivery_id: status.last_delivery_id,
                generated_secret: String::new(),
            }),
        }
    }

    /// The create request of this object in `namespace`.
    fn into_request(self, namespace: &str) -> proto::CreateReceiverRequest {
        let oidc = self.spec.oidc.unwrap_or_default();
        proto::CreateReceiverRequest {
            namespace: namespace.to_owned(),
            name: self.metadata.name,
            r#type: self.spec.kind,
            secret: self.spec.secret,
            repositories: self.spec.repositories,
            paused: self.spec.paused,
            oidc_audience: oidc.audience,
            oidc_email: oidc.email,
        }
    }
}

impl Printable for ReceiverObject {
    const COLUMNS: &'static [(&'static str, &'static str, bool)] = &[
        ("Name", "Name must be unique within a namespace.", false),
        ("Type", "The sender.", false),
        ("Path", "The URL's path, served on the hooks port.", false),
        ("Last Delivery", "When the last delivery came.", false),
        ("Outcome", "What the last delivery came to.", false),
        ("Age", "When the receiver was created.", false),
        (
            "URL",
            "The full URL to paste into the sender's settings.",
            true,
        ),
        ("Paused", "Whether deliveries are refused.", true),
    ];

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn set_api_version(&mut self, api_version: &str) {
        self.api_version = api_version.to_owned();
    }

    fn cells(&self, now: DateTime<Utc>) -> Vec<Value> {
        let status = self.status.clone().unwrap_or_default();
        vec![
            json!(self.metadata.name),
            json!(self.spec.kind),
            json!(status.path),
            json!(crate::kube::table::ago(
                status.last_delivery_time.as_deref(),
                now
            )),
            json!(status.last_outcome),
            json!(crate::kube::table::age(
                self.metadata.creation_timestamp.as_deref(),
                now
            )),
            json!(status.url),
            json!(self.spec.paused),
        ]
    }
}

/// The routes of receivers over `client` (see [`own`]).
pub(crate) fn router(client: ReceiversClient) -> Router {
    own::router(client)
}

impl OwnResource for ReceiversClient {
    type Object = ReceiverObject;
    const RESOURCE: &'static str = RESOURCE;
    const KIND: &'static str = KIND;
    const LIST_KIND: &'static str = LIST_KIND;
    // a receiver's URL is itself a secret for senders that cannot sign
    const READ: Verb = Verb::Secrets;
    const WRITE: Verb = Verb::Secrets;

    async fn list(&self, namespace: Option<&str>) -> Result<Vec<ReceiverObject>, ApiError> {
        let items = ReceiversClient::list(self, namespace.unwrap_or_default()).await?;
        Ok(items.into_iter().map(ReceiverObject::from_proto).collect())
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<ReceiverObject, ApiError> {
        Ok(ReceiverObject::from_proto(
            ReceiversClient::get(self, namespace, name).await?,
        ))
    }

    /// The create answer carries a generated secret, this once.
    async fn create(
        &self,
        _auth: &Authenticated,
        namespace: &str,
        object: ReceiverObject,
    ) -> Result<ReceiverObject, ApiError> {
        let created = ReceiversClient::create(self, &object.into_request(namespace)).await?;
        let mut object = ReceiverObject::from_proto(created.receiver.unwrap_or_default());
        if let Some(status) = &mut object.status {
            status.generated_secret = created.generated_secret;
        }
        Ok(object)
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        ReceiversClient::delete(self, namespace, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{FieldValidation, patch};

    #[test]
    fn the_secret_goes_in_and_never_comes_out() {
        let object: ReceiverObject = serde_json::from_value(json!({
            "apiVersion": "imagestreams.io/v1", "kind": "Receiver",
            "metadata": {"name": "ghcr"},
            "spec": {"type": "ghcr", "secret": "s3cr3t", "repositories": ["ghcr.io/acme/*"]}
        }))
        .unwrap();
        let request = object.clone().into_request("ns1");
        assert_eq!(request.secret, "s3cr3t");
        assert_eq!(request.r#type, "ghcr");
        let text = serde_json::to_string(&object).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn a_receiver_shows_its_url_and_last_delivery() {
        let object = ReceiverObject::from_proto(proto::Receiver {
            namespace: "ns1".into(),
            name: "hub".into(),
            r#type: "dockerhub".into(),
            url: "http://h/hooks/abc".into(),
            path: "/hooks/abc".into(),
            weakly_authenticated: true,
            creation_timestamp: "2026-12-07T10:00:00Z".into(),
            status: Some(proto::ReceiverStatus {
                last_delivery_time: "2026-12-07T11:00:00Z".into(),
                last_outcome: "accepted".into(),
                last_delivery_id: String::new(),
            }),
            ..proto::Receiver::default()
        });
        let value = serde_json::to_value(&object).unwrap();
        assert_eq!(value["status"]["url"], "http://h/hooks/abc");
        assert_eq!(value["status"]["weaklyAuthenticated"], true);
        assert_eq!(value["status"]["lastOutcome"], "accepted");
        assert!(value["spec"].get("oidc").is_none());
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cells = object.cells(now);
        assert_eq!(cells[0], "hub");
        assert_eq!(cells[3], "About an hour ago");
        assert_eq!(cells[5], "120m");
    }

    #[test]
    fn unknown_fields_are_named_or_dropped_as_asked() {
        let value = json!({"metadata": {"name": "x"}, "spec": {"type": "ghcr", "secrte": "typo"}});
        let (error, _) =
            patch::decode_as::<ReceiverObject>(value.clone(), FieldValidation::Strict).unwrap_err();
        assert!(error.to_string().contains("secrte"), "{error}");
        let (object, dropped) =
            patch::decode_as::<ReceiverObject>(value, FieldValidation::Ignore).unwrap();
        assert_eq!(object.spec.kind, "ghcr");
        assert_eq!(dropped, ["spec.secrte"]);
    }
}
