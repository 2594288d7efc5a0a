//! Stable reason codes of rejections and failures, each with the sentence shown to the
//! approver or administrator.
//!
//! Codes are part of the public contract: other systems branch on them. Add new codes;
//! never rename one.

use serde::{Deserialize, Serialize};

/// Why an approval, a challenge or an authentication was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The policy requires step-up and the approval was automated.
    AutomatedApprovalNotAllowed,
    /// The policy requires step-up and the channel cannot do a browser redirect.
    ChannelNotSupported,
    /// No policy names the approval's `(policy_id, step_id)`.
    NoPolicy,
    /// The policy names a provider that is not configured.
    ProviderUnknown,
    /// The ID token's `acr` is not one of the allowed values.
    AcrNotSatisfied,
    /// The ID token has no `acr` claim.
    AcrMissing,
    /// The Entra ID token has no `acrs` claim.
    AcrsMissing,
    /// The Entra ID token's `acrs` does not contain the required authentication context.
    AcrsNotSatisfied,
    /// The ID token has no `auth_time` claim.
    AuthTimeMissing,
    /// The ID token's `auth_time` is earlier than the challenge allows.
    AuthTooOld,
    /// The ID token's `nonce` is not the challenge's nonce.
    NonceMismatch,
    /// The authenticated user is not the approver named in the approval.
    SubjectMismatch,
    /// The token response carried no ID token.
    IdTokenMissing,
    /// The ID token failed validation (signature, issuer, audience or expiry).
    IdTokenInvalid,
    /// A claim in the ID token has the wrong type or format.
    MalformedClaim,
    /// The IdP returned an `error` in the authorization response.
    IdpError,
    /// The IdP's token, discovery or JWKS endpoint could not be reached.
    IdpUnavailable,
    /// The IdP rejected the authorization code at the token endpoint.
    TokenExchangeFailed,
    /// The challenge expired before it was satisfied.
    Expired,
    /// The callback's `state` matches no open challenge.
    StateInvalid,
    /// The callback came from a browser that did not start the challenge.
    BrowserMismatch,
    /// The challenge was already used.
    AlreadyUsed,
    /// The authorization response's RFC 9207 `iss` parameter is not the provider's issuer,
    /// or is missing although the provider's discovery document promises it. Also used
    /// when the ID token's `iss`, or the discovery document's `issuer`, is not exactly the
    /// configured issuer.
    IssuerMismatch,
    /// The approver of the approval is also its requester.
    SelfApproval,
    /// The provider binds approvers by email and the ID token's email is not marked
    /// verified.
    EmailNotVerified,
    /// The ID token is unsigned (`alg: none`, no signature) or its signature does not
    /// verify with the published key.
    SignatureInvalid,
    /// The ID token is signed with an algorithm the provider is not configured to accept
    /// (HS256 among them, whatever discovery lists).
    AlgorithmNotAllowed,
    /// No published key matches the ID token's `kid` and algorithm, also after the JWKS
    /// was fetched again.
    KeyNotFound,
    /// The ID token has no `kid` while the provider publishes several keys.
    KeyIdMissing,
    /// The ID token's `aud` does not contain the client id, or names other audiences
    /// without `azp` being the client id.
    AudienceMismatch,
    /// The ID token's `exp` has passed.
    TokenExpired,
    /// The ID token's `nbf` is in the future.
    TokenNotYetValid,
    /// The ID token's `iat` or `auth_time` is in the future beyond the clock skew.
    IssuedInFuture,
    /// The token endpoint answered with something that is not a token response (HTML, an
    /// oversized body, a non-JSON body, an unexpected status).
    TokenResponseInvalid,
    /// The provider's discovery document or JWKS is not valid JSON of the expected shape.
    ProviderMetadataInvalid,
}

