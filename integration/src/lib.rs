//! The real-parts test kit: starts `nats-server` and `docker-registry`, builds images with `umoci` and pushes them with `skopeo`.
//!
//! Every server is started on a port it reads back, in its own temporary directory, and is killed when dropped.
//! A missing binary fails the test with an install hint; nothing is skipped silently.
#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod binaries;
pub mod fake_registry;
pub mod image;
pub mod load;
pub mod nats;
pub mod notify;
mod process;
pub mod readme;
pub mod registry;
pub mod registry_proxy;
pub mod util;

pub use app::{Bearer, Scraped, TestApp};
pub use binaries::require;
pub use image::{
    ImageBuilder, OciImage, blob_uploads, pull, push_index, push_unique_image, raw_digest,
};
pub use nats::{NatsCluster, NatsServer};
pub use notify::{NotificationSink, ReceivedRequest, is_push_of};
pub use registry::{Registry, RegistryOptions, TokenAuth, TokenKeys};
pub use util::{TestDir, free_port, wait_for, wait_for_some, wait_ready};
