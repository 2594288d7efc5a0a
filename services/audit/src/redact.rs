//! Removes secrets from an event before it is recorded.
//!
//! The step-up services never put a token, authorization code, client secret or PKCE
//! verifier in an event, but other systems publish on the same subjects and may. The
//! audit log is kept for years and exported, so the value of every member whose name is a
//! known secret-bearing name is replaced with [`REDACTED`], at any depth, before the event
//! is stored. The member itself stays, so the record still shows that the producer
//! published a secret there.

use base64::Engine as _;
use serde_json::Value;

/// The replacement of every redacted value.
pub const REDACTED: &str = "[redacted]";

/// Member names whose values are secrets, compared without regard to ASCII case.
/// OAuth `state` is left out on purpose: it is single-use, and other systems commonly use
/// a `state` member for a workflow state that the audit log should keep.
const SECRET_NAMES: &[&str] = &[
    "access_token",
    "assertion",
    "authorization_code",
    "client_assertion",
    "client_secret",
    "code",
    "code_verifier",
    "id_token",
    "nonce",
    "password",
    "pkce_verifier",
    "refresh_token",
    "secret",
    "token",
];

/// The member of a dead letter that contains the original message in base64.
const DEAD_LETTER_PAYLOAD: &str = "original_payload_base64";

/// Redacts `event` in place and returns the JSON pointers of the redacted members.
pub fn redact_secrets(event: &mut Value) -> Vec<String> {
    let mut redacted = Vec::new();
    redact_at(event, "", &mut redacted);
    redacted
}

fn is_secret_name(name: &str) -> bool {
    SECRET_NAMES
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
}

fn redact_at(value: &mut Value, pointer: &str, redacted: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                let member_pointer = format!("{pointer}/{}", escape_pointer(name));
                if is_secret_name(name) && !member.is_null() {
                    *member = Value::String(REDACTED.to_owned());
                    redacted.push(member_pointer);
                } else if name == DEAD_LETTER_PAYLOAD {
                    redact_base64_payload(member, &member_pointer, redacted);
                } else {
                    redact_at(member, &member_pointer, redacted);
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                redact_at(item, &format!("{pointer}/{index}"), redacted);
            }
        }
        _ => {}
    }
}

/// Redacts inside a dead letter's base64 payload when it decodes to JSON. The payload is
/// re-encoded only when something was redacted, so other payloads keep their bytes.
// NOTE: a payload that is not JSON (or not base64) is kept as it is, so a secret in a
// non-JSON message that another system published on a step-up subject would be recorded.
fn redact_base64_payload(member: &mut Value, pointer: &str, redacted: &mut Vec<String>) {
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(decoded) = member.as_str().and_then(|text| engine.decode(text).ok()) else {
        return;
    };
    let Ok(mut payload) = serde_json::from_slice::<Value>(&decoded) else {
        return;
    };

    let mut inner = Vec::new();
    redact_at(&mut payload, "", &mut inner);
    if inner.is_empty() {
        return;
    }
    // Serializing a parsed `Value` cannot fail.
    let reencoded = serde_json::to_vec(&payload).unwrap_or_default();
    *member = Value::String(engine.encode(reencoded));
    redacted.extend(
        inner
            .into_iter()
            .map(|path| format!("{pointer}(base64){path}")),
    );
}

/// Escapes a member name for a JSON pointer (RFC 6901).
fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_members_are_redacted_at_any_depth() {
        let mut event = json!({
            "id": "evt-1",
            "data": {
                "approval_id": "apr-1",
                "id_token": "eyJhbGciOi.payload.signature",
                "nested": [{"Client_Secret": "s3cret", "keep": "visible"}],
                "code": "SplxlOBeZQQYbYS6WxSbIA",
            }
        });

        let redacted = redact_secrets(&mut event);

        assert_eq!(event["data"]["id_token"], REDACTED);
        assert_eq!(event["data"]["code"], REDACTED);
        assert_eq!(event["data"]["nested"][0]["Client_Secret"], REDACTED);
        assert_eq!(event["data"]["nested"][0]["keep"], "visible");
        assert_eq!(event["data"]["approval_id"], "apr-1");
        assert_eq!(redacted.len(), 3);
        assert!(redacted.contains(&"/data/nested/0/Client_Secret".to_owned()));
    }

    #[test]
    fn event_without_secrets_is_unchanged() {
        let original = json!({"data": {"reason_code": "acr_not_satisfied", "state": "open"}});
        let mut event = original.clone();

        assert!(redact_secrets(&mut event).is_empty());
        assert_eq!(event, original);
    }

    #[test]
    fn dead_letter_payload_is_redacted_inside_its_base64() -> Result<(), base64::DecodeError> {
        let engine = base64::engine::general_purpose::STANDARD;
        let original = json!({"data": {"access_token": "at-123", "approval_id": "apr-2"}});
        let mut letter = json!({
            "data": {"original_payload_base64": engine.encode(original.to_string())}
        });

        let redacted = redact_secrets(&mut letter);
        let payload = letter["data"][DEAD_LETTER_PAYLOAD]
            .as_str()
            .unwrap_or_default();
        let decoded = String::from_utf8_lossy(&engine.decode(payload)?).into_owned();

        assert_eq!(redacted.len(), 1);
        assert!(!decoded.contains("at-123"), "{decoded}");
        assert!(decoded.contains("apr-2"));
        Ok(())
    }
}