impl ReasonCode {
    /// The stable machine code, as it appears in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutomatedApprovalNotAllowed => "automated_approval_not_allowed",
            Self::ChannelNotSupported => "channel_not_supported",
            Self::NoPolicy => "no_policy",
            Self::ProviderUnknown => "provider_unknown",
            Self::AcrNotSatisfied => "acr_not_satisfied",
            Self::AcrMissing => "acr_missing",
            Self::AcrsMissing => "acrs_missing",
            Self::AcrsNotSatisfied => "acrs_not_satisfied",
            Self::AuthTimeMissing => "auth_time_missing",
            Self::AuthTooOld => "auth_too_old",
            Self::NonceMismatch => "nonce_mismatch",
            Self::SubjectMismatch => "subject_mismatch",
            Self::IdTokenMissing => "id_token_missing",
            Self::IdTokenInvalid => "id_token_invalid",
            Self::MalformedClaim => "malformed_claim",
            Self::IdpError => "idp_error",
            Self::IdpUnavailable => "idp_unavailable",
            Self::TokenExchangeFailed => "token_exchange_failed",
            Self::Expired => "expired",
            Self::StateInvalid => "state_invalid",
            Self::BrowserMismatch => "browser_mismatch",
            Self::AlreadyUsed => "already_used",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::SelfApproval => "self_approval",
            Self::EmailNotVerified => "email_not_verified",
            Self::SignatureInvalid => "signature_invalid",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::KeyNotFound => "key_not_found",
            Self::KeyIdMissing => "key_id_missing",
            Self::AudienceMismatch => "audience_mismatch",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::TokenResponseInvalid => "token_response_invalid",
            Self::ProviderMetadataInvalid => "provider_metadata_invalid",
        }
    }

    /// The sentence shown to the approver or administrator: what happened and what to do.
    pub fn message(self) -> &'static str {
        match self {
            Self::AutomatedApprovalNotAllowed => {
                "This approval step requires step-up authentication, so it cannot be approved automatically. A person must approve it in the browser."
            }
            Self::ChannelNotSupported => {
                "This approval step requires step-up authentication, which this channel cannot do. Approve it in the browser instead."
            }
            Self::NoPolicy => {
                "No step-up policy covers this approval step. Ask an administrator to add a policy for it or to configure a default policy."
            }
            Self::ProviderUnknown => {
                "The policy for this step names an identity provider that is not configured. Ask an administrator to fix the policy."
            }
            Self::AcrNotSatisfied => {
                "You signed in, but not with the strength this approval requires. Ask for the approval again, then complete the additional verification (for example a one-time code or security key)."
            }
            Self::AcrMissing => {
                "The identity provider did not say how you signed in (no acr claim). An administrator must configure the provider to return acr."
            }
            Self::AcrsMissing => {
                "The identity provider did not confirm the required authentication context (no acrs claim). An administrator must assign the authentication context in a Conditional Access policy."
            }
            Self::AcrsNotSatisfied => {
                "You signed in, but without the authentication context this approval requires. Ask for the approval again, then complete the additional verification."
            }
            Self::AuthTimeMissing => {
                "The identity provider did not say when you signed in (no auth_time claim). An administrator must configure the provider to return auth_time."
            }
            Self::AuthTooOld => {
                "Your sign-in happened before this approval was requested. Ask for the approval again, then sign in anew when the identity provider asks."
            }
            Self::NonceMismatch => {
                "The sign-in response does not belong to this approval. Start again from the approval link."
            }
            Self::SubjectMismatch => {
                "You signed in as a different user than the approver of this request. Sign in with the approver's account."
            }
            Self::IdTokenMissing => {
                "The identity provider returned no ID token. An administrator must request the openid scope; for Entra, enable ID tokens in the app registration."
            }
            Self::IdTokenInvalid => {
                "The identity provider's ID token failed validation. Start again; if it keeps failing, an administrator must check the provider's configuration."
            }
            Self::MalformedClaim => {
                "The identity provider's ID token contains a claim in an unexpected format. An administrator must check the provider's claim configuration."
            }
            Self::IdpError => {
                "The identity provider reported an error and did not complete the sign-in. Start again from the approval link."
            }
            Self::IdpUnavailable => {
                "The identity provider could not be reached. Try again in a few minutes."
            }
            Self::TokenExchangeFailed => {
                "The identity provider rejected the sign-in response. Start again from the approval link."
            }
            Self::Expired => {
                "This approval link has expired. Ask for the approval to be sent again, then use the new link."
            }
            Self::StateInvalid => {
                "This sign-in response matches no open approval. Start again from the approval link."
            }
            Self::BrowserMismatch => {
                "This sign-in finished in a different browser than the one that started it. Open the approval link and sign in in the same browser."
            }
            Self::AlreadyUsed => "This approval link was already used. Each link works once.",
            Self::IssuerMismatch => {
                "The sign-in response did not come from the identity provider this approval uses. Start again from the approval link; if it happens again, tell your security team."
            }
            Self::SelfApproval => {
                "You requested this change yourself, so you cannot approve it. Ask another approver to approve it."
            }
            Self::EmailNotVerified => {
                "The identity provider did not confirm that your email address is verified, so your sign-in cannot be matched to the approver. Verify your email address at the identity provider, or ask an administrator to bind approvers by subject."
            }
            Self::SignatureInvalid => {
                "The identity provider's ID token is unsigned or its signature is not valid, so the sign-in cannot be trusted. Start again; if it happens again, tell your security team."
            }
            Self::AlgorithmNotAllowed => {
                "The identity provider signed the ID token with an algorithm this provider is not configured to accept. An administrator must check the provider's signing algorithm settings."
            }
            Self::KeyNotFound => {
                "The ID token is signed with a key the identity provider does not publish. Try again in a few minutes; if it keeps failing, an administrator must check the provider's signing keys."
            }
            Self::KeyIdMissing => {
                "The ID token does not say which of the identity provider's keys signed it (no kid). An administrator must configure the provider to send kid."
            }
            Self::AudienceMismatch => {
                "The ID token was issued to a different application. An administrator must check the provider's client id."
            }
            Self::TokenExpired => {
                "The ID token had expired when it arrived. Start again; if it keeps failing, an administrator must check the clocks of this service and the identity provider."
            }
            Self::TokenNotYetValid => {
                "The ID token is not valid yet. An administrator must check the clocks of this service and the identity provider."
            }
            Self::IssuedInFuture => {
                "The ID token says it was issued, or that you signed in, in the future. An administrator must check the clocks of this service and the identity provider."
            }
            Self::TokenResponseInvalid => {
                "The identity provider's token endpoint returned an answer that is not a token response. Start again; if it keeps failing, an administrator must check the provider."
            }
            Self::ProviderMetadataInvalid => {
                "The identity provider's discovery document or signing keys could not be read. An administrator must check the provider's issuer URL and its published keys."
            }
        }
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ReasonCode;

    #[test]
    fn serialized_code_matches_as_str() {
        let code = ReasonCode::AcrNotSatisfied;
        let json = serde_json::to_value(code).ok();
        assert_eq!(json, Some(serde_json::json!(code.as_str())));
    }
}
