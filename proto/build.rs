//! Compiles `imagestreams/v1/*.proto` with protox (pure Rust, no system `protoc`)
//! and writes the generated code and the descriptor set to `OUT_DIR` only.

use std::{env, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "imagestreams/v1/imagestream.proto",
    "imagestreams/v1/image.proto",
    "imagestreams/v1/events.proto",
    "imagestreams/v1/image_streams.proto",
    "imagestreams/v1/store.proto",
    "imagestreams/v1/triggers.proto",
    "imagestreams/v1/tag_syncer.proto",
    "imagestreams/v1/auth.proto",
    "imagestreams/v1/receivers.proto",
    "imagestreams/v1/mirrors.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("imagestreams_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // written by hand so that a server can encode a change once for all
        // of its watchers (see `src/watch_event.rs`)
        .extern_path(".imagestreams.v1.WatchEvent", "crate::WatchEvent")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
