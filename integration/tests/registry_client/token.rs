//! A real docker-registry with token auth (`auth.token`), and a tiny token server beside it that signs RS256
//! JWTs with a key and self-signed certificate made by `openssl` (the registry trusts the certificate through
//! `rootcertbundle`; each token carries it in `x5c`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use imagestreams_integration::fake_registry::base64_encode;
use imagestreams_integration::{ImageBuilder, TestDir, binaries, free_port};
use imagestreams_registry_client::{Credential, Keyring};

use crate::{client, expect_reason, fast_limits, repo};

const SERVICE: &str = "imagestreams-token-test";
const ISSUER: &str = "imagestreams-test-issuer";
const USER: &str = "bob";
const PASSWORD: &str = "t0ken-Server-Pa55-never-logged";

/// How to install `openssl`, which makes the signing key and signs the tokens.
const OPENSSL_HINT: &str = "install it with `apt-get install openssl`";

struct TokenState {
    dir: PathBuf,
    key: PathBuf,
    cert_der_b64: String,
    issued: Mutex<u32>,
}

/// The token server, stopped on drop.
struct TokenServer {
    port: u16,
    state: Arc<TokenState>,
    task: tokio::task::JoinHandle<()>,
    // Holds the key and certificate.
    _dir: TestDir,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(cmd: &mut tokio::process::Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn base64url(bytes: &[u8]) -> String {
    base64_encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

impl TokenServer {
    async fn start() -> anyhow::Result<Self> {
        let openssl = binaries::require("openssl", OPENSSL_HINT);
        let dir = TestDir::new("token-server")?;
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let der = dir.join("cert.der");
        run(tokio::process::Command::new(&openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=imagestreams-token-test"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert))
        .await?;
        run(tokio::process::Command::new(&openssl)
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .arg("-out")
            .arg(&der))
        .await?;
        let state = Arc::new(TokenState {
            dir: dir.path().to_owned(),
            key,
            cert_der_b64: base64_encode(&std::fs::read(&der)?),
            issued: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let app = Router::new()
            .route("/token", axum::routing::get(issue))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TokenServer {
            port,
            state,
            task,
            _dir: dir,
        })
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    fn cert_path(&self) -> PathBuf {
        self.state.dir.join("cert.pem")
    }

    fn issued(&self) -> u32 {
        *self.state.issued.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `GET /token?service=…&scope=…`: the requested actions for the right Basic credentials, none for anonymous
/// callers, 401 for wrong credentials.
async fn issue(
    State(state): State<Arc<TokenState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let right = format!(
        "Basic {}",
        base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let granted = match auth {
        None => false,
        Some(a) if a == right => true,
        Some(_) => return (StatusCode::UNAUTHORIZED, "bad credentials").into_response(),
    };
    let scopes: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let access: Vec<serde_json::Value> = if granted {
        scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
                }))
            })
            .collect()
    } else {
        Vec::new()
    };
    match sign(&state, access).await {
        Ok(token) => {
            *state.issued.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            axum::Json(serde_json::json!({ "token": token, "expires_in": 300 })).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn percent_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An RS256 JWT with the distribution claims, signed by `openssl dgst`.
async fn sign(state: &TokenState, access: Vec<serde_json::Value>) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [state.cert_der_b64] });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let id = uuid::Uuid::new_v4();
    let input_path = state.dir.join(format!("{id}.in"));
    std::fs::write(&input_path, &input)?;
    let signature = run(
        tokio::process::Command::new(binaries::require("openssl", OPENSSL_HINT))
            .args(["dgst", "-sha256", "-sign"])
            .arg(&state.key)
            .arg(&input_path),
    )
    .await?;
    let _ = std::fs::remove_file(&input_path);
    Ok(format!("{input}.{}", base64url(&signature)))
}

/// A docker-registry trusting the token server, killed on drop.
struct TokenRegistry {
    port: u16,
    _child: tokio::process::Child,
    log: PathBuf,
    _dir: TestDir,
}

impl TokenRegistry {
    async fn start(tokens: &TokenServer) -> anyhow::Result<Self> {
        let dir = TestDir::new("token-registry")?;
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage)?;
        let port = free_port()?;
        let config = serde_json::json!({
            "version": "0.1",
            "log": { "level": "info", "formatter": "text" },
            "storage": { "filesystem": { "rootdirectory": storage }, "delete": { "enabled": true } },
            "http": { "addr": format!("127.0.0.1:{port}"), "secret": uuid::Uuid::new_v4().to_string() },
            "auth": { "token": {
                "realm": tokens.realm(),
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": tokens.cert_path(),
            } },
        });
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
        let log = dir.join("registry.log");
        let log_file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binaries::docker_registry())
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("spawning docker-registry")?;
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answered = http
                .get(format!("http://127.0.0.1:{port}/v2/"))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED);
            if answered {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "docker-registry with token auth did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(TokenRegistry {
            port,
            _child: child,
            log,
            _dir: dir,
        })
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

#[tokio::test]
async fn token_auth_registry_needs_the_right_credentials() -> anyhow::Result<()> {
    let tokens = TokenServer::start().await?;
    let registry = TokenRegistry::start(&tokens).await?;
    let image = ImageBuilder::new().build().await?;
    let digest = image
        .push(
            &format!("{}/team/app:1", registry.host()),
            Some((USER, PASSWORD)),
        )
        .await
        .with_context(|| std::fs::read_to_string(&registry.log).unwrap_or_default())?;

    let mut keyring = Keyring::new();
    keyring.insert(&registry.host(), Credential::basic(USER, PASSWORD))?;
    let c = client(fast_limits());
    let r = repo(&c, &registry.host(), "team/app", &keyring);
    let before = tokens.issued();
    assert_eq!(c.list_tags(&r).await?.tags, ["1"]);
    assert_eq!(c.digest(&r, "1").await?.digest, digest);
    assert_eq!(c.digest(&r, &digest).await?.digest, digest);
    assert_eq!(
        tokens.issued() - before,
        1,
        "one token for repository:team/app:pull, then cached"
    );

    let mut wrong = Keyring::new();
    wrong.insert(&registry.host(), Credential::basic(USER, "wrong-Pa55"))?;
    for keyring in [wrong, Keyring::new()] {
        let c = client(fast_limits());
        let r = repo(&c, &registry.host(), "team/app", &keyring);
        for e in [
            expect_reason(c.list_tags(&r).await, "Unauthorized"),
            expect_reason(c.digest(&r, "1").await, "Unauthorized"),
        ] {
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains(PASSWORD) && !shown.contains("wrong-Pa55"),
                "{shown}"
            );
        }
    }
    let log = std::fs::read_to_string(&registry.log)?;
    assert!(
        !log.contains(PASSWORD),
        "the registry log holds the password"
    );
    Ok(())
}

#[tokio::test]
async fn images_are_mirrored_to_a_token_registry_with_push_scope() -> anyhow::Result<()> {
    use imagestreams_integration::{
        Registry, RegistryOptions, blob_uploads, push_unique_image, raw_digest,
    };
    use imagestreams_registry_client::mirror::CopyOptions;

    let tokens = TokenServer::start().await?;
    let registry = TokenRegistry::start(&tokens).await?;
    let source = Registry::start(RegistryOptions::default()).await?;
    let digest = push_unique_image(&source, "src/app:1").await?;
    let c = client(fast_limits());
    let from = repo(&c, &source.host(), "src/app", &Keyring::new());

    let mut keyring = Keyring::new();
    keyring.insert(&registry.host(), Credential::basic(USER, PASSWORD))?;
    let to = repo(&c, &registry.host(), "team/mirrored", &keyring);
    let report = c
        .copy_image(&from, "1", &to, "1", &CopyOptions::default())
        .await?;
    assert_eq!(
        (report.digest.as_str(), report.uploaded),
        (digest.as_str(), 2)
    );
    let image = format!("{}/team/mirrored:1", registry.host());
    assert_eq!(raw_digest(&image, Some((USER, PASSWORD))).await?, digest);
    assert_eq!(blob_uploads(&registry.log, "team/mirrored"), 2);
    let again = c
        .copy_image(&from, "1", &to, "1", &CopyOptions::default())
        .await?;
    assert_eq!(again.uploaded, 0, "{again:?}");
    assert_eq!(blob_uploads(&registry.log, "team/mirrored"), 2);

    // without the right credentials the token server grants nothing
    let mut wrong = Keyring::new();
    wrong.insert(&registry.host(), Credential::basic(USER, "wrong-Pa55"))?;
    for keyring in [wrong, Keyring::new()] {
        let refused = repo(&c, &registry.host(), "team/refused", &keyring);
        let e = expect_reason(
            c.copy_image(&from, "1", &refused, "1", &CopyOptions::default())
                .await,
            "Unauthorized",
        );
        assert!(!format!("{e:?}").contains("wrong-Pa55"), "{e:?}");
    }
    let check = repo(&c, &registry.host(), "team/refused", &keyring);
    expect_reason(c.digest(&check, "1").await, "NotFound");
    Ok(())
}
