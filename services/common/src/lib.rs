//! What every imagestreams service shares: the OpenShift model, image references,
//! NATS subjects, configuration, and the runtime kit (NATS setup, telemetry,
//! health endpoints, shutdown).
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod image;
pub mod imports;
pub mod metrics;
pub mod model;
pub mod nats;
pub mod reference;
pub mod runtime;
pub mod secrets;
pub mod selector;
pub mod store;
pub mod subjects;
pub mod telemetry;
pub mod tls;
pub mod triggers;
