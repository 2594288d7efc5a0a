//! The development OpenID provider from `tests/idp`, run with Node.js for one
//! test on a free loopback port.
//!
//! [`DevIdp::start`] writes the configuration and users files into a
//! temporary directory, runs `node tests/idp/server.mjs --config FILE` and
//! waits for the single JSON line that the server prints on stdout when it
//! listens. The server's stderr and any further stdout go to a log file.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;
use url::Url;

use crate::{read_log, workspace_root};

/// Environment variable that names the Node.js binary; `node` by default.
pub const NODE_ENV: &str = "STEPUP_NODE";

/// How long [`DevIdp::start`] waits for the ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors from starting the development IdP.
#[derive(thiserror::Error)]
pub enum IdpError {
    #[error("{0} not found: run scripts/install-deps.sh")]
    NotInstalled(PathBuf),

    #[error("failed to write the IdP configuration: {0}")]
    Setup(#[source] std::io::Error),

    #[error("failed to encode the IdP configuration as JSON: {0}")]
    Encode(#[source] serde_json::Error),

    #[error(
        "failed to start `{node}`: {source}: install Node.js 20 or newer with scripts/install-deps.sh or set ${NODE_ENV}"
    )]
    Spawn {
        node: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the IdP exited with {status} before it was ready (log below):\n{log}")]
    ExitedEarly { status: ExitStatus, log: String },

    #[error("the IdP closed stdout before it was ready (log below):\n{log}")]
    NoReadyLine { log: String },

    #[error("invalid ready line {line:?} from the IdP: {reason} (log below):\n{log}")]
    InvalidReadyLine {
        line: String,
        reason: String,
        log: String,
    },

    #[error("the IdP was not ready within {timeout:?} (log below):\n{log}")]
    NotReady { timeout: Duration, log: String },

    #[error("failed to read the IdP's stdout: {0}")]
    Read(#[source] std::io::Error),
}

// Tests that return `Result` print the error with `Debug`, so it shows the
// message, with the process log on its own lines, instead of the fields.
impl std::fmt::Debug for IdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Which IdP the server imitates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Issuer `http://HOST:PORT`, `acr` and `amr` claims.
    #[default]
    Okta,
    /// Issuer `http://HOST:PORT/{tenant}/v2.0`, `acrs` claim for
    /// authentication contexts.
    Entra,
}

/// One user in the IdP's users file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpUser {
    pub login: String,
    pub password: String,
    /// Fixed one-time code; without it the user can only log in with a
    /// password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp: Option<String>,
    pub sub: String,
    /// Entra object id, required by the Entra profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Entra authentication contexts that the one-time code satisfies. When
    /// empty, the server's default (`["c1"]`) applies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
}

/// A confidential client registered at the IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
}

impl IdpClient {
    /// Creates a client that authenticates with `client_secret_basic` and
    /// has one redirect URI.
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: vec![redirect_uri.to_owned()],
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
        }
    }
}

/// What [`DevIdp::start`] writes into the server's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdpConfig {
    pub profile: Profile,
    /// Entra tenant id, part of the issuer path; ignored by Okta.
    pub tenant: String,
    pub users: Vec<IdpUser>,
    pub clients: Vec<IdpClient>,
    /// Removes `max_age` and `prompt=login` from authorization requests, so
    /// a test can get an old `auth_time` back.
    pub ignore_max_age: bool,
}

/// The configuration file's format, as `tests/idp/config.mjs` reads it.
#[derive(Serialize)]
struct ConfigFile<'a> {
    port: u16,
    host: &'a str,
    profile: Profile,
    #[serde(skip_serializing_if = "str::is_empty")]
    tenant: &'a str,
    users_file: &'a Path,
    clients: &'a [IdpClient],
    ignore_max_age: bool,
}

/// The line that the server prints on stdout once it listens.
#[derive(Deserialize)]
struct ReadyLine {
    ready: bool,
    issuer: String,
    port: u16,
}

/// The ready line after checking it.
struct Ready {
    issuer: String,
    issuer_url: Url,
    port: u16,
}

/// A running development IdP, killed when dropped.
#[derive(Debug)]
pub struct DevIdp {
    // Declared before `dir` so that the process ends before its files are
    // removed.
    child: Child,
    issuer: String,
    issuer_url: Url,
    port: u16,
    dir: TempDir,
}

impl DevIdp {
    /// Starts the IdP on a free port of 127.0.0.1 and waits until it listens.
    pub async fn start(config: IdpConfig) -> Result<Self, IdpError> {
        let server = check_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("stepup-idp-")
            .tempdir()
            .map_err(IdpError::Setup)?;
        let config_path = write_config(dir.path(), &config)?;

        let log_path = dir.path().join("idp.log");
        let log = std::fs::File::create(&log_path).map_err(IdpError::Setup)?;
        let mut child = spawn(&server, &config_path, log)?;

        let stdout = child.stdout.take();
        let ready = match stdout {
            Some(stdout) => wait_for_ready(&mut child, stdout, &log_path).await,
            None => Err(IdpError::NoReadyLine {
                log: read_log(&log_path),
            }),
        }?;

        Ok(Self {
            child,
            issuer: ready.issuer,
            issuer_url: ready.issuer_url,
            port: ready.port,
            dir,
        })
    }

