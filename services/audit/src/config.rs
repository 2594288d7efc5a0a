//! The audit service's configuration.

use std::net::SocketAddr;

use serde::Deserialize;
use stepup_bus::NatsSettings;
use stepup_bus::consumer::ConsumerSettings;
use stepup_bus::stream::StreamSettings;

/// Settings of the audit service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsSettings,
    pub stream: StreamSettings,
    /// Delivery settings of the `audit` durable consumer.
    pub consumer: ConsumerSettings,
    /// The stream on which every appended record is published.
    pub audit_stream: AuditStreamSettings,
    /// `sqlite://PATH?mode=rwc` or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// Address of the HTTP query API; `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsSettings::default(),
            stream: StreamSettings::default(),
            consumer: ConsumerSettings {
                // One event at a time keeps the log in the stream's order; appends are
                // serialized anyway, so more in flight would not add throughput.
                max_in_flight: 1,
                ..ConsumerSettings::default()
            },
            audit_stream: AuditStreamSettings::default(),
            database_url: "sqlite://.stepup/audit.db?mode=rwc".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
        }
    }
}

/// Settings of the audit stream, which is separate from the event stream so that it can
/// keep records longer and so that the audit service never consumes its own records.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditStreamSettings {
    pub name: String,
    /// Copies kept in a NATS cluster (1 for a single server).
    pub replicas: usize,
    /// How long records stay on the stream, in seconds. Older records remain in the
    /// database and in exports.
    pub max_age_secs: u64,
    /// The window in which a repeated `Nats-Msg-Id` is dropped, in seconds.
    pub duplicate_window_secs: u64,
    /// How often the publisher looks for committed records that are not on the stream
    /// yet, in seconds, besides right after each append.
    pub republish_interval_secs: u64,
}

impl Default for AuditStreamSettings {
    fn default() -> Self {
        Self {
            name: "STEPUP_AUDIT".into(),
            replicas: 1,
            max_age_secs: 365 * 24 * 3600,
            duplicate_window_secs: 2 * 60,
            republish_interval_secs: 30,
        }
    }
}
