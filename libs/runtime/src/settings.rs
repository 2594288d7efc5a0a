//! The configuration file shared by the service binaries and the all-in-one binary.
//!
//! One TOML file configures every service. Shared sections (`[nats]`, `[stream]`,
//! `public_url`, `[[providers]]`, `[[policies]]`) are copied into the service sections that
//! use them, so each service library still receives its own, complete `Config`.

use std::path::Path;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The merged configuration, as JSON, before it is split per service.
#[derive(Debug, Clone)]
pub struct Settings {
    root: Map<String, Value>,
}

/// Reads `path` (when given) and the `STEPUP_*` environment variables over it. A nested
/// key is reached with a double underscore: `STEPUP_NATS__URL`.
pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
    let mut figment = Figment::new();
    if let Some(path) = path {
        if !path.exists() {
            anyhow::bail!(
                "configuration file {} not found: pass --config with an existing file (see config/stepup.example.toml)",
                path.display()
            );
        }
        figment = figment.merge(Toml::file(path));
    }
    let figment = figment.merge(Env::prefixed("STEPUP_").split("__").ignore(&[
        "config",
        "log_format",
        "log_json",
    ]));
    let value: Value = figment
        .extract()
        .context("reading the configuration file and STEPUP_* variables")?;
    let root = match value {
        Value::Object(root) => root,
        _ => Map::new(),
    };
    Ok(Settings { root })
}

impl Settings {
    /// Builds the configuration of one service: its own section plus the shared sections it
    /// uses.
    pub fn service<T: DeserializeOwned>(
        &self,
        service: &str,
        shared: &[&str],
    ) -> anyhow::Result<T> {
        let mut section = match self.root.get(service) {
            Some(Value::Object(section)) => section.clone(),
            Some(_) => anyhow::bail!("[{service}] must be a table"),
            None => Map::new(),
        };
        for key in ["nats", "stream"].iter().chain(shared) {
            if let Some(value) = self.root.get(*key)
                && !section.contains_key(*key)
            {
                section.insert((*key).to_owned(), value.clone());
            }
        }
        serde_json::from_value(Value::Object(section))
            .with_context(|| format!("invalid configuration for the {service} service"))
    }

    /// Returns the name of the event stream, for commands that read it.
    pub fn stream_name(&self) -> anyhow::Result<String> {
        let value = self
            .root
            .get("stream")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let stream: stepup_bus::stream::StreamSettings =
            serde_json::from_value(value).context("invalid [stream] configuration")?;
        Ok(stream.name)
    }

    /// Returns the shared NATS settings, for commands that only publish.
    pub fn nats(&self) -> anyhow::Result<stepup_bus::NatsSettings> {
        let value = self
            .root
            .get("nats")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        serde_json::from_value(value).context("invalid [nats] configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: Value) -> Settings {
        match json {
            Value::Object(root) => Settings { root },
            _ => Settings { root: Map::new() },
        }
    }

    #[test]
    fn shared_sections_reach_services() -> anyhow::Result<()> {
        let settings = settings(serde_json::json!({
            "nats": {"url": "nats://127.0.0.1:4999"},
            "public_url": "https://stepup.example.com",
            "challenge": {"challenge_ttl_secs": 120}
        }));
        let config: stepup_challenge::Config =
            settings.service("challenge", &["public_url", "providers", "policies"])?;
        assert_eq!(config.nats.url, "nats://127.0.0.1:4999");
        assert_eq!(config.public_url, "https://stepup.example.com");
        assert_eq!(config.challenge_ttl_secs, 120);
        Ok(())
    }

    #[test]
    fn unknown_key_is_reported() {
        let settings = settings(serde_json::json!({"verifier": {"listne": "127.0.0.1:1"}}));
        let result: anyhow::Result<stepup_verifier::Config> = settings.service("verifier", &[]);
        let message = result.err().map(|e| format!("{e:#}"));
        assert!(message.is_some_and(|m| m.contains("listne")));
    }
}
