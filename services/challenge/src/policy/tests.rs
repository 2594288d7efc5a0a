use stepup_events::data::{Approver, Channel};
use stepup_oidc::provider::ProviderSettings;

use super::*;

fn provider() -> Result<ProviderSettings, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "name": "okta",
        "kind": "oauth2",
        "issuer": "https://example.okta.com",
        "client_id": "client",
        "client_secret": "secret",
        "acr_values": ["urn:okta:loa:2fa:any"]
    }))
}

fn policies() -> Vec<PolicySettings> {
    vec![
        PolicySettings {
            policy_id: "prod".into(),
            step_id: "security".into(),
            step_up: true,
            provider: Some("okta".into()),
            max_age: None,
            acr_values: None,
        },
        PolicySettings {
            policy_id: "prod".into(),
            step_id: "manager".into(),
            step_up: false,
            provider: None,
            max_age: None,
            acr_values: None,
        },
    ]
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
fn step_up_step_requires_provider_strength() -> Result<(), serde_json::Error> {
    let decision = decide(&approval("security"), &policies(), &[provider()?]);
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
    Ok(())
}

#[test]
fn step_without_step_up_completes() -> Result<(), serde_json::Error> {
    let decision = decide(&approval("manager"), &policies(), &[provider()?]);
    assert_eq!(decision, Decision::NoStepUp);
    Ok(())
}

#[test]
fn unknown_step_is_rejected() -> Result<(), serde_json::Error> {
    let decision = decide(&approval("other"), &policies(), &[provider()?]);
    assert_eq!(decision, Decision::Reject(ReasonCode::NoPolicy));
    Ok(())
}

#[test]
fn automated_approval_of_step_up_step_is_rejected() -> Result<(), serde_json::Error> {
    let mut automated = approval("security");
    automated.automated = true;
    let decision = decide(&automated, &policies(), &[provider()?]);
    assert_eq!(
        decision,
        Decision::Reject(ReasonCode::AutomatedApprovalNotAllowed)
    );
    Ok(())
}

#[test]
fn chat_channel_on_step_up_step_is_rejected() -> Result<(), serde_json::Error> {
    for channel in [
        Channel::Slack,
        Channel::Teams,
        Channel::Cli,
        Channel::Automation,
    ] {
        let mut from_chat = approval("security");
        from_chat.channel = channel;
        let decision = decide(&from_chat, &policies(), &[provider()?]);
        assert_eq!(
            decision,
            Decision::Reject(ReasonCode::ChannelNotSupported),
            "{channel:?}"
        );
    }
    Ok(())
}

#[test]
fn automated_approval_of_plain_step_completes() -> Result<(), serde_json::Error> {
    let mut automated = approval("manager");
    automated.automated = true;
    let decision = decide(&automated, &policies(), &[provider()?]);
    assert_eq!(decision, Decision::NoStepUp);
    Ok(())
}

#[test]
fn disabled_provider_is_not_used() -> Result<(), serde_json::Error> {
    let mut disabled = provider()?;
    disabled.enabled = false;
    let decision = decide(&approval("security"), &policies(), &[disabled]);
    assert_eq!(decision, Decision::Reject(ReasonCode::ProviderUnknown));
    Ok(())
}
