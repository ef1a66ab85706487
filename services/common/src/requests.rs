//! Core NATS request-reply, as the services' APIs use it (the stream-store's
//! writes, the tag-syncer's imports and secrets, the trigger's writes):
//!
//! - [`request`] sends the caller's trace context in the request's headers,
//!   so that the answering service's spans join the caller's trace (a gRPC
//!   call is one trace from the gateway to the write);
//! - [`call`] is [`request`] as the services' clients use it: it bounds the
//!   wait and says which service did not answer and why; [`ask`] is [`call`]
//!   decoding the reply, whose answer or error the [`Reply`] trait tells
//!   apart (`replies.rs`), so that a client is one call;
//! - **payloads over a message** (an import of a big repository, a reply
//!   holding a stream of 10,000 tags) travel through the JetStream object
//!   store [`subjects::BUCKET_PAYLOADS`]: the message carries the object's
//!   name in [`PAYLOAD_HEADER`] and no body, the receiver reads the object
//!   and deletes it (objects also expire after [`PAYLOAD_MAX_AGE`]);
//! - [`serve`] answers each request of a set of queue subscriptions in a task
//!   of its own, in a `request` span that continues that trace, with a bound
//!   on the requests in flight, and answers what it has received before it
//!   returns, so a stopping replica drops nothing it took;
//! - **whom a request acts for** travels like the trace context: the gateway
//!   runs each authenticated API call [`acting_for`] its caller, every
//!   request sent within carries the name in [`ACTOR_HEADER`], and [`serve`]
//!   runs the handler acting for it again, so the stream-store records who
//!   made a change ([`actor`]) however many services the call went through.
//!   The header is trusted: only the services publish on their API subjects
//!   (see the NATS permissions in the deployment docs).

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{Client, HeaderMap, Message, RequestError, Subscriber};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _, stream::BoxStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::{error::ApiError, subjects, telemetry::propagation};

mod replies;

pub use replies::Reply;

/// The header naming the object that holds a message's payload.
pub const PAYLOAD_HEADER: &str = "Imagestreams-Payload";
/// The header naming whom a request acts for (see the module docs).
pub const ACTOR_HEADER: &str = "Imagestreams-Actor";

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `work` acting for `actor`: every request it sends names them.
pub async fn acting_for<F: Future>(actor: String, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

/// Whom the current work acts for; empty for a service's own work.
pub fn actor() -> String {
    ACTOR.try_with(Clone::clone).unwrap_or_default()
}

fn name_actor(headers: &mut HeaderMap) {
    let actor = actor();
    if !actor.is_empty() {
        headers.insert(ACTOR_HEADER, actor.as_str());
    }
}

/// How long an unread payload object is kept.
pub const PAYLOAD_MAX_AGE: Duration = Duration::from_secs(600);

/// What a message needs besides its payload (subject, reply subject,
/// headers): a request or a stored value must leave this much of the
/// server's `max_payload` free.
pub const ENVELOPE_BYTES: usize = 4096;

/// The largest payload the server `nats` is connected to takes (its
/// `max_payload`, read at connect) less [`ENVELOPE_BYTES`].
pub fn payload_limit(nats: &Client) -> usize {
    nats.server_info()
        .max_payload
        .saturating_sub(ENVELOPE_BYTES)
}

/// Sends `message` to `subject`, served by `who` (named in errors), and
/// waits at most `timeout` for the reply's payload. Payloads over a message
/// go through the object store (see the module docs); no responder, a
/// timeout or a broken connection is `Unavailable`.
pub async fn call(
    nats: &Client,
    subject: String,
    message: &impl prost::Message,
    who: &str,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let sent = async {
        let mut headers = HeaderMap::new();
        let payload = offload(nats, message.encode_to_vec().into(), &mut headers).await?;
        propagation::inject(&mut headers);
        name_actor(&mut headers);
        // bounded by `timeout` below, not by the client's default
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(headers)
            .timeout(Some(timeout));
        nats.send_request(subject, request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    ApiError::Unavailable(format!("{who} is not running"))
                }
                _ => ApiError::Unavailable(format!("{who} is unreachable: {e}")),
            })
    };
    let reply = tokio::time::timeout(timeout, sent)
        .await
        .map_err(|_| ApiError::Unavailable(format!("{who} did not answer in time")))??;
    payload_of(nats, &reply).await
}

/// Sends `payload` to `subject` and waits for the reply; the request carries
/// [`call`], then the reply decoded as `R`: its answer, or the service's
/// error as an [`ApiError`]. An undecodable or empty reply is `Internal`,
/// naming `who`.
pub async fn ask<R: Reply>(
    nats: &Client,
    subject: String,
    message: &impl prost::Message,
    who: &str,
    timeout: Duration,
) -> Result<R::Answer, ApiError> {
    let reply = call(nats, subject, message, who, timeout).await?;
    let reply = R::decode(reply)
        .map_err(|e| ApiError::Internal(format!("undecodable reply of {who}: {e}")))?;
    match reply.into_result() {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(error)) => Err(error.into()),
        None => Err(ApiError::Internal(format!("empty reply of {who}"))),
    }
}

/// the current span's trace context (no headers when tracing is off).
pub async fn request(
    nats: &Client,
    subject: String,
    payload: Bytes,
) -> Result<Message, RequestError> {
    let mut headers = HeaderMap::new();
    propagation::inject(&mut headers);
    name_actor(&mut headers);
    if headers.is_empty() {
        nats.request(subject, payload).await
    } else {
        nats.request_with_headers(subject, headers, payload).await
    }
}

