//! Command-line grammar of the `imagestreams` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// OpenShift-style image streams for any container registry.
#[derive(Debug, Parser)]
#[command(name = "imagestreams", version, about)]
pub struct Cli {
    /// Configuration file (default: ./imagestreams.toml when it exists).
    #[arg(long, global = true, env = "IMAGESTREAMS_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process until SIGINT or SIGTERM.
    Up,
    /// Run one service in this process.
    Serve {
        /// The service to run.
        service: ServiceName,
    },
    /// Image reference tools.
    #[command(subcommand)]
    Ref(RefCommand),
}

/// The services `serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    /// Registry notifications → ImagePushed.
    RegistryWatcher,
    /// Imports from external registries.
    TagSyncer,
    /// The ImageStream store, single writer.
    StreamStore,
    /// Build and deploy triggers.
    Trigger,
    /// The public gRPC and REST API.
    Gateway,
}

impl ServiceName {
    /// Every service, in start order.
    pub const ALL: [ServiceName; 5] = [
        ServiceName::StreamStore,
        ServiceName::TagSyncer,
        ServiceName::Trigger,
        ServiceName::RegistryWatcher,
        ServiceName::Gateway,
    ];
}

/// `imagestreams ref …`.
#[derive(Debug, Subcommand)]
pub enum RefCommand {
    /// Parse and normalize an image reference as Docker does.
    Parse {
        /// The reference, e.g. `ubuntu:22.04`.
        reference: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = RefOutput::Text)]
        output: RefOutput,
    },
}

/// Output of `ref parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RefOutput {
    /// `key: value` lines.
    Text,
    /// One JSON object.
    Json,
}
