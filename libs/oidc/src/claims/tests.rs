use serde_json::json;

use super::*;

const ISSUER: &str = "https://idp.example.com";
const CLIENT: &str = "stepup";

fn reason<T>(result: Result<T, Rejection>) -> Option<ReasonCode> {
    result.err().map(|rejection| rejection.reason)
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default()
}

/// The payload of a valid token at [`now`].
fn payload() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "00u1",
        "aud": CLIENT,
        "exp": 1_750_000_300,
        "iat": 1_750_000_000,
        "auth_time": 1_750_000_000,
        "nonce": "n-1",
        "acr": "phr",
        "amr": ["pwd", "hwk"],
    })
}

fn with(name: &str, value: Value) -> Value {
    let mut payload = payload();
    payload[name] = value;
    payload
}

fn without(name: &str) -> Value {
    let mut payload = payload();
    payload.as_object_mut().map(|object| object.remove(name));
    payload
}

fn parse(payload: &Value) -> Result<Claims, Rejection> {
    parse_claims(&encode(payload))
}

#[test]
fn valid_payload_parses() {
    let claims = parse(&payload());
    assert!(claims.is_ok(), "{claims:?}");
    let claims = claims.unwrap_or_default();
    assert_eq!(claims.aud, vec![CLIENT.to_owned()]);
    assert_eq!(claims.amr, vec!["pwd".to_owned(), "hwk".to_owned()]);
    assert_eq!(claims.auth_time, Some(now()));
}

#[test]
fn wrong_types_are_malformed() {
    let cases = [
        ("acr", json!(3)),
        ("sub", json!(42)),
        ("nonce", json!(["n-1"])),
        ("amr", json!("pwd")),
        ("amr", json!(["pwd", 1])),
        ("acrs", json!("c1")),
        ("aud", json!(42)),
        ("aud", json!([CLIENT, 42])),
        ("azp", json!(true)),
        ("exp", json!("1750000300")),
        ("auth_time", json!({"at": 1})),
        ("email_verified", json!("true")),
        ("oid", json!(42)),
    ];
    for (name, value) in cases {
        let result = parse(&with(name, value.clone()));
        assert_eq!(
            reason(result),
            Some(ReasonCode::MalformedClaim),
            "{name} = {value}"
        );
    }
}

#[test]
fn timestamps_in_milliseconds_are_malformed() {
    for name in ["exp", "iat", "auth_time", "nbf"] {
        let result = parse(&with(name, json!(1_750_000_000_000_i64)));
        assert_eq!(reason(result), Some(ReasonCode::MalformedClaim), "{name}");
    }
}

#[test]
fn negative_timestamp_is_malformed() {
    assert_eq!(
        reason(parse(&with("iat", json!(-1)))),
        Some(ReasonCode::MalformedClaim)
    );
}

#[test]
fn fractional_timestamp_is_accepted() {
    let claims = parse(&with("auth_time", json!(1_750_000_000.5))).unwrap_or_default();
    assert_eq!(claims.auth_time, Some(now() + TimeDelta::milliseconds(500)));
}

#[test]
fn missing_required_claims_are_malformed() {
    for name in ["sub", "exp", "iat"] {
        assert_eq!(
            reason(parse(&without(name))),
            Some(ReasonCode::MalformedClaim),
            "{name}"
        );
    }
}

#[test]
fn payload_that_is_not_an_object_is_malformed() {
    assert_eq!(
        reason(parse_claims(&encode(&json!(["iss"])))),
        Some(ReasonCode::MalformedClaim)
    );
    assert_eq!(
        reason(parse_claims("%%%")),
        Some(ReasonCode::MalformedClaim)
    );
}

#[test]
fn issuer_must_match_exactly() {
    let exact = parse(&payload()).unwrap_or_default();
    assert!(check_issuer(&exact, ISSUER).is_ok());

    for other in [
        format!("{ISSUER}/"),
        ISSUER.to_uppercase(),
        format!("{ISSUER}:443"),
        "https://idp.example.com.evil".to_owned(),
    ] {
        let claims = parse(&with("iss", json!(other))).unwrap_or_default();
        assert_eq!(
            reason(check_issuer(&claims, ISSUER)),
            Some(ReasonCode::IssuerMismatch),
            "{other}"
        );
    }

    let missing = parse(&without("iss")).unwrap_or_default();
    assert_eq!(
        reason(check_issuer(&missing, ISSUER)),
        Some(ReasonCode::IssuerMismatch)
    );
}

#[test]
fn audience_must_contain_client() {
    let other = parse(&with("aud", json!("someone-else"))).unwrap_or_default();
    assert_eq!(
        reason(check_audience(&other, CLIENT)),
        Some(ReasonCode::AudienceMismatch)
    );
    let missing = parse(&without("aud")).unwrap_or_default();
    assert_eq!(
        reason(check_audience(&missing, CLIENT)),
        Some(ReasonCode::AudienceMismatch)
    );
    let alone_in_array = parse(&with("aud", json!([CLIENT]))).unwrap_or_default();
    assert!(check_audience(&alone_in_array, CLIENT).is_ok());
}

