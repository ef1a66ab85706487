//! An in-process OTLP collector: a tonic server of the OTLP trace service
//! that keeps every span it is sent.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use tokio::task::JoinHandle;
use tonic::transport::{Server, server::TcpIncoming};

/// One received span and the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The sender's `service.name`.
    pub service: String,
    /// The span.
    pub span: Span,
}

#[derive(Debug, Default)]
struct Spans(Mutex<Vec<Received>>);

#[tonic::async_trait]
impl TraceService for Spans {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans.into_iter().map(|span| Received {
                    service: service.clone(),
                    span,
                }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The collector, serving on 127.0.0.1 until dropped.
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Spans>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Starts serving on a free port.
    pub async fn start() -> anyhow::Result<Collector> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let spans = Arc::new(Spans::default());
        let service = TraceServiceServer::from_arc(spans.clone());
        let task = tokio::spawn(async move {
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
            if let Err(error) = served {
                eprintln!("the OTLP collector stopped: {error}");
            }
        });
        Ok(Collector { addr, spans, task })
    }

    /// The OTLP endpoint to export to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far of the trace `trace_id`.
    pub fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        let spans = self.spans.0.lock().unwrap();
        spans
            .iter()
            .filter(|r| r.span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The span `span_id` and its ancestors, root first; `None` while one of
/// them has not arrived.
pub fn path_to(spans: &[Received], span_id: &[u8]) -> Option<Vec<Received>> {
    let mut path = Vec::new();
    let mut next = span_id.to_vec();
    while !next.is_empty() {
        if path.len() > spans.len() {
            return None; // a parent loop: not a trace the SDK sends
        }
        let span = spans.iter().find(|r| r.span.span_id == next)?;
        next = span.span.parent_span_id.clone();
        path.push(span.clone());
    }
    path.reverse();
    Some(path)
}
