//! TLS on the gateway's listeners (rustls on aws-lc-rs, the backend already
//! in the tree): the PEM certificate chain and key of `[gateway.tls]`,
//! loaded and checked once at start ([`ServerTls`]), served by tonic on the
//! gRPC port and by [`TlsListener`] on the HTTP port. The key is read into
//! memory only; it is never logged and `Debug` does not print it.

use std::{
    fmt, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::config::TlsConfig;

/// How long a client may take to finish the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A file holds no PEM certificate, or no PEM private key.
    #[error("{} holds no PEM {what}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the pair (for example, the key is not the certificate's).
    #[error("the certificate {} and the key {} do not make a TLS identity", .cert.display(), .key.display())]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Cause.
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider of every TLS config made here: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process's default provider, for the TLS configs that
/// libraries build themselves (tonic's server): with both rustls backends
/// in the tree, rustls would not pick one. Idempotent.
pub fn install_default_provider() {
    // an error only says that a default is already installed
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A server's certificate chain and private key, checked to form a TLS
/// identity.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    http: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

impl ServerTls {
    /// Reads and checks `config`'s certificate chain and key.
    pub fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        install_default_provider();
        let cert_pem = read(&config.cert_file)?;
        let key_pem = read(&config.key_file)?;
        let pem_error = |path: &Path, what| TlsError::Pem {
            path: path.to_owned(),
            what,
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| pem_error(&config.cert_file, "certificate"))?;
        if chain.is_empty() {
            return Err(pem_error(&config.cert_file, "certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| pem_error(&config.key_file, "private key"))?;
        let mut http = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|source| TlsError::Identity {
                cert: config.cert_file.clone(),
                key: config.key_file.clone(),
                source,
            })?;
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert_pem,
            key_pem,
            http: Arc::new(http),
        })
    }

    /// The gRPC server's TLS settings (tonic; HTTP/2 by ALPN).
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .timeout(DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// The HTTP server's TLS settings (HTTP/2 and HTTP/1.1 by ALPN).
    pub fn http(&self) -> Arc<ServerConfig> {
        self.http.clone()
    }

    /// The HTTP server's TLS settings, asking clients for a certificate
    /// that verifies against the CA(s) in `client_ca_file` (with the
    /// client-auth usage): optional, so clients without one still connect;
    /// one that does not verify fails the handshake.
    pub fn http_with_client_ca(
        &self,
        client_ca_file: &Path,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let pem = read(client_ca_file)?;
        let pem_error = || TlsError::Pem {
            path: client_ca_file.to_owned(),
            what: "certificate",
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|_| pem_error())?)
                .map_err(|_| pem_error())?;
        }
        if roots.is_empty() {
            return Err(pem_error());
        }
        let identity = |source| TlsError::Identity {
            cert: client_ca_file.to_owned(),
            key: client_ca_file.to_owned(),
            source,
        };
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| identity(rustls::Error::General(e.to_string())))?;
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| pem_error())?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|_| pem_error())?;
        let mut http = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)
            })
            .map_err(identity)?;
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(http))
    }
}

/// A TLS listener for `axum::serve`: a task accepts TCP connections and
/// runs each handshake in a task of its own (with
/// [`DEFAULT_HANDSHAKE_TIMEOUT`]), so a slow or plaintext client never
/// holds up the others; finished handshakes are handed over in order.
/// A failed handshake is logged at debug level and dropped.
#[derive(Debug)]
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`; must be called in a tokio runtime.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    // the server is gone
                    _ = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // out of file descriptors and the like: let it pass
                            tracing::warn!(error = crate::error::chain(&error), "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(DEFAULT_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, error = crate::error::chain(&error), "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            accepted,
            local_addr,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // can't happen: the accepting task lives as long as this receiver
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
