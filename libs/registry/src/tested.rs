//! `stepup.provider.tested`: the report of one provider test, requested versus received.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stepup_events::data::{EntraMode, Evidence, Requirement};
use stepup_events::{EventData, ReasonCode, subject};

/// What the IdP returned, as far as the test got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedClaims {
    pub issuer: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub acrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<DateTime<Utc>>,
}

/// One check of the test and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `id_token`, `acr`, `acrs`, `auth_time`, `approver_binding`, `authorization`,
    /// `token_request` or `expiry`.
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// Why a test failed: the check, its reason code, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFailure {
    pub check: String,
    pub reason_code: ReasonCode,
    /// A sentence that says what to change, usually at the IdP.
    pub message: String,
    /// The verifier's detail, such as the `acr` that came back; never a token or secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `stepup.provider.tested`: a provider test finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTested {
    pub provider: String,
    /// The id of the test's challenge.
    pub test_id: String,
    pub passed: bool,
    /// What the authorization request asked for.
    pub requested: Requirement,
    /// What the ID token carried; absent when the test failed before one was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<ReceivedClaims>,
    pub checks: Vec<CheckResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<TestFailure>,
    pub tested_at: DateTime<Utc>,
}

impl EventData for ProviderTested {
    const TYPE: &'static str = subject::PROVIDER_TESTED;

    fn subject_id(&self) -> &str {
        &self.provider
    }
}

impl ProviderTested {
    /// The report of a test whose authentication passed every check.
    pub fn passed(
        provider: &str,
        test_id: &str,
        requested: &Requirement,
        evidence: &Evidence,
        tested_at: DateTime<Utc>,
    ) -> Self {
        let mut checks = vec![pass(
            "id_token",
            "signature, iss, aud, exp and nonce are valid".into(),
        )];
        if !requested.acr_values.is_empty() {
            checks.push(pass(
                "acr",
                format!(
                    "acr {:?} is one of {:?}",
                    evidence.acr.as_deref().unwrap_or_default(),
                    requested.acr_values
                ),
            ));
        }
        if requested.entra_mode == Some(EntraMode::Acrs) {
            checks.push(pass(
                "acrs",
                format!(
                    "acrs {:?} contains {}",
                    evidence.acrs,
                    requested.auth_context.as_deref().unwrap_or_default()
                ),
            ));
        }
        let auth_time = evidence
            .auth_time
            .map(|time| time.to_rfc3339())
            .unwrap_or_default();
        checks.push(pass(
            "auth_time",
            format!("auth_time {auth_time} is within this test"),
        ));
        checks.push(pass(
            "approver_binding",
            "the signed-in user is the tester".into(),
        ));
        Self {
            provider: provider.to_owned(),
            test_id: test_id.to_owned(),
            passed: true,
            requested: requested.clone(),
            received: Some(ReceivedClaims {
                issuer: evidence.issuer.clone(),
                subject: evidence.subject.clone(),
                acr: evidence.acr.clone(),
                amr: evidence.amr.clone(),
                acrs: evidence.acrs.clone(),
                auth_time: evidence.auth_time,
            }),
            checks,
            failure: None,
            tested_at,
        }
    }

    /// The report of a test that failed with `reason`.
    pub fn failed(
        provider: &str,
        test_id: &str,
        requested: &Requirement,
        reason: ReasonCode,
        message: &str,
        detail: Option<&str>,
        tested_at: DateTime<Utc>,
    ) -> Self {
        let check = check_of(reason);
        Self {
            provider: provider.to_owned(),
            test_id: test_id.to_owned(),
            passed: false,
            requested: requested.clone(),
            received: None,
            checks: vec![CheckResult {
                check: check.to_owned(),
                passed: false,
                detail: detail.unwrap_or(message).to_owned(),
            }],
            failure: Some(TestFailure {
                check: check.to_owned(),
                reason_code: reason,
                message: message.to_owned(),
                detail: detail.map(str::to_owned),
            }),
            tested_at,
        }
    }
}

fn pass(check: &str, detail: String) -> CheckResult {
    CheckResult {
        check: check.to_owned(),
        passed: true,
        detail,
    }
}

/// The check a reason code belongs to.
pub fn check_of(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::AcrMissing | ReasonCode::AcrNotSatisfied => "acr",
        ReasonCode::AcrsMissing | ReasonCode::AcrsNotSatisfied => "acrs",
        ReasonCode::AuthTimeMissing | ReasonCode::AuthTooOld => "auth_time",
        ReasonCode::SubjectMismatch => "approver_binding",
        ReasonCode::IdpError => "authorization",
        ReasonCode::TokenExchangeFailed | ReasonCode::IdpUnavailable => "token_request",
        ReasonCode::Expired => "expiry",
        ReasonCode::IdTokenMissing
        | ReasonCode::IdTokenInvalid
        | ReasonCode::MalformedClaim
        | ReasonCode::NonceMismatch => "id_token",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Evidence {
        Evidence {
            provider: "okta".into(),
            issuer: "https://example.okta.com".into(),
            subject: "00u1".into(),
            acr: Some("urn:okta:loa:2fa:any".into()),
            amr: vec!["pwd".into(), "otp".into()],
            auth_time: Some(Utc::now()),
            acrs: Vec::new(),
            id_token_sha256: "0".repeat(64),
            verified_at: Utc::now(),
        }
    }

    fn requirement() -> Requirement {
        Requirement {
            acr_values: vec!["urn:okta:loa:2fa:any".into()],
            max_age: Some(0),
            ..Requirement::default()
        }
    }

    #[test]
    fn passed_report_lists_received_claims() {
        let report = ProviderTested::passed("okta", "t1", &requirement(), &evidence(), Utc::now());
        let received = report.received.expect("received claims");
        assert_eq!(received.acr.as_deref(), Some("urn:okta:loa:2fa:any"));
        assert_eq!(received.amr, vec!["pwd", "otp"]);
        assert!(report.checks.iter().all(|check| check.passed));
        assert!(report.checks.iter().any(|check| check.check == "acr"));
    }

    #[test]
    fn failed_report_names_the_check() {
        let report = ProviderTested::failed(
            "entra",
            "t1",
            &requirement(),
            ReasonCode::AcrsMissing,
            ReasonCode::AcrsMissing.message(),
            Some("the ID token has no acrs claim"),
            Utc::now(),
        );
        let failure = report.failure.expect("a failure");
        assert_eq!(failure.check, "acrs");
        assert!(failure.message.contains("Conditional Access"));
        assert!(!report.passed);
    }

    #[test]
    fn report_matches_schema() -> Result<(), Box<dyn std::error::Error>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../schemas/stepup.provider.tested.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let validator = jsonschema::validator_for(&schema)?;
        for report in [
            ProviderTested::passed("okta", "t1", &requirement(), &evidence(), Utc::now()),
            ProviderTested::failed(
                "okta",
                "t2",
                &requirement(),
                ReasonCode::AcrNotSatisfied,
                ReasonCode::AcrNotSatisfied.message(),
                None,
                Utc::now(),
            ),
        ] {
            let json = serde_json::to_value(&report)?;
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{errors:?}");
        }
        Ok(())
    }
}
