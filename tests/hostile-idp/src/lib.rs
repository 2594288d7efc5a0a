//! A scriptable hostile OpenID provider for tests.
//!
//! [`HostileIdp::start`] serves discovery, a JWKS, an authorization endpoint that signs the
//! user in at once and redirects back with a code, and a token endpoint, on a free loopback
//! port. Each [`Script`] names exactly one [`Defect`]: an unsigned token, a forged
//! signature, a claim that is wrong or of the wrong type, a broken token response, an
//! unusable key set. Everything else about the response is valid, so a test that expects a
//! rejection proves that the relying party checks that one thing.
//!
//! The keys are real (RSA 2048, P-256, Ed25519), generated once per test process because
//! RSA key generation is slow in unoptimised builds, and shared by every provider the
//! process starts.

mod keys;
mod script;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use thiserror::Error;

pub use keys::SigningAlg;
pub use script::{AuthorizationIss, ClaimEdit, Defect, Script};
pub use server::ClientAuthSeen;

use server::{Keys, Shared, lock};

/// The registered client's id when the test does not choose one.
pub const DEFAULT_CLIENT_ID: &str = "stepup-hostile";

/// The registered client's secret when the test does not choose one. It contains every
/// character that RFC 6749 §2.3.1 requires to be form-encoded in HTTP Basic credentials.
pub const DEFAULT_CLIENT_SECRET: &str = "s3cret +/:%&=x";

/// The provider could not start, or a test request to it failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("generating the provider's keys failed: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("key generation task failed: {0}")]
    KeyTask(String),
    #[error("binding a loopback port failed: {0}")]
    Bind(#[source] std::io::Error),
    #[error("the authorization request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("the authorization endpoint answered {status} without a redirect to the client")]
    NoRedirect { status: u16 },
    #[error("the authorization redirect {location:?} carries no code")]
    NoCode { location: String },
}

/// The client the provider accepts.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl Default for Client {
    fn default() -> Self {
        Self {
            id: DEFAULT_CLIENT_ID.into(),
            secret: DEFAULT_CLIENT_SECRET.into(),
        }
    }
}

/// Requests the provider served, per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    pub discovery: usize,
    pub jwks: usize,
    pub authorize: usize,
    pub token: usize,
}

/// The parameters of one authorization request made by a test.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_verifier: &'a str,
}

/// A running provider; it stops when dropped.
#[derive(Debug)]
pub struct HostileIdp {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    address: SocketAddr,
}

impl HostileIdp {
    /// Starts a provider for the default client.
    pub async fn start(script: Script) -> Result<Self, Error> {
        Self::start_with(Client::default(), script).await
    }

    /// Starts a provider that accepts `client`.
    pub async fn start_with(client: Client, script: Script) -> Result<Self, Error> {
        let keys = process_keys().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::Bind)?;
        let address = listener.local_addr().map_err(Error::Bind)?;
        let closed_url = format!("http://{}", closed_address().await?);

        let shared = Arc::new(Shared::new(
            format!("http://{address}"),
            client.id,
            client.secret,
            keys,
            closed_url,
            script,
        ));
        let app = server::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "hostile IdP stopped");
            }
        });
        Ok(Self {
            shared,
            server,
            address,
        })
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// Replaces the script for the requests that follow.
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = script;
    }

    pub fn requests(&self) -> RequestCounts {
        let counters = &self.shared.counters;
        RequestCounts {
            discovery: counters.discovery.load(Ordering::SeqCst),
            jwks: counters.jwks.load(Ordering::SeqCst),
            authorize: counters.authorize.load(Ordering::SeqCst),
            token: counters.token.load(Ordering::SeqCst),
        }
    }

    /// How the last token request authenticated the client.
    pub fn last_client_auth(&self) -> Option<ClientAuthSeen> {
        lock(&self.shared.client_auth).clone()
    }

    /// Sends an authorization request as a browser would and returns the code from the
    /// redirect back to the client.
    pub async fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<String, Error> {
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer()))
            .map_err(|_| Error::NoRedirect { status: 0 })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", request.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", "openid email")
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", &code_challenge(request.code_verifier))
            .append_pair("code_challenge_method", "S256");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = client.get(url).send().await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or(Error::NoRedirect {
                status: response.status().as_u16(),
            })?;
        let code = url::Url::parse(&location).ok().and_then(|redirect| {
            redirect
                .query_pairs()
                .find(|(name, _)| name == "code")
                .map(|(_, code)| code.into_owned())
        });
        code.ok_or(Error::NoCode { location })
    }
}

impl Drop for HostileIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    server::s256(verifier)
}

/// Returns the keys of this process, generating them on first use.
async fn process_keys() -> Result<Arc<Keys>, Error> {
    static KEYS: tokio::sync::OnceCell<Arc<Keys>> = tokio::sync::OnceCell::const_new();
    let keys = KEYS
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(generate_keys)
                .await
                .map_err(|error| Error::KeyTask(error.to_string()))?
                .map(Arc::new)
        })
        .await?;
    Ok(keys.clone())
}

fn generate_keys() -> Result<Keys, Error> {
    let rsa = keys::KeyPair::rsa("rsa-1")?;
    let foreign_key = keys::KeyPair::rsa("rsa-1")?;
    Ok(Keys {
        rotated: keys::KeyPair::rsa("rsa-2")?,
        unknown: foreign_key.with_kid("rsa-unknown"),
        foreign: foreign_key,
        rsa,
        p256: keys::KeyPair::p256("ec-1")?,
        ed25519: keys::KeyPair::ed25519("ed-1"),
    })
}

/// Returns an address on which nothing listens: bound, then released.
async fn closed_address() -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::Bind)?;
    listener.local_addr().map_err(Error::Bind)
}
