//! Strict parsing of a compact ID token, and the checks on its registered claims.
//!
//! `openidconnect` fails on a claim of the wrong type with one opaque error, and cannot say
//! which claim or why. This module reads the JOSE header and the payload as JSON and gives
//! each claim its exact type, so that a number where a string belongs, a string where an
//! array belongs, or a timestamp in milliseconds is rejected as `malformed_claim` and names
//! the claim. The checks after parsing (`iss`, `aud`/`azp`, `exp`, `nbf`, `iat`, `nonce`)
//! each return their own reason code.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use stepup_events::ReasonCode;
use subtle::ConstantTimeEq as _;

use crate::verify::Rejection;

/// The largest NumericDate accepted: 253402300800 is 10000-01-01T00:00:00Z. A current time
/// in milliseconds (about 1.7e12) is far above it.
const MAX_NUMERIC_DATE: f64 = 253_402_300_800.0;

type Object = Map<String, Value>;

/// A compact JWS split into its parts; nothing in it is trusted yet.
#[derive(Debug)]
pub struct CompactJws<'a> {
    pub header: Header,
    /// `BASE64URL(header) . BASE64URL(payload)`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub payload: &'a str,
    pub signature: Vec<u8>,
}

/// The JOSE header fields the verifier uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
}

/// The claims of an ID token, each with its exact type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: String,
    pub aud: Vec<String>,
    pub azp: Option<String>,
    pub exp: DateTime<Utc>,
    pub iat: DateTime<Utc>,
    pub nbf: Option<DateTime<Utc>>,
    pub auth_time: Option<DateTime<Utc>>,
    pub nonce: Option<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    /// Entra's authentication context class references.
    pub acrs: Vec<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub preferred_username: Option<String>,
    /// Entra's object id of the user.
    pub oid: Option<String>,
    /// Entra's tenant id.
    pub tid: Option<String>,
}

fn invalid(reason: ReasonCode, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail)
}

fn malformed(detail: impl Into<String>) -> Rejection {
    invalid(ReasonCode::MalformedClaim, detail)
}

/// Splits `token` into header, payload and signature. An unsigned token (`alg: none`, an
/// empty signature, or no signature segment) is rejected here.
pub fn split(token: &str) -> Result<CompactJws<'_>, Rejection> {
    let parts: Vec<&str> = token.split('.').collect();
    let (header_part, payload, signature_part) = match parts.as_slice() {
        [header, payload, signature] => (*header, *payload, *signature),
        [_, _] => {
            return Err(invalid(
                ReasonCode::SignatureInvalid,
                "the ID token has no signature segment",
            ));
        }
        other => {
            return Err(invalid(
                ReasonCode::IdTokenInvalid,
                format!(
                    "the ID token has {} dot-separated parts; a compact JWS has 3 (encrypted ID tokens are not supported)",
                    other.len()
                ),
            ));
        }
    };
    let header = parse_header(header_part)?;

    // RFC 8725 §3.1: `none` is never accepted, whatever the configuration says.
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(invalid(
            ReasonCode::SignatureInvalid,
            "the ID token is unsigned (alg none)",
        ));
    }
    let signature = URL_SAFE_NO_PAD.decode(signature_part).map_err(|error| {
        invalid(
            ReasonCode::SignatureInvalid,
            format!("the ID token's signature is not base64url: {error}"),
        )
    })?;
    if signature.is_empty() {
        return Err(invalid(
            ReasonCode::SignatureInvalid,
            format!("the ID token has an empty signature (alg {})", header.alg),
        ));
    }

    let signing_input_length = header_part.len() + 1 + payload.len();
    Ok(CompactJws {
        header,
        signing_input: token.get(..signing_input_length).unwrap_or(token),
        payload,
        signature,
    })
}

