use base64::Engine as _;
use chrono::{TimeZone, Utc};
use stepup_events::data::{
    ApprovalCompleted, ApprovalRequested, Approver, Channel, DeadLetter, Evidence,
};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn approver() -> Approver {
    Approver {
        id: "u-42".into(),
        email: "ada@example.com".into(),
        idp_subject: None,
    }
}

fn requested() -> ApprovalRequested {
    ApprovalRequested {
        approval_id: "apr-1".into(),
        policy_id: "prod-access".into(),
        step_id: "step-1".into(),
        approver: approver(),
        requester: None,
        resource: None,
        channel: Channel::Web,
        automated: false,
        return_url: None,
    }
}

#[test]
fn completed_event_fills_evidence_columns() -> TestResult {
    let auth_time = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).single();
    let completed = ApprovalCompleted {
        approval_id: "apr-1".into(),
        step_id: "step-1".into(),
        challenge_id: Some("ch-1".into()),
        approver: approver(),
        evidence: Some(Evidence {
            provider: "okta".into(),
            issuer: "https://idp.example.com".into(),
            subject: "00u1".into(),
            acr: Some("phrh".into()),
            amr: vec!["hwk".into(), "pop".into()],
            auth_time,
            acrs: vec![],
            id_token_sha256: "ab".repeat(32),
            verified_at: Utc::now(),
        }),
    };
    let envelope = Envelope::new("/stepup/challenge", &completed)?;

    let entry = entry_of(&envelope, Some("0af7651916cd43dd8448eb211c80319c".into()))?;

    assert_eq!(entry.event_id, envelope.id());
    assert_eq!(entry.outcome, "completed");
    assert_eq!(entry.approval_id.as_deref(), Some("apr-1"));
    assert_eq!(entry.challenge_id.as_deref(), Some("ch-1"));
    assert_eq!(entry.approver.as_deref(), Some("u-42"));
    assert_eq!(entry.provider.as_deref(), Some("okta"));
    assert_eq!(entry.acr.as_deref(), Some("phrh"));
    assert_eq!(entry.amr.as_deref(), Some(r#"["hwk","pop"]"#));
    assert_eq!(entry.acrs.as_deref(), Some("[]"));
    assert_eq!(entry.auth_time, auth_time.map(|t| t.timestamp_millis()));
    assert_eq!(entry.idp_subject.as_deref(), Some("00u1"));
    assert_eq!(entry.id_token_sha256, Some("ab".repeat(32)));
    assert_eq!(
        entry.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&entry.event_json)?,
        serde_json::from_slice::<Value>(&envelope.to_json()?)?
    );
    Ok(())
}

#[test]
fn dead_letter_takes_ids_from_the_original_event() -> TestResult {
    let original = Envelope::new("/stepup/other", &requested())?;
    let letter = DeadLetter {
        service: "challenge".into(),
        original_subject: "stepup.approval.requested".into(),
        original_payload_base64: base64::engine::general_purpose::STANDARD
            .encode(original.to_json()?),
        original_event_id: Some(original.id().to_owned()),
        error: "policy store unavailable".into(),
        delivered: 5,
    };
    let envelope = Envelope::new("/stepup/challenge", &letter)?;

    let entry = entry_of(&envelope, None)?;

    assert_eq!(entry.outcome, "dead_letter");
    assert_eq!(entry.approval_id.as_deref(), Some("apr-1"));
    assert_eq!(entry.step_id.as_deref(), Some("step-1"));
    assert_eq!(entry.approver.as_deref(), Some("u-42"));
    Ok(())
}

#[test]
fn dead_letter_of_garbage_has_no_approval() -> TestResult {
    let letter = DeadLetter {
        service: "audit".into(),
        original_subject: "stepup.approval.requested".into(),
        original_payload_base64: "bm90IGpzb24=".into(),
        original_event_id: None,
        error: "not a CloudEvent".into(),
        delivered: 1,
    };
    let envelope = Envelope::new("/stepup/audit", &letter)?;

    let entry = entry_of(&envelope, None)?;

    assert_eq!(entry.outcome, "dead_letter");
    assert_eq!(entry.approval_id, None);
    Ok(())
}

