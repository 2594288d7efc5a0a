//! A step-up system whose providers and policies come from the admin API. It runs its own
//! nats-server, one or more development IdPs, and the services in this process with an
//! admin token and a secret key, and records every event on `stepup.>`.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use stepup_bus::Bus;
use stepup_e2e::browser::{Browser, Page};
use stepup_e2e::idp::{DevIdp, IdpClient, IdpConfig, IdpUser, Profile};
use stepup_e2e::nats::NatsServer;
use stepup_events::Envelope;
use stepup_events::data::{ApprovalRequested, Approver, Channel};
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const ADMIN_TOKEN: &str = "admin-token-for-e2e";
pub const CLIENT_ID: &str = "stepup-e2e";
pub const CLIENT_SECRET: &str = "registry e2e secret/with+chars%";
pub const TENANT: &str = "5f1a0c3e-0000-4000-8000-00000000e2e0";
pub const TWO_FACTOR: &str = "urn:okta:loa:2fa:any";
pub const ALICE_OID: &str = "11111111-1111-1111-1111-111111111111";

/// How long a test waits for any one event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which IdPs a system starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Idps {
    pub okta: bool,
    pub entra: bool,
    /// Makes the Entra IdP drop `max_age` and `prompt=login`, so it reuses a session.
    pub entra_ignores_max_age: bool,
}

pub struct RegistrySystem {
    pub nats: NatsServer,
    pub okta: Option<DevIdp>,
    pub entra: Option<DevIdp>,
    pub bus: Bus,
    pub admin_url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    services: Vec<tokio::task::JoinHandle<()>>,
    events: Arc<Mutex<Vec<Envelope>>>,
    /// Every admin response body, for the check that no secret leaks.
    pub responses: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

pub fn alice() -> IdpUser {
    IdpUser {
        login: "alice@example.com".into(),
        password: "alice-password".into(),
        otp: Some("123456".into()),
        sub: "00u1alice".into(),
        oid: Some(ALICE_OID.into()),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        name: Some("Alice".into()),
        contexts: vec!["c1".into()],
    }
}

async fn start_idp(
    profile: Profile,
    redirect: &str,
    ignore_max_age: bool,
) -> Result<DevIdp, BoxError> {
    Ok(DevIdp::start(IdpConfig {
        profile,
        tenant: TENANT.into(),
        users: vec![alice()],
        clients: vec![IdpClient::new(CLIENT_ID, CLIENT_SECRET, redirect)],
        ignore_max_age,
    })
    .await?)
}

impl RegistrySystem {
    pub async fn start(idps: Idps) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start().await?;
        let callback_port = stepup_e2e::free_port()?;
        let callback_url = format!("http://127.0.0.1:{callback_port}");
        let redirect = format!("{callback_url}/auth/callback");
        let okta = match idps.okta {
            true => Some(start_idp(Profile::Okta, &redirect, false).await?),
            false => None,
        };
        let entra = match idps.entra {
            true => Some(start_idp(Profile::Entra, &redirect, idps.entra_ignores_max_age).await?),
            false => None,
        };

        // The key that encrypts client secrets in the store.
        let key_path = dir.path().join("secret.key");
        std::fs::write(
            &key_path,
            base64::engine::general_purpose::STANDARD.encode([42_u8; 32]),
        )?;
        let registry = serde_json::json!({"secret_key": format!("file:{}", key_path.display())});
        let nats_settings = serde_json::json!({"url": nats.url()});
        let db = |name: &str| format!("sqlite://{}?mode=rwc", dir.path().join(name).display());