fn parse_header(part: &str) -> Result<Header, Rejection> {
    let header_invalid = |detail: String| invalid(ReasonCode::IdTokenInvalid, detail);
    let object = decode_object(part)
        .map_err(|detail| header_invalid(format!("the ID token's JOSE header {detail}")))?;

    let alg = match object.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(other) => {
            return Err(header_invalid(format!(
                "the JOSE header's alg must be a string, found {}",
                json_kind(other)
            )));
        }
        None => return Err(header_invalid("the JOSE header has no alg".into())),
    };
    let kid = match object.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(other) => {
            return Err(header_invalid(format!(
                "the JOSE header's kid must be a string, found {}",
                json_kind(other)
            )));
        }
    };

    // RFC 7515 §4.1.11: a receiver must reject a token with critical extensions it does
    // not understand, and it understands none.
    if object.contains_key("crit") {
        return Err(header_invalid(
            "the JOSE header has crit extensions, which are not supported".into(),
        ));
    }
    Ok(Header { alg, kid })
}

fn decode_object(part: &str) -> Result<Object, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|error| format!("is not base64url: {error}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!("is {}, not a JSON object", json_kind(&other))),
        Err(error) => Err(format!("is not JSON: {error}")),
    }
}

/// Parses the payload of a token whose signature was verified.
pub fn parse_claims(payload: &str) -> Result<Claims, Rejection> {
    let object = decode_object(payload)
        .map_err(|detail| malformed(format!("the ID token's payload {detail}")))?;
    let required_date = |name: &str| {
        numeric_date(&object, name)?
            .ok_or_else(|| malformed(format!("the required claim {name} is missing")))
    };

    Ok(Claims {
        iss: string(&object, "iss")?,
        sub: string(&object, "sub")?
            .ok_or_else(|| malformed("the required claim sub is missing"))?,
        aud: audiences(&object)?,
        azp: string(&object, "azp")?,
        exp: required_date("exp")?,
        iat: required_date("iat")?,
        nbf: numeric_date(&object, "nbf")?,
        auth_time: numeric_date(&object, "auth_time")?,
        nonce: string(&object, "nonce")?,
        acr: string(&object, "acr")?,
        amr: string_array(&object, "amr")?,
        acrs: string_array(&object, "acrs")?,
        email: string(&object, "email")?,
        email_verified: boolean(&object, "email_verified")?,
        preferred_username: string(&object, "preferred_username")?,
        oid: string(&object, "oid")?,
        tid: string(&object, "tid")?,
    })
}

fn string(object: &Object, name: &str) -> Result<Option<String>, Rejection> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(malformed(format!(
            "claim {name} must be a string, found {}",
            json_kind(other)
        ))),
    }
}

fn boolean(object: &Object, name: &str) -> Result<Option<bool>, Rejection> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => Err(malformed(format!(
            "claim {name} must be a boolean, found {}",
            json_kind(other)
        ))),
    }
}

fn string_array(object: &Object, name: &str) -> Result<Vec<String>, Rejection> {
    let wrong = |found: &Value| {
        malformed(format!(
            "claim {name} must be an array of strings, found {}",
            json_kind(found)
        ))
    };
    match object.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| wrong(item)))
            .collect(),
        Some(other) => Err(wrong(other)),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audiences(object: &Object) -> Result<Vec<String>, Rejection> {
    match object.get("aud") {
        Some(Value::String(audience)) => Ok(vec![audience.clone()]),
        Some(Value::Array(_)) => string_array(object, "aud"),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(other) => Err(malformed(format!(
            "claim aud must be a string or an array of strings, found {}",
            json_kind(other)
        ))),
    }
}

/// A NumericDate: seconds since the epoch as a JSON number (RFC 7519 §2). Fractions are
/// allowed; negative values and values past the year 9999 are not.
fn numeric_date(object: &Object, name: &str) -> Result<Option<DateTime<Utc>>, Rejection> {
    let seconds = match object.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number.as_f64().unwrap_or(f64::NAN),
        Some(other) => {
            return Err(malformed(format!(
                "claim {name} must be a number of seconds since the epoch, found {}",
                json_kind(other)
            )));
        }
    };
    if seconds > MAX_NUMERIC_DATE {
        return Err(malformed(format!(
            "claim {name} is {seconds}, past the year 9999: it looks like milliseconds, but it must be seconds since the epoch"
        )));
    }
    if seconds.is_nan() || seconds < 0.0 {
        return Err(malformed(format!(
            "claim {name} is {seconds}; it must be a non-negative number of seconds since the epoch"
        )));
    }

    // Truncation to whole milliseconds is intended; the range check above keeps the value
    // well inside i64.
    #[allow(clippy::cast_possible_truncation)]
    let millis = (seconds * 1000.0) as i64;
    DateTime::from_timestamp_millis(millis)
        .map(Some)
        .ok_or_else(|| {
            malformed(format!(
                "claim {name} ({seconds}) is not a representable time"
            ))
        })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// OpenID Connect Core §3.1.3.7 step 2: `iss` is exactly the configured issuer, byte for
