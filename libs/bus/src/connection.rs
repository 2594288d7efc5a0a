//! The process's NATS connection and event publishing.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{HeaderMap, header};
use serde::Deserialize;
use stepup_events::envelope::EncodeError;
use stepup_events::{Envelope, EventData};
use thiserror::Error;

use crate::headers::with_trace_headers;

/// How to reach NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL, such as `nats://127.0.0.1:4222`.
    pub url: String,
    /// User name, when the server requires one.
    pub user: Option<String>,
    /// Password of `user`. Prefer `password_file` outside development.
    pub password: Option<String>,
    /// File holding the password of `user`.
    pub password_file: Option<PathBuf>,
    /// Require TLS on the connection.
    pub tls_required: bool,
    /// CA certificate that signed the server's certificate, in PEM.
    pub tls_ca_file: Option<PathBuf>,
    /// How long to wait for JetStream's acknowledgement of a publish, in milliseconds.
    pub publish_timeout_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            user: None,
            password: None,
            password_file: None,
            tls_required: false,
            tls_ca_file: None,
            publish_timeout_ms: 5_000,
        }
    }
}

/// The connection to NATS could not be set up.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("reading the NATS password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// An event could not be published.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("serializing event {id}: {source}")]
    Serialize {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("publishing event {id} on {subject}: {source}")]
    Publish {
        id: String,
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// An event serialized ahead of its publishing, with the trace context of the span that
/// produced it.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    /// The CloudEvents id; also sent as `Nats-Msg-Id`.
    pub id: &'a str,
    pub subject: &'a str,
    /// The structured-mode JSON CloudEvent.
    pub payload: &'a [u8],
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

/// A connection to NATS with its JetStream context, shared by the services of a process.
#[derive(Debug, Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    source: String,
}

impl Bus {
    /// Connects to NATS. `service` names the connection and becomes the CloudEvents
    /// `source` (`/stepup/<service>`) of the events this handle publishes.
    pub async fn connect(settings: &NatsSettings, service: &str) -> Result<Self, ConnectError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("stepup-{service}"))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5));

        let password = match (&settings.password, &settings.password_file) {
            (_, Some(path)) => Some(read_password(path)?),
            (Some(password), None) => Some(password.clone()),
            (None, None) => None,
        };
        if let (Some(user), Some(password)) = (&settings.user, password) {
            options = options.user_and_password(user.clone(), password);
        }
        if settings.tls_required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &settings.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }

        let client = options
            .connect(settings.url.as_str())
            .await
            .map_err(|source| ConnectError::Connect {
                url: settings.url.clone(),
                source,
            })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(Duration::from_millis(settings.publish_timeout_ms));

        Ok(Self {
            client,
            jetstream,
            source: format!("/stepup/{service}"),
        })
    }

    /// Returns a handle that publishes with `service` as the CloudEvents `source`, over the
    /// same connection.
    pub fn for_service(&self, service: &str) -> Self {
        Self {
            source: format!("/stepup/{service}"),
            ..self.clone()
        }
    }

    /// Whether the connection to NATS is up; services report it on `/readyz`.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Builds the event for `data` and publishes it.
    pub async fn publish<T: EventData>(&self, data: &T) -> Result<Envelope, PublishError> {
        let envelope = Envelope::new(&self.source, data)?;
        self.publish_envelope(&envelope).await?;
        Ok(envelope)
    }

    /// Builds the event for `data` with the given id and publishes it; see
    /// [`Envelope::with_id`].
    pub async fn publish_with_id<T: EventData>(
        &self,
        id: String,
        data: &T,
    ) -> Result<Envelope, PublishError> {
        let envelope = Envelope::with_id(id, &self.source, data)?;
        self.publish_envelope(&envelope).await?;
        Ok(envelope)
    }

    /// Builds the event for `data` and publishes it on `subject` instead of the subject its
    /// type names (dead letters go to one subject per service).
    pub async fn publish_on<T: EventData>(
        &self,
        subject: &str,
        data: &T,
    ) -> Result<Envelope, PublishError> {
        let envelope = Envelope::new(&self.source, data)?;
        self.publish_to(subject, &envelope).await?;
        Ok(envelope)
    }

    /// Publishes a built event on the subject named by its type and waits for JetStream's
    /// acknowledgement. The event id goes in `Nats-Msg-Id`, so a repeated publish of the
    /// same event is dropped by the stream's duplicate window.
    pub async fn publish_envelope(&self, envelope: &Envelope) -> Result<(), PublishError> {
        self.publish_to(envelope.event_type(), envelope).await
    }

    /// Publishes an event that was serialized earlier, such as a row of a transactional
    /// outbox, with the trace context it was stored with, and waits for JetStream's
    /// acknowledgement. `Nats-Msg-Id` is the event id, so publishing it again within the
    /// stream's duplicate window stores nothing new.
    pub async fn publish_stored(&self, event: &StoredEvent<'_>) -> Result<(), PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::NATS_MESSAGE_ID, event.id);
        if let Some(traceparent) = event.traceparent {
            headers.insert("traceparent", traceparent);
        }
        if let Some(tracestate) = event.tracestate {
            headers.insert("tracestate", tracestate);
        }

        let to_publish_error = |source| PublishError::Publish {
            id: event.id.to_owned(),
            subject: event.subject.to_owned(),
            source,
        };
        let ack = self
            .jetstream
            .publish_with_headers(
                event.subject.to_owned(),
                headers,
                bytes::Bytes::copy_from_slice(event.payload),
            )
            .await
            .map_err(to_publish_error)?;
        ack.await.map_err(to_publish_error)?;
        Ok(())
    }

    async fn publish_to(&self, subject: &str, envelope: &Envelope) -> Result<(), PublishError> {
        let payload = envelope
            .to_json()
            .map_err(|source| PublishError::Serialize {
                id: envelope.id().to_owned(),
                source,
            })?;
        let mut headers = with_trace_headers(HeaderMap::new());
        headers.insert(header::NATS_MESSAGE_ID, envelope.id());

        let subject = subject.to_owned();
        let to_publish_error = |source| PublishError::Publish {
            id: envelope.id().to_owned(),
            subject: subject.clone(),
            source,
        };
        let ack = self
            .jetstream
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(to_publish_error)?;
        ack.await.map_err(to_publish_error)?;
        Ok(())
    }
}

fn read_password(path: &PathBuf) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectError::PasswordFile {
        path: path.clone(),
        source,
    })?;
    Ok(text.trim_end().to_owned())
}
