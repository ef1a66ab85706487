//! Logging and tracing setup: one `init` for every process.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, TelemetryConfig};

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,async_nats=warn,h2=warn,tower=warn,hyper=warn";

/// Installs the global subscriber: the `RUST_LOG` filter (default
/// [`DEFAULT_LOG_FILTER`]) and plain or JSON lines on stderr. Calling it twice
/// is harmless (the second call does nothing).
pub fn init(cfg: &TelemetryConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match cfg.log_format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("telemetry already initialised");
    }
}