/// byte. A trailing slash or a different case makes it another issuer.
pub fn check_issuer(claims: &Claims, expected: &str) -> Result<(), Rejection> {
    match claims.iss.as_deref() {
        Some(iss) if iss == expected => Ok(()),
        Some(iss) => Err(invalid(
            ReasonCode::IssuerMismatch,
            format!("the ID token's iss is {iss:?}, expected exactly {expected:?}"),
        )),
        None => Err(invalid(
            ReasonCode::IssuerMismatch,
            format!("the ID token has no iss claim; expected {expected:?}"),
        )),
    }
}

/// Steps 3 to 5: `aud` contains the client id; other audiences are trusted only when `azp`
/// is the client id; an `azp` that is present must be the client id.
pub fn check_audience(claims: &Claims, client_id: &str) -> Result<(), Rejection> {
    if !claims.aud.iter().any(|audience| audience == client_id) {
        return Err(invalid(
            ReasonCode::AudienceMismatch,
            format!(
                "the ID token's aud is {:?}, which does not contain the client id {client_id:?}",
                claims.aud
            ),
        ));
    }
    if let Some(azp) = claims.azp.as_deref()
        && azp != client_id
    {
        return Err(invalid(
            ReasonCode::AudienceMismatch,
            format!("the ID token's azp is {azp:?}, expected the client id {client_id:?}"),
        ));
    }
    if claims.aud.len() > 1 && claims.azp.is_none() {
        return Err(invalid(
            ReasonCode::AudienceMismatch,
            format!(
                "the ID token has several audiences {:?} and no azp naming {client_id:?}",
                claims.aud
            ),
        ));
    }
    Ok(())
}

/// Step 9 and 10 with RFC 7519's `nbf`: `exp` has not passed (no leeway, as
/// `openidconnect` applies none either), and neither `nbf` nor `iat` lies further in the
/// future than `skew`.
pub fn check_validity(
    claims: &Claims,
    now: DateTime<Utc>,
    skew: TimeDelta,
) -> Result<(), Rejection> {
    if now >= claims.exp {
        return Err(invalid(
            ReasonCode::TokenExpired,
            format!("the ID token expired at {} (now {now})", claims.exp),
        ));
    }
    if let Some(nbf) = claims.nbf
        && nbf > now + skew
    {
        return Err(invalid(
            ReasonCode::TokenNotYetValid,
            format!("the ID token is not valid before {nbf} (now {now}, skew {skew})"),
        ));
    }
    if claims.iat > now + skew {
        return Err(invalid(
            ReasonCode::IssuedInFuture,
            format!(
                "the ID token's iat {} is in the future (now {now}, skew {skew})",
                claims.iat
            ),
        ));
    }
    Ok(())
}

/// Step 11: the `nonce` is the challenge's, compared in constant time over SHA-256 digests
/// so that neither length nor content leaks through timing.
pub fn check_nonce(claims: &Claims, expected: &str) -> Result<(), Rejection> {
    let Some(nonce) = claims.nonce.as_deref() else {
        return Err(invalid(
            ReasonCode::NonceMismatch,
            "the ID token has no nonce claim",
        ));
    };
    let matches: bool = Sha256::digest(nonce.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into();
    if !matches {
        return Err(invalid(
            ReasonCode::NonceMismatch,
            "the ID token's nonce is not the challenge's nonce",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