#[test]
fn unknown_type_with_odd_data_is_recorded() -> TestResult {
    let json = serde_json::json!({
        "specversion": "1.0",
        "id": "evt-odd",
        "source": "/elsewhere",
        "type": "stepup.approval.escalated",
        "subject": "apr-9",
        "datacontenttype": "application/json",
        "data": {"approval_id": 7, "approver": "grace@example.com", "evidence": "none"}
    });
    let envelope = Envelope::from_json(json.to_string().as_bytes())?;

    let entry = entry_of(&envelope, None)?;

    assert_eq!(entry.outcome, "escalated");
    assert_eq!(entry.approval_id.as_deref(), Some("apr-9"));
    assert_eq!(entry.approver.as_deref(), Some("grace@example.com"));
    assert_eq!(entry.event_time, None);
    assert_eq!(entry.acr, None);
    Ok(())
}

#[test]
fn event_without_data_is_recorded() -> TestResult {
    let json =
        r#"{"specversion":"1.0","id":"evt-bare","source":"/x","type":"stepup.provider.tested"}"#;
    let envelope = Envelope::from_json(json.as_bytes())?;

    let entry = entry_of(&envelope, None)?;

    assert_eq!(entry.outcome, "tested");
    assert_eq!(entry.approval_id, None);
    assert_eq!(entry.provider, None);
    Ok(())
}

#[test]
fn outcome_names_known_types() {
    let cases = [
        ("stepup.approval.requested", "requested"),
        ("stepup.required", "step_up_required"),
        ("stepup.approval.rejected", "rejected"),
        ("stepup.challenge.failed", "failed"),
        ("stepup.challenge.expired", "expired"),
        ("stepup.auth.verified", "verified"),
        ("stepup.auth.rejected", "auth_rejected"),
        ("stepup.deadletter", "dead_letter"),
        ("stepup.deadletter.verifier", "dead_letter"),
        ("stepup.deadletters", "deadletters"),
    ];
    for (event_type, outcome) in cases {
        assert_eq!(outcome_of(event_type), outcome, "for {event_type}");
    }
}

#[test]
fn auth_time_reads_rfc3339_and_unix_seconds() {
    assert_eq!(
        unix_millis(&Value::from("1970-01-01T00:00:01.5Z")),
        Some(1_500)
    );
    assert_eq!(unix_millis(&Value::from(2)), Some(2_000));
    assert_eq!(unix_millis(&Value::from("yesterday")), None);
}

#[test]
fn secrets_in_a_foreign_event_are_not_recorded() -> TestResult {
    let json = serde_json::json!({
        "specversion": "1.0",
        "id": "evt-leaky",
        "source": "/other-system",
        "type": "stepup.approval.requested",
        "subject": "apr-5",
        "datacontenttype": "application/json",
        "data": {
            "approval_id": "apr-5",
            "approver": {"id": "u-1", "email": "ada@example.com"},
            "id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "oauth": {"code": "SplxlOBeZQQYbYS6WxSbIA", "client_secret": "hunter2-secret"}
        }
    });
    let envelope = Envelope::from_json(json.to_string().as_bytes())?;

    let entry = entry_of(&envelope, None)?;
    let stored: Value = serde_json::from_str(&entry.event_json)?;

    for secret in [
        "eyJhbGciOiJSUzI1NiJ9",
        "SplxlOBeZQQYbYS6WxSbIA",
        "hunter2-secret",
    ] {
        assert!(
            !entry.event_json.contains(secret),
            "{secret} reached the audit log"
        );
    }
    assert_eq!(stored["data"]["id_token"], crate::redact::REDACTED);
    assert_eq!(stored["data"]["oauth"]["code"], crate::redact::REDACTED);
    assert_eq!(
        stored["data"]["oauth"]["client_secret"],
        crate::redact::REDACTED
    );
    assert_eq!(entry.approval_id.as_deref(), Some("apr-5"));
    assert_eq!(entry.approver.as_deref(), Some("u-1"));
    Ok(())
}
