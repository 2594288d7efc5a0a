//! What the provider does wrong: one [`Defect`] per script, on top of an otherwise valid
//! ID token for the scripted user.

use serde_json::Value;

use crate::keys::SigningAlg;

/// The behaviour of the provider for the next authorizations and token requests.
#[derive(Debug, Clone)]
pub struct Script {
    pub defect: Defect,
    /// The algorithm of a valid token; the JWKS always publishes a key for each.
    pub alg: SigningAlg,
    pub subject: String,
    pub email: Option<String>,
    /// The `acr` claim, omitted when `None`.
    pub acr: Option<String>,
    pub amr: Vec<String>,
    /// The RFC 9207 `iss` parameter added to the authorization response.
    pub authorization_iss: AuthorizationIss,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            defect: Defect::None,
            alg: SigningAlg::Rs256,
            subject: "00u1alice".into(),
            email: Some("alice@example.com".into()),
            acr: Some("urn:okta:loa:2fa:any".into()),
            amr: vec!["pwd".into(), "otp".into()],
            authorization_iss: AuthorizationIss::Issuer,
        }
    }
}

impl Script {
    /// A valid token with `defect` applied.
    pub fn defect(defect: Defect) -> Self {
        Self {
            defect,
            ..Self::default()
        }
    }

    /// A valid token whose claims are edited in order.
    pub fn claims(edits: Vec<ClaimEdit>) -> Self {
        Self::defect(Defect::Claims(edits))
    }
}

/// The `iss` parameter of the authorization response (RFC 9207).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationIss {
    /// The provider's own issuer.
    Issuer,
    Omitted,
    Other(String),
}

/// Exactly one thing the provider gets wrong.
#[derive(Debug, Clone)]
pub enum Defect {
    /// Nothing: a valid token signed with the script's algorithm.
    None,

    // Signature and keys.
    /// `alg: none` with an empty signature.
    AlgNone,
    /// An RS256 header and no signature segment at all.
    Unsigned,
    /// HS256 keyed with the client secret; discovery lists HS256.
    Hs256WithClientSecret,
    /// HS256 keyed with the PEM of the RSA public key (algorithm confusion); discovery
    /// lists HS256.
    Hs256WithRsaPublicKey,
    /// Signed by a key that is not in the JWKS, under the `kid` of one that is.
    ForeignKey,
    /// Signed by a key whose `kid` the JWKS never contains.
    UnknownKid,
    /// Signed by a new key that the JWKS contains from now on (key rotation).
    RotatedKey,
    /// No `kid` in the header while the JWKS has several keys.
    NoKid,
    /// No `kid` in the header and a JWKS of one key: valid.
    NoKidOneKey,
    /// The JWKS also carries keys that cannot be used (symmetric, encryption, unknown
    /// type, incomplete, another curve, not an object): the token itself is valid.
    UnusableKeysInJwks,
    /// `jwks_uri` points to a closed port.
    JwksUnreachable,
    /// The JWKS endpoint returns HTML.
    JwksGarbage,
    /// The JWKS endpoint answers HTTP 503, as a provider in an outage does. Replacing the
    /// script ends the outage, because the `jwks_uri` stays the same.
    JwksServerError,
    /// The discovery document is HTML.
    DiscoveryGarbage,
    /// The discovery document names another issuer (a trailing slash added).
    DiscoveryIssuerMismatch,

    // Claims.
    /// Claims of a valid token edited in order.
    Claims(Vec<ClaimEdit>),

    // Token endpoint.
    /// A token response with an access token and no `id_token`.
    NoIdToken,
    /// HTTP 400 with an OAuth error body (`invalid_grant`).
    OAuthError,
    /// HTTP 500 with a text body.
    ServerError,
    /// HTTP 503 before the code is looked at, as a gateway in front of a down
    /// authorization server answers; the code stays valid. Replacing the script ends it.
    TokenServiceUnavailable,
    /// HTTP 200 with an HTML body.
    HtmlBody,
    /// A valid token response padded to `bytes` bytes.
    OversizedBody { bytes: usize },
    /// A valid token response after `seconds`. Longer than the client's timeout, it is
    /// no response at all.
    Slow { seconds: u64 },
}

impl Defect {
    /// Whether discovery advertises HS256, as a provider inviting algorithm confusion does.
    pub fn lists_hs256(&self) -> bool {
        matches!(
            self,
            Self::Hs256WithClientSecret | Self::Hs256WithRsaPublicKey
        )
    }
}

/// One change to the claims of an otherwise valid token.
#[derive(Debug, Clone)]
pub enum ClaimEdit {
    /// Sets a claim to a JSON value.
    Set(String, Value),
    /// Removes a claim.
    Remove(String),
    /// Sets a claim to the issue time plus `offset` seconds (a NumericDate).
    SecondsFromNow(String, i64),
    /// Sets a claim to the issue time plus `offset` seconds, in milliseconds.
    MillisFromNow(String, i64),
}

impl ClaimEdit {
    pub fn set(name: &str, value: Value) -> Self {
        Self::Set(name.into(), value)
    }

    pub fn remove(name: &str) -> Self {
        Self::Remove(name.into())
    }

    pub fn seconds_from_now(name: &str, offset: i64) -> Self {
        Self::SecondsFromNow(name.into(), offset)
    }

    pub fn millis_from_now(name: &str, offset: i64) -> Self {
        Self::MillisFromNow(name.into(), offset)
    }
}