#[test]
fn extra_audiences_need_azp_of_client() {
    let several = with("aud", json!([CLIENT, "other-api"]));
    let no_azp = parse(&several).unwrap_or_default();
    assert_eq!(
        reason(check_audience(&no_azp, CLIENT)),
        Some(ReasonCode::AudienceMismatch)
    );

    let mut foreign = several.clone();
    foreign["azp"] = json!("other-api");
    let foreign_azp = parse(&foreign).unwrap_or_default();
    assert_eq!(
        reason(check_audience(&foreign_azp, CLIENT)),
        Some(ReasonCode::AudienceMismatch)
    );

    let mut ours = several;
    ours["azp"] = json!(CLIENT);
    assert!(check_audience(&parse(&ours).unwrap_or_default(), CLIENT).is_ok());
}

#[test]
fn azp_of_another_client_is_rejected() {
    let claims = parse(&with("azp", json!("other-client"))).unwrap_or_default();
    assert_eq!(
        reason(check_audience(&claims, CLIENT)),
        Some(ReasonCode::AudienceMismatch)
    );
}

#[test]
fn validity_window() {
    let skew = TimeDelta::seconds(60);
    let valid = parse(&payload()).unwrap_or_default();
    assert!(check_validity(&valid, now(), skew).is_ok());

    let expired = check_validity(&valid, now() + TimeDelta::seconds(300), skew);
    assert_eq!(reason(expired), Some(ReasonCode::TokenExpired));

    let not_yet = parse(&with("nbf", json!(1_750_000_120))).unwrap_or_default();
    assert_eq!(
        reason(check_validity(&not_yet, now(), skew)),
        Some(ReasonCode::TokenNotYetValid)
    );
    let nbf_within_skew = parse(&with("nbf", json!(1_750_000_030))).unwrap_or_default();
    assert!(check_validity(&nbf_within_skew, now(), skew).is_ok());

    let future = parse(&with("iat", json!(1_750_000_120))).unwrap_or_default();
    assert_eq!(
        reason(check_validity(&future, now(), skew)),
        Some(ReasonCode::IssuedInFuture)
    );
    let iat_within_skew = parse(&with("iat", json!(1_750_000_030))).unwrap_or_default();
    assert!(check_validity(&iat_within_skew, now(), skew).is_ok());
}

#[test]
fn nonce_must_be_present_and_equal() {
    let claims = parse(&payload()).unwrap_or_default();
    assert!(check_nonce(&claims, "n-1").is_ok());
    assert_eq!(
        reason(check_nonce(&claims, "n-2")),
        Some(ReasonCode::NonceMismatch)
    );
    let missing = parse(&without("nonce")).unwrap_or_default();
    assert_eq!(
        reason(check_nonce(&missing, "n-1")),
        Some(ReasonCode::NonceMismatch)
    );
}

fn token(header: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", encode(header), encode(&payload()))
}

#[test]
fn split_reads_header() {
    let text = token(&json!({"alg": "RS256", "kid": "k1"}), "c2ln");
    let jws = split(&text);
    assert!(jws.is_ok(), "{jws:?}");
    let jws = jws.ok();
    assert_eq!(
        jws.as_ref().map(|jws| jws.header.clone()),
        Some(Header {
            alg: "RS256".into(),
            kid: Some("k1".into())
        })
    );
    assert_eq!(jws.map(|jws| jws.signature), Some(b"sig".to_vec()));
}

#[test]
fn unsigned_tokens_are_rejected() {
    let none = token(&json!({"alg": "none"}), "");
    assert_eq!(reason(split(&none)), Some(ReasonCode::SignatureInvalid));

    let none_with_signature = token(&json!({"alg": "None"}), "c2ln");
    assert_eq!(
        reason(split(&none_with_signature)),
        Some(ReasonCode::SignatureInvalid)
    );

    let empty = token(&json!({"alg": "RS256"}), "");
    assert_eq!(reason(split(&empty)), Some(ReasonCode::SignatureInvalid));

    let two_parts = format!(
        "{}.{}",
        encode(&json!({"alg": "RS256"})),
        encode(&payload())
    );
    assert_eq!(
        reason(split(&two_parts)),
        Some(ReasonCode::SignatureInvalid)
    );
}

#[test]
fn broken_headers_are_rejected() {
    let cases = [
        token(&json!({"kid": "k1"}), "c2ln"),
        token(&json!({"alg": 256}), "c2ln"),
        token(&json!({"alg": "RS256", "kid": 7}), "c2ln"),
        token(&json!({"alg": "RS256", "crit": ["exp"]}), "c2ln"),
        "a.b.c.d.e".to_owned(),
    ];
    for case in cases {
        assert_eq!(
            reason(split(&case)),
            Some(ReasonCode::IdTokenInvalid),
            "{case}"
        );
    }
}
