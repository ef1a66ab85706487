//! The `oc`-like client verbs (`create`, `get`, `describe`, `delete`,
//! `watch`, `tag`): each parses and checks its arguments, talks to the
//! gateway's gRPC API, and writes to the given writers, so tests can drive
//! them without a terminal.
//!
//! Failures are [`ClientError`]s whose `Display` is one line; [`main`]
//! prints it as `error: …` and exits non-zero.

pub mod access;
pub mod connection;
pub mod create;
pub mod delete;
pub mod describe;
pub mod documents;
mod error;
pub mod get;
pub mod history;
pub mod humanize;
pub mod images;
pub mod import;
pub mod mirror;
pub mod output;
pub mod receivers;
pub mod resource;
pub mod secrets;
pub mod tabwriter;
pub mod tag;
pub mod tags;
pub mod triggers;
pub mod watch;

use std::{io::Write, path::PathBuf, process::ExitCode};

pub use connection::Client;
pub use error::{ClientError, one_line};
use imagestreams_common::config::Secret;

use crate::cli::{ClientCommand, CreateArgs, DEFAULT_NAMESPACE, SetCommand};

/// The options every client verb shares.
#[derive(Debug, Clone)]
pub struct Globals {
    /// `--server`.
    pub server: String,
    /// `-n/--namespace`, if given (or set in the environment).
    pub namespace: Option<String>,
    /// `--token`.
    pub token: Option<Secret>,
    /// `--certificate-authority`: the PEM file of the CA that signed an
    /// https server's certificate (default: the system's roots).
    pub certificate_authority: Option<PathBuf>,
}

/// What a verb runs with: the global options and a connection made on first use.
#[derive(Debug)]
pub struct Context {
    globals: Globals,
    client: Option<Client>,
}

impl Context {
    /// A context that connects when a verb first needs the server.
    pub fn new(globals: Globals) -> Self {
        Self {
            globals,
            client: None,
        }
    }

    /// The namespace to work in: `-n`, else [`DEFAULT_NAMESPACE`].
    pub fn namespace(&self) -> &str {
        self.globals
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// Whether `-n` (or `IMAGESTREAMS_NAMESPACE`) named the namespace.
    pub fn namespace_is_explicit(&self) -> bool {
        self.globals
            .namespace
            .as_deref()
            .is_some_and(|n| !n.is_empty())
    }

    /// The global options (`--server`, `--token`, `-n`).
    pub fn globals(&self) -> &Globals {
        &self.globals
    }

    /// The connected client, connecting on first use.
    pub async fn client(&mut self) -> Result<&mut Client, ClientError> {
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let token = self.globals.token.as_ref().map(Secret::expose);
                Client::connect(
                    &self.globals.server,
                    token,
                    self.globals.certificate_authority.as_deref(),
                )
                .await?
            }
        };
        Ok(self.client.insert(client))
    }
}

/// Runs one client verb, writing results to `out` and notes (such as "No
/// resources found") to `err`.
pub async fn run(
    globals: Globals,
    command: ClientCommand,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), ClientError> {
    let mut ctx = Context::new(globals);
    match command {
        ClientCommand::Get(args) if triggers::handles(&args.resource) => {
            triggers::get(&mut ctx, &args, out, err).await
        }
        ClientCommand::Get(args) if access::handles_bindings(&args.resource) => {
            access::get_bindings(&mut ctx, &args, out, err).await
        }
        ClientCommand::Get(args) if access::handles(&args.resource) => {
            access::get_accounts(&mut ctx, &args, out, err).await
        }
        ClientCommand::Get(args) if receivers::handles(&args.resource) => {
            receivers::get(&mut ctx, &args, out, err).await
        }
        ClientCommand::Get(args) if images::handles(&args.resource) => {
            images::get(&mut ctx, &args, out).await
        }
        ClientCommand::Describe(args) if triggers::handles(&args.resource) => {
            triggers::describe(&mut ctx, &args, out, err).await
        }
        ClientCommand::Delete(args) if triggers::handles(&args.resource) => {
            triggers::delete(&mut ctx, &args, out).await
        }
        ClientCommand::Delete(args) if receivers::handles(&args.resource) => {
            receivers::delete(&mut ctx, &args.resource, &args.names, out).await
        }
        ClientCommand::Delete(args) if access::handles(&args.resource) => {
            access::delete(&mut ctx, &args.resource, &args.names, out).await
        }
        ClientCommand::Create(args) if args.resource.as_deref().is_some_and(receivers::handles) => {
            receivers::create(&mut ctx, &args, &mut std::io::stdin(), out, err).await
        }
        ClientCommand::Create(CreateArgs {
            resource: Some(resource),
            name: Some(name),
            ..
        }) => access::create(&mut ctx, &resource, &name, out, err).await,
        ClientCommand::Policy(command) => access::policy(&mut ctx, &command, out).await,
        ClientCommand::Whoami => access::whoami(&mut ctx, out).await,
        ClientCommand::Set(SetCommand::Triggers(args)) => {
            triggers::set(&mut ctx, &args, &mut std::io::stdin(), out).await
        }
        ClientCommand::Create(args) => create::run(&mut ctx, &args, out).await,
        ClientCommand::Get(args) => get::run(&mut ctx, &args, out, err).await,
        ClientCommand::Describe(args) => describe::run(&mut ctx, &args, out, err).await,
        ClientCommand::Delete(args) => delete::run(&mut ctx, &args, out).await,
        ClientCommand::Watch(args) => watch::run(&mut ctx, &args, out).await,
        ClientCommand::History(args) => history::run(&mut ctx, &args, out).await,
        ClientCommand::Tag(args) => tag::run(&mut ctx, &args, out).await,
        ClientCommand::ImportImage(args) => import::run(&mut ctx, &args, out, err).await,
        ClientCommand::Mirror(args) => mirror::run(&mut ctx, &args, out, err).await,
        ClientCommand::Secrets(command) => {
            secrets::run(&mut ctx, &command, &mut std::io::stdin(), out, err).await
        }
    }
}

/// The binary's entry to the client verbs: stdout and stderr, one `error:`
/// line and a failing exit code when the verb fails.
pub async fn main(globals: Globals, command: ClientCommand) -> ExitCode {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let result = run(globals, command, &mut out, &mut err).await;
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing left to say to anyone.
        Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(err, "{}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
