//! A spawned child process whose output goes to a log file, killed on drop.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How many log lines to show when a server fails.
pub(crate) const DEFAULT_LOG_TAIL_LINES: usize = 40;

/// A child process with stdout and stderr appended to `log_path`.
#[derive(Debug)]
pub(crate) struct LoggedChild {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl LoggedChild {
    /// Spawns `cmd`, appending its stdout and stderr to `log_path`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> anyhow::Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log file handle")?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGKILL and reaps the process.
    pub(crate) fn kill(&mut self) -> io::Result<ExitStatus> {
        // An already exited child makes kill fail or no-op; wait still reaps it.
        let _ = self.child.kill();
        self.child.wait()
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) -> io::Result<()> {
        let pid = rustix::process::Pid::from_child(&self.child);
        Ok(rustix::process::kill_process(pid, signal)?)
    }

    /// Sends SIGTERM, waits up to `grace` for the process to exit, then kills it.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill()
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log {} (last {DEFAULT_LOG_TAIL_LINES} lines) ---\n{}",
                self.name,
                self.log_path.display(),
                log_tail(&self.log_path, DEFAULT_LOG_TAIL_LINES)
            );
        }
    }
}

/// The last `lines` lines of the file at `path`, or a note saying why it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// The length of the file at `path`, 0 if it does not exist.
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The text of the file at `path` from byte `offset` on (lossy UTF-8), empty if unreadable.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
