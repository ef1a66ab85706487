//! Command-line grammar of the `imagestreams` binary: the server verbs (`up`,
//! `serve`), `ref`, and the `oc`-like client verbs.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use imagestreams_common::config::Secret;

/// OpenShift-style image streams for any container registry.
#[derive(Debug, Parser)]
#[command(name = "imagestreams", version, about)]
pub struct Cli {
    /// Configuration file (default: ./imagestreams.toml when it exists).
    #[arg(long, global = true, env = "IMAGESTREAMS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the client verbs find the gateway's gRPC API.
    #[arg(long, global = true, env = "IMAGESTREAMS_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The namespace of the client verbs (default: `default`, or the
    /// document's own for `create`).
    #[arg(short = 'n', long, global = true, env = "IMAGESTREAMS_NAMESPACE")]
    pub namespace: Option<String>,
    /// A bearer token sent with every API call.
    #[arg(
        long,
        global = true,
        env = "IMAGESTREAMS_TOKEN",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub token: Option<Secret>,
    /// Trust the CA certificate(s) in this PEM file for an `https://`
    /// `--server` (default: the system's roots).
    #[arg(long, global = true, env = "IMAGESTREAMS_CERTIFICATE_AUTHORITY")]
    pub certificate_authority: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

fn parse_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
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
    /// The integrated registry's token signing key and certificates.
    #[command(subcommand)]
    RegistryKeys(RegistryKeysCommand),
    /// Our events as kept in JetStream, decoded (reads NATS directly): replay with `--since`, tail with `--follow`.
    Events(crate::events::EventsArgs),
    /// The client verbs.
    #[command(flatten)]
    Client(ClientCommand),
    /// Internal: how `up` starts its nats-server, so that it dies with `up`.
    #[command(name = "exec-with-parent", hide = true)]
    ExecWithParent {
        /// The process whose death ends the program.
        parent: u32,
        /// The program to run in place of this process.
        program: std::path::PathBuf,
        /// Its arguments.
        #[arg(last = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The `oc`-like client verbs, which talk to the gateway at `--server`.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Create image streams from a file (JSON or YAML) or stdin.
    Create(CreateArgs),
    /// Display image streams, a tag's current image (istag) or one image (isimage) with its metadata, or triggers.
    Get(GetArgs),
    /// Show the details of image streams: tags, their sources and histories.
    Describe(DescribeArgs),
    /// Delete image streams by name.
    Delete(DeleteArgs),
    /// Stream the changes of image streams as they happen.
    Watch(WatchArgs),
    /// Every change of a stream's tags with who or what caused it and what it fired; `--at` what each tag pointed to then.
    History(HistoryArgs),
    /// Tag existing images into image streams, as `oc tag` does.
    Tag(TagArgs),
    /// Set up resources: `set triggers` creates a build or deploy trigger.
    #[command(subcommand)]
    Set(SetCommand),
    /// Import images from an external registry into an image stream, as `oc import-image` does.
    ImportImage(ImportImageArgs),
    /// Copy images (a stream's tags, or any pull spec) to another registry with the namespace's secrets, as `oc image mirror` does.
    Mirror(MirrorArgs),
    /// Registry credentials of the namespace, used by its imports.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Grant or revoke a role in the namespace, as `oc policy` does.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The identity of the token in use.
    Whoami,
}

/// `imagestreams policy …`: role bindings in the namespace (`-n`).
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Bind ROLE (`view`, `edit`, `admin`) to a user or service account.
    AddRoleToUser(PolicyArgs),
    /// Remove that binding.
    RemoveRoleFromUser(PolicyArgs),
    /// Bind ROLE to every member of a group.
    AddRoleToGroup(PolicyArgs),
    /// Remove that binding.
    RemoveRoleFromGroup(PolicyArgs),
}

/// `ROLE SUBJECT` of `imagestreams policy …`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// `view`, `edit` or `admin`.
    pub role: String,
    /// The user (a service account is `system:serviceaccount:NAMESPACE:NAME`) or group.
    pub subject: String,
}

