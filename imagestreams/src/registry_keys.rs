//! `imagestreams registry-keys generate`: makes the registry token service's
//! key and certificates (see `imagestreams_gateway::registry_token::keys`)
//! and prints the configuration of both sides.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use imagestreams_common::config::Config;
use imagestreams_gateway::registry_token::{TOKEN_PATH, keys};

use crate::cli::{RegistryKeysCommand, RegistryKeysGenerateArgs};

/// Runs a `registry-keys` verb with the configuration at `config`.
pub fn run(config: Option<&Path>, cmd: RegistryKeysCommand) -> anyhow::Result<()> {
    let RegistryKeysCommand::Generate(args) = cmd;
    let config = Config::load(config)?;
    let generated = keys::generate(args.days)?;
    let files = keys::write(&args.dir, &generated, args.force)?;
    print!("{}", snippet(&config, &args, &files)?);
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// What to configure: the registry (2.8 and 3.x) and `[auth.registry]`.
fn snippet(
    config: &Config,
    args: &RegistryKeysGenerateArgs,
    files: &keys::KeyFiles,
) -> anyhow::Result<String> {
    let registry = &config.auth.registry;
    let realm = args
        .realm
        .clone()
        .unwrap_or_else(|| format!("http://{}{TOKEN_PATH}", config.gateway.http_listen));
    let (key, cert) = (absolute(&files.key)?, absolute(&files.cert)?);
    let (bundle, jwks) = (absolute(&files.root_cert_bundle)?, absolute(&files.jwks)?);
    Ok(format!(
        r#"Wrote {key} (mode 0600), {cert}, {bundle} and {jwks}.

# docker-registry (distribution 2.8) config.yml:
auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {bundle}

# distribution 3.x: the same, with the key set instead of (or beside) the bundle:
#   jwks: {jwks}

# imagestreams.toml:
[auth.registry]
enabled = true
issuer = "{issuer}"
service = "{service}"
key_file = "{key}"
cert_file = "{cert}"
"#,
        key = key.display(),
        cert = cert.display(),
        bundle = bundle.display(),
        jwks = jwks.display(),
        service = registry.service,
        issuer = registry.issuer,
    ))
}
