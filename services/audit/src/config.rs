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
            database_url: "sqlite://.stepup/audit.db?mode=rwc".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
        }
    }
}
