//! The audit service: consumes every event of the `STEPUP` stream and appends it to an
//! append-only, hash-chained log in SQL, which an internal HTTP API queries, verifies and
//! exports. Every committed record is also published on the `STEPUP_AUDIT` stream.
//!
//! - [`record`]: one record and its canonical hash.
//! - [`chain`]: verification of the chain.
//! - [`extract`]: the columns of a record, read from any event.
//! - [`redact`]: secret-bearing members removed from an event before it is stored.
//! - [`log`]: appends and queries in SQLite or PostgreSQL.
//! - [`consume`]: the durable consumer's handler.
//! - [`publish`]: the audit stream and the publisher that keeps it complete.
//! - [`export`]: the JSON Lines export and its offline verification.
//! - [`http`]: the query API.

pub mod chain;
pub mod config;
pub mod consume;
pub mod export;
pub mod extract;
pub mod http;
pub mod log;
mod params;
pub mod publish;
pub mod record;
pub mod redact;

mod service;

pub use config::Config;
pub use service::{Error, SERVICE, Started, run, start};
