//! The service binaries (`stepup-challenge`, `stepup-callback`, `stepup-verifier`,
//! `stepup-audit`) as child processes, so fault tests can end them for real: SIGKILL as a
//! crash would, SIGTERM as an orchestrator's rolling restart does.
//!
//! The binaries are built once per test binary with the same `cargo build` command that
//! `scripts/test.sh` runs before the tests, so when the script already built them the
//! command does nothing. They are taken from the target directory the test binary itself
//! runs from (`target/debug`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::OnceCell;
use tokio::time::{Instant, sleep};

use crate::read_log;

/// The services that have a binary of their own.
pub const SERVICES: [&str; 4] = ["challenge", "callback", "verifier", "audit"];

/// How long a started service may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors from building, starting or stopping a service process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot find the target directory from the test binary's path: {0}")]
    TargetDir(String),
    #[error("running `cargo build` for the service binaries failed: {0}")]
    Build(String),
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing or reading a file of the {service} process: {source}")]
    File {
        service: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{service} exited with {status} before it was ready (log below):\n{log}")]
    ExitedEarly {
        service: String,
        status: ExitStatus,
        log: String,
    },
    #[error("{service} did not report ready at {url} within {timeout:?} (log below):\n{log}")]
    NotReady {
        service: String,
        url: String,
        timeout: Duration,
        log: String,
    },
    #[error("signalling or waiting for {service}: {detail}")]
    Signal { service: String, detail: String },
}

/// Builds the service binaries (once per test process) and returns their directory.
pub async fn service_binaries() -> Result<PathBuf, ProcessError> {
    static BUILT: OnceCell<PathBuf> = OnceCell::const_new();
    BUILT
        .get_or_try_init(|| async {
            let dir = target_dir()?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut command = Command::new(cargo);
            command.current_dir(crate::workspace_root()).arg("build");
            for service in SERVICES {
                command.args(["-p", &format!("stepup-{service}")]);
            }
            // The all-in-one binary, for the command-line tests.
            command.args(["-p", "stepup"]);
            let output = command
                .arg("--bins")
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|error| ProcessError::Build(error.to_string()))?;
            if !output.status.success() {
                return Err(ProcessError::Build(
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                ));
            }
            Ok(dir)
        })
        .await
        .cloned()
}

/// Returns `target/debug`: the test binary runs from `target/debug/deps`.
fn target_dir() -> Result<PathBuf, ProcessError> {
    let exe = std::env::current_exe().map_err(|e| ProcessError::TargetDir(e.to_string()))?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| ProcessError::TargetDir(exe.display().to_string()))
}

/// One running (or stopped) service process.
#[derive(Debug)]
pub struct ServiceProcess {
    /// `challenge`, `callback`, `verifier` or `audit`.
    pub service: String,
    /// A name for logs and messages, such as `challenge-2`.
    pub name: String,
    binary: PathBuf,
    config: PathBuf,
    log_path: PathBuf,
    /// The `/readyz` URL of the service's HTTP listener.
    ready_url: String,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `service` with the configuration file `config` and waits until its
    /// `/readyz` answers 200. The process's output is appended to `log_path`.
    pub async fn start(
        service: &str,
        name: &str,
        config: &Path,
        ready_url: &str,
        log_path: &Path,
    ) -> Result<Self, ProcessError> {
        let binary = service_binaries().await?.join(format!("stepup-{service}"));
        let mut process = Self {
            service: service.to_owned(),
            name: name.to_owned(),
            binary,
            config: config.to_path_buf(),
            log_path: log_path.to_path_buf(),
            ready_url: ready_url.to_owned(),
            child: None,
        };
        process.launch().await?;
        Ok(process)
    }

    /// Returns whether the process was started and not yet stopped by this handle.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Returns the process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Returns the process's output so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Ends the process with SIGKILL, as a crash would, and waits for it.
    pub async fn kill(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .await
                .map_err(|error| self.signal_error(error))?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status. A process that does
    /// not exit in time is killed and reported as an error.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        let Some(mut child) = self.child.take() else {
            return Err(self.signal_error("the process is not running"));
        };
        let Some(pid) = child.id() else {
            return Err(self.signal_error("the process has no id"));
        };
        // `kill` from procps sends the signal; the workspace forbids the unsafe code a
        // direct libc call would need.
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .map_err(|error| self.signal_error(error))?;
        if !status.success() {
            return Err(self.signal_error(format!("kill -TERM {pid} exited with {status}")));
        }
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(waited) => waited.map_err(|error| self.signal_error(error)),
            Err(_) => {
                let _ = child.kill().await;
                Err(self.signal_error(format!("did not exit within {timeout:?} of SIGTERM")))
            }
        }
    }

    /// Kills the process and starts it again with the same configuration, waiting until
    /// it is ready.
    pub async fn restart(&mut self) -> Result<(), ProcessError> {
        self.start_again().await
    }

    /// Starts a killed process again and waits until it is ready.
    pub async fn start_again(&mut self) -> Result<(), ProcessError> {
        self.kill().await?;
        self.launch().await
    }

    /// Returns the `/readyz` status code, or `None` when nothing answers.
    pub async fn readiness(&self) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let response = client.get(&self.ready_url).send().await.ok()?;
        Some(response.status().as_u16())
    }

    async fn launch(&mut self) -> Result<(), ProcessError> {
        let file_error = |source| ProcessError::File {
            service: self.name.clone(),
            source,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(file_error)?;
        let log_for_stderr = log.try_clone().map_err(file_error)?;

        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);

        let result = self.wait_until_ready().await;
        if result.is_err() {
            self.kill().await?;
        }
        result
    }

    async fn wait_until_ready(&mut self) -> Result<(), ProcessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(ProcessError::ExitedEarly {
                    service: self.name.clone(),
                    status,
                    log: self.log(),
                });
            }
            if self.readiness().await == Some(200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::NotReady {
                    service: self.name.clone(),
                    url: self.ready_url.clone(),
                    timeout: READY_TIMEOUT,
                    log: self.log(),
                });
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal_error(&self, detail: impl std::fmt::Display) -> ProcessError {
        ProcessError::Signal {
            service: self.name.clone(),
            detail: detail.to_string(),
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
