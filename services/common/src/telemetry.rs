//! Logging and tracing setup: one `init` for every process, and the OTLP
//! exporter's flush on the way out. [`propagation`] carries the trace
//! context across NATS, HTTP and gRPC.

pub mod propagation;

use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, TelemetryConfig};

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,async_nats=warn,h2=warn,tower=warn,hyper=warn";
/// Which spans are exported: ours and the libraries' at `info` and above,
/// whatever `RUST_LOG` says about logs, but none of the exporter's own
/// transport (which would trace its own exports).
pub const DEFAULT_TRACE_FILTER: &str =
    "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,opentelemetry=off";
/// The standard variable naming the OTLP endpoint, read when the
/// configuration names none.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable naming the service; when unset, spans carry
/// `service.name` [`DEFAULT_SERVICE_NAME`].
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
/// The `service.name` of exported spans.
pub const DEFAULT_SERVICE_NAME: &str = "imagestreams";

/// The tracer provider of the OTLP exporter, once [`init`] installed one.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Errors while setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("cannot export traces to {endpoint}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// Cause.
        #[source]
        source: ExporterBuildError,
    },
}

/// Installs the global subscriber: plain or JSON log lines on stderr,
/// filtered by `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]), and, when an OTLP
/// endpoint is configured ([`otlp_endpoint`]), the export of the spans that
/// [`DEFAULT_TRACE_FILTER`] keeps to it, over gRPC in batches.
///
/// Call it inside the Tokio runtime, which must outlive the exporter. Calling
/// it twice is harmless (the second call does nothing).
pub fn init(cfg: &TelemetryConfig) -> Result<(), TelemetryError> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        tracing::debug!("telemetry already initialised");
        return Ok(());
    }
    let endpoint = otlp_endpoint(cfg, std::env::var(OTLP_ENDPOINT_ENV).ok());
    let provider = endpoint.map(|e| tracer_provider(&e)).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(DEFAULT_SERVICE_NAME))
            .with_filter(EnvFilter::new(DEFAULT_TRACE_FILTER))
    });
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let registry = tracing_subscriber::registry().with(otel);
    let result = match cfg.log_format {
        LogFormat::Plain => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
    *installed = true;
    match (result, provider) {
        (Err(_), _) => tracing::debug!("another subscriber is installed; telemetry left as it is"),
        (Ok(()), Some(provider)) => {
            opentelemetry::global::set_tracer_provider(provider.clone());
            let _ = PROVIDER.set(provider);
        }
        (Ok(()), None) => {}
    }
    Ok(())
}

/// The OTLP endpoint: `telemetry.otlp_endpoint`, else `env` (the value of
/// [`OTLP_ENDPOINT_ENV`]). None, or an empty one, turns the export off.
pub fn otlp_endpoint(cfg: &TelemetryConfig, env: Option<String>) -> Option<String> {
    cfg.otlp_endpoint
        .clone()
        .or(env)
        .filter(|e| !e.trim().is_empty())
}

fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let mut resource = Resource::builder();
    if std::env::var_os(SERVICE_NAME_ENV).is_none() {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Exports the spans ended so far and waits until the collector has them (or
/// the export failed). Does nothing when no exporter is installed.
pub async fn flush() {
    with_provider(|p| p.force_flush(), "flush").await;
}

/// Flushes and stops the exporter, on the way out of the process: spans ended
/// afterwards are dropped. Does nothing when no exporter is installed.
pub async fn shutdown() {
    with_provider(|p| p.shutdown(), "shutdown").await;
}

async fn with_provider(
    f: fn(&SdkTracerProvider) -> opentelemetry_sdk::error::OTelSdkResult,
    what: &'static str,
) {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    // blocks until the exporter's thread answers, which needs this runtime
    // to drive the gRPC connection: keep it off the runtime's threads
    match tokio::task::spawn_blocking(move || f(provider)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(
            error = crate::error::chain(&error),
            "trace exporter {what} failed"
        ),
        Err(error) => tracing::warn!(
            error = crate::error::chain(&error),
            "trace exporter {what} panicked"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_endpoint_wins_and_empty_is_off() {
        let cfg = |e: Option<&str>| TelemetryConfig {
            otlp_endpoint: e.map(str::to_owned),
            ..TelemetryConfig::default()
        };
        let env = || Some("http://env:4317".to_owned());
        assert_eq!(
            otlp_endpoint(&cfg(Some("http://cfg:4317")), env()).as_deref(),
            Some("http://cfg:4317")
        );
        assert_eq!(
            otlp_endpoint(&cfg(None), env()).as_deref(),
            Some("http://env:4317")
        );
        assert_eq!(otlp_endpoint(&cfg(None), None), None);
        assert_eq!(otlp_endpoint(&cfg(None), Some(" ".into())), None);
    }
}
