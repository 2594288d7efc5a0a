//! The browser-binding cookie.
//!
//! Opening a step-up link sets a random value in a cookie that only `/auth/callback`
//! receives, and the challenge service stores its SHA-256. The callback sends the hash of
//! the cookie it gets back, so a code delivered to a different browser than the one that
//! started the challenge (a forwarded or phished link) is detected. The value itself never
//! leaves this service.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const NAME: &str = "stepup_binding";

/// The only path the browser sends the cookie to.
pub const PATH: &str = "/auth/callback";

/// The maximum lifetime of the cookie, whatever the challenge's expiry.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Values longer than this are not ours; a real value has 43 characters.
const MAX_VALUE_LEN: usize = 128;

/// Generates a fresh browser-binding value: 256 random bits, base64url-encoded.
pub fn new_value() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Computes the hex SHA-256 of a cookie value, as the challenge service stores it.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Builds the `Set-Cookie` header value for `value`, living for `max_age` capped at
/// [`MAX_AGE_LIMIT`] and at least one second.
pub fn set_cookie(value: &str, max_age: Duration, secure: bool) -> String {
    let seconds = max_age.min(MAX_AGE_LIMIT).as_secs().max(1);
    let secure = if secure { "; Secure" } else { "" };
    format!("{NAME}={value}; Max-Age={seconds}; Path={PATH}; HttpOnly; SameSite=Lax{secure}")
}

/// Returns the binding cookie's value in the request, if there is a plausible one.
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty() && value.len() <= MAX_VALUE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn new_values_are_distinct_and_256_bit() {
        let first = new_value();
        let second = new_value();
        assert_ne!(first, second);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&first).map(|b| b.len()).ok(),
            Some(32)
        );
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn set_cookie_caps_lifetime() {
        let header = set_cookie("v", Duration::from_secs(3600), true);
        assert_eq!(
            header,
            "stepup_binding=v; Max-Age=900; Path=/auth/callback; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn set_cookie_without_secure_on_http() {
        let header = set_cookie("v", Duration::from_secs(60), false);
        assert!(header.ends_with("SameSite=Lax"), "{header}");
        assert!(header.contains("Max-Age=60;"), "{header}");
    }

    #[test]
    fn from_headers_finds_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; stepup_binding_x=2"));
        headers.append(COOKIE, HeaderValue::from_static("b=3; stepup_binding=abc"));
        assert_eq!(from_headers(&headers), Some("abc"));
    }

    #[test]
    fn from_headers_ignores_empty_and_oversized_values() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("stepup_binding="));
        assert_eq!(from_headers(&headers), None);

        let long = format!("stepup_binding={}", "a".repeat(200));
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&long).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(from_headers(&headers), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any visible-ASCII Cookie header is read without a panic, and a value found
            /// is never empty nor longer than the limit.
            #[test]
            fn any_cookie_header_reads_without_panic(header in "[ -~]{0,300}") {
                let mut headers = HeaderMap::new();
                if let Ok(value) = HeaderValue::from_str(&header) {
                    headers.insert(COOKIE, value);
                }
                if let Some(value) = from_headers(&headers) {
                    prop_assert!(!value.is_empty() && value.len() <= MAX_VALUE_LEN);
                }
            }

            /// Arbitrary bytes, also invalid UTF-8, in a Cookie header are ignored or read
            /// without a panic.
            #[test]
            fn cookie_header_bytes_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut headers = HeaderMap::new();
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    headers.insert(COOKIE, value);
                }
                let _ = from_headers(&headers);
            }
        }
    }
}
