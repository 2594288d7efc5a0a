//! Subjects, the CloudEvents envelope and the event payloads that the step-up services
//! exchange over NATS.
//!
//! Every event type is named after the NATS subject it is published on, so `type` in the
//! envelope and the subject always agree. The payload structs in [`data`] are the public
//! contract: fields may be added within a major version, never renamed or removed.

pub mod data;
pub mod envelope;
pub mod reason;
pub mod rpc;
pub mod subject;

pub use envelope::{DecodeError, Envelope, EventData};
pub use reason::ReasonCode;
