//! Request/reply handlers: the callback starting a challenge and handing over the
//! authorization response, and the verifier fetching what it needs to redeem the code.

use std::sync::OnceLock;

use stepup_bus::rpc::RpcFault;
use stepup_events::ReasonCode;
use stepup_events::data::EntraMode;
use stepup_events::rpc::{
    AuthorizationParams, CallbackReply, CallbackRequest, ChallengeOutcome, ChallengeStatus,
    RedemptionReply, RedemptionRequest, StartReply, StartRequest, fault,
};
use stepup_oidc::authorize::{
    AuthorizationEndpoints, DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_DISCOVERY_TTL,
};

use crate::events::fail;
use crate::secrets::{constant_time_eq, pkce_challenge, sha256_hex};
use crate::service::Service;
use crate::store::Challenge;

/// Handles `stepup.rpc.challenge.start`.
pub async fn start(service: &Service, request: StartRequest) -> Result<StartReply, RpcFault> {
    let challenge = load(service, &request.challenge_id).await?;
    expire_if_overdue(service, &challenge).await?;

    let started = matches!(
        challenge.status,
        ChallengeStatus::Issued | ChallengeStatus::Started
    ) && service
        .store
        .start(&challenge.id, &request.browser_binding_sha256)
        .await
        .map_err(internal)?;

    let current = load(service, &challenge.id).await?;
    let authorization = if started {
        Some(authorization_params(service, &current)?)
    } else {
        None
    };
    Ok(StartReply {
        challenge_id: current.id.clone(),
        approval_id: current.approval_id.clone(),
        provider: current.provider.clone(),
        status: current.status,
        authorization,
        outcome: outcome_of(&current),
        expires_at: current.expires_at,
        traceparent: current.traceparent.clone(),
    })
}

/// Handles `stepup.rpc.challenge.callback`: checks the authorization response against the
/// challenge its `state` names and, for the first valid one, stores the code.
///
/// Every check that fails on a challenge that is still started fails the challenge with its
/// own reason code, so the rejection is published, audited and shown to every later visit.
pub async fn callback(
    service: &Service,
    request: CallbackRequest,
) -> Result<CallbackReply, RpcFault> {
    // 1. The state must name a challenge.
    let challenge = service
        .store
        .get_by_state_hash(&sha256_hex(&request.state))
        .await
        .map_err(internal)?
        .ok_or_else(|| RpcFault::new(fault::NOT_FOUND, ReasonCode::StateInvalid.message()))?;

    // 2. A challenge that already moved on shows its outcome; the code is not used again.
    if challenge.status != ChallengeStatus::Started {
        expire_if_overdue(service, &challenge).await?;
        return current_reply(service, &challenge.id, false).await;
    }

    // 3. The browser must be the one that started the challenge.
    if !same_browser(&request, &challenge) {
        return reject(service, &challenge, ReasonCode::BrowserMismatch, None).await;
    }

    // 4. An expired challenge is rejected before its code is ever redeemed.
    if expire_if_overdue(service, &challenge).await? {
        return current_reply(service, &challenge.id, false).await;
    }

    // 5. RFC 9207: the response must come from the provider the request went to, also
    //    when it is an error response.
    if !issuer_matches(service, &challenge, request.iss.as_deref()).await? {
        return reject(service, &challenge, ReasonCode::IssuerMismatch, None).await;
    }

    // 6. An error from the IdP fails the challenge with the IdP's own words.
    if let Some(error) = &request.error {
        let message = match &request.error_description {
            Some(description) => format!("The identity provider returned {error}: {description}"),
            None => format!("The identity provider returned {error}."),
        };
        return reject(service, &challenge, ReasonCode::IdpError, Some(&message)).await;
    }

    // 7. The first code moves the challenge to verifying; the caller announces it.
    let Some(code) = request.code.as_deref().filter(|code| !code.is_empty()) else {
        return Err(RpcFault::new(
            fault::INVALID_REQUEST,
            "the authorization response has neither code nor error",
        ));
    };
    let accepted = service
        .store
        .accept_code(&challenge.id, code)
        .await
        .map_err(internal)?;
    current_reply(service, &challenge.id, accepted).await
}

