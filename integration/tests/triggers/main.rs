//! Integration tests of build and deploy triggers against a real nats-server
//! and a local webhook receiver: firing on `TagsChanged`, exactly one firing
//! and one delivery per (trigger, image) under duplicates, two replicas and
//! replicas stopped dead mid-firing, webhook retries and the delivery log,
//! the gRPC API, and a real push through the whole mesh.

mod api;
mod cli;
mod e2e;
mod exactly_once;
mod firing;
mod kit;
mod policies;
mod reconcile;
mod webhooks;
