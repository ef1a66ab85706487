//! The operations both front ends (gRPC and REST) serve: writes go to the
//! stream-store over NATS ([`StoreClient`]); gets and lists are served from
//! the gateway's consistent read cache ([`Mirror`]), watches from the KV
//! bucket ([`StreamReader`]). Domain objects in, domain objects out; each
//! front end converts at its edge.

use std::{future::Future, time::Duration};

use imagestreams_common::{
    error::ApiError,
    model::{self, ImageStream},
    requests,
};
use imagestreams_images_api::ImageCatalog;
use imagestreams_proto::v1 as proto;
use imagestreams_stream_store_api::selector::Selector;
use imagestreams_stream_store_api::{
    Freshness, ListPage, ListQuery, Mirror, StoreClient, StreamReader,
};
use imagestreams_trigger_api::TriggerReader;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{GatewayOptions, query::ContinueToken};
use crate::{fanout::Feed, history};

/// What a list asks for, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListParams {
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// Only matching streams.
    pub selector: Selector,
    /// Page size; all when `None`.
    pub limit: Option<usize>,
    /// Where the previous page ended.
    pub after: Option<ContinueToken>,
    /// How current the page must be.
    pub freshness: Freshness,
}

/// A list page and the token of the next one.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListResult {
    /// The page.
    pub page: ListPage,
    /// Non-empty when more items follow.
    pub continue_token: String,
}

/// The gateway's operations over the store.
#[derive(Debug)]
pub(crate) struct Streams {
    /// Reads from the KV bucket.
    pub reader: StreamReader,
    /// Gets and lists, served from memory (see [`Mirror`]).
    pub mirror: Mirror,
    store: StoreClient,
    /// Limits and timeouts.
    pub options: GatewayOptions,
    /// The largest request the NATS server accepts ([`requests::payload_limit`]).
    payload_limit: usize,
    /// Cancelled when the gateway shuts down: ends every watch.
    pub shutdown: CancellationToken,
    /// The watch producers, awaited on shutdown.
    pub tasks: TaskTracker,
    /// The feed fresh watches share.
    pub feed: Feed,
    /// The image records (see [`crate::images`]).
    pub images: ImageCatalog,
    /// Tag history (see [`crate::history`]).
    pub history: history::Reader,
}

impl Streams {
    /// Operations over `reader`, the stream-store behind `nats`, and `images`.
    pub fn new(
        reader: StreamReader,
        images: ImageCatalog,
        triggers: TriggerReader,
        nats: async_nats::Client,
        options: GatewayOptions,
    ) -> Self {
        let payload_limit = requests::payload_limit(&nats);
        let shutdown = CancellationToken::new();
        Streams {
            history: history::Reader::new(
                async_nats::jetstream::new(nats.clone()),
                reader.clone(),
                triggers,
            ),
            store: StoreClient::new(nats),
            feed: Feed::new(reader.clone(), shutdown.clone()),
            mirror: Mirror::start(reader.clone(), shutdown.clone()),
            reader,
            options,
            payload_limit,
            shutdown,
            tasks: TaskTracker::new(),
            images,
        }
    }

    /// Runs a unary operation within the request deadline. Callers' mistakes
    /// are only traced at debug level by the handlers; a fault is logged here.
    pub async fn deadline<T>(
        &self,
        operation: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let limit = self.options.request_timeout;
        let result = tokio::time::timeout(limit, operation)
            .await
            .unwrap_or_else(|_| Err(timed_out(limit)));
        if let Err(error @ ApiError::Internal(_)) = &result {
            tracing::error!(%error, "request failed");
        }
        result
    }

    /// Creates `stream` in `namespace` (which fills an empty
    /// `metadata.namespace` and must match a set one); with `dry_run`
    /// (`dryRun=All`) only checks it as far as it can be without storing —
    /// placed, within the limits, not already there — and returns what would
    /// be stored.
    pub async fn create(
        &self,
        namespace: &str,
        mut stream: ImageStream,
        dry_run: bool,
    ) -> Result<ImageStream, ApiError> {
        place(namespace, &mut stream)?;
        let request = proto::CreateRequest {
            namespace: stream.metadata.namespace.clone(),
            image_stream: Some(self.checked(stream.clone())?),
        };
        self.check_request(&request)?;
        if !dry_run {
            return self.store.create(request).await;
        }
        let meta = &stream.metadata;
        match self
            .get(&meta.namespace, &meta.name, Freshness::Latest)
            .await
        {
            Ok(_) => Err(ApiError::AlreadyExists(format!(
                "imagestreams.image.openshift.io \"{}\" already exists",
                meta.name
            ))),
            Err(ApiError::NotFound(_)) => {
                stream.metadata.creation_timestamp =
                    Some(model::format_timestamp(chrono::Utc::now()));
                Ok(stream)
            }
            Err(error) => Err(error),
        }
    }

