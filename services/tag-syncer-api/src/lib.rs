//! The tag-syncer's contract for the processes that call it: the clients of
//! its request-reply API on `imagestreams.api.tagsyncer.<op>` (core NATS,
//! queue group `tag-syncer`). Types and clients only; the service's loops are
//! in `imagestreams-tag-syncer`.
//!
//! - [`MirrorClient`]: `mirror`, copying images to another registry with the
//!   namespace's registry secrets.
#![forbid(unsafe_code)]

mod mirror;

pub use mirror::{DEFAULT_MIRROR_WAIT, MirrorClient, STATUS_FAILURE, STATUS_SUCCESS, any_failed};
