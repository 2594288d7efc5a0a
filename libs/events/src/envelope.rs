//! The CloudEvents 1.0 envelope in JSON structured mode.

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The media type of every event's `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// An event payload, tied to the subject it is published on.
pub trait EventData: Serialize + DeserializeOwned {
    /// The CloudEvents `type`, which is also the NATS subject.
    const TYPE: &'static str;

    /// The id that becomes the CloudEvents `subject` (the approval the event is about).
    fn subject_id(&self) -> &str;
}

/// Returns a stable event id for the state change named by `parts`, such as the
/// completion of one challenge: the same parts always give the same UUIDv5.
pub fn derived_event_id(parts: &[&str]) -> String {
    let name = parts.join("\u{1f}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
}

/// A message that is not a usable CloudEvent of the expected type.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("message is not a CloudEvents 1.0 JSON event: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("event type is {found:?}, expected {expected:?}")]
    UnexpectedType {
        expected: &'static str,
        found: String,
    },
    #[error("event {id} has no JSON data")]
    MissingData { id: String },
    #[error("data of event {id} ({event_type}) does not match its schema: {source}")]
    Data {
        id: String,
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// An event that could not be built or serialized.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("event payload of type {event_type} cannot be serialized: {source}")]
    Data {
        event_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid CloudEvents attributes for {event_type}: {source}")]
    Attributes {
        event_type: &'static str,
        #[source]
        source: cloudevents::event::EventBuilderError,
    },
}

/// One CloudEvent with its JSON `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    event: Event,
}

impl Envelope {
    /// Builds the event for `data`, with a fresh id (UUIDv7, so ids sort by time) and the
    /// current time. `source` names the producing service as a URI reference.
    pub fn new<T: EventData>(source: &str, data: &T) -> Result<Self, EncodeError> {
        Self::with_id(uuid::Uuid::now_v7().to_string(), source, data)
    }

    /// Builds the event for `data` with a given id. A service that may publish the same
    /// state change again (after a redelivery) derives the id from that change with
    /// [`derived_event_id`], so JetStream's duplicate window drops the repeat.
    pub fn with_id<T: EventData>(id: String, source: &str, data: &T) -> Result<Self, EncodeError> {
        let json = serde_json::to_value(data).map_err(|source| EncodeError::Data {
            event_type: T::TYPE,
            source,
        })?;
        let event = EventBuilderV10::new()
            .id(id)
            .source(source)
            .ty(T::TYPE)
            .time(Utc::now())
            .subject(data.subject_id())
            .data(DATA_CONTENT_TYPE, json)
            .build()
            .map_err(|source| EncodeError::Attributes {
                event_type: T::TYPE,
                source,
            })?;
        Ok(Self { event })
    }

    /// Parses a structured-mode JSON CloudEvent.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        Ok(Self { event })
    }

    /// Serializes the event in structured-mode JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.event)
    }

    pub fn id(&self) -> &str {
        self.event.id()
    }

    /// The CloudEvents `type`, which is the NATS subject the event belongs on.
    pub fn event_type(&self) -> &str {
        self.event.ty()
    }

    pub fn source(&self) -> String {
        self.event.source().to_string()
    }

    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.event.time().copied()
    }

    /// The CloudEvents `subject`: the approval the event is about.
    pub fn subject(&self) -> Option<&str> {
        self.event.subject()
    }

    /// The raw JSON `data`, for consumers that do not know the event type.
    pub fn data_json(&self) -> Option<&serde_json::Value> {
        match self.event.data() {
            Some(Data::Json(value)) => Some(value),
            _ => None,
        }
    }

    /// Decodes the `data` as `T`, checking that the event is of `T`'s type.
    pub fn data<T: EventData>(&self) -> Result<T, DecodeError> {
        if self.event_type() != T::TYPE {
            return Err(DecodeError::UnexpectedType {
                expected: T::TYPE,
                found: self.event_type().to_owned(),
            });
        }
        let value = self.data_json().ok_or_else(|| DecodeError::MissingData {
            id: self.id().to_owned(),
        })?;
        T::deserialize(value).map_err(|source| DecodeError::Data {
            id: self.id().to_owned(),
            event_type: self.event_type().to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ChallengeStarted;

    fn started() -> ChallengeStarted {
        ChallengeStarted {
            approval_id: "apr-1".into(),
            challenge_id: "ch-1".into(),
            provider: "okta".into(),
            started_at: Utc::now(),
        }
    }

    #[test]
    fn round_trip_keeps_id_type_and_data() -> Result<(), Box<dyn std::error::Error>> {
        let envelope = Envelope::new("/stepup/callback", &started())?;
        let parsed = Envelope::from_json(&envelope.to_json()?)?;

        assert_eq!(parsed.id(), envelope.id());
        assert_eq!(parsed.event_type(), "stepup.challenge.started");
        assert_eq!(parsed.subject(), Some("apr-1"));
        assert_eq!(parsed.data::<ChallengeStarted>()?, envelope.data()?);
        Ok(())
    }

    #[test]
    fn decoding_as_another_type_fails() -> Result<(), Box<dyn std::error::Error>> {
        let envelope = Envelope::new("/stepup/callback", &started())?;
        let result = envelope.data::<crate::data::ApprovalRequested>();
        assert!(matches!(result, Err(DecodeError::UnexpectedType { .. })));
        Ok(())
    }

    #[test]
    fn non_cloudevent_json_is_rejected() {
        let result = Envelope::from_json(br#"{"approval_id":"x"}"#);
        assert!(matches!(result, Err(DecodeError::Envelope(_))));
    }
}
