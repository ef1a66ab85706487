//! Webhook receivers: what hosted registries send when an image is pushed,
//! checked against the receiver's secret ([`verify`]) and read, whatever the
//! sender's format, as a [`payload::Hint`]: which repository changed, and
//! which tags (and digest, when the sender says). A hint is never the truth:
//! the tags it names are imported again from the registry, which says what
//! they point to now.
//!
//! See `../shared/research/hosted-webhooks.md` for each sender's payload,
//! headers and means of verification, and how the peers (Flux, Keel, Argo CD
//! Image Updater, Kargo) handle them.
#![forbid(unsafe_code)]

pub mod kind;
pub mod payload;
pub mod verify;

pub use kind::{Check, Kind};
pub use payload::{Delivery, Hint, parse};
pub use verify::{Credentials, OidcTrust, Refusal, bearer_token_kid, verify};
