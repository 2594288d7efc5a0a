//! Matching the user the IdP authenticated to the approver named in the approval.

use stepup_events::ReasonCode;
use stepup_events::data::{Approver, SubjectClaims};
use stepup_oidc::provider::ApproverBinding;

/// Checks that `claims` identify `approver` under `binding`. Emails compare
/// case-insensitively and count only when the IdP marked them verified.
///
/// Fails with [`ReasonCode::EmailNotVerified`] when the email is the approver's but the
/// IdP did not mark it verified, and with [`ReasonCode::SubjectMismatch`] otherwise.
pub fn check_approver(
    binding: ApproverBinding,
    claims: &SubjectClaims,
    approver: &Approver,
) -> Result<(), ReasonCode> {
    let matched = match binding {
        ApproverBinding::Email => {
            let same_email = claims
                .email
                .as_deref()
                .is_some_and(|email| email.eq_ignore_ascii_case(&approver.email));
            if same_email && claims.email_verified != Some(true) {
                return Err(ReasonCode::EmailNotVerified);
            }
            same_email
        }
        ApproverBinding::Sub => approver
            .idp_subject
            .as_deref()
            .is_some_and(|subject| subject == claims.subject),
        ApproverBinding::Oid => match (&approver.idp_subject, &claims.oid) {
            (Some(expected), Some(oid)) => expected.eq_ignore_ascii_case(oid),
            _ => false,
        },
        ApproverBinding::PreferredUsername => claims
            .preferred_username
            .as_deref()
            .is_some_and(|name| name.eq_ignore_ascii_case(&approver.email)),
    };
    if matched {
        Ok(())
    } else {
        Err(ReasonCode::SubjectMismatch)
    }
}

/// Whether `claims` identify `approver` under `binding`; see [`check_approver`].
pub fn is_approver(binding: ApproverBinding, claims: &SubjectClaims, approver: &Approver) -> bool {
    check_approver(binding, claims, approver).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approver() -> Approver {
        Approver {
            id: "u-1".into(),
            email: "Alice@Example.com".into(),
            idp_subject: Some("00u1alice".into()),
        }
    }

    fn claims(email: &str, verified: Option<bool>) -> SubjectClaims {
        SubjectClaims {
            issuer: "https://idp".into(),
            subject: "00u1alice".into(),
            email: Some(email.into()),
            email_verified: verified,
            ..SubjectClaims::default()
        }
    }

    #[test]
    fn verified_email_matches_case_insensitively() {
        let matched = is_approver(
            ApproverBinding::Email,
            &claims("alice@example.com", Some(true)),
            &approver(),
        );
        assert!(matched);
    }

    #[test]
    fn unverified_email_does_not_match() {
        for verified in [Some(false), None] {
            let matched = is_approver(
                ApproverBinding::Email,
                &claims("alice@example.com", verified),
                &approver(),
            );
            assert!(!matched, "email_verified {verified:?} was accepted");
        }
    }

    #[test]
    fn unverified_email_of_approver_is_email_not_verified() {
        for verified in [Some(false), None] {
            let result = check_approver(
                ApproverBinding::Email,
                &claims("alice@example.com", verified),
                &approver(),
            );
            assert_eq!(result, Err(ReasonCode::EmailNotVerified), "{verified:?}");
        }
    }

    #[test]
    fn unverified_email_of_other_user_is_subject_mismatch() {
        let result = check_approver(
            ApproverBinding::Email,
            &claims("bob@example.com", Some(false)),
            &approver(),
        );
        assert_eq!(result, Err(ReasonCode::SubjectMismatch));
    }

    #[test]
    fn other_user_does_not_match() {
        let matched = is_approver(
            ApproverBinding::Email,
            &claims("bob@example.com", Some(true)),
            &approver(),
        );
        assert!(!matched);
    }

    #[test]
    fn sub_binding_needs_idp_subject() {
        let claims = claims("alice@example.com", Some(true));
        assert!(is_approver(ApproverBinding::Sub, &claims, &approver()));

        let without_subject = Approver {
            idp_subject: None,
            ..approver()
        };
        assert!(!is_approver(
            ApproverBinding::Sub,
            &claims,
            &without_subject
        ));
    }
}