    /// One stream, as current as `freshness` asks.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
        freshness: Freshness,
    ) -> Result<ImageStream, ApiError> {
        crate::query::namespace(namespace, "namespace")?;
        crate::query::name(name, "name")?;
        self.mirror.get(namespace, name, freshness).await
    }

    /// One page of streams.
    pub async fn list(&self, params: &ListParams) -> Result<ListResult, ApiError> {
        let page = self
            .mirror
            .list_page(
                ListQuery {
                    namespace: params.namespace.as_deref(),
                    selector: Some(&params.selector),
                    limit: params.limit,
                    after: params
                        .after
                        .as_ref()
                        .map(|t| (t.namespace.as_str(), t.name.as_str())),
                },
                params.freshness,
            )
            .await?;
        let continue_token = match (page.more, page.items.last()) {
            (true, Some(last)) => {
                ContinueToken::encode(&last.metadata.namespace, &last.metadata.name)
            }
            _ => String::new(),
        };
        Ok(ListResult {
            page,
            continue_token,
        })
    }

    /// Replaces a stream (compare-and-swap on its resourceVersion). `name`,
    /// when given (REST's URL), must match `metadata.name`. With `dry_run`
    /// (`dryRun=All`, REST only, so `name` is given) nothing is stored: the
    /// same checks, the same compare-and-swap check against the stored
    /// stream, and what would be stored is returned (with the stored status,
    /// uid and resourceVersion).
    pub async fn update(
        &self,
        namespace: &str,
        name: Option<&str>,
        mut stream: ImageStream,
        dry_run: bool,
    ) -> Result<ImageStream, ApiError> {
        place(namespace, &mut stream)?;
        named(name, &stream)?;
        let request = proto::UpdateRequest {
            namespace: stream.metadata.namespace.clone(),
            image_stream: Some(self.checked(stream.clone())?),
        };
        self.check_request(&request)?;
        if !dry_run {
            return self.store.update(request).await;
        }
        let name = stream.metadata.name.clone();
        let current = self.get(namespace, &name, Freshness::Latest).await?;
        let asked = &stream.metadata.resource_version;
        if !asked.is_empty() && *asked != current.metadata.resource_version {
            return Err(conflict(&name));
        }
        stream.status = current.status;
        stream.metadata.uid = current.metadata.uid;
        stream.metadata.resource_version = current.metadata.resource_version;
        stream.metadata.creation_timestamp = current.metadata.creation_timestamp;
        Ok(stream)
    }

    /// Deletes a stream, at `resource_version` when it is not empty; returns its last state.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) -> Result<ImageStream, ApiError> {
        crate::query::namespace(namespace, "namespace")?;
        crate::query::name(name, "name")?;
        crate::query::precondition(resource_version, "resource_version")?;
        self.store
            .delete(proto::DeleteRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                resource_version: resource_version.to_owned(),
            })
            .await
    }

    /// `oc tag`: one store request per destination stream, in the order given.
    pub async fn tag(&self, request: proto::TagRequest) -> Result<Vec<ImageStream>, ApiError> {
        crate::query::namespace(&request.namespace, "namespace")?;
        if request.destinations.is_empty() {
            return Err(ApiError::invalid(
                "destinations",
                "destinations: Required value: at least one STREAM:TAG",
            ));
        }
        if request.source.is_empty() && !request.delete {
            return Err(ApiError::invalid("source", "source: Required value"));
        }
        let mut changed = Vec::new();
        for destinations in group_by_stream(&request.namespace, &request.destinations) {
            let part = proto::TagRequest {
                destinations,
                ..request.clone()
            };
            self.check_request(&part)?;
            changed.push(self.store.tag(part).await?);
        }
        Ok(changed)
    }

    /// The stream as the wire type, after checking that its JSON fits a document.
    fn checked(&self, stream: ImageStream) -> Result<proto::ImageStream, ApiError> {
        let size = serde_json::to_vec(&stream)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > model::MAX_DOCUMENT_BYTES {
            return Err(ApiError::TooLarge(format!(
                "the ImageStream is {size} bytes as JSON, more than the limit of {} bytes",
                model::MAX_DOCUMENT_BYTES
            )));
        }
        Ok(stream.into())
    }

    /// Refuses a request too large for one NATS message: a caller's mistake,
    /// never an outage.
    fn check_request(&self, request: &impl prost::Message) -> Result<(), ApiError> {
        let size = request.encoded_len();
        let limit = self.payload_limit;
        if size > limit {
            return Err(ApiError::TooLarge(format!(
                "the request is {size} bytes, more than the limit of {limit} bytes"
            )));
        }
        Ok(())
    }
}

fn timed_out(limit: Duration) -> ApiError {
    ApiError::Timeout(format!(
        "the request did not complete within {}s",
        limit.as_secs_f64()
    ))
}

/// A stale resourceVersion, as Kubernetes words it.
pub(crate) fn conflict(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "Operation cannot be fulfilled on imagestreams.image.openshift.io \"{name}\": the object \
         has been modified; please apply your changes to the latest version and try again"
    ))
}