/// Compares the hash of the browser's binding cookie with the stored one, in constant time.
fn same_browser(request: &CallbackRequest, challenge: &Challenge) -> bool {
    match (
        &request.browser_binding_sha256,
        &challenge.browser_binding_sha256,
    ) {
        (Some(presented), Some(stored)) => constant_time_eq(presented, stored),
        _ => false,
    }
}

/// Checks the authorization response's `iss` parameter (RFC 9207 section 2.4). A present
/// `iss` must equal the provider's issuer exactly. An absent one is accepted only when the
/// provider's discovery document does not promise it.
async fn issuer_matches(
    service: &Service,
    challenge: &Challenge,
    iss: Option<&str>,
) -> Result<bool, RpcFault> {
    let provider = service.provider(&challenge.provider).ok_or_else(|| {
        internal(format!(
            "provider {} of challenge {} is not configured",
            challenge.provider, challenge.id
        ))
    })?;
    if let Some(iss) = iss {
        return Ok(iss == provider.issuer);
    }

    let Some(discovery) = discovery() else {
        return Err(internal("the HTTP client for discovery could not be built"));
    };
    match discovery.iss_parameter_supported(&provider.issuer).await {
        Ok(promised) => Ok(!promised),
        Err(error) => {
            // Without the document the response cannot be judged, so it is not accepted;
            // the challenge stays open for another try.
            tracing::warn!(challenge.id = %challenge.id, provider = %challenge.provider, %error, "discovery for the iss check failed");
            Err(RpcFault::new(
                fault::IDP_UNAVAILABLE,
                ReasonCode::IdpUnavailable.message(),
            ))
        }
    }
}

/// Returns the discovery cache of the `iss` check, which only a response without `iss` reads.
// NOTE: one cache per process with the library's default timeout and lifetime; it is not
// configurable per challenge service.
fn discovery() -> Option<&'static AuthorizationEndpoints> {
    static DISCOVERY: OnceLock<Option<AuthorizationEndpoints>> = OnceLock::new();
    DISCOVERY
        .get_or_init(|| {
            AuthorizationEndpoints::new(DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_DISCOVERY_TTL).ok()
        })
        .as_ref()
}

/// Fails `challenge` for `reason` and replies with the outcome that every later visit sees.
async fn reject(
    service: &Service,
    challenge: &Challenge,
    reason: ReasonCode,
    message: Option<&str>,
) -> Result<CallbackReply, RpcFault> {
    tracing::info!(
        challenge.id = %challenge.id,
        approval.id = %challenge.approval_id,
        provider = %challenge.provider,
        decision = "rejected",
        reason = %reason,
        "authorization response rejected"
    );
    fail(
        service,
        challenge,
        reason,
        message.unwrap_or(reason.message()),
    )
    .await
    .map_err(internal)?;
    current_reply(service, &challenge.id, false).await
}

async fn current_reply(
    service: &Service,
    id: &str,
    accepted: bool,
) -> Result<CallbackReply, RpcFault> {
    let current = load(service, id).await?;
    Ok(reply(&current, accepted))
}

/// Handles `stepup.rpc.challenge.redemption`. Only a verifying challenge has a code and
/// verifier to hand out.
pub async fn redemption(
    service: &Service,
    request: RedemptionRequest,
) -> Result<RedemptionReply, RpcFault> {
    let challenge = load(service, &request.challenge_id).await?;
    let not_redeemable = || {
        RpcFault::new(
            fault::NOT_REDEEMABLE,
            format!(
                "challenge {} is {} and has no code to redeem",
                challenge.id,
                challenge.status.as_str()
            ),
        )
    };
    if challenge.status != ChallengeStatus::Verifying {
        return Err(not_redeemable());
    }
    let (Some(code), Some(pkce_verifier)) =
        (&challenge.authorization_code, &challenge.pkce_verifier)
    else {
        return Err(not_redeemable());
    };
    Ok(RedemptionReply {
        challenge_id: challenge.id.clone(),
        approval_id: challenge.approval_id.clone(),
        provider: challenge.provider.clone(),
        code: code.clone(),
        pkce_verifier: pkce_verifier.clone(),
        nonce: challenge.nonce.clone(),
        redirect_uri: service.redirect_uri(),
        requirement: challenge.requirement.clone(),
        approver: challenge.approver.clone(),
        created_at: challenge.created_at,
        expires_at: challenge.expires_at,
    })
}

