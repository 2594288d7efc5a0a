//! Harness for the end-to-end tests: it starts real dependencies on loopback
//! ports and drives them the way an approver's browser would.
//!
//! - [`nats::NatsServer`] runs a `nats-server` with JetStream and its own store.
//! - [`idp::DevIdp`] runs the development OpenID provider from `tests/idp`.
//! - [`browser::Browser`] is an HTTP client with a cookie store that follows
//!   redirects itself, so a test can inspect every hop.
//! - [`process::ServiceProcess`] runs a service binary as a child process that a test
//!   can kill or terminate, and [`deployment::Deployment`] runs all of them (one or more
//!   instances each) against one nats-server and one set of databases.
//!
//! Every process is killed when its handle is dropped, and every wait is
//! bounded. The external tools come from `scripts/install-deps.sh`.

pub mod browser;
pub mod deployment;
pub mod idp;
pub mod nats;
pub mod nats_users;
pub mod process;

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

pub use browser::{Browser, BrowserError, Page};
pub use idp::{DevIdp, IdpClient, IdpConfig, IdpError, IdpUser, Profile};
pub use nats::{NatsError, NatsServer};

/// Returns the root of the Cargo workspace, two levels above this crate.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match manifest_dir.parent().and_then(|tests| tests.parent()) {
        Some(root) => root.to_path_buf(),
        None => manifest_dir,
    }
}

/// Ports handed out by [`free_port`]: below Linux's default ephemeral range
/// (32768-60999), from which the kernel picks the local ports of outgoing connections and
/// of listeners bound to port 0. A port from that range, released and bound again a moment
/// later, was often taken in between by one of the many connections the tests open.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Returns a TCP port on 127.0.0.1 that was free when this function ran.
///
/// The port is released before returning, so another process can take it
/// before the caller binds it; picking it at random outside the ephemeral range makes
/// that unlikely. A caller that starts a server on it should still retry with another
/// port when the bind fails.
pub fn free_port() -> io::Result<u16> {
    use std::hash::{BuildHasher, RandomState};

    let random = RandomState::new();
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    for attempt in 0_u64..200 {
        let offset = u16::try_from(random.hash_one(attempt) % span).unwrap_or(0);
        let port = PORT_RANGE.start + offset;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    // Everything tried was taken: fall back to a port the kernel picks.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Reads a log file that a harness process writes, for failure messages.
fn read_log(path: &std::path::Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) if text.is_empty() => "(log is empty)".to_owned(),
        Ok(text) => text,
        Err(error) => format!("(cannot read log {}: {error})", path.display()),
    }
}
