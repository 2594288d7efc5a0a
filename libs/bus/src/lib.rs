//! NATS and JetStream plumbing shared by the services.
//!
//! - [`Bus`]: one connection per process, publishing events with `Nats-Msg-Id` and the
//!   current W3C trace context in the headers, and awaiting JetStream's acknowledgement.
//! - [`stream`]: creates or updates the `STEPUP` stream at start.
//! - [`consumer`]: durable pull consumers with explicit acks and a dead-letter subject.
//! - [`rpc`]: request/reply under `stepup.rpc.>`, where every request gets an answer.

pub mod consumer;
pub mod rpc;
pub mod stream;

mod connection;
mod headers;

pub use async_nats::SubscribeError;
pub use connection::{Bus, ConnectError, NatsSettings, PublishError, StoredEvent};
pub use headers::{trace_headers_of, with_trace_headers};