    /// Returns the issuer URL exactly as the IdP puts it in tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Returns the issuer as a parsed URL.
    pub fn issuer_url(&self) -> &Url {
        &self.issuer_url
    }

    /// Returns the OpenID Connect discovery document's URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// Returns the port the IdP listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the IdP's log (its stderr as JSON lines), for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("idp.log"))
    }

    /// Kills the IdP and waits for it to exit.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.child.kill().await
    }
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Returns the path of `server.mjs` after checking that `npm ci` has run.
fn check_installed() -> Result<PathBuf, IdpError> {
    let idp_dir = workspace_root().join("tests/idp");
    let modules = idp_dir.join("node_modules/oidc-provider");
    if !modules.is_dir() {
        return Err(IdpError::NotInstalled(modules));
    }

    let server = idp_dir.join("server.mjs");
    if !server.is_file() {
        return Err(IdpError::NotInstalled(server));
    }
    Ok(server)
}

/// Writes `users.json` and `config.json` into `dir` and returns the
/// configuration's path.
fn write_config(dir: &Path, config: &IdpConfig) -> Result<PathBuf, IdpError> {
    let users_path = dir.join("users.json");
    let users = serde_json::to_vec_pretty(&config.users).map_err(IdpError::Encode)?;
    std::fs::write(&users_path, users).map_err(IdpError::Setup)?;

    let file = ConfigFile {
        port: 0,
        host: "127.0.0.1",
        profile: config.profile,
        tenant: &config.tenant,
        users_file: &users_path,
        clients: &config.clients,
        ignore_max_age: config.ignore_max_age,
    };
    let config_path = dir.join("config.json");
    let json = serde_json::to_vec_pretty(&file).map_err(IdpError::Encode)?;
    std::fs::write(&config_path, json).map_err(IdpError::Setup)?;
    Ok(config_path)
}

fn spawn(server: &Path, config_path: &Path, log: std::fs::File) -> Result<Child, IdpError> {
    let node = std::env::var(NODE_ENV).unwrap_or_else(|_| "node".to_owned());
    Command::new(&node)
        .arg(server)
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| IdpError::Spawn { node, source })
}

/// Reads the ready line, then copies the rest of stdout into the log in the
/// background so that the server never blocks on a full pipe.
async fn wait_for_ready(
    child: &mut Child,
    stdout: ChildStdout,
    log_path: &Path,
) -> Result<Ready, IdpError> {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();

    let read = timeout(READY_TIMEOUT, reader.read_line(&mut line)).await;
    let result = match read {
        Err(_) => Err(IdpError::NotReady {
            timeout: READY_TIMEOUT,
            log: read_log(log_path),
        }),
        Ok(Err(error)) => Err(IdpError::Read(error)),
        Ok(Ok(0)) => Err(exited_or_closed(child, log_path).await),
        Ok(Ok(_)) => parse_ready_line(&line, log_path),
    };
    if result.is_err() {
        let _ = child.kill().await;
        return result;
    }

    copy_rest_to_log(reader, log_path.to_path_buf());
    result
}

fn parse_ready_line(line: &str, log_path: &Path) -> Result<Ready, IdpError> {
    let invalid = |reason: String| IdpError::InvalidReadyLine {
        line: line.trim_end().to_owned(),
        reason,
        log: read_log(log_path),
    };

    let ready: ReadyLine =
        serde_json::from_str(line).map_err(|error| invalid(error.to_string()))?;
    if !ready.ready {
        return Err(invalid("`ready` is false".to_owned()));
    }
    let issuer_url =
        Url::parse(&ready.issuer).map_err(|error| invalid(format!("invalid issuer: {error}")))?;

    Ok(Ready {
        issuer: ready.issuer,
        issuer_url,
        port: ready.port,
    })
}

async fn exited_or_closed(child: &mut Child, log_path: &Path) -> IdpError {
    // stdout closes as the process exits, so give it a moment to be reaped.
    match timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => IdpError::ExitedEarly {
            status,
            log: read_log(log_path),
        },
        _ => IdpError::NoReadyLine {
            log: read_log(log_path),
        },
    }
}

fn copy_rest_to_log(mut reader: BufReader<ChildStdout>, log_path: PathBuf) {
    tokio::spawn(async move {
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .await;
        if let Ok(mut file) = file {
            // The copy ends when the server exits; an error only loses log lines.
            let _ = tokio::io::copy_buf(&mut reader, &mut file).await;
        }
    });
}
