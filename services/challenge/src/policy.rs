//! The policy decision for an approval step.

use stepup_events::ReasonCode;
use stepup_events::data::{ApprovalRequested, Requirement};
use stepup_oidc::provider::ProviderSettings;

use crate::config::PolicySettings;

/// What happens to an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The step needs no step-up: complete it now.
    NoStepUp,
    /// The approver must step up with `provider`.
    StepUp {
        provider: String,
        requirement: Requirement,
    },
    /// The approval cannot proceed; the rule that refused it is the reason.
    Reject(ReasonCode),
}

/// Decides what `approval` requires. Rules, in order: a step needs a policy; a step-up step
/// is never approved automatically, nor from a channel that cannot open a browser; the
/// policy's provider must be configured and enabled.
pub fn decide(
    approval: &ApprovalRequested,
    policies: &[PolicySettings],
    providers: &[ProviderSettings],
) -> Decision {
    let Some(policy) = policies
        .iter()
        .find(|p| p.policy_id == approval.policy_id && p.step_id == approval.step_id)
    else {
        return Decision::Reject(ReasonCode::NoPolicy);
    };
    if !policy.step_up {
        return Decision::NoStepUp;
    }
    if approval.automated {
        return Decision::Reject(ReasonCode::AutomatedApprovalNotAllowed);
    }
    if !approval.channel.can_redirect_browser() {
        return Decision::Reject(ReasonCode::ChannelNotSupported);
    }
    let provider = policy
        .provider
        .as_ref()
        .and_then(|name| providers.iter().find(|p| &p.name == name && p.enabled));
    let Some(provider) = provider else {
        return Decision::Reject(ReasonCode::ProviderUnknown);
    };
    Decision::StepUp {
        provider: provider.name.clone(),
        requirement: provider.requirement(policy.acr_values.as_deref(), policy.max_age),
    }
}

#[cfg(test)]
mod tests;
