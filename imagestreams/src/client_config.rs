//! The client configuration file: which server the CLI talks to and the
//! bearer token it sends there, as `oc login` keeps them in a kubeconfig.
//!
//! `up` writes [`DEFAULT_CLIENT_CONFIG_FILE`] (mode 0600) when it makes the
//! first cluster-admin. The CLI, given no `--token` nor `IMAGESTREAMS_TOKEN`,
//! reads the first of
//!
//! 1. `$IMAGESTREAMS_CLIENT_CONFIG`,
//! 2. `./.imagestreams/client.toml` (next to the data of a local `up`),
//! 3. `$XDG_CONFIG_HOME/imagestreams/client.toml` (else `~/.config/…`),
//!
//! and uses its token only when its `server` is the one the CLI talks to, so
//! that a token never goes to another server.
//!
//! ```toml
//! server = "http://127.0.0.1:50051"
//! token = "isk_…"
//! ```

use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Format, Toml},
};
use imagestreams_common::config::Secret;
use serde::Deserialize;

/// Where `up` writes the client configuration, relative to its directory.
pub const DEFAULT_CLIENT_CONFIG_FILE: &str = ".imagestreams/client.toml";
/// The environment variable naming another client configuration file.
pub const CLIENT_CONFIG_ENV: &str = "IMAGESTREAMS_CLIENT_CONFIG";

/// The client configuration: a server and its token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The gateway's gRPC URL, as `--server` takes it.
    pub server: String,
    /// The bearer token for that server.
    pub token: Secret,
}

impl ClientConfig {
    /// Reads `path`; `None` when it does not exist or cannot be parsed.
    pub fn read(path: &Path) -> Option<ClientConfig> {
        if !path.is_file() {
            return None;
        }
        Figment::from(Toml::file_exact(path)).extract().ok()
    }

    /// Writes the file, readable by its owner only (0600), creating its directory.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut file = create_private(path)?;
        write!(
            file,
            "# Written by `imagestreams up`: the CLI sends this token to this server.\n\
             server = {}\ntoken = {}\n",
            toml_string(&self.server),
            toml_string(self.token.expose()),
        )?;
        file.sync_all()
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The gRPC URL clients use for a gateway listening on `addr`: an
/// unspecified address (`0.0.0.0`, `::`) becomes loopback.
pub fn server_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The client configuration files, in the order they are tried.
pub fn search_path() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os(CLIENT_CONFIG_ENV).filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(p));
    }
    paths.push(PathBuf::from(DEFAULT_CLIENT_CONFIG_FILE));
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(home) = config_home {
        paths.push(home.join("imagestreams").join("client.toml"));
    }
    paths
}

/// The token of the first file in `paths` written for `server`.
pub fn token_for(server: &str, paths: &[PathBuf]) -> Option<Secret> {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    paths
        .iter()
        .filter_map(|p| ClientConfig::read(p))
        .find(|c| same(&c.server, server))
        .map(|c| c.token)
}

/// Creates (or truncates) `path` readable by its owner only (0600), with
/// its directory.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // an existing file keeps its mode on open: tighten it
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_are_private_and_read_back_for_their_server_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.toml");
        let config = ClientConfig {
            server: "http://127.0.0.1:50051".into(),
            token: Secret::new("isk_\"odd\\"),
        };
        config.write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let paths = [dir.path().join("missing.toml"), path];
        let token = token_for("http://127.0.0.1:50051/", &paths).unwrap();
        assert_eq!(token.expose(), "isk_\"odd\\");
        assert!(token_for("http://elsewhere:50051", &paths).is_none());
    }

    #[test]
    fn unspecified_listen_addresses_become_loopback() {
        assert_eq!(
            server_url("0.0.0.0:50051".parse().unwrap()),
            "http://127.0.0.1:50051"
        );
        assert_eq!(server_url("[::]:1".parse().unwrap()), "http://[::1]:1");
        assert_eq!(
            server_url("10.0.0.1:2".parse().unwrap()),
            "http://10.0.0.1:2"
        );
    }
}
