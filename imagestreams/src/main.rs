//! The `imagestreams` binary: `up` runs every service in one process, `serve
//! <service>` runs one, and the other verbs are an `oc`-like client.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use imagestreams::{
    app,
    cli::{Cli, Command},
    client, client_config, events, local_nats, reference, registry_keys,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up => app::up(cli.config.as_deref()).await,
        Command::Serve { service } => app::serve(cli.config.as_deref(), service).await,
        Command::Ref(cmd) => return reference::run(cmd),
        Command::RegistryKeys(cmd) => registry_keys::run(cli.config.as_deref(), cmd),
        Command::Events(args) => events::run(cli.config.as_deref(), &args).await,
        Command::ExecWithParent {
            parent,
            program,
            args,
        } => Err(local_nats::exec_with_parent(parent, &program, &args)),
        Command::Client(cmd) => {
            // --token, IMAGESTREAMS_TOKEN, else the client configuration file
            let token = cli
                .token
                .or_else(|| client_config::token_for(&cli.server, &client_config::search_path()));
            let globals = client::Globals {
                server: cli.server,
                namespace: cli.namespace,
                token,
                certificate_authority: cli.certificate_authority,
            };
            return client::main(globals, cmd).await;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
