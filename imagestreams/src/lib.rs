//! The `imagestreams` binary as a library: the server side (`up`, `serve`)
//! and the client verbs, so that tests drive exactly what users run.
#![forbid(unsafe_code)]

pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod client;
pub mod client_config;
mod local_nats;
pub mod reference;
pub mod registry_keys;
