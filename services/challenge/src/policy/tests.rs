use chrono::Utc;
use stepup_events::data::{Approver, Channel};
use stepup_oidc::provider::{ClientSecret, ProviderSettings};
use stepup_registry::record::WILDCARD;
use stepup_registry::{Origin, PolicyRecord, ProviderRecord, StoredSecret};

use super::*;

fn provider_settings(value: serde_json::Value) -> ProviderRecord {
    let settings: ProviderSettings = serde_json::from_value(value).expect("test provider");
    ProviderRecord::from_settings(&settings, StoredSecret::Config, Origin::Api, Utc::now())
}

fn provider() -> ProviderRecord {
    provider_settings(serde_json::json!({
        "name": "okta",
        "kind": "oauth2",
        "issuer": "https://example.okta.com",
        "client_id": "client",
        "client_secret": "secret",
        "acr_values": ["urn:okta:loa:2fa:any"]
    }))
}

fn entra() -> ProviderRecord {
    provider_settings(serde_json::json!({
        "name": "entra",
        "kind": "entra",
        "issuer": "https://login.microsoftonline.com/tenant-1/v2.0",
        "client_id": "client",
        "client_secret": "env:ENTRA_SECRET",
        "entra_mode": "acrs",
        "auth_context": "c2"
    }))
}

