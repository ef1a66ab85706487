//! `up` on a bare machine: when nothing listens at a loopback `nats.url`, start
//! a local `nats-server -js` (data under `nats.store_dir`) for the life of the
//! process.

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;
use imagestreams_common::config::NatsConfig;
use tokio::{net::TcpStream, process::Child};

/// The oldest nats-server with the JetStream API the services use (batch
/// direct gets, for the stream layout).
const MIN_VERSION: (u32, u32) = (2, 11);

/// A nats-server this process started.
pub struct LocalNats {
    child: Child,
}

impl LocalNats {
    /// Starts a local server if `cfg` allows it, the URL is a loopback address
    /// where nothing listens, and a current `nats-server` binary is found
    /// (`NATS_SERVER`, then `PATH`, then `.imagestreams/bin`).
    pub async fn ensure(cfg: &NatsConfig) -> anyhow::Result<Option<LocalNats>> {
        let Some(addr) = loopback_addr(&cfg.url) else {
            return Ok(None);
        };
        if !cfg.auto_start || TcpStream::connect(addr).await.is_ok() {
            return Ok(None);
        }
        let Some(binary) = find_binary().await else {
            tracing::warn!(
                "nothing listens at {} and no nats-server ≥ 2.11 was found to start",
                cfg.url
            );
            return Ok(None);
        };
        std::fs::create_dir_all(&cfg.store_dir)
            .with_context(|| format!("creating {}", cfg.store_dir.display()))?;
        let log = std::fs::File::create(cfg.store_dir.join("nats-server.log"))?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .arg(EXEC_WITH_PARENT)
            .arg(std::process::id().to_string())
            .arg(&binary)
            .arg("--")
            .args([
                "-js",
                "-a",
                &addr.ip().to_string(),
                "-p",
                &addr.port().to_string(),
            ])
            .arg("--store_dir")
            .arg(&cfg.store_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                tracing::info!(
                    binary = %binary.display(),
                    store_dir = %cfg.store_dir.display(),
                    "started a local nats-server at {}", cfg.url
                );
                return Ok(Some(LocalNats { child }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "started {} but it does not listen at {}; see {}",
            binary.display(),
            cfg.url,
            cfg.store_dir.join("nats-server.log").display()
        )
    }

    /// Stops the server gracefully (SIGTERM), or kills it after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The hidden verb `up` starts its nats-server through: see [`exec_with_parent`].
pub const EXEC_WITH_PARENT: &str = "exec-with-parent";

/// Runs `program` with `args` in place of this process (exec), after asking
/// the kernel to send it SIGTERM when `parent` dies, however it dies.
///
/// `up` starts its nats-server through this (`imagestreams exec-with-parent
/// PID nats-server ARGS…`): `kill_on_drop` and [`LocalNats::stop`] cover
/// every exit of `up` but a SIGKILL, after which the server would run on,
/// holding the port and the store, and the next `up` would quietly use the
/// orphan. The death signal survives the exec. (It goes when the *thread*
/// that started the child ends: `up` starts the server from its main future,
/// on the thread that lives as long as the process.) Returns only on failure.
pub fn exec_with_parent(parent: u32, program: &Path, args: &[OsString]) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
    {
        return anyhow::Error::new(e).context("asking for a parent-death signal");
    }
    // the parent died before the request took effect: no one is left to
    // signal the child, so it must not start
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32) != Some(parent) {
        return anyhow::anyhow!("the process that started this one is gone");
    }
    let e = std::process::Command::new(program).args(args).exec();
    anyhow::Error::new(e).context(format!("starting {}", program.display()))
}

fn loopback_addr(url: &str) -> Option<SocketAddr> {
    if url.contains(',') {
        return None;
    }
    let hostport = url.strip_prefix("nats://").unwrap_or(url);
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = hostport.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "localhost" => [127, 0, 0, 1].into(),
        h => h.parse().ok()?,
    };
    let addr = SocketAddr::new(ip, port);
    addr.ip().is_loopback().then_some(addr)
}

async fn find_binary() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates.push(PathBuf::from(".imagestreams/bin/nats-server"));
    for candidate in candidates {
        if candidate.is_file() && version_ok(&candidate).await {
            return Some(candidate);
        }
    }
    None
}

async fn version_ok(binary: &PathBuf) -> bool {
    let Ok(out) = tokio::process::Command::new(binary)
        .arg("--version")
        .output()
        .await
    else {
        return false;
    };
    // "nats-server: v2.15.1"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().rsplit('v').next().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= MIN_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_started_locally() {
        assert_eq!(
            loopback_addr("nats://127.0.0.1:4222"),
            Some(([127, 0, 0, 1], 4222).into())
        );
        assert_eq!(
            loopback_addr("nats://localhost:4333"),
            Some(([127, 0, 0, 1], 4333).into())
        );
        assert_eq!(
            loopback_addr("nats://u:p@127.0.0.1:4222"),
            Some(([127, 0, 0, 1], 4222).into())
        );
        assert_eq!(loopback_addr("nats://10.0.0.1:4222"), None);
        assert_eq!(loopback_addr("nats://nats.example:4222"), None);
        assert_eq!(loopback_addr("nats://127.0.0.1:1,nats://127.0.0.1:2"), None);
    }
}
