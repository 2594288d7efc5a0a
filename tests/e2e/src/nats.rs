//! A `nats-server` with JetStream for one test, on a free loopback port and
//! with its own store directory.
//!
//! The binary comes from `STEPUP_NATS_SERVER`, else from
//! `.stepup/tools/bin/nats-server` (installed by `scripts/install-deps.sh`),
//! else from `PATH`. Versions below 2.10 are rejected because the services
//! create consumers with several filter subjects, which 2.9 does not support.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use crate::{free_port, read_log, workspace_root};

/// Environment variable that names the `nats-server` binary to use.
pub const BINARY_ENV: &str = "STEPUP_NATS_SERVER";

/// Oldest supported server version, as (major, minor).
const MIN_VERSION: (u32, u32) = (2, 10);

/// How long [`NatsServer::start`] waits for the server to accept clients.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one readiness probe waits for the server's `INFO` line.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How many ports [`NatsServer::start`] tries when another process takes the
/// free port first.
const PORT_ATTEMPTS: usize = 3;

/// Errors from finding, starting or stopping `nats-server`.
#[derive(thiserror::Error)]
pub enum NatsError {
    #[error(
        "nats-server not found (looked at ${BINARY_ENV}, {local} and PATH): run scripts/install-deps.sh"
    )]
    BinaryNotFound { local: PathBuf },

    #[error(
        "failed to run `{binary} --version`: {source}: run scripts/install-deps.sh or fix ${BINARY_ENV}"
    )]
    VersionCheck {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{binary} --version` timed out after {timeout:?}")]
    VersionCheckTimedOut { binary: PathBuf, timeout: Duration },

    #[error("cannot parse the version of {binary} from {output:?}, expected `nats-server: vX.Y.Z`")]
    UnparsableVersion { binary: PathBuf, output: String },

    #[error(
        "{binary} is version {major}.{minor}, expected 2.10 or newer because the services create consumers with several filter subjects: run scripts/install-deps.sh or set ${BINARY_ENV}"
    )]
    TooOld {
        binary: PathBuf,
        major: u32,
        minor: u32,
    },

    #[error("failed to prepare the nats-server directory or port: {0}")]
    Setup(#[source] std::io::Error),

    #[error("failed to start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("nats-server exited with {status} before it accepted clients (log below):\n{log}")]
    ExitedEarly { status: ExitStatus, log: String },

    #[error(
        "nats-server on port {port} did not accept clients within {timeout:?} (log below):\n{log}"
    )]
    NotReady {
        port: u16,
        timeout: Duration,
        log: String,
    },

    #[error("failed to stop or poll the nats-server process: {0}")]
    Stop(#[source] std::io::Error),
}

// Tests that return `Result` print the error with `Debug`, so it shows the
// message, with the process log on its own lines, instead of the fields.
impl std::fmt::Debug for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A running `nats-server`, killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    // Declared before `dir` so that the process ends before its directory is
    // removed.
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    /// A configuration file passed with `-c`, such as one with users and permissions.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port of 127.0.0.1 and waits
    /// until it sends its `INFO` line to a client.
    pub async fn start() -> Result<Self, NatsError> {
        Self::start_with_config(None).await
    }

    /// Starts a server like [`start`](Self::start) that also reads `config` (users,
    /// permissions, TLS). The port, address and store directory given on the command line
    /// take precedence over the file's.
    pub async fn start_with_config(config: Option<PathBuf>) -> Result<Self, NatsError> {
        let binary = find_binary()?;
        check_version(&binary).await?;

        let mut attempt = 1;
        loop {
            let mut server = Self {
                child: None,
                binary: binary.clone(),
                port: free_port().map_err(NatsError::Setup)?,
                dir: new_store_root()?,
                config: config.clone(),
            };

            match server.launch().await {
                Ok(()) => return Ok(server),
                // Another process may have taken the port between
                // `free_port` and the server's bind, so try another one.
                Err(_)
                    if attempt < PORT_ATTEMPTS
                        && server.log().contains("address already in use") =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Returns the client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Returns the client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the JetStream store directory, which survives
    /// [`restart_keeping_store`](Self::restart_keeping_store).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Returns the path of the file that receives the server's stdout and
    /// stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Returns the server's output so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// Returns whether the server process was started and has not been
    /// stopped by [`stop`](Self::stop).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server with SIGKILL and waits for it to exit, as a crash
    /// would end it. Does nothing when it is already stopped.
    pub async fn stop(&mut self) -> Result<(), NatsError> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.map_err(NatsError::Stop)?;
        }
        Ok(())
    }

    /// Stops the server if it runs and starts it again on the same port with
    /// the same JetStream store, so streams and consumers survive.
    pub async fn restart_keeping_store(&mut self) -> Result<(), NatsError> {
        self.stop().await?;
        self.launch().await
    }

    /// Spawns the process on `self.port` and waits until it is ready.
    async fn launch(&mut self) -> Result<(), NatsError> {
        let log = self.open_log()?;
        let log_for_stderr = log.try_clone().map_err(NatsError::Setup)?;

        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NatsError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);

        let result = self.wait_until_ready().await;
        if result.is_err() {
            // A server that never became ready must not linger.
            self.stop().await?;
        }
        result
    }

    fn open_log(&self) -> Result<File, NatsError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(NatsError::Setup)
    }

    async fn wait_until_ready(&mut self) -> Result<(), NatsError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status()? {
                self.child = None;
                return Err(NatsError::ExitedEarly {
                    status,
                    log: self.log(),
                });
            }

            if sends_info(self.port).await {
                return Ok(());
            }

            if Instant::now() >= deadline {
                return Err(NatsError::NotReady {
                    port: self.port,
                    timeout: READY_TIMEOUT,
                    log: self.log(),
                });
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn exit_status(&mut self) -> Result<Option<ExitStatus>, NatsError> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map_err(NatsError::Stop),
            None => Ok(None),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // `kill_on_drop` would also do this; starting the kill here
            // makes it happen before the store directory is removed.
            let _ = child.start_kill();
        }
    }
}

/// Connects to the port and returns whether the server sent its `INFO` line.
async fn sends_info(port: u16) -> bool {
    let probe = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        Some(line.starts_with("INFO "))
    };
    matches!(timeout(PROBE_TIMEOUT, probe).await, Ok(Some(true)))
}

fn new_store_root() -> Result<TempDir, NatsError> {
    tempfile::Builder::new()
        .prefix("stepup-nats-")
        .tempdir()
        .map_err(NatsError::Setup)
}

fn local_binary() -> PathBuf {
    workspace_root().join(".stepup/tools/bin/nats-server")
}

fn find_binary() -> Result<PathBuf, NatsError> {
    if let Some(path) = std::env::var_os(BINARY_ENV).filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(path));
    }

    let local = local_binary();
    if local.is_file() {
        return Ok(local);
    }

    search_path(std::env::var_os("PATH")).ok_or(NatsError::BinaryNotFound { local })
}

fn search_path(path: Option<OsString>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

async fn check_version(binary: &Path) -> Result<(), NatsError> {
    const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

    let run = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = timeout(VERSION_TIMEOUT, run)
        .await
        .map_err(|_| NatsError::VersionCheckTimedOut {
            binary: binary.to_path_buf(),
            timeout: VERSION_TIMEOUT,
        })?
        .map_err(|source| NatsError::VersionCheck {
            binary: binary.to_path_buf(),
            source,
        })?;

    // Old releases print the version on stderr, newer ones on stdout.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (major, minor) = parse_version(&text).ok_or_else(|| NatsError::UnparsableVersion {
        binary: binary.to_path_buf(),
        output: text.trim().to_owned(),
    })?;

    if (major, minor) < MIN_VERSION {
        return Err(NatsError::TooOld {
            binary: binary.to_path_buf(),
            major,
            minor,
        });
    }
    Ok(())
}

/// Parses `nats-server: v2.10.22` into `(2, 10)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v'))?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Writes a script that prints `output` like `nats-server --version`.
    fn fake_binary(dir: &Path, output: &str) -> PathBuf {
        std::fs::create_dir_all(dir).expect("temp dir is writable");
        let path = dir.join("nats-server");
        std::fs::write(&path, format!("#!/bin/sh\necho '{output}'\n"))
            .expect("temp dir is writable");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("temp file permissions can change");
        path
    }

    // One test runs every case in sequence: writing a script while another
    // test thread forks can make executing it fail with "text file busy".
    #[tokio::test]
    async fn check_version_enforces_minimum() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old = fake_binary(&dir.path().join("old"), "nats-server: v2.9.10");
        let current = fake_binary(&dir.path().join("current"), "nats-server: v2.10.0");

        let too_old = check_version(&old).await.expect_err("2.9 is too old");
        let accepted = check_version(&current).await;
        let missing = check_version(Path::new("/nonexistent/nats-server"))
            .await
            .expect_err("binary is missing");

        assert!(matches!(
            too_old,
            NatsError::TooOld {
                major: 2,
                minor: 9,
                ..
            }
        ));
        assert!(too_old.to_string().contains("scripts/install-deps.sh"));
        assert!(accepted.is_ok(), "{accepted:?}");
        assert!(matches!(missing, NatsError::VersionCheck { .. }));
    }

    #[test]
    fn parse_version_reads_major_and_minor() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11)));
    }

    #[test]
    fn parse_version_rejects_other_output() {
        assert_eq!(parse_version("command not found"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("nats-server: vX.Y"), None);
    }
}