/// `imagestreams import-image NAME[:TAG]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportImageArgs {
    /// The image stream, `NAME` or `NAME:TAG` (with `--confirm`, also a pull spec).
    pub name: String,
    /// Import from this image reference instead of the stream's source.
    #[arg(long, value_name = "REF")]
    pub from: Option<String>,
    /// Import every tag of the repository (the default for a stream with `spec.dockerImageRepository`).
    #[arg(long)]
    pub all: bool,
    /// Create the stream when it does not exist, or change its source.
    #[arg(long)]
    pub confirm: bool,
    /// Re-import the tag periodically (sets `importPolicy.scheduled`).
    #[arg(long)]
    pub scheduled: bool,
    /// The registry needs plain HTTP (sets `importPolicy.insecure`).
    #[arg(long)]
    pub insecure: bool,
}

/// `imagestreams mirror SOURCE DEST`.
#[derive(Debug, Clone, clap::Args)]
pub struct MirrorArgs {
    /// `STREAM`, `STREAM:TAG` or `STREAM@DIGEST` of the namespace (no `/`), or a pull spec.
    pub source: String,
    /// `REPOSITORY:TAG`, or `REPOSITORY` to keep the source's tag (each tag's, for a whole stream).
    pub destination: String,
    /// Copy only this platform of a multi-arch image (`os/arch[/variant]`); its manifest becomes the image.
    #[arg(long, value_name = "OS/ARCH", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Copy every platform, so the destination has the source's digest (the default).
    #[arg(long)]
    pub all_platforms: bool,
    /// Check what is missing at the destination; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Both registries may use plain HTTP or unverified TLS.
    #[arg(long)]
    pub insecure: bool,
}

/// `imagestreams secrets …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SecretsCommand {
    /// Store a registry username and password (read from stdin) for this namespace's imports.
    CreateRegistry(CreateRegistrySecretArgs),
    /// List the registry secrets of the namespace (without their passwords).
    List,
    /// Delete a registry secret.
    Delete {
        /// The secret's name.
        name: String,
    },
}

/// `imagestreams secrets create-registry NAME --server HOST --username U --password-stdin`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateRegistrySecretArgs {
    /// The secret's name (a DNS-1123 label).
    pub name: String,
    /// The registry, `host[:port][/path]`; matched by the longest prefix.
    #[arg(long, value_name = "HOST")]
    pub server: String,
    /// The user name.
    #[arg(long, value_name = "USER")]
    pub username: String,
    /// Read the password from stdin (its first line).
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
}

/// The default of `--server`.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// The namespace used when neither `-n` nor the environment names one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `imagestreams create`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateArgs {
    /// `serviceaccount` (or `sa`) with a NAME: a service account of the
    /// namespace, its token printed on stdout, once. `receiver` with a NAME
    /// and `--type`: a webhook receiver, its URL printed on stdout. Without
    /// either, `-f`.
    #[arg(value_name = "TYPE", requires = "name", conflicts_with = "filenames")]
    pub resource: Option<String>,
    /// The service account's name.
    pub name: Option<String>,
    /// Files holding ImageStreams (JSON or YAML, a `List`, or several YAML
    /// documents); `-` reads stdin.
    #[arg(
        short = 'f',
        long = "filename",
        required_unless_present = "resource",
        value_name = "FILE"
    )]
    pub filenames: Vec<PathBuf>,
    /// `create receiver`: the sender (dockerhub, quay, ghcr, harbor, gitlab,
    /// distribution, acr, gar, ecr, artifactory, nexus, zot, cloudevents,
    /// generic-hmac).
    #[arg(long = "type", value_name = "TYPE")]
    pub receiver_type: Option<String>,
    /// `create receiver`: read its secret from stdin (first line); without
    /// it one is generated and shown once on stderr.
    #[arg(long = "secret-stdin")]
    pub secret_stdin: bool,
    /// `create receiver`: a repository it may name (`host/path`, a trailing
    /// `*` for any below); repeat for several; none: any.
    #[arg(long = "repository", value_name = "REPO")]
    pub repositories: Vec<String>,
    /// `create receiver`: created paused (deliveries answered 503).
    #[arg(long)]
    pub paused: bool,
    /// `create receiver --type gar`: the audience of the push subscription's token.
    #[arg(long = "oidc-audience", value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// `create receiver --type gar`: the service account it pushes as.
    #[arg(long = "oidc-email", value_name = "EMAIL")]
    pub oidc_email: Option<String>,
}