        let challenge: stepup_challenge::Config = serde_json::from_value(serde_json::json!({
            "nats": nats_settings, "registry": registry, "public_url": callback_url,
            "database_url": db("challenge.db"), "listen": "127.0.0.1:0", "sweep_interval_secs": 1,
            "admin_token": ADMIN_TOKEN,
        }))?;
        let callback: stepup_callback::Config = serde_json::from_value(serde_json::json!({
            "nats": nats_settings, "public_url": callback_url,
            "listen": format!("127.0.0.1:{callback_port}"),
        }))?;
        // Two seconds of skew: auth_time has whole seconds, the challenge milliseconds.
        let verifier: stepup_verifier::Config = serde_json::from_value(serde_json::json!({
            "nats": nats_settings, "registry": registry, "listen": "127.0.0.1:0",
            "clock_skew_secs": 2,
        }))?;

        let shutdown = CancellationToken::new();
        let mut services = Vec::new();
        let started = stepup_challenge::start(challenge, shutdown.clone()).await?;
        let admin_url = format!("http://{}", started.http_addr);
        services.push(tokio::spawn(async move {
            started.wait().await.expect("challenge service")
        }));
        let started = stepup_callback::start(callback, shutdown.clone()).await?;
        services.push(tokio::spawn(async move {
            started.wait().await.expect("callback service")
        }));
        let started = stepup_verifier::start(verifier, shutdown.clone()).await?;
        services.push(tokio::spawn(async move {
            started.wait().await.expect("verifier")
        }));

