//! The per-service NATS users of `deploy/nats/permissions.conf`, for tests that run
//! nats-server with them.
//!
//! nats-server does not let an included file see variables of the file that includes it,
//! so the test configuration is the password definitions followed by the permission file's
//! text.

use std::path::{Path, PathBuf};

use crate::workspace_root;

/// The users of `permissions.conf`, by the variable that holds each one's password.
const USERS: [&str; 6] = [
    "challenge",
    "callback",
    "verifier",
    "audit",
    "requester",
    "admin",
];

/// Returns the test password of `user`; `e2e` is the admin user.
pub fn password_of(user: &str) -> String {
    let user = if user == crate::deployment::TEST_USER {
        "admin"
    } else {
        user
    };
    format!("{user}-test-password")
}

/// Returns the path of `deploy/nats/permissions.conf`.
pub fn permissions_file() -> PathBuf {
    workspace_root().join("deploy/nats/permissions.conf")
}

/// Writes a nats-server configuration with the deployment's users and test passwords into
/// `dir` and returns its path. The test user `e2e` logs in as `admin`.
pub fn write_server_config(dir: &Path) -> std::io::Result<PathBuf> {
    let permissions = std::fs::read_to_string(permissions_file())?;
    let mut config = String::new();
    for user in USERS {
        let variable = format!("STEPUP_NATS_{}_PASSWORD", user.to_uppercase());
        config.push_str(&format!("{variable}: \"{}\"\n", password_of(user)));
    }
    config.push_str(&permissions);
    let path = dir.join("nats-permissions.conf");
    std::fs::write(&path, config)?;
    Ok(path)
}
