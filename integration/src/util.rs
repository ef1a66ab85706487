//! Small helpers the kit shares: free ports, temporary directories that can be kept, and polling.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Set this environment variable (to anything) to keep every [`TestDir`] after the test, for inspection.
pub const KEEP_TMP_ENV: &str = "IMAGESTREAMS_KEEP_TMP";

/// How often [`wait_for`] and [`wait_for_some`] poll.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process may take it: callers that spawn a server on it
/// must retry with a new port when the bind fails.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A temporary directory removed on drop, unless [`KEEP_TMP_ENV`] is set, in which case it is kept and its path printed.
#[derive(Debug)]
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// Creates a new temporary directory whose name starts with `imagestreams-<prefix>-`.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("imagestreams-{prefix}-"))
            .tempdir()
            .context("creating a temporary directory")?;
        let path = dir.path().to_path_buf();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path().join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Keeps the directory on disk and returns its path.
    pub fn keep(mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _kept = dir.keep();
        }
        self.path.clone()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_TMP_ENV).is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("{KEEP_TMP_ENV} is set: kept {}", dir.keep().display());
        }
    }
}

/// Polls `cond` every [`DEFAULT_POLL_INTERVAL`] until it returns `true`, failing after `timeout`.
///
/// The deadline is measured in real time, since it waits for real processes, even when tokio's clock is paused.
pub async fn wait_for<F, Fut>(mut cond: F, timeout: Duration) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some(
        move || {
            let fut = cond();
            async move { fut.await.then_some(()) }
        },
        timeout,
    )
    .await
}

/// Waits until `GET http://127.0.0.1:<http_port>/readyz` answers 2xx (a process started and connected to
/// NATS), failing after `timeout`.
pub async fn wait_ready(http_port: u16, timeout: Duration) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{http_port}/readyz");
    wait_for(
        || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        },
        timeout,
    )
    .await
    .with_context(|| format!("{url} never ready"))
}

/// Polls `probe` every [`DEFAULT_POLL_INTERVAL`] until it returns `Some`, failing after `timeout`.
pub async fn wait_for_some<T, F, Fut>(mut probe: F, timeout: Duration) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(DEFAULT_POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_nonzero_and_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[tokio::test]
    async fn wait_for_times_out_with_an_error() {
        let err = wait_for(|| async { false }, Duration::from_millis(60)).await;
        assert!(err.is_err());
        let mut n = 0;
        let got = wait_for_some(
            || {
                n += 1;
                let n = n;
                async move { (n >= 3).then_some(n) }
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(got, 3);
    }
}