fn authorization_params(
    service: &Service,
    challenge: &Challenge,
) -> Result<AuthorizationParams, RpcFault> {
    let provider = service.provider(&challenge.provider).ok_or_else(|| {
        RpcFault::new(
            fault::INTERNAL,
            format!(
                "provider {} of challenge {} is not configured",
                challenge.provider, challenge.id
            ),
        )
    })?;
    let Some(pkce_verifier) = &challenge.pkce_verifier else {
        return Err(RpcFault::new(
            fault::INTERNAL,
            "the challenge has no PKCE verifier",
        ));
    };
    let requirement = &challenge.requirement;
    let claims = match (requirement.entra_mode, &requirement.auth_context) {
        (Some(EntraMode::Acrs), Some(context)) => Some(
            serde_json::json!({"id_token": {"acrs": {"essential": true, "value": context}}})
                .to_string(),
        ),
        _ => None,
    };
    Ok(AuthorizationParams {
        issuer: provider.issuer.clone(),
        client_id: provider.client_id.clone(),
        redirect_uri: service.redirect_uri(),
        scope: provider.scopes.join(" "),
        state: challenge.state.clone(),
        nonce: challenge.nonce.clone(),
        code_challenge: pkce_challenge(pkce_verifier),
        acr_values: requirement.acr_values.clone(),
        max_age: requirement.max_age,
        prompt_login: requirement.prompt_login,
        login_hint: Some(challenge.approver.email.clone()),
        claims,
    })
}

fn reply(challenge: &Challenge, accepted: bool) -> CallbackReply {
    CallbackReply {
        challenge_id: challenge.id.clone(),
        approval_id: challenge.approval_id.clone(),
        provider: challenge.provider.clone(),
        status: challenge.status,
        accepted,
        outcome: outcome_of(challenge),
        return_url: challenge.return_url.clone(),
        resource: challenge.resource.clone(),
        traceparent: challenge.traceparent.clone(),
    }
}

fn outcome_of(challenge: &Challenge) -> Option<ChallengeOutcome> {
    match challenge.status {
        ChallengeStatus::Satisfied => Some(ChallengeOutcome {
            reason_code: None,
            message: "Your step-up authentication succeeded and the approval is complete.".into(),
        }),
        ChallengeStatus::Failed | ChallengeStatus::Expired => {
            let reason = challenge.reason_code.unwrap_or(ReasonCode::Expired);
            Some(ChallengeOutcome {
                reason_code: Some(reason),
                message: challenge
                    .message
                    .clone()
                    .unwrap_or_else(|| reason.message().to_owned()),
            })
        }
        _ => None,
    }
}

async fn load(service: &Service, id: &str) -> Result<Challenge, RpcFault> {
    service
        .store
        .get(id)
        .await
        .map_err(internal)?
        .ok_or_else(|| RpcFault::new(fault::NOT_FOUND, format!("challenge {id} not found")))
}

async fn expire_if_overdue(service: &Service, challenge: &Challenge) -> Result<bool, RpcFault> {
    service.expire_if_overdue(challenge).await.map_err(internal)
}

fn internal(error: impl std::fmt::Display) -> RpcFault {
    tracing::error!(%error, "challenge request failed");
    RpcFault::new(fault::INTERNAL, "the challenge service failed; try again")
}
