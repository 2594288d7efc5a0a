//! Property tests of ID-token parsing. Whatever an IdP, or an attacker in front of one,
//! sends, splitting the compact JWS, parsing its claims and checking their times return a
//! value or a rejection with a reason code, never a panic.
//!
//! They run in the normal `cargo test`, with a bounded number of cases, so CI needs no
//! nightly toolchain or fuzzing engine.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use stepup_events::ReasonCode;
use stepup_oidc::claims::{check_validity, parse_claims, split};

/// The claim names the parser reads, so that generated objects hit its code paths.
const CLAIM_NAMES: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "acrs",
    "email",
    "email_verified",
    "preferred_username",
    "oid",
    "tid",
];

/// Any JSON value, nested a few levels deep, with extreme numbers among the leaves.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |n| n.is_finite())
            .prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((".{0,10}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// A JSON object whose members are known claim names with values of any type.
fn claims_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (proptest::sample::select(CLAIM_NAMES), json_value()),
        0..CLAIM_NAMES.len(),
    )
    .prop_map(|members| {
        let object: Map<String, Value> = members
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        Value::Object(object)
    })
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn split_never_panics(token in ".{0,300}") {
        let _ = split(&token);
    }

    #[test]
    fn split_of_three_segments_never_panics(
        header in json_value(),
        payload in ".{0,60}",
        signature in "[A-Za-z0-9_=+/-]{0,40}",
    ) {
        let token = format!("{}.{payload}.{signature}", encode(&header));
        let _ = split(&token);
    }

    #[test]
    fn parse_claims_of_any_text_never_panics(payload in ".{0,300}") {
        let _ = parse_claims(&payload);
    }

    /// Claims of any JSON type are parsed or rejected as `malformed_claim`, and the time
    /// checks on parsed claims never panic, also with dates at the edges of the range.
    #[test]
    fn parse_claims_of_any_object_is_typed_or_malformed(object in claims_object()) {
        match parse_claims(&encode(&object)) {
            Ok(claims) => {
                let _ = check_validity(&claims, Utc::now(), TimeDelta::seconds(60));
            }
            Err(rejection) => prop_assert_eq!(rejection.reason, ReasonCode::MalformedClaim),
        }
    }

    /// A well-typed payload with any numeric dates parses or is rejected as malformed.
    #[test]
    fn numeric_dates_of_any_size_never_panic(
        exp in any::<f64>().prop_filter("finite", |n| n.is_finite()),
        iat in any::<i64>(),
        auth_time in any::<u64>(),
    ) {
        let payload = json!({
            "iss": "https://idp.example.com",
            "sub": "00u1alice",
            "aud": "stepup",
            "exp": exp,
            "iat": iat,
            "auth_time": auth_time,
        });
        match parse_claims(&encode(&payload)) {
            Ok(claims) => {
                let _ = check_validity(&claims, Utc::now(), TimeDelta::seconds(60));
            }
            Err(rejection) => prop_assert_eq!(rejection.reason, ReasonCode::MalformedClaim),
        }
    }
}
