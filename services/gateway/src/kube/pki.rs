//! The local CA and serving certificate of the Kubernetes-compatible API,
//! made on first start when no certificate is configured, so that kubectl
//! (which sends tokens only over TLS) works on a fresh machine.
//!
//! Three files in `[gateway.kube] pki_dir`, each 0600: `ca.crt` (what
//! kubeconfigs trust), `tls.crt` (the serving certificate for `localhost`,
//! `127.0.0.1`, `::1` and the listen address, then the CA) and `tls.key`.
//! They are reused while all three exist; the CA's key is never kept: to
//! rotate, delete the directory and start again (`up` rewrites its
//! kubeconfig on every start).

use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use imagestreams_common::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// The CA certificate's file name.
pub const CA_FILE: &str = "ca.crt";
/// The serving certificate chain's file name.
pub const CERT_FILE: &str = "tls.crt";
/// The serving key's file name.
pub const KEY_FILE: &str = "tls.key";
/// How long the local certificates are valid, in days.
pub const VALIDITY_DAYS: u32 = 5 * 365;

/// Why the local PKI could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be written or read.
    #[error("cannot write or read {}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// rcgen failed.
    #[error("cannot make the local CA or serving certificate")]
    Generate(#[source] rcgen::Error),
}

/// The local PKI's files.
#[derive(Debug, Clone)]
pub struct LocalPki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The serving identity's files.
    pub tls: TlsConfig,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The PKI in `dir`, made when any of its files is missing.
pub fn ensure(dir: &Path, listen: SocketAddr) -> Result<LocalPki, PkiError> {
    let (ca, cert, key) = (dir.join(CA_FILE), dir.join(CERT_FILE), dir.join(KEY_FILE));
    let tls = TlsConfig {
        cert_file: cert.clone(),
        key_file: key.clone(),
    };
    if ca.exists() && cert.exists() && key.exists() {
        let ca_pem = std::fs::read_to_string(&ca).map_err(io(&ca))?;
        return Ok(LocalPki { ca_pem, tls });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let made = generate(listen).map_err(PkiError::Generate)?;
    write_private(&ca, &made.ca_pem)?;
    write_private(&key, &made.key_pem)?;
    write_private(&cert, &made.chain_pem)?;
    tracing::info!(
        dir = %dir.display(),
        "first start: made a local CA and serving certificate for the Kubernetes-compatible API"
    );
    Ok(LocalPki {
        ca_pem: made.ca_pem,
        tls,
    })
}

/// Writes `content` to a new file readable by its owner only.
pub fn write_private(path: &Path, content: &str) -> Result<(), PkiError> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(content.as_bytes()).map_err(io(path))
}

struct Made {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

fn params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    crate::registry_token::keys::params(common_name, VALIDITY_DAYS)
}

fn generate(listen: SocketAddr) -> Result<Made, rcgen::Error> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = params("imagestreams local CA")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.ip().is_unspecified() && !names.contains(&listen.ip().to_string()) {
        names.push(listen.ip().to_string());
    }
    let mut serving = params("imagestreams")?;
    serving.subject_alt_names = CertificateParams::new(names)?.subject_alt_names;
    serving.is_ca = IsCa::ExplicitNoCa;
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let leaf = serving.signed_by(&key, &issuer)?;
    Ok(Made {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use imagestreams_common::tls::ServerTls;

    use super::*;

    #[test]
    fn the_pki_is_made_private_loads_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let listen: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let made = ensure(&pki_dir, listen).unwrap();
        ServerTls::load(&made.tls).expect("the serving identity loads");
        for file in [CA_FILE, CERT_FILE, KEY_FILE] {
            let mode = std::fs::metadata(pki_dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let again = ensure(&pki_dir, listen).unwrap();
        assert_eq!(again.ca_pem, made.ca_pem, "reused, not remade");
        std::fs::remove_file(pki_dir.join(KEY_FILE)).unwrap();
        let remade = ensure(&pki_dir, listen).unwrap();
        assert_ne!(remade.ca_pem, made.ca_pem);
    }
}
