//! The formats imagestreams reads from untrusted input, as pure functions
//! with no I/O: image references, OpenShift's ImageStream documents and their
//! validation, NATS subject tokens, the registry's notification envelope, docker
//! `config.json` and the `tags/list` pages with their `Link` headers.
//!
//! The services re-export these modules from where they used to live
//! (`imagestreams_common::{model, reference, subjects}`, the registry-watcher's
//! `envelope` and `notification`, the registry client's credentials and tags).
//! This crate is kept apart so that the fuzz targets (`fuzz/`) build it and
//! nothing heavier: it depends on serde, regex, chrono and the like only. The
//! `proto` feature adds the conversions to and from the protobuf wire types.
#![forbid(unsafe_code)]

pub mod credentials;
pub mod envelope;
pub mod model;
pub mod notification;
pub mod reference;
pub mod secret;
pub mod subjects;
pub mod tags;
pub mod time;