        let bus = Bus::connect(
            &stepup_bus::NatsSettings {
                url: nats.url(),
                ..Default::default()
            },
            "e2e-requester",
        )
        .await?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut subscription = bus.client().subscribe("stepup.>").await?;
        bus.client().flush().await?;
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if let Ok(envelope) = Envelope::from_json(&message.payload) {
                    sink.lock().unwrap().push(envelope);
                }
            }
        });

        Ok(Self {
            nats,
            okta,
            entra,
            bus,
            admin_url,
            http: reqwest::Client::new(),
            shutdown,
            services,
            events,
            responses: Arc::default(),
            _dir: dir,
        })
    }

    pub fn okta_issuer(&self) -> String {
        self.okta
            .as_ref()
            .expect("okta IdP started")
            .issuer()
            .to_owned()
    }

    pub fn entra_issuer(&self) -> String {
        self.entra
            .as_ref()
            .expect("entra IdP started")
            .issuer()
            .to_owned()
    }

    /// Sends an admin request with `token` and returns the status and the JSON body.
    pub async fn admin_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.admin_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin API reachable");
        let status = response.status().as_u16();
        let text = response.text().await.expect("admin body");
        self.responses.lock().unwrap().push(text.clone());
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// Sends an admin request with the right token.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.admin_with(method, path, body, Some(ADMIN_TOKEN)).await
    }

    /// Creates a provider and panics with the API's response when that fails.
    pub async fn create_provider(&self, body: serde_json::Value) -> serde_json::Value {
        let (status, json) = self
            .admin(reqwest::Method::POST, "/admin/providers", Some(body))
            .await;
        assert_eq!(status, 201, "creating the provider failed: {json}");
        json
    }

    /// Maps `(policy_id, step_id)` to step-up with `provider`.
    pub async fn put_policy(&self, policy_id: &str, step_id: &str, provider: &str) {
        let path = format!("/admin/policies/{policy_id}/{step_id}");
        let body = serde_json::json!({"provider": provider});
        let (status, json) = self.admin(reqwest::Method::PUT, &path, Some(body)).await;
        assert!(
            status == 201 || status == 200,
            "saving the policy failed: {json}"
        );
    }

    /// Returns an Okta-like provider at the Okta IdP that requires two factors.
    pub fn okta_provider(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "kind": "oauth2",
            "issuer": self.okta_issuer(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "acr_values": [TWO_FACTOR],
        })
    }

    /// Returns an Entra provider at the Entra IdP in `mode`.
    pub fn entra_provider(&self, name: &str, mode: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "name": name,
            "kind": "entra",
            "issuer": self.entra_issuer(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "entra_mode": mode,
        });
        if mode == "acrs" {
            body["auth_context"] = "c1".into();
        }
        body
    }

    pub async fn request(&self, approval: &ApprovalRequested) {
        self.bus
            .publish(approval)
            .await
            .expect("approval published");
    }

    /// Waits for the first event of `event_type` whose subject is `subject_id`.
    pub async fn wait_for(&self, event_type: &str, subject_id: &str) -> Envelope {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(found) = self.find(event_type, subject_id) {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> = self
                    .events
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|e| e.subject() == Some(subject_id))
                    .map(|e| e.event_type().to_owned())
                    .collect();
                panic!("no {event_type} for {subject_id} within {EVENT_TIMEOUT:?}; saw {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns every event of `event_type` whose subject is `subject_id`, in arrival order.
    pub fn find_all(&self, event_type: &str, subject_id: &str) -> Vec<Envelope> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.event_type() == event_type && e.subject() == Some(subject_id))
            .cloned()
            .collect()
    }

    pub fn find(&self, event_type: &str, subject_id: &str) -> Option<Envelope> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.event_type() == event_type && e.subject() == Some(subject_id))
            .cloned()
    }

    /// Waits for the final event of `approval_id`: completed, rejected or failed.
    pub async fn outcome(&self, approval_id: &str) -> Envelope {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            for event_type in [
                stepup_events::subject::APPROVAL_COMPLETED,
                stepup_events::subject::APPROVAL_REJECTED,
                stepup_events::subject::CHALLENGE_FAILED,
            ] {
                if let Some(found) = self.find(event_type, approval_id) {
                    return found;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no outcome for {approval_id}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes `approval`, waits for its step-up link, signs in at the IdP in `browser`
    /// (with the one-time code when `with_otp`), and returns the final event.
    pub async fn approve(
        &self,
        browser: &mut Browser,
        approval: &ApprovalRequested,
        with_otp: bool,
    ) -> Result<Envelope, BoxError> {
        self.request(approval).await;
        let required = self
            .wait_for(
                stepup_events::subject::STEPUP_REQUIRED,
                &approval.approval_id,
            )
            .await;
        let url = required
            .data_json()
            .and_then(|d| d["step_up_url"].as_str())
            .expect("step_up_url")
            .to_owned();
        sign_in(browser, &url, with_otp).await?;
        Ok(self.outcome(&approval.approval_id).await)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for service in self.services {
            let _ = tokio::time::timeout(Duration::from_secs(10), service).await;
        }
    }
}

/// Opens `url` in `browser` and fills in the IdP's login form when it shows one; returns
/// the callback's page.
pub async fn sign_in(browser: &mut Browser, url: &str, with_otp: bool) -> Result<Page, BoxError> {
    let page = browser.get(url).await?;
    if !page.body.contains("id=\"login\"") {
        // The IdP reused its session and sent the browser straight back.
        return Ok(page);
    }
    let user = alice();
    let otp = if with_otp {
        user.otp.clone().unwrap_or_default()
    } else {
        String::new()
    };
    Ok(browser
        .submit_form(
            &page,
            "login",
            &[
                ("login", &user.login),
                ("password", &user.password),
                ("otp", &otp),
            ],
        )
        .await?)
}

/// Returns an approval of `(policy_id, step_id)` by Alice, identified by email and Entra oid.
pub fn approval(policy_id: &str, step_id: &str) -> ApprovalRequested {
    ApprovalRequested {
        approval_id: format!("apr-{}", uuid::Uuid::now_v7()),
        policy_id: policy_id.into(),
        step_id: step_id.into(),
        approver: Approver {
            id: "alice".into(),
            email: "alice@example.com".into(),
            idp_subject: Some(ALICE_OID.into()),
        },
        requester: None,
        resource: None,
        channel: Channel::Web,
        automated: false,
        return_url: None,
    }
}

/// Returns the reason code of a failure or rejection event, or `None` for a completion.
pub fn reason_of(event: &Envelope) -> Option<String> {
    event
        .data_json()
        .and_then(|data| data["reason_code"].as_str().map(str::to_owned))
}