fn policy(policy_id: &str, step_id: &str, provider: Option<&str>) -> PolicyRecord {
    PolicyRecord {
        policy_id: policy_id.into(),
        step_id: step_id.into(),
        step_up: provider.is_some(),
        provider: provider.map(str::to_owned),
        max_age: None,
        acr_values: None,
        allow_self_approval: false,
        origin: Origin::Api,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn policies() -> Vec<PolicyRecord> {
    vec![
        policy("prod", "security", Some("okta")),
        policy("prod", "manager", None),
    ]
}

fn catalog_with(providers: Vec<ProviderRecord>, policies: Vec<PolicyRecord>) -> Catalog {
    Catalog::from_records(providers, policies)
}

fn catalog() -> Catalog {
    catalog_with(vec![provider()], policies())
}

fn approval(step_id: &str) -> ApprovalRequested {
    ApprovalRequested {
        approval_id: "apr-1".into(),
        policy_id: "prod".into(),
        step_id: step_id.into(),
        approver: Approver {
            id: "u-1".into(),
            email: "alice@example.com".into(),
            idp_subject: None,
        },
        requester: None,
        resource: None,
        channel: Channel::Web,
        automated: false,
        return_url: None,
    }
}

#[test]
fn step_up_step_requires_provider_strength() {
    let decision = decide(&approval("security"), &catalog());
    let Decision::StepUp {
        provider,
        requirement,
    } = decision
    else {
        panic!("expected step-up, got {decision:?}");
    };
    assert_eq!(provider, "okta");
    assert_eq!(requirement.acr_values, vec!["urn:okta:loa:2fa:any"]);
    assert_eq!(requirement.max_age, Some(0));
}

#[test]
fn step_without_step_up_completes() {
    let decision = decide(&approval("manager"), &catalog());
    assert_eq!(decision, Decision::NoStepUp);
}

#[test]
fn unknown_step_is_rejected() {
    let decision = decide(&approval("other"), &catalog());
    assert_eq!(decision, Decision::Reject(ReasonCode::NoPolicy));
}

#[test]
fn automated_approval_of_step_up_step_is_rejected() {
    let mut automated = approval("security");
    automated.automated = true;
    let decision = decide(&automated, &catalog());
    assert_eq!(
        decision,
        Decision::Reject(ReasonCode::AutomatedApprovalNotAllowed)
    );
}

#[test]
fn chat_channel_on_step_up_step_is_rejected() {
    for channel in [
        Channel::Slack,
        Channel::Teams,
        Channel::Cli,
        Channel::Automation,
    ] {
        let mut from_chat = approval("security");
        from_chat.channel = channel;
        let decision = decide(&from_chat, &catalog());
        assert_eq!(
            decision,
            Decision::Reject(ReasonCode::ChannelNotSupported),
            "{channel:?}"
        );
    }
}

#[test]
fn automated_approval_of_plain_step_completes() {
    let mut automated = approval("manager");
    automated.automated = true;
    let decision = decide(&automated, &catalog());
    assert_eq!(decision, Decision::NoStepUp);
}

#[test]
fn disabled_provider_is_not_used() {
    let mut disabled = provider();
    disabled.enabled = false;
    let decision = decide(
        &approval("security"),
        &catalog_with(vec![disabled], policies()),
    );
    assert_eq!(decision, Decision::Reject(ReasonCode::ProviderUnknown));
}

fn self_approval(step_id: &str) -> ApprovalRequested {
    let mut approval = approval(step_id);
    approval.requester = Some(stepup_events::data::Requester {
        id: "u-1".into(),
        email: None,
        display_name: None,
    });
    approval
}

#[test]
fn self_approval_is_rejected_by_default() {
    for step in ["security", "manager"] {
        let decision = decide(&self_approval(step), &catalog());
        assert_eq!(
            decision,
            Decision::Reject(ReasonCode::SelfApproval),
            "{step}"
        );
    }
}

#[test]
fn self_approval_matches_requester_email() {
    let mut approval = approval("security");
    approval.requester = Some(stepup_events::data::Requester {
        id: "someone-else".into(),
        email: Some("ALICE@example.com".into()),
        display_name: None,
    });
    let decision = decide(&approval, &catalog());
    assert_eq!(decision, Decision::Reject(ReasonCode::SelfApproval));
}

#[test]
fn other_requester_is_not_self_approval() {
    let mut approval = approval("security");
    approval.requester = Some(stepup_events::data::Requester {
        id: "u-2".into(),
        email: Some("bob@example.com".into()),
        display_name: None,
    });
    let decision = decide(&approval, &catalog());
    assert!(matches!(decision, Decision::StepUp { .. }), "{decision:?}");
}

#[test]
fn policy_may_allow_self_approval() {
    let mut policies = policies();
    policies[0].allow_self_approval = true;
    let decision = decide(
        &self_approval("security"),
        &catalog_with(vec![provider()], policies),
    );
    assert!(matches!(decision, Decision::StepUp { .. }), "{decision:?}");
}

#[test]
fn default_policy_covers_unknown_step() {
    let mut policies = policies();
    policies.push(policy(WILDCARD, WILDCARD, Some("okta")));
    let decision = decide(
        &approval("other"),
        &catalog_with(vec![provider()], policies),
    );
    assert!(matches!(decision, Decision::StepUp { .. }), "{decision:?}");
}

#[test]
fn steps_of_one_policy_use_different_providers() {
    let mut policies = policies();
    policies.push(policy("prod", "finance", Some("entra")));
    let catalog = catalog_with(vec![provider(), entra()], policies);

    let Decision::StepUp {
        provider: first, ..
    } = decide(&approval("security"), &catalog)
    else {
        panic!("expected step-up");
    };
    let Decision::StepUp {
        provider: second,
        requirement,
    } = decide(&approval("finance"), &catalog)
    else {
        panic!("expected step-up");
    };
    assert_eq!(first, "okta");
    assert_eq!(second, "entra");
    assert_eq!(requirement.auth_context.as_deref(), Some("c2"));
}

#[test]
fn missing_provider_is_unknown() {
    let decision = decide(&approval("security"), &catalog_with(vec![], policies()));
    assert_eq!(decision, Decision::Reject(ReasonCode::ProviderUnknown));
}

#[test]
fn provider_test_ids_are_reserved() {
    let mut policies = policies();
    policies.push(policy(WILDCARD, WILDCARD, Some("okta")));
    let catalog = catalog_with(vec![provider()], policies);

    let mut test_policy = approval("security");
    test_policy.policy_id = stepup_registry::record::PROVIDER_TEST_POLICY.into();
    assert_eq!(
        decide(&test_policy, &catalog),
        Decision::Reject(ReasonCode::NoPolicy)
    );

    let mut test_approval = approval("security");
    test_approval.approval_id = format!(
        "{}x",
        stepup_registry::record::PROVIDER_TEST_APPROVAL_PREFIX
    );
    assert_eq!(
        decide(&test_approval, &catalog),
        Decision::Reject(ReasonCode::NoPolicy)
    );
}

#[test]
fn policy_overrides_reach_requirement() {
    let mut policies = policies();
    policies[0].max_age = Some(120);
    policies[0].acr_values = Some(vec!["phrh".into()]);
    let decision = decide(
        &approval("security"),
        &catalog_with(vec![provider()], policies),
    );
    let Decision::StepUp { requirement, .. } = decision else {
        panic!("expected step-up, got {decision:?}");
    };
    assert_eq!(requirement.max_age, Some(120));
    assert_eq!(requirement.acr_values, vec!["phrh"]);
}

#[test]
fn record_settings_keep_secret_withheld() {
    let settings = provider().settings(ClientSecret::withheld());
    assert!(settings.client_secret.resolve("okta").is_err());
}
