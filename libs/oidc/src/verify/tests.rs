use super::*;

fn okta_requirement() -> Requirement {
    Requirement {
        acr_values: vec!["urn:okta:loa:2fa:any".into(), "phr".into()],
        max_age: Some(0),
        ..Requirement::default()
    }
}

fn acrs_requirement() -> Requirement {
    Requirement {
        entra_mode: Some(EntraMode::Acrs),
        auth_context: Some("c1".into()),
        ..Requirement::default()
    }
}

fn reason<T>(result: Result<T, Rejection>) -> Option<ReasonCode> {
    result.err().map(|rejection| rejection.reason)
}

#[test]
fn acr_in_allowed_set_passes() {
    let result = check_strength(ProviderKind::Oauth2, &okta_requirement(), Some("phr"), &[]);
    assert!(result.is_ok());
}

#[test]
fn weaker_acr_is_rejected() {
    let result = check_strength(
        ProviderKind::Oauth2,
        &okta_requirement(),
        Some("urn:okta:loa:1fa:pwd"),
        &[],
    );
    assert_eq!(reason(result), Some(ReasonCode::AcrNotSatisfied));
}

#[test]
fn acr_prefix_is_not_a_match() {
    let result = check_strength(
        ProviderKind::Oauth2,
        &okta_requirement(),
        Some("urn:okta:loa:2fa:any:ifpossible"),
        &[],
    );
    assert_eq!(reason(result), Some(ReasonCode::AcrNotSatisfied));
}

#[test]
fn missing_acr_is_rejected() {
    let result = check_strength(ProviderKind::Oauth2, &okta_requirement(), None, &[]);
    assert_eq!(reason(result), Some(ReasonCode::AcrMissing));
}

#[test]
fn entra_acrs_must_contain_context() {
    let requirement = acrs_requirement();
    let ok = check_strength(ProviderKind::Entra, &requirement, None, &["c1".into()]);
    assert!(ok.is_ok());

    let other = check_strength(ProviderKind::Entra, &requirement, None, &["c2".into()]);
    assert_eq!(reason(other), Some(ReasonCode::AcrsNotSatisfied));

    let missing = check_strength(ProviderKind::Entra, &requirement, None, &[]);
    assert_eq!(reason(missing), Some(ReasonCode::AcrsMissing));
}

#[test]
fn entra_oidc_mode_needs_no_acr() {
    let requirement = Requirement {
        entra_mode: Some(EntraMode::Oidc),
        max_age: Some(0),
        prompt_login: true,
        ..Requirement::default()
    };
    assert!(check_strength(ProviderKind::Entra, &requirement, None, &[]).is_ok());
}

#[test]
fn auth_time_checks() {
    let created = Utc::now();
    let now = created + TimeDelta::seconds(30);
    let skew = DEFAULT_CLOCK_SKEW;

    let fresh = check_auth_time(Some(created + TimeDelta::seconds(5)), created, now, skew);
    assert!(fresh.is_ok());

    let within_skew = check_auth_time(Some(created - TimeDelta::seconds(10)), created, now, skew);
    assert!(within_skew.is_ok());

    let old = check_auth_time(Some(created - TimeDelta::seconds(600)), created, now, skew);
    assert_eq!(reason(old), Some(ReasonCode::AuthTooOld));

    let missing = check_auth_time(None, created, now, skew);
    assert_eq!(reason(missing), Some(ReasonCode::AuthTimeMissing));
}

#[test]
fn auth_time_in_future_is_issued_in_future() {
    let created = Utc::now();
    let now = created + TimeDelta::seconds(30);
    let future = check_auth_time(
        Some(now + TimeDelta::seconds(600)),
        created,
        now,
        DEFAULT_CLOCK_SKEW,
    );
    assert_eq!(reason(future), Some(ReasonCode::IssuedInFuture));
}

#[test]
fn unknown_algorithm_is_a_configuration_error() {
    let names = ["none".to_owned()];
    assert_eq!(
        reason(allowed_algorithms(&names)),
        Some(ReasonCode::AlgorithmNotAllowed)
    );
}

#[test]
fn symmetric_algorithm_cannot_be_configured() {
    for name in ["HS256", "HS384", "HS512"] {
        let names = [name.to_owned()];
        assert_eq!(
            reason(allowed_algorithms(&names)),
            Some(ReasonCode::AlgorithmNotAllowed),
            "{name}"
        );
    }
}

#[test]
fn empty_algorithm_list_is_a_configuration_error() {
    assert_eq!(
        reason(allowed_algorithms(&[])),
        Some(ReasonCode::AlgorithmNotAllowed)
    );
}

#[test]
fn rejections_before_the_token_request_are_transient_only_when_unreachable() {
    let unreachable = Rejection::new(ReasonCode::IdpUnavailable, "down").before_code_sent();
    assert!(unreachable.transient);
    let garbage = Rejection::new(ReasonCode::ProviderMetadataInvalid, "html").before_code_sent();
    assert!(!garbage.transient);
}