/// Checks that `stream` is the one `name` (REST's URL, when given) names.
fn named(name: Option<&str>, stream: &ImageStream) -> Result<(), ApiError> {
    match name {
        Some(name) if stream.metadata.name != name => Err(ApiError::invalid(
            "",
            format!(
                "metadata.name: the name of the object ({}) does not match the name on the URL ({name})",
                stream.metadata.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Puts `stream` in `namespace`: an empty `metadata.namespace` takes it, a
/// set one must equal it (or stand alone when `namespace` is empty).
fn place(namespace: &str, stream: &mut ImageStream) -> Result<(), ApiError> {
    let meta = &mut stream.metadata;
    match (namespace.is_empty(), meta.namespace.is_empty()) {
        (true, true) => {
            return Err(ApiError::invalid(
                "metadata.namespace",
                "metadata.namespace: Required value: set it or the request's namespace",
            ));
        }
        (false, true) => meta.namespace = namespace.to_owned(),
        (false, false) if meta.namespace != namespace => {
            return Err(ApiError::invalid(
                "",
                format!(
                    "metadata.namespace: the namespace of the provided object ({}) does not match the namespace sent on the request ({namespace})",
                    meta.namespace
                ),
            ));
        }
        _ => {}
    }
    crate::query::namespace(&meta.namespace, "metadata.namespace")
}

/// Splits `oc tag` destinations (`[NAMESPACE/]STREAM:TAG`) by destination
/// stream, keeping their order. Unparsable ones form a group of their own,
/// for the store to reject.
/// The namespaces an `oc tag` request touches: the source's (read; `None`
/// for a `DockerImage` source) and every destination's (written), for
/// authorization.
pub(crate) fn tag_namespaces(request: &proto::TagRequest) -> (Option<String>, Vec<String>) {
    let source = (!request.delete && !request.source_kind.eq_ignore_ascii_case("DockerImage"))
        .then(|| {
            let stream = request.source.split(['@', ':']).next().unwrap_or_default();
            match stream.split_once('/') {
                Some((ns, _)) => ns.to_owned(),
                None => request.namespace.clone(),
            }
        });
    let mut destinations: Vec<String> = Vec::new();
    for destination in &request.destinations {
        let namespace = match destination.split_once('/') {
            Some((ns, _)) => ns.to_owned(),
            None => request.namespace.clone(),
        };
        if !destinations.contains(&namespace) {
            destinations.push(namespace);
        }
    }
    (source, destinations)
}

fn group_by_stream(namespace: &str, destinations: &[String]) -> Vec<Vec<String>> {
    let mut groups: Vec<((String, String), Vec<String>)> = Vec::new();
    for destination in destinations {
        let stream = destination
            .rsplit_once(':')
            .map(|(left, _)| match left.split_once('/') {
                Some((ns, stream)) => (ns.to_owned(), stream.to_owned()),
                None => (namespace.to_owned(), left.to_owned()),
            })
            .unwrap_or_default();
        match groups.iter_mut().find(|(key, _)| *key == stream) {
            Some((_, group)) => group.push(destination.clone()),
            None => groups.push((stream, vec![destination.clone()])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_placed_or_refused() {
        let mut is = ImageStream::new("", "ruby");
        place("ns", &mut is).unwrap();
        assert_eq!(is.metadata.namespace, "ns");
        place("ns", &mut is).unwrap();
        place("", &mut is).unwrap();
        let error = place("other", &mut is).unwrap_err();
        assert_eq!(error.http_status(), 400);
        assert!(error.to_string().contains("does not match"), "{error}");
        let error = place("", &mut ImageStream::new("", "ruby")).unwrap_err();
        assert!(error.to_string().contains("metadata.namespace"), "{error}");
        let error = place("Bad_NS", &mut ImageStream::new("", "ruby")).unwrap_err();
        assert!(error.to_string().contains("metadata.namespace"), "{error}");
    }

    #[test]
    fn tag_requests_name_their_namespaces() {
        let request = proto::TagRequest {
            namespace: "ns1".into(),
            source: "ns2/ruby:1".into(),
            destinations: vec!["ruby:2".into(), "ns3/ruby:2".into(), "ruby:3".into()],
            ..Default::default()
        };
        assert_eq!(
            tag_namespaces(&request),
            (Some("ns2".into()), vec!["ns1".into(), "ns3".into()])
        );
        let docker = proto::TagRequest {
            source: "quay.io/org/ruby:1".into(),
            source_kind: "DockerImage".into(),
            ..request.clone()
        };
        assert_eq!(tag_namespaces(&docker).0, None);
        let local = proto::TagRequest {
            source: "ruby@sha256:abc".into(),
            ..request
        };
        assert_eq!(tag_namespaces(&local).0, Some("ns1".into()));
    }

    #[test]
    fn tag_destinations_are_grouped_by_stream() {
        let destinations: Vec<String> = ["a:1", "b:1", "a:2", "other/a:3", "broken"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            group_by_stream("ns", &destinations),
            vec![
                vec!["a:1".to_owned(), "a:2".to_owned()],
                vec!["b:1".to_owned()],
                vec!["other/a:3".to_owned()],
                vec!["broken".to_owned()],
            ]
        );
    }
}
