//! The `imagestreams` binary as a library: the server side (`up`, `serve`)
//! and the client verbs, so that tests drive exactly what users run.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod client;
mod local_nats;
pub mod reference;
