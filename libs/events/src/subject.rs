//! NATS subjects, defined once.
//!
//! Event subjects double as CloudEvents `type`s. Request/reply subjects live under
//! `stepup.rpc.>` and are deliberately kept out of the JetStream stream: their payloads
//! carry single-use secrets (authorization codes, PKCE verifiers) that must never be
//! persisted.

use thiserror::Error;

pub const APPROVAL_REQUESTED: &str = "stepup.approval.requested";
pub const STEPUP_REQUIRED: &str = "stepup.required";
pub const APPROVAL_COMPLETED: &str = "stepup.approval.completed";
pub const APPROVAL_REJECTED: &str = "stepup.approval.rejected";
pub const CHALLENGE_STARTED: &str = "stepup.challenge.started";
pub const CHALLENGE_FAILED: &str = "stepup.challenge.failed";
pub const CHALLENGE_EXPIRED: &str = "stepup.challenge.expired";
pub const AUTH_CODE_RECEIVED: &str = "stepup.auth.code_received";
pub const AUTH_VERIFIED: &str = "stepup.auth.verified";
pub const AUTH_REJECTED: &str = "stepup.auth.rejected";
pub const PROVIDER_TESTED: &str = "stepup.provider.tested";
/// Published by the audit service for every record it appends, on its own stream.
pub const AUDIT_RECORDED: &str = "stepup.audit.recorded";

/// The subjects of the audit stream (`STEPUP_AUDIT` by default). They are outside
/// [`STREAM_SUBJECTS`], so the audit service never records its own records.
pub const AUDIT_STREAM_SUBJECTS: &[&str] = &["stepup.audit.>"];

/// Prefix of the dead-letter subjects, one per consuming service.
pub const DEADLETTER_PREFIX: &str = "stepup.deadletter";

/// The subjects captured by the `STEPUP` stream: every event subject and the dead-letter
/// subjects, but not `stepup.rpc.>`.
pub const STREAM_SUBJECTS: &[&str] = &[
    "stepup.approval.>",
    STEPUP_REQUIRED,
    "stepup.challenge.>",
    "stepup.auth.>",
    "stepup.provider.>",
    "stepup.deadletter.>",
];

/// Request/reply: the callback starts a challenge when the approver opens the step-up URL.
pub const RPC_CHALLENGE_START: &str = "stepup.rpc.challenge.start";
/// Request/reply: the callback hands the authorization response to the challenge service.
pub const RPC_CHALLENGE_CALLBACK: &str = "stepup.rpc.challenge.callback";
/// Request/reply: the verifier fetches what it needs to redeem a challenge's code.
pub const RPC_CHALLENGE_REDEMPTION: &str = "stepup.rpc.challenge.redemption";

/// A subject token that was empty or contained a character NATS treats specially.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid subject token {token:?}: it must be non-empty and contain no '.', '*', '>' or whitespace"
)]
pub struct InvalidToken {
    pub token: String,
}

/// Checks that `token` can stand as one token of a subject.
pub fn validate_token(token: &str) -> Result<&str, InvalidToken> {
    let invalid = token.is_empty()
        || token
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace());
    if invalid {
        return Err(InvalidToken {
            token: token.to_owned(),
        });
    }
    Ok(token)
}

/// Returns the dead-letter subject of `service`, such as `stepup.deadletter.audit`.
pub fn deadletter(service: &str) -> Result<String, InvalidToken> {
    Ok(format!("{DEADLETTER_PREFIX}.{}", validate_token(service)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadletter_subject_for_service() {
        assert_eq!(
            deadletter("verifier").as_deref(),
            Ok("stepup.deadletter.verifier")
        );
    }

    #[test]
    fn tokens_with_wildcards_or_dots_are_rejected() {
        for bad in ["", "a.b", "*", ">", "a b", "tab\t"] {
            assert!(validate_token(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// Reports whether `pattern` (a literal or a `prefix.>` wildcard) captures `subject`.
    fn captures(pattern: &str, subject: &str) -> bool {
        let prefix = pattern.trim_end_matches('>');
        subject == pattern || (pattern.ends_with('>') && subject.starts_with(prefix))
    }

    #[test]
    fn audit_records_are_outside_the_event_stream() {
        let captured = STREAM_SUBJECTS
            .iter()
            .any(|pattern| captures(pattern, AUDIT_RECORDED));
        assert!(!captured, "the audit service would record its own records");
        assert!(
            AUDIT_STREAM_SUBJECTS
                .iter()
                .any(|pattern| captures(pattern, AUDIT_RECORDED))
        );
    }

    #[test]
    fn rpc_subjects_are_outside_the_stream() {
        for rpc in [
            RPC_CHALLENGE_START,
            RPC_CHALLENGE_CALLBACK,
            RPC_CHALLENGE_REDEMPTION,
        ] {
            let captured = STREAM_SUBJECTS.iter().any(|pattern| {
                let prefix = pattern.trim_end_matches('>');
                rpc == *pattern || (pattern.ends_with('>') && rpc.starts_with(prefix))
            });
            assert!(!captured, "{rpc} would be persisted in the stream");
        }
    }
}