/// `imagestreams get`.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// `is` (or `imagestream`, `imagestreams`), or `is/NAME`; `isimage` (`STREAM@DIGEST`) and `istag`
    /// (`STREAM:TAG`) for an image with its metadata; `triggers`, `builds`, `deployments`;
    /// `rolebindings` (`rb`), `serviceaccounts` (`sa`).
    #[arg(value_name = "TYPE[/NAME]")]
    pub resource: String,
    /// Names; none lists the namespace (streams and triggers).
    pub names: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<GetOutput>,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// List the streams of every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

/// Output of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    /// The OpenShift object (a `List` without a name).
    Json,
    /// The same as YAML.
    Yaml,
    /// The table with more columns.
    Wide,
    /// `imagestream.image.openshift.io/NAME` lines.
    Name,
}

/// `imagestreams describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// `is` (or `imagestream`, `imagestreams`), or `is/NAME`.
    #[arg(value_name = "TYPE[/NAME]")]
    pub resource: String,
    /// Stream names; none describes every stream of the namespace.
    pub names: Vec<String>,
}

/// `imagestreams history`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// `is` (or `imagestream`, `imagestreams`).
    #[arg(value_name = "TYPE")]
    pub resource: String,
    /// The stream, and one tag of it.
    #[arg(value_name = "STREAM[:TAG]")]
    pub name: String,
    /// Only changes since this age (`30s`, `90m`, `12h`, `2d`) or RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Print what each tag pointed to at this RFC 3339 time (or this age ago).
    #[arg(long)]
    pub at: Option<String>,
    /// `json` or `yaml`; a table when not given.
    #[arg(long, short = 'o')]
    pub output: Option<String>,
}

/// `imagestreams delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// `is` (or `imagestream`, `imagestreams`), or `is/NAME`; `triggers`;
    /// `sa` (or `serviceaccount`), whose tokens are refused from then on.
    #[arg(value_name = "TYPE[/NAME]")]
    pub resource: String,
    /// Stream names.
    pub names: Vec<String>,
}

/// `imagestreams watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// `is` (or `imagestream`, `imagestreams`), or `is/NAME`.
    #[arg(value_name = "TYPE[/NAME]")]
    pub resource: String,
    /// Watch only this stream.
    pub name: Option<String>,
    /// Output format: one JSON object per line, `{"type":…,"object":…}`.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<WatchOutput>,
    /// Deliver the changes after this resourceVersion; none starts with
    /// ADDED for every current stream.
    #[arg(long = "resource-version", value_name = "RV")]
    pub resource_version: Option<String>,
    /// Label selector, e.g. `app=web`.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Watch every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

/// Output of `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchOutput {
    /// One JSON object per line: the event type and the object.
    Json,
}

