//! Integration tests of the stream API against a real nats-server: the
//! stream-store's write path, the gateway (gRPC and REST) and the CLI.

mod big;
mod bounded;
mod changefeed_lag;
mod cli;
mod gateway;
mod layout;
mod read_cache;
mod retention;
mod store;
