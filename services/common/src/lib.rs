//! What every imagestreams service shares: the OpenShift model, image references,
//! NATS subjects, configuration, and the runtime kit (NATS setup, telemetry,
//! health endpoints, shutdown).
#![forbid(unsafe_code)]

// The pure formats live in `imagestreams-formats` (light enough to fuzz); their
// old paths stay here.
pub use imagestreams_formats::{model, reference, subjects, time};

pub mod auth;
pub mod bounded;
pub mod config;
pub mod deadletter;
pub mod error;
pub mod metrics;
pub mod nats;
pub mod requests;
pub mod runtime;
pub mod telemetry;
pub mod tls;
