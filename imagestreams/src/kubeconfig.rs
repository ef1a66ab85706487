//! `up` writes `.imagestreams/kubeconfig` (0600) on every start, so that
//! `KUBECONFIG=.imagestreams/kubeconfig kubectl get is` works on a fresh
//! machine: the gateway's Kubernetes-compatible API at the address it
//! listens on, the local CA it made, the first admin's token (from the
//! client configuration `up` wrote), and a context in namespace `default`.
//!
//! It is written only when the API uses the local CA (`[gateway.kube.tls]`
//! unset): with a certificate of your own, write the kubeconfig with your CA.

use std::{net::SocketAddr, path::Path};

use anyhow::Context as _;
use base64::Engine as _;
use imagestreams_common::config::{Config, Secret};
use serde_json::json;

use crate::client_config::{ClientConfig, DEFAULT_CLIENT_CONFIG_FILE, create_private};

/// The names used in the kubeconfig (cluster, user, context).
pub const NAME: &str = "imagestreams";

/// The kubeconfig's text: YAML, as kubectl writes them.
pub fn render(server: &str, ca_pem: &str, token: Option<&Secret>) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = match token {
        Some(token) => json!({"token": token.expose()}),
        None => json!({}),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": NAME, "user": user}],
        "contexts": [{"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": "default"}}],
        "current-context": NAME,
        "preferences": {},
    });
    // can't fail: a JSON value is YAML
    serde_norway::to_string(&config).unwrap_or_default()
}

/// The HTTPS URL of an API listening on `addr` (unspecified becomes loopback).
pub fn server_url(addr: SocketAddr) -> String {
    crate::client_config::server_url(addr).replacen("http://", "https://", 1)
}

/// Writes the kubeconfig of `up`'s Kubernetes-compatible API at `addr`.
pub fn write(config: &Config, addr: SocketAddr) -> anyhow::Result<()> {
    let kube = &config.gateway.kube;
    if kube.tls.is_some() {
        tracing::info!(
            "gateway.kube.tls is set: no kubeconfig written; write one with your certificate's CA"
        );
        return Ok(());
    }
    let ca_path = kube.pki_dir.join(imagestreams_gateway::kube::pki::CA_FILE);
    let ca_pem = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading {}", ca_path.display()))?;
    let token = match config.auth.enabled {
        true => {
            let client = ClientConfig::read(Path::new(DEFAULT_CLIENT_CONFIG_FILE));
            if client.is_none() {
                tracing::warn!(
                    path = DEFAULT_CLIENT_CONFIG_FILE,
                    "no admin token to put in the kubeconfig (the client configuration is gone); \
                     add a user's token to it yourself"
                );
            }
            client.map(|c| c.token)
        }
        false => None,
    };
    let path = &kube.kubeconfig;
    let mut file = create_private(path).with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(
        &mut file,
        render(&server_url(addr), &ca_pem, token.as_ref()).as_bytes(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(
        path = %path.display(),
        server = %server_url(addr),
        "kubectl: KUBECONFIG={} kubectl get is",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_ca_and_token() {
        let text = render(
            "https://127.0.0.1:6443",
            "-----BEGIN CERTIFICATE-----\n",
            Some(&Secret::new("t0k")),
        );
        let value: serde_json::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(value["current-context"], NAME);
        assert_eq!(
            value["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(value["users"][0]["user"]["token"], "t0k");
        assert_eq!(value["contexts"][0]["context"]["namespace"], "default");
        assert_eq!(
            server_url("0.0.0.0:6443".parse().unwrap()),
            "https://127.0.0.1:6443"
        );
    }
}
