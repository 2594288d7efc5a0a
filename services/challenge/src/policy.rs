//! The policy decision for an approval step, taken against the current snapshot of the
//! provider and policy store.

use stepup_events::ReasonCode;
use stepup_events::data::{ApprovalRequested, Requirement};
use stepup_registry::Catalog;
use stepup_registry::record::{PROVIDER_TEST_APPROVAL_PREFIX, PROVIDER_TEST_POLICY};

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

/// Decides what `approval` requires. The rules, in order:
///
/// 1. A step needs a policy: its own, else a default policy.
/// 2. The requester may not approve their own request unless the policy allows it.
/// 3. A step-up step is never approved automatically, nor from a channel that cannot open
///    a browser.
/// 4. The policy's provider must exist and be enabled.
///
/// Approvals that use the policy id or approval id prefix of provider tests are rejected
/// with `no_policy`, so no other system can pass an approval off as a test.
pub fn decide(approval: &ApprovalRequested, catalog: &Catalog) -> Decision {
    if approval.policy_id == PROVIDER_TEST_POLICY
        || approval
            .approval_id
            .starts_with(PROVIDER_TEST_APPROVAL_PREFIX)
    {
        return Decision::Reject(ReasonCode::NoPolicy);
    }
    let Some(policy) = catalog.policy_for(&approval.policy_id, &approval.step_id) else {
        return Decision::Reject(ReasonCode::NoPolicy);
    };
    if is_self_approval(approval) && !policy.allow_self_approval {
        return Decision::Reject(ReasonCode::SelfApproval);
    }
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
        .as_deref()
        .and_then(|name| catalog.provider(name))
        .filter(|provider| provider.enabled);
    let Some(provider) = provider else {
        return Decision::Reject(ReasonCode::ProviderUnknown);
    };
    Decision::StepUp {
        provider: provider.name.clone(),
        requirement: provider.requirement(policy.acr_values.as_deref(), policy.max_age),
    }
}

/// Whether the approver is the requester: the same id in the other system, or the same
/// email (case-insensitive) when the requester has one.
fn is_self_approval(approval: &ApprovalRequested) -> bool {
    let Some(requester) = &approval.requester else {
        return false;
    };
    let same_email = requester
        .email
        .as_deref()
        .is_some_and(|email| email.eq_ignore_ascii_case(&approval.approver.email));
    requester.id == approval.approver.id || same_email
}

#[cfg(test)]
mod tests;
