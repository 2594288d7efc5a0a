//! Configuration of the callback service, and its checks before anything starts.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;
use stepup_bus::NatsSettings;
use stepup_bus::stream::StreamSettings;
use thiserror::Error;
use url::{Origin, Url};

/// Settings of the callback service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsSettings,
    pub stream: StreamSettings,
    /// Address the HTTP server binds to. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The URL at which browsers reach this service. Cookies get the `Secure` attribute when
    /// it is https.
    pub public_url: String,
    /// How long a request to the challenge service may take, in milliseconds.
    pub rpc_timeout_ms: u64,
    /// How long the callback page waits for the verification outcome before it shows a
    /// "still verifying" page, in milliseconds.
    pub outcome_wait_ms: u64,
    /// Origins (`https://tickets.example.com`) that a "Return to the request" link may point
    /// to. A `return_url` on any other origin gets no link.
    pub allowed_return_origins: Vec<String>,
    /// How long a discovery request to an identity provider may take, in milliseconds.
    pub idp_timeout_ms: u64,
    /// How long a discovered authorization endpoint is reused, in seconds.
    pub discovery_cache_secs: u64,
    /// Requests to `/stepup/...` and `/auth/callback` that one client address may send per
    /// minute, as a burst that refills evenly over the minute.
    pub rate_limit_per_client_per_minute: u32,
    /// Requests per minute for one challenge (`/stepup/{challenge_id}`) or one `state`
    /// (`/auth/callback`), whatever the client address.
    pub rate_limit_per_challenge_per_minute: u32,
    /// The longest query string accepted, in bytes. Longer requests get 414.
    pub max_query_bytes: usize,
    /// The largest total size of the request headers accepted (names and values), in bytes.
    /// Larger requests get 431.
    pub max_header_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nats: NatsSettings::default(),
            stream: StreamSettings::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            rpc_timeout_ms: 5_000,
            outcome_wait_ms: 20_000,
            allowed_return_origins: Vec::new(),
            idp_timeout_ms: 5_000,
            discovery_cache_secs: 600,
            rate_limit_per_client_per_minute: 60,
            rate_limit_per_challenge_per_minute: 20,
            max_query_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// One or more configuration values are invalid. Every problem is listed, so one run of the
/// service reports all of them.
#[derive(Debug, Error)]
#[error("invalid callback configuration: {}", problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The checked configuration values that the request handlers use.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub secure_cookies: bool,
    pub rpc_timeout: Duration,
    pub outcome_wait: Duration,
    pub allowed_return_origins: Vec<Origin>,
    pub limits: Limits,
}

/// The request limits of the public routes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub per_client: NonZeroU32,
    pub per_challenge: NonZeroU32,
    pub max_query_bytes: usize,
    pub max_header_bytes: usize,
}

impl Config {
    /// Checks every value and returns the settings the handlers need.
    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();

        let secure_cookies = match Url::parse(&self.public_url) {
            Ok(url) if url.scheme() == "https" => true,
            Ok(url) if url.scheme() == "http" => false,
            Ok(_) | Err(_) => {
                problems.push(format!(
                    "public_url {:?} must be an http or https URL",
                    self.public_url
                ));
                false
            }
        };
        for (name, value) in [
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("outcome_wait_ms", self.outcome_wait_ms),
            ("idp_timeout_ms", self.idp_timeout_ms),
            ("max_query_bytes", self.max_query_bytes as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
        ] {
            if value == 0 {
                problems.push(format!("{name} must be greater than 0"));
            }
        }
        let allowed_return_origins = self
            .allowed_return_origins
            .iter()
            .filter_map(|text| match parse_origin(text) {
                Ok(origin) => Some(origin),
                Err(reason) => {
                    problems.push(format!("allowed_return_origins entry {text:?} {reason}"));
                    None
                }
            })
            .collect();

        let per_client = NonZeroU32::new(self.rate_limit_per_client_per_minute);
        let per_challenge = NonZeroU32::new(self.rate_limit_per_challenge_per_minute);
        for (name, value) in [
            ("rate_limit_per_client_per_minute", per_client),
            ("rate_limit_per_challenge_per_minute", per_challenge),
        ] {
            if value.is_none() {
                problems.push(format!("{name} must be greater than 0"));
            }
        }

        let (Some(per_client), Some(per_challenge), true) =
            (per_client, per_challenge, problems.is_empty())
        else {
            return Err(ConfigError { problems });
        };
        Ok(Settings {
            secure_cookies,
            rpc_timeout: Duration::from_millis(self.rpc_timeout_ms),
            outcome_wait: Duration::from_millis(self.outcome_wait_ms),
            allowed_return_origins,
            limits: Limits {
                per_client,
                per_challenge,
                max_query_bytes: self.max_query_bytes,
                max_header_bytes: self.max_header_bytes,
            },
        })
    }
}

/// Parses an origin such as `https://tickets.example.com:8443`. A path other than `/`, a
/// query or user information is a mistake in the configuration, so it is rejected.
fn parse_origin(text: &str) -> Result<Origin, String> {
    let url = Url::parse(text).map_err(|error| format!("is not a URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("must be an origin only, without path, query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".into());
    }
    Ok(url.origin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let settings = Config::default().settings();
        assert!(settings.is_ok(), "{settings:?}");
    }

    #[test]
    fn https_public_url_makes_cookies_secure() -> Result<(), Box<dyn std::error::Error>> {
        let config = Config {
            public_url: "https://approve.example.com".into(),
            ..Config::default()
        };
        assert!(config.settings()?.secure_cookies);
        Ok(())
    }

    #[test]
    fn every_invalid_value_is_reported() {
        let config = Config {
            rpc_timeout_ms: 0,
            rate_limit_per_client_per_minute: 0,
            max_header_bytes: 0,
            public_url: "ftp://approve.example.com".into(),
            allowed_return_origins: vec![
                "https://ok.example.com".into(),
                "https://bad.example.com/path".into(),
                "not a url".into(),
            ],
            ..Config::default()
        };
        let problems = config.settings().err().map(|error| error.problems);
        assert_eq!(problems.map(|p| p.len()), Some(6));
    }
}
