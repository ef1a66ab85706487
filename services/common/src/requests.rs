//! Core NATS request-reply, as the services' APIs use it (the stream-store's
//! writes, the tag-syncer's imports and secrets, the trigger's writes):
//!
//! - [`request`] sends the caller's trace context in the request's headers,
//!   so that the answering service's spans join the caller's trace (a gRPC
//!   call is one trace from the gateway to the write);
//! - [`call`] is [`request`] as the services' clients use it: it refuses a
//!   request larger than the server's `max_payload` with a precise
//!   [`ApiError::LimitExceeded`], bounds the wait, and says which service did
//!   not answer and why;
//! - [`serve`] answers each request of a set of queue subscriptions in a task
//!   of its own, in a `request` span that continues that trace, with a bound
//!   on the requests in flight, and answers what it has received before it
//!   returns, so a stopping replica drops nothing it took.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{Client, HeaderMap, Message, RequestError, Subscriber};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _, stream::BoxStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::{error::ApiError, telemetry::propagation};

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
/// waits at most `timeout` for the reply's payload. A request larger than
/// [`payload_limit`] is refused before it is sent (`LimitExceeded`, naming
/// the limit); no responder, a timeout or a broken connection is
/// `Unavailable`.
pub async fn call(
    nats: &Client,
    subject: String,
    message: &impl prost::Message,
    who: &str,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let size = message.encoded_len();
    let limit = payload_limit(nats);
    if size > limit {
        return Err(ApiError::LimitExceeded(format!(
            "the request to {who} is {size} bytes, over the limit of {limit} bytes \
             (the NATS server's max_payload of {} less {ENVELOPE_BYTES} for headers)",
            nats.server_info().max_payload
        )));
    }
    let sent = request(nats, subject, message.encode_to_vec().into());
    let reply = tokio::time::timeout(timeout, sent)
        .await
        .map_err(|_| ApiError::Unavailable(format!("{who} did not answer in time")))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                ApiError::Unavailable(format!("{who} is not running"))
            }
            _ => ApiError::Unavailable(format!("{who} is unreachable: {e}")),
        })?;
    Ok(reply.payload)
}

/// Sends `payload` to `subject` and waits for the reply; the request carries
/// the current span's trace context (no headers when tracing is off).
pub async fn request(
    nats: &Client,
    subject: String,
    payload: Bytes,
) -> Result<Message, RequestError> {
    let mut headers = HeaderMap::new();
    propagation::inject(&mut headers);
    if headers.is_empty() {
        nats.request(subject, payload).await
    } else {
        nats.request_with_headers(subject, headers, payload).await
    }
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
    let reply = handle(key, message).instrument(span.clone()).await;
    let Some(to) = reply_to else {
        tracing::debug!(parent: &span, %subject, "request without a reply subject");
        return;
    };
    if let Err(error) = nats.publish(to, reply.into()).await {
        tracing::warn!(parent: &span, %subject, %error, "cannot send the reply");
    }
}
