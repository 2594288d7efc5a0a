//! Query-string parameters of the audit API, checked strictly: an unknown or repeated
//! parameter is an error, so that a misspelt filter never silently widens a query.

use std::collections::BTreeMap;

use chrono::DateTime;
use thiserror::Error;

/// The maximum length of an id or other text parameter, in bytes.
pub const MAX_TEXT_LEN: usize = 256;

/// A query parameter that cannot be used. Each message names the parameter and the fix.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("unknown query parameter {name:?}; supported parameters are: {supported}")]
    Unknown { name: String, supported: String },
    #[error("query parameter {name} is given more than once; give it once")]
    Repeated { name: String },
    #[error("query parameter {name} must be 1 to {MAX_TEXT_LEN} bytes without control characters")]
    InvalidText { name: String },
    #[error("query parameter {name} must be an integer from {min} to {max}")]
    InvalidInteger { name: String, min: i64, max: i64 },
    #[error(
        "query parameter {name} must be an RFC 3339 time with an offset, such as 2025-03-14T09:30:00Z"
    )]
    InvalidTime { name: String },
    #[error("query parameter {low} must be less than {high}; swap them or widen the range")]
    EmptyRange { low: String, high: String },
}

impl ParamError {
    /// Returns the stable machine code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_parameter",
            Self::Repeated { .. } => "repeated_parameter",
            Self::InvalidText { .. } | Self::InvalidInteger { .. } | Self::InvalidTime { .. } => {
                "invalid_parameter"
            }
            Self::EmptyRange { .. } => "invalid_range",
        }
    }

    /// Returns the name of the parameter the error is about.
    pub fn parameter(&self) -> &str {
        match self {
            Self::Unknown { name, .. }
            | Self::Repeated { name }
            | Self::InvalidText { name }
            | Self::InvalidInteger { name, .. }
            | Self::InvalidTime { name } => name,
            Self::EmptyRange { low, .. } => low,
        }
    }
}

/// The parameters of one request. [`Params::parse`] rejects unknown and repeated names.
#[derive(Debug, Default)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses a raw query string, accepting only the names in `supported`.
    pub fn parse(raw: Option<&str>, supported: &[&str]) -> Result<Self, ParamError> {
        let mut values = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !supported.contains(&name.as_ref()) {
                // Cut a long or odd name short, because it is echoed in the response.
                let echoed_name: String =
                    name.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(ParamError::Unknown {
                    name: echoed_name,
                    supported: supported.join(", "),
                });
            }
            if values
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(ParamError::Repeated {
                    name: name.into_owned(),
                });
            }
        }
        Ok(Self { values })
    }

    /// Returns a text parameter: 1 to [`MAX_TEXT_LEN`] bytes without control characters.
    pub fn text(&self, name: &str) -> Result<Option<String>, ParamError> {
        let Some(value) = self.values.get(name) else {
            return Ok(None);
        };
        let valid = !value.is_empty()
            && value.len() <= MAX_TEXT_LEN
            && !value.chars().any(char::is_control);
        if !valid {
            return Err(ParamError::InvalidText {
                name: name.to_owned(),
            });
        }
        Ok(Some(value.clone()))
    }

    /// Returns an integer parameter within `min..=max`.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ParamError> {
        let Some(value) = self.values.get(name) else {
            return Ok(None);
        };
        match value.parse::<i64>() {
            Ok(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(ParamError::InvalidInteger {
                name: name.to_owned(),
                min,
                max,
            }),
        }
    }

    /// Returns an RFC 3339 time parameter as Unix milliseconds.
    pub fn time(&self, name: &str) -> Result<Option<i64>, ParamError> {
        let Some(value) = self.values.get(name) else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(value)
            .map(|time| Some(time.timestamp_millis()))
            .map_err(|_| ParamError::InvalidTime {
                name: name.to_owned(),
            })
    }
}

/// Checks that `low` comes before `high` when both are given.
pub fn check_range(
    low: (&str, Option<i64>),
    high: (&str, Option<i64>),
    inclusive: bool,
) -> Result<(), ParamError> {
    let (Some(low_value), Some(high_value)) = (low.1, high.1) else {
        return Ok(());
    };
    let empty = if inclusive {
        low_value > high_value
    } else {
        low_value >= high_value
    };
    if empty {
        return Err(ParamError::EmptyRange {
            low: low.0.to_owned(),
            high: high.0.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPORTED: &[&str] = &["approval_id", "limit", "from"];

    #[test]
    fn decodes_percent_encoded_values() -> Result<(), ParamError> {
        let params = Params::parse(
            Some("approval_id=apr%2F1&from=2025-03-14T09%3A30%3A00Z"),
            SUPPORTED,
        )?;

        assert_eq!(params.text("approval_id")?, Some("apr/1".into()));
        assert_eq!(params.time("from")?, Some(1_741_944_600_000));
        assert_eq!(params.integer("limit", 1, 10)?, None);
        Ok(())
    }

    #[test]
    fn rejects_unknown_and_repeated_names() {
        let unknown = Params::parse(Some("aproval_id=x"), SUPPORTED);
        let repeated = Params::parse(Some("limit=1&limit=2"), SUPPORTED);

        assert_eq!(unknown.err().map(|e| e.code()), Some("unknown_parameter"));
        assert_eq!(repeated.err().map(|e| e.code()), Some("repeated_parameter"));
    }

    #[test]
    fn rejects_values_out_of_shape() -> Result<(), ParamError> {
        let params = Params::parse(Some("approval_id=a%0Ab&limit=0&from=yesterday"), SUPPORTED)?;

        assert!(matches!(
            params.text("approval_id"),
            Err(ParamError::InvalidText { .. })
        ));
        assert!(matches!(
            params.integer("limit", 1, 10),
            Err(ParamError::InvalidInteger { .. })
        ));
        assert!(matches!(
            params.time("from"),
            Err(ParamError::InvalidTime { .. })
        ));
        Ok(())
    }

    #[test]
    fn range_must_not_be_empty() {
        assert!(check_range(("from", Some(5)), ("to", Some(5)), false).is_err());
        assert!(check_range(("from_seq", Some(5)), ("to_seq", Some(5)), true).is_ok());
        assert!(check_range(("from_seq", Some(6)), ("to_seq", Some(5)), true).is_err());
        assert!(check_range(("from", None), ("to", Some(5)), false).is_ok());
    }
}
