//! Generated protobuf and gRPC types of `imagestreams.v1`: the wire contract.
//!
//! Nothing here is validated; services convert these into the domain types of
//! `imagestreams-common` at the edge (`TryFrom`) and back (`From`).
#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::all)]

/// `imagestreams.v1`: the ImageStream resource, events and services.
pub mod v1 {
    tonic::include_proto!("imagestreams.v1");

    pub use crate::WatchEvent;
}

mod watch_event;

pub use watch_event::WatchEvent;

/// The encoded `FileDescriptorSet` of every proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("imagestreams_descriptor");