fn storage_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("cannot pass a payload over a message: {e}"))
}

/// `payload` as a message carries it: itself when it fits, else an empty
/// body, the payload going to the object store under the name put in
/// `headers` ([`PAYLOAD_HEADER`]).
pub async fn offload(
    nats: &Client,
    payload: Bytes,
    headers: &mut HeaderMap,
) -> Result<Bytes, ApiError> {
    let limit = payload_limit(nats);
    if payload.len() <= limit {
        return Ok(payload);
    }
    let store = async_nats::jetstream::new(nats.clone())
        .get_object_store(subjects::BUCKET_PAYLOADS)
        .await
        .map_err(storage_failed)?;
    let name = uuid::Uuid::new_v4().simple().to_string();
    let meta = async_nats::jetstream::object_store::ObjectMetadata {
        name: name.clone(),
        chunk_size: Some(limit),
        ..Default::default()
    };
    store
        .put(meta, &mut payload.as_ref())
        .await
        .map_err(storage_failed)?;
    headers.insert(PAYLOAD_HEADER, name.as_str());
    Ok(Bytes::new())
}

/// The payload of `message`: its body, or the object [`PAYLOAD_HEADER`]
/// names, read and then deleted.
pub async fn payload_of(nats: &Client, message: &Message) -> Result<Bytes, ApiError> {
    let Some(name) = message
        .headers
        .as_ref()
        .and_then(|h| h.get(PAYLOAD_HEADER))
        .map(|v| v.as_str().to_owned())
    else {
        return Ok(message.payload.clone());
    };
    let store = async_nats::jetstream::new(nats.clone())
        .get_object_store(subjects::BUCKET_PAYLOADS)
        .await
        .map_err(storage_failed)?;
    let mut object = store.get(&name).await.map_err(storage_failed)?;
    let mut payload = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut payload)
        .await
        .map_err(storage_failed)?;
    if let Err(error) = store.delete(&name).await {
        tracing::debug!(error = crate::error::chain(&error), object = %name, "cannot delete a read payload; it expires");
    }
    Ok(payload.into())
}

/// Answers the requests of `subscriptions` with `handle` (given the
/// subscription's key and the request, it returns the reply's payload) until
/// `stop` completes, at most `max_in_flight` at once; then answers the
/// requests already received, stops listening, and waits for every answer.
pub async fn serve<K, H, F>(
    nats: Client,
    subscriptions: Vec<(K, Subscriber)>,
    max_in_flight: usize,
    stop: impl Future<Output = ()>,
    handle: H,
) -> anyhow::Result<()>
where
    K: Copy + Send + 'static,
    H: Fn(K, Message) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Vec<u8>> + Send + 'static,
{
    let mut requests: futures::stream::SelectAll<BoxStream<'static, (K, Message)>> =
        futures::stream::select_all(
            subscriptions
                .into_iter()
                .map(|(key, sub)| sub.map(move |m| (key, m)).boxed()),
        );
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(max_in_flight));
    tokio::pin!(stop);
    loop {
        let (key, message) = tokio::select! {
            biased;
            _ = &mut stop => break,
            next = requests.next() => match next {
                Some(request) => request,
                None => break,
            },
        };
        // can't fail: the semaphore is never closed
        let permit = permits.clone().acquire_owned().await?;
        tracker.spawn(answer(
            nats.clone(),
            key,
            message,
            handle.clone(),
            Some(permit),
        ));
    }
    // answer what was received already, then stop listening
    while let Some(Some((key, message))) = requests.next().now_or_never() {
        tracker.spawn(answer(nats.clone(), key, message, handle.clone(), None));
    }
    drop(requests);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn answer<K, H, F>(
    nats: Client,
    key: K,
    message: Message,
    handle: H,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
) where
    H: Fn(K, Message) -> F,
    F: Future<Output = Vec<u8>>,
{
    let span = tracing::info_span!("request", subject = %message.subject);
    if let Some(headers) = &message.headers {
        propagation::follow(&span, headers);
    }
    let (subject, reply_to) = (message.subject.clone(), message.reply.clone());
    let mut message = message;
    match payload_of(&nats, &message).await {
        Ok(payload) => message.payload = payload,
        Err(error) => {
            // unanswered: the caller times out, naming this service
            tracing::warn!(parent: &span, %subject, error = crate::error::chain(&error), "cannot read the request");
            return;
        }
    }
    let actor = message
        .headers
        .as_ref()
        .and_then(|h| h.get(ACTOR_HEADER))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let reply = acting_for(actor, handle(key, message).instrument(span.clone())).await;
    let Some(to) = reply_to else {
        tracing::debug!(parent: &span, %subject, "request without a reply subject");
        return;
    };
    let mut headers = HeaderMap::new();
    let sent = match offload(&nats, reply.into(), &mut headers).await {
        Ok(payload) if headers.is_empty() => nats.publish(to, payload).await,
        Ok(payload) => nats.publish_with_headers(to, headers, payload).await,
        Err(error) => {
            tracing::warn!(parent: &span, %subject, error = crate::error::chain(&error), "cannot send the reply");
            return;
        }
    };
    if let Err(error) = sent {
        tracing::warn!(parent: &span, %subject, error = crate::error::chain(&error), "cannot send the reply");
    }
}
