//! gRPC request metrics: a tower layer around the tonic server counting
//! `imagestreams_gateway_grpc_requests_total{method,code}` and timing
//! `imagestreams_gateway_grpc_request_duration_seconds{method}`.
//!
//! The code is read where gRPC puts it: the response headers of a
//! trailers-only answer (every error a handler returns), otherwise the
//! trailers at the end of the body, so a watch that ends with
//! `RESOURCE_EXHAUSTED` counts as such. A call whose body is dropped before
//! its trailers (the client went away) counts as `Cancelled`. Methods the
//! server does not serve count as `method="unknown"`, so that clients cannot
//! grow the label set.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use http_body::{Body, Frame};
use imagestreams_common::metrics::ServiceMetrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Unit,
};
use tonic::Code;

/// The labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

/// The labels of the duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// The layer; cheap to clone.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<MethodLabels, Histogram>,
}

impl GrpcMetrics {
    /// Registers the metrics in `service`.
    pub fn new(service: &ServiceMetrics) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        service.register(
            "grpc_requests",
            "gRPC calls answered, by full method and status code",
            requests.clone(),
        );
        service.register_with_unit(
            "grpc_request_duration",
            "Time from a gRPC call's arrival to its last frame, by full method",
            Unit::Seconds,
            durations.clone(),
        );
        GrpcMetrics {
            requests,
            durations,
        }
    }

    fn record(&self, method: &str, code: Code, started: Instant) {
        let method = if code == Code::Unimplemented && !known(method) {
            "unknown".to_owned()
        } else {
            method.to_owned()
        };
        self.durations
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                code: format!("{code:?}"),
            })
            .inc();
    }
}

/// Whether `path` names a method of a service this gateway serves.
fn known(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    !method.is_empty() && !method.contains('/') && crate::HEALTH_SERVICES[1..].contains(&service)
}

impl<S> tower::Layer<S> for GrpcMetrics {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.clone(),
        }
    }
}

/// The service the layer wraps.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Counted<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let call = Call {
            method: request.uri().path().to_owned(),
            started: Instant::now(),
            metrics: self.metrics.clone(),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let mut call = Some(call);
            if let Some(code) = code_of(response.headers()) {
                // trailers-only: the call is over
                if let Some(call) = call.take() {
                    call.finish(code);
                }
            }
            Ok(response.map(|body| CountedBody { body, call }))
        })
    }
}

/// One call, recorded once.
#[derive(Debug)]
struct Call {
    method: String,
    started: Instant,
    metrics: GrpcMetrics,
}

impl Call {
    fn finish(self, code: Code) {
        self.metrics.record(&self.method, code, self.started);
    }
}

fn code_of(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers pass (or the
    /// body ends or is dropped first).
    pub struct CountedBody<B> {
        #[pin]
        body: B,
        call: Option<Call>,
    }

    impl<B> PinnedDrop for CountedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.finish(Code::Cancelled);
            }
        }
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(code_of)
                    && let Some(call) = this.call.take()
                {
                    call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.finish(Code::Internal);
                }
            }
            Poll::Ready(None) => {
                // a body that ends without trailers: HTTP-level success
                if let Some(call) = this.call.take() {
                    call.finish(Code::Ok);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_labels() {
        assert!(known("/imagestreams.v1.ImageStreams/Get"));
        assert!(known("/imagestreams.v1.Triggers/List"));
        assert!(!known("/imagestreams.v1.ImageStreams/"));
        assert!(!known("/evil.Service/Get"));
        assert!(!known("/imagestreams.v1.ImageStreams/a/b"));
    }
}
