//! W3C trace context (`traceparent`, `tracestate`) across process
//! boundaries, so that one trace follows a push from the registry
//! notification to the webhook.
//!
//! A sender [`inject`]s the current span's context into the headers it sends
//! (NATS, HTTP or gRPC); a receiver makes the span that handles a message
//! the child of the context it carries ([`follow`]). Where no header can go
//! (a KV write, an outbox entry), the `traceparent` string is stored
//! ([`traceparent`]) and followed later ([`follow_traceparent`]).
//!
//! Without an exporter ([`init`](super::init) found no endpoint) spans have
//! no trace context: [`inject`] leaves the headers as they are and
//! [`follow`] does nothing.

use std::collections::HashMap;

use axum::http;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::TraceContextExt as _,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C header naming the trace and the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header of vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Headers that carry trace context: NATS message headers, and HTTP headers
/// (gRPC metadata included).
pub trait Headers {
    /// The value of `name`, if set and text.
    fn header(&self, name: &str) -> Option<&str>;
    /// Sets `name` to `value`, replacing any value it had.
    fn set_header(&mut self, name: &str, value: String);
}

impl Headers for async_nats::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.insert(name, value);
    }
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }

    fn set_header(&mut self, name: &str, value: String) {
        let name = http::HeaderName::from_bytes(name.as_bytes());
        // can't fail for the propagator's values: W3C fields are visible ASCII
        if let (Ok(name), Ok(value)) = (name, http::HeaderValue::try_from(value)) {
            self.insert(name, value);
        }
    }
}

impl Headers for HashMap<String, String> {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.insert(name.to_owned(), value);
    }
}

/// Headers that may be missing, as on a NATS message.
impl<H: Headers + Default> Headers for Option<H> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_ref()?.header(name)
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.get_or_insert_with(H::default).set_header(name, value);
    }
}

struct Reader<'a, H: ?Sized>(&'a H);

impl<H: Headers + ?Sized> Extractor for Reader<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.header(key)
    }

    fn keys(&self) -> Vec<&str> {
        // only `get` is used by the W3C propagator
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct Writer<'a, H: ?Sized>(&'a mut H);

impl<H: Headers + ?Sized> Injector for Writer<'_, H> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set_header(key, value);
    }
}

/// Writes the current span's trace context into `headers`, replacing a
/// `traceparent` already there. Without one (tracing off, or no span) the
/// headers are left as they are, so a `traceparent` passed through by hand
/// survives.
pub fn inject(headers: &mut (impl Headers + ?Sized)) {
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut Writer(headers));
    }
}

/// Makes `span` the child of the trace context that `headers` carry, if
/// any. Call it before `span` is first entered: a started span keeps its
/// parent.
pub fn follow(span: &Span, headers: &(impl Headers + ?Sized)) {
    let parent = TraceContextPropagator::new().extract(&Reader(headers));
    set_parent(span, parent);
}

/// The current span's `traceparent`, to store where no header can go; `None`
/// when tracing is off.
pub fn traceparent() -> Option<String> {
    let mut carrier = HashMap::new();
    inject(&mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` the child of a stored `traceparent` (see [`follow`]).
pub fn follow_traceparent(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
        follow(span, &carrier);
    }
}

fn set_parent(span: &Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // fails only when tracing is off or the span was entered already:
        // then it stays where it is
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::prelude::*;

    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn traced<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn trace_id(traceparent: &str) -> &str {
        traceparent.split('-').nth(1).unwrap()
    }

    #[test]
    fn a_followed_span_continues_the_trace_of_nats_headers() {
        let mut incoming = async_nats::HeaderMap::new();
        incoming.insert(TRACEPARENT, PARENT);
        let outgoing = traced(|| {
            let span = tracing::info_span!("handle");
            follow(&span, &incoming);
            let _entered = span.enter();
            let mut outgoing = async_nats::HeaderMap::new();
            inject(&mut outgoing);
            outgoing
        });
        let sent = outgoing.header(TRACEPARENT).unwrap();
        assert_eq!(trace_id(sent), trace_id(PARENT));
        assert_ne!(sent, PARENT, "the child span is the new parent");
    }

    #[test]
    fn http_headers_and_stored_traceparents_carry_it_too() {
        let (stored, outgoing) = traced(|| {
            let span = tracing::info_span!("apply");
            follow_traceparent(&span, Some(PARENT));
            let _entered = span.enter();
            let mut outgoing = http::HeaderMap::new();
            inject(&mut outgoing);
            (traceparent(), outgoing)
        });
        let stored = stored.expect("a traceparent");
        assert_eq!(trace_id(&stored), trace_id(PARENT));
        assert_eq!(outgoing.header(TRACEPARENT), Some(stored.as_str()));
    }

    #[test]
    fn without_tracing_headers_are_left_alone() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(TRACEPARENT, PARENT);
        let span = tracing::info_span!("untraced");
        follow(&span, &headers);
        let _entered = span.enter();
        inject(&mut headers);
        assert_eq!(headers.header(TRACEPARENT), Some(PARENT));
        assert_eq!(traceparent(), None);
    }
}
