//! The gRPC connection to the gateway: the `--server` URL (TLS for
//! `https://`, trusting `--certificate-authority` or the system's roots),
//! the bearer token, the caller's `traceparent` (when traced), deadlines,
//! and one method per RPC that converts wire streams into domain streams
//! (`TryFrom`) at this edge.

use std::{path::Path, time::Duration};

use imagestreams_common::{model::ImageStream, telemetry::propagation};
use imagestreams_images_api::view::{ImageStreamImage, ImageStreamTag};
use imagestreams_proto::v1::{self as pb, image_streams_client::ImageStreamsClient};
use tonic::{
    Streaming,
    metadata::{Ascii, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{ClientError, Context};

/// How long connecting to the server may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The deadline of every call but `Watch`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Streams per `List` page, like kubectl's `--chunk-size`.
pub const DEFAULT_PAGE_SIZE: i64 = 500;

/// The largest response accepted.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A connected client of the `ImageStreams` API.
#[derive(Debug, Clone)]
pub struct Client {
    inner: ImageStreamsClient<Channel>,
    session: Session,
}

/// A channel to the server and what every call carries: the bearer token and
/// the caller's `traceparent`. Shared by the clients of every service.
#[derive(Debug, Clone)]
pub struct Session {
    /// The connected channel.
    pub channel: Channel,
    /// The server URL, as connected to.
    pub server: String,
    authorization: Option<MetadataValue<Ascii>>,
}

/// A session with `--server` and its token, for the verbs that call another
/// gRPC service than `ImageStreams`' usual calls.
pub(crate) async fn session(ctx: &Context) -> Result<Session, ClientError> {
    let globals = ctx.globals();
    Session::open(
        &globals.server,
        globals.token.as_ref().map(|t| t.expose()),
        globals.certificate_authority.as_deref(),
    )
    .await
}

impl Session {
    /// Connects to `server` (`http://host:port` or `https://host:port`; a
    /// bare `host:port` means http). Over https, the server's certificate
    /// must chain to `certificate_authority` (a PEM file) when given, else
    /// to the system's roots. A refused or timed-out connection is
    /// [`ClientError::Unreachable`].
    pub async fn open(
        server: &str,
        token: Option<&str>,
        certificate_authority: Option<&Path>,
    ) -> Result<Session, ClientError> {
        let url = normalize_server(server)?;
        let bad = |reason: String| ClientError::BadServer {
            server: server.to_owned(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(client_tls(certificate_authority)?)
                .map_err(|e| bad(e.to_string()))?;
        } else if certificate_authority.is_some() {
            return Err(ClientError::usage(
                "--certificate-authority needs an https:// --server",
            ));
        }
        let authorization = match token.filter(|t| !t.is_empty()) {
            Some(token) => {
                let mut value: MetadataValue<Ascii> =
                    format!("Bearer {token}").parse().map_err(|_| {
                        ClientError::usage("--token holds characters a header cannot carry")
                    })?;
                // Kept out of Debug output and HPACK tables.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable {
                server: url.clone(),
                source: Box::new(e),
            })?;
        Ok(Session {
            channel,
            server: url,
            authorization,
        })
    }

    /// A request with the deadline (none for a watch), the token and the
    /// caller's `traceparent`.
    pub fn request<T>(&self, message: T, deadline: Option<Duration>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = propagation::traceparent().and_then(|tp| tp.parse().ok()) {
            request
                .metadata_mut()
                .insert(propagation::TRACEPARENT, value);
        }
        request
    }

    /// A failed call as a [`ClientError`].
    pub fn status(&self, status: tonic::Status) -> ClientError {
        ClientError::from_status(&self.server, status)
    }
}

/// One page-less listing: every stream and the revision of the last page.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The streams, in the server's order.
    pub items: Vec<ImageStream>,
    /// The store revision the (last page of the) list was read at.
    pub resource_version: String,
}

impl Client {
    /// Connects to `server`, as [`Session::open`] does.
    pub async fn connect(
        server: &str,
        token: Option<&str>,
        certificate_authority: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let session = Session::open(server, token, certificate_authority).await?;
        Ok(Client {
            inner: ImageStreamsClient::new(session.channel.clone())
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            session,
        })
    }

    /// The server URL, as connected to.
    pub fn server(&self) -> &str {
        &self.session.server
    }

    fn request<T>(&self, message: T, deadline: Option<Duration>) -> tonic::Request<T> {
        self.session.request(message, deadline)
    }

    fn status(&self, status: tonic::Status) -> ClientError {
        self.session.status(status)
    }

    /// `Create`.
    pub async fn create(
        &mut self,
        namespace: &str,
        stream: ImageStream,
    ) -> Result<ImageStream, ClientError> {
        let request = self.request(
            pb::CreateRequest {
                namespace: namespace.to_owned(),
                image_stream: Some(stream.into()),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        );
        let reply = self
            .inner
            .create(request)
            .await
            .map_err(|s| self.status(s))?;
        domain(reply.into_inner())
    }

    /// `Get`.
    pub async fn get(&mut self, namespace: &str, name: &str) -> Result<ImageStream, ClientError> {
        let request = self.request(
            pb::GetRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                ..Default::default()
            },
            Some(DEFAULT_CALL_TIMEOUT),
        );
        let reply = self.inner.get(request).await.map_err(|s| self.status(s))?;
        domain(reply.into_inner())
    }

    /// `GetImage`: `stream@digest` with its metadata.
    pub async fn get_image(
        &mut self,
        namespace: &str,
        stream: &str,
        digest: &str,
    ) -> Result<ImageStreamImage, ClientError> {
        let request = self.request(
            pb::GetImageRequest {
                namespace: namespace.to_owned(),
                stream: stream.to_owned(),
                digest: digest.to_owned(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        );
        let reply = self
            .inner
            .get_image(request)
            .await
            .map_err(|s| self.status(s))?;
        Ok(reply.into_inner().into())
    }

    /// `GetImageStreamTag`: the current image of `stream:tag` with its metadata.
    pub async fn get_image_stream_tag(
        &mut self,
        namespace: &str,
        stream: &str,
        tag: &str,
    ) -> Result<ImageStreamTag, ClientError> {
        let request = self.request(
            pb::GetImageStreamTagRequest {
                namespace: namespace.to_owned(),
                stream: stream.to_owned(),
                tag: tag.to_owned(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        );
        let reply = self
            .inner
            .get_image_stream_tag(request)
            .await
            .map_err(|s| self.status(s))?;
        Ok(reply.into_inner().into())
    }

    /// `List`, following continue tokens to the end. An empty `namespace`
    /// lists every namespace.
    pub async fn list_all(
        &mut self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Listing, ClientError> {
        let mut listing = Listing::default();
        let mut continue_token = String::new();
        loop {
            let request = self.request(
                pb::ListRequest {
                    namespace: namespace.to_owned(),
                    label_selector: label_selector.to_owned(),
                    limit: DEFAULT_PAGE_SIZE,
                    continue_token: continue_token.clone(),
                    ..Default::default()
                },
                Some(DEFAULT_CALL_TIMEOUT),
            );
            let page = self
                .inner
                .list(request)
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            for item in page.items {
                listing.items.push(domain(item)?);
            }
            listing.resource_version = page.resource_version;
            if page.continue_token.is_empty() {
                return Ok(listing);
            }
            if page.continue_token == continue_token {
                return Err(ClientError::BadResponse(
                    "List returned the same continue token twice".to_owned(),
                ));
            }
            continue_token = page.continue_token;
        }
    }

    /// `Delete`.
    pub async fn delete(&mut self, namespace: &str, name: &str) -> Result<(), ClientError> {
        let request = self.request(
            pb::DeleteRequest {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                resource_version: String::new(),
            },
            Some(DEFAULT_CALL_TIMEOUT),
        );
        self.inner
            .delete(request)
            .await
            .map_err(|s| self.status(s))?;
        Ok(())
    }

    /// `Watch`: the event stream, without a deadline.
    pub async fn watch(&mut self, request: pb::WatchRequest) -> Result<WatchStream, ClientError> {
        let request = self.request(request, None);
        let events = self
            .inner
            .watch(request)
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        Ok(WatchStream {
            events,
            server: self.session.server.clone(),
        })
    }

    /// `History`.
    pub async fn history(
        &mut self,
        request: pb::HistoryRequest,
    ) -> Result<pb::HistoryResponse, ClientError> {
        let request = self.request(request, Some(DEFAULT_CALL_TIMEOUT));
        let reply = self
            .inner
            .history(request)
            .await
            .map_err(|s| self.status(s))?;
        Ok(reply.into_inner())
    }

    /// `Tag`: the changed streams.
    pub async fn tag(&mut self, request: pb::TagRequest) -> Result<Vec<ImageStream>, ClientError> {
        let request = self.request(request, Some(DEFAULT_CALL_TIMEOUT));
        let reply = self.inner.tag(request).await.map_err(|s| self.status(s))?;
        reply
            .into_inner()
            .image_streams
            .into_iter()
            .map(domain)
            .collect()
    }
}

/// The events of a `Watch`, converted as they arrive.
#[derive(Debug)]
pub struct WatchStream {
    events: Streaming<pb::WatchEvent>,
    server: String,
}

/// One watch event: `ADDED`, `MODIFIED` or `DELETED`, and the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`, as Kubernetes spells them.
    pub kind: &'static str,
    /// The stream after the change (before it, for `DELETED`).
    pub object: ImageStream,
}

impl WatchStream {
    /// The next event; `None` when the server ends the watch.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        let Some(event) = self
            .events
            .message()
            .await
            .map_err(|s| ClientError::from_status(&self.server, s))?
        else {
            return Ok(None);
        };
        let kind = match pb::WatchEventType::try_from(event.r#type) {
            Ok(pb::WatchEventType::Added) => "ADDED",
            Ok(pb::WatchEventType::Modified) => "MODIFIED",
            Ok(pb::WatchEventType::Deleted) => "DELETED",
            _ => {
                return Err(ClientError::BadResponse(format!(
                    "a watch event of unknown type {}",
                    event.r#type
                )));
            }
        };
        let object = event.object.ok_or_else(|| {
            ClientError::BadResponse("a watch event without its object".to_owned())
        })?;
        Ok(Some(WatchEvent {
            kind,
            object: domain(object)?,
        }))
    }
}

/// Wire → domain, validating: a stream the model rejects is the server's fault.
fn domain(wire: pb::ImageStream) -> Result<ImageStream, ClientError> {
    ImageStream::try_from(wire)
        .map_err(|e| ClientError::BadResponse(format!("an invalid ImageStream: {e}")))
}

/// The TLS settings of an https connection: trust `certificate_authority`
/// (PEM) when given, else the system's roots.
fn client_tls(certificate_authority: Option<&Path>) -> Result<ClientTlsConfig, ClientError> {
    let tls = ClientTlsConfig::new();
    match certificate_authority {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::usage(format!("--certificate-authority {}: {e}", path.display()))
            })?;
            Ok(tls.ca_certificate(Certificate::from_pem(pem)))
        }
        None => Ok(tls.with_native_roots()),
    }
}

/// `host:port` → `http://host:port`; `http://` and `https://` are kept,
/// any other scheme is refused.
pub fn normalize_server(server: &str) -> Result<String, ClientError> {
    let server = server.trim();
    let bad = |reason: &str| ClientError::BadServer {
        server: server.to_owned(),
        reason: reason.to_owned(),
    };
    if server.is_empty() {
        return Err(bad("it is empty"));
    }
    let url = match server.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => server.to_owned(),
        Some(("http" | "https", _)) => return Err(bad("it names no host")),
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "unsupported scheme {scheme:?}; use http:// or https://"
            )));
        }
        None => format!("http://{server}"),
    };
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server("http://127.0.0.1:50051/").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_server("localhost:1").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(
            normalize_server("https://gw.example:443/").unwrap(),
            "https://gw.example:443"
        );
        for bad in ["", "https://", "ftp://x", "http://"] {
            let e = normalize_server(bad).unwrap_err();
            assert!(matches!(e, ClientError::BadServer { .. }), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        // Bind then drop: the port was free a moment ago and refuses now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = format!("http://127.0.0.1:{port}");
        let e = Client::connect(&server, None, None).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot reach imagestreams at {server}: is it running? (imagestreams up)")
        );
    }
}
