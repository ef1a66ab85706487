//! The tag-syncer's contract for the processes that call it: the clients of
//! its request-reply API on `imagestreams.api.tagsyncer.<op>` (core NATS,
//! queue group `tag-syncer`). Types and clients only; the service's loops are
//! in `imagestreams-tag-syncer`.
//!
//! - [`imports`]: `import`, the gateway's `ImportImage` ([`ImportClient`]);
//! - [`mirror`]: `mirror`, copying images to another registry with the
//!   namespace's registry secrets ([`MirrorClient`]);
//! - [`secrets`]: `secrets.{create,list,delete}`, the namespaces' registry
//!   secrets ([`SecretsClient`]).
//!
//! Both answer per tag or image with one of [`STATUS_SUCCESS`],
//! [`STATUS_UNCHANGED`] (imports) or [`STATUS_FAILURE`].
#![forbid(unsafe_code)]

pub mod imports;
pub mod mirror;
pub mod secrets;

pub use imports::{DEFAULT_IMPORT_WAIT, ImportClient, import_image};
pub use mirror::{DEFAULT_MIRROR_WAIT, MirrorClient};
pub use secrets::{NewRegistrySecret, SecretsClient, check_names};

/// A tag imported to a new image, or an image mirrored.
pub const STATUS_SUCCESS: &str = "Success";
/// A tag whose import found the image it already had.
pub const STATUS_UNCHANGED: &str = "Unchanged";
/// A tag or image that failed (its reason and message say why).
pub const STATUS_FAILURE: &str = "Failure";