/// `imagestreams tag`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    override_usage = "imagestreams tag [--source=SOURCETYPE] SOURCE DEST [DEST ...]\n       imagestreams tag --delete DEST [DEST ...]"
)]
pub struct TagArgs {
    /// SOURCE then DEST... (`[NAMESPACE/]STREAM:TAG`); with `--delete`, only DESTs.
    #[arg(required = true, value_name = "SOURCE DEST")]
    pub args: Vec<String>,
    /// Hint for the source type: imagestreamtag (istag), imagestreamimage
    /// (isimage) or docker (dockerimage).
    #[arg(long = "source", value_name = "SOURCETYPE")]
    pub source: Option<String>,
    /// Delete the given spec tags.
    #[arg(short = 'd', long = "delete")]
    pub delete: bool,
    /// Make the destination track the source tag instead of copying its
    /// current image (same image stream only).
    #[arg(long)]
    pub alias: bool,
    /// The destination only points at the source: nothing is imported.
    #[arg(long)]
    pub reference: bool,
    /// Re-import a container image periodically.
    #[arg(long)]
    pub scheduled: bool,
    /// The registry of a container image needs plain HTTP or an unverified certificate.
    #[arg(long)]
    pub insecure: bool,
    /// How pull specs of the destination tags resolve: `source` (the
    /// original registry, the default) or `local` (the integrated registry).
    #[arg(long = "reference-policy", value_name = "source|local")]
    pub reference_policy: Option<String>,
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

/// `imagestreams registry-keys …`.
#[derive(Debug, Subcommand)]
pub enum RegistryKeysCommand {
    /// Make the token service's signing key (token.key, mode 0600), its
    /// certificate chain (token.crt), the registry's rootcertbundle.pem and
    /// jwks.json, and print the registry and imagestreams configuration.
    Generate(RegistryKeysGenerateArgs),
}

/// `imagestreams registry-keys generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryKeysGenerateArgs {
    /// Where to write the files.
    #[arg(long, default_value = imagestreams_common::config::DEFAULT_REGISTRY_KEYS_DIR)]
    pub dir: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// How long the certificates are valid, in days.
    #[arg(long, default_value_t = imagestreams_gateway::registry_token::keys::DEFAULT_VALIDITY_DAYS)]
    pub days: u32,
    /// The token endpoint the registry sends clients to (default: the
    /// gateway's HTTP address + /token).
    #[arg(long)]
    pub realm: Option<String>,
}

/// Output of `ref parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RefOutput {
    /// `key: value` lines.
    Text,
    /// One JSON object.
    Json,
}

/// `imagestreams set …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SetCommand {
    /// Create a build or deploy trigger, or a mirror rule, fired by new
    /// images of an ImageStreamTag. A tag that already holds an image fires
    /// it at once, unless `--no-fire-existing`.
    Triggers(SetTriggersArgs),
}

/// `imagestreams set triggers NAME --from-image STREAM:TAG (--build|--deploy|--mirror DEST) …`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("trigger_kind").required(true).args(["build", "deploy", "mirror"])))]
pub struct SetTriggersArgs {
    /// The trigger's name (a DNS-1123 label).
    pub name: String,
    /// The ImageStreamTag whose new images fire it, `[NAMESPACE/]STREAM:TAG`.
    #[arg(long = "from-image", value_name = "[NAMESPACE/]STREAM:TAG")]
    pub from_image: String,
    /// Request a build (publishes BuildRequested).
    #[arg(long)]
    pub build: bool,
    /// Request a deployment (publishes DeploymentRequested).
    #[arg(long)]
    pub deploy: bool,
    /// A mirror rule: push each new image of the tag to this
    /// `REPOSITORY[:TAG]` (the tag's own name when none), with the
    /// namespace's registry secrets; oldest first, never backwards.
    #[arg(long, value_name = "REPOSITORY[:TAG]", conflicts_with = "webhook")]
    pub mirror: Option<String>,
    /// Mirror rules: allow plain HTTP and unverified TLS to the destination.
    #[arg(long, requires = "mirror")]
    pub insecure: bool,
    /// POST every firing to this http(s) URL.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Read the webhook's HMAC-SHA256 signing secret from stdin.
    #[arg(long = "secret-stdin", requires = "webhook")]
    pub secret_stdin: bool,
    /// Deploy only: the container whose image the deployment sets.
    #[arg(short = 'c', long, value_name = "CONTAINER", requires = "deploy")]
    pub container: Option<String>,
    /// Create it paused: it does not fire.
    #[arg(long)]
    pub paused: bool,
    /// Do not fire for the image the tag holds now.
    #[arg(long = "no-fire-existing")]
    pub no_fire_existing: bool,
}
