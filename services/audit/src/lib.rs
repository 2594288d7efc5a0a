//! The audit service: consumes every event of the `STEPUP` stream and appends it to an
//! append-only, hash-chained log in SQL, which an internal HTTP API queries and verifies.
//!
//! - [`record`]: one record and its canonical hash.
//! - [`chain`]: verification of the chain.
//! - [`extract`]: the columns of a record, read from any event.
//! - [`log`]: appends and queries in SQLite or PostgreSQL.
//! - [`consume`]: the durable consumer's handler.
//! - [`http`]: the query API.

pub mod chain;
pub mod config;
pub mod consume;
pub mod extract;
pub mod http;
pub mod log;
pub mod record;

mod service;

pub use config::Config;
pub use service::{Error, SERVICE, Started, run, start};
