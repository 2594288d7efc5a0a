//! A whole step-up system for one test: its own nats-server, the development IdP and the
//! four services in this process, plus a recorder of every event on `stepup.>`.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use futures::StreamExt as _;
use stepup_bus::Bus;
use stepup_e2e::browser::{Browser, Page};
use stepup_e2e::idp::{DevIdp, IdpClient, IdpConfig, IdpUser, Profile};
use stepup_e2e::nats::NatsServer;
use stepup_events::data::{ApprovalRequested, Approver, Channel, Resource};
use stepup_events::{Envelope, subject};
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub const CLIENT_ID: &str = "stepup-e2e";
/// Contains characters that RFC 6749 §2.3.1 requires to be form-encoded in Basic auth.
pub const CLIENT_SECRET: &str = "e2e secret/with+special:chars%";
pub const PROVIDER: &str = "dev-idp";
pub const POLICY: &str = "production-access";
pub const STEP_UP_STEP: &str = "security-approval";
pub const PLAIN_STEP: &str = "manager-approval";
pub const TWO_FACTOR: &str = "urn:okta:loa:2fa:any";

/// How long a test waits for any one event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// One received event with its NATS headers.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub subject: String,
    pub envelope: Envelope,
    pub traceparent: Option<String>,
}

pub struct System {
    pub nats: NatsServer,
    pub idp: DevIdp,
    pub bus: Bus,
    pub callback_url: String,
    pub audit_url: String,
    pub challenge_url: String,
    shutdown: CancellationToken,
    services: Vec<tokio::task::JoinHandle<()>>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    _dir: tempfile::TempDir,
    /// PostgreSQL databases of this system, dropped by `stop`.
    databases: Vec<stepup_store::testing::TestDatabase>,
}

pub fn alice() -> IdpUser {
    IdpUser {
        login: "alice@example.com".into(),
        password: "alice-password".into(),
        otp: Some("123456".into()),
        sub: "00u1alice".into(),
        oid: Some("11111111-1111-1111-1111-111111111111".into()),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        name: Some("Alice".into()),
        contexts: vec!["c1".into()],
    }
}

/// Settings a test may change from the defaults of [`System::start`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The challenge service's `challenge_ttl_secs`; its default when `None`.
    pub challenge_ttl_secs: Option<u64>,
    /// Members merged into the provider's settings in every service, for example the
    /// `issuer`, `client_id` and `client_secret` of another IdP in place of the
    /// development IdP's.
    pub provider: Option<serde_json::Value>,
    /// Members merged into the verifier's configuration, for example `idp_timeout_ms`.
    pub verifier: Option<serde_json::Value>,
}

/// Copies every member of `extra` into `target`, replacing members of the same name.
fn merge(target: &mut serde_json::Value, extra: Option<&serde_json::Value>) {
    if let (Some(target), Some(extra)) = (
        target.as_object_mut(),
        extra.and_then(serde_json::Value::as_object),
    ) {
        for (name, value) in extra {
            target.insert(name.clone(), value.clone());
        }
    }
}

/// A user whose email the IdP does not mark verified (`email_verified: false`).
pub fn carol() -> IdpUser {
    IdpUser {
        login: "carol@example.com".into(),
        password: "carol-password".into(),
        otp: Some("111222".into()),
        sub: "00u3carol".into(),
        oid: Some("33333333-3333-3333-3333-333333333333".into()),
        email: Some("carol@example.com".into()),
        email_verified: Some(false),
        name: Some("Carol".into()),
        contexts: vec!["c1".into()],
    }
}

pub fn bob() -> IdpUser {
    IdpUser {
        login: "bob@example.com".into(),
        password: "bob-password".into(),
        otp: Some("654321".into()),
        sub: "00u2bob".into(),
        oid: Some("22222222-2222-2222-2222-222222222222".into()),
        email: Some("bob@example.com".into()),
        email_verified: Some(true),
        name: Some("Bob".into()),
        contexts: vec!["c1".into()],
    }
}

/// Installs the tracing subscriber with the OpenTelemetry layer once per test binary, so
/// trace context really travels through NATS headers as in production. A test binary that
/// installed its own subscriber first keeps it.
fn init_telemetry() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if tracing::dispatcher::has_been_set() {
            return;
        }
        let guard = stepup_telemetry::init("stepup-e2e", stepup_telemetry::LogFormat::Text);
        // The guard flushes spans on drop; the test binary keeps it for its whole life.
        std::mem::forget(guard);
    });
}

impl System {
    pub async fn start() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::start_with(Options::default()).await
    }

    /// Starts the system with `options` changed from the defaults of [`System::start`].
    pub async fn start_with(
        options: Options,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        init_telemetry();
        let dir = tempfile::tempdir()?;
        let nats = NatsServer::start().await?;

        // The IdP must know the callback's redirect URI before the services start.
        let callback_port = stepup_e2e::free_port()?;
        let callback_url = format!("http://127.0.0.1:{callback_port}");
        let idp = DevIdp::start(IdpConfig {
            profile: Profile::Okta,
            users: vec![alice(), bob(), carol()],
            clients: vec![IdpClient::new(
                CLIENT_ID,
                CLIENT_SECRET,
                &format!("{callback_url}/auth/callback"),
            )],
            ..IdpConfig::default()
        })
        .await?;

        let mut shared = serde_json::json!({
            "nats": {"url": nats.url()},
            "public_url": callback_url,
            "providers": [{
                "name": PROVIDER,
                "kind": "oauth2",
                "issuer": idp.issuer(),
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "acr_values": [TWO_FACTOR],
            }],
            "policies": [
                {"policy_id": POLICY, "step_id": STEP_UP_STEP, "provider": PROVIDER},
                {"policy_id": POLICY, "step_id": PLAIN_STEP, "step_up": false},
            ],
        });
        merge(&mut shared["providers"][0], options.provider.as_ref());
        let section = |extra: serde_json::Value, keys: &[&str]| {
            let mut object = extra.as_object().cloned().unwrap_or_default();
            object.insert("nats".into(), shared["nats"].clone());
            for key in keys {
                object.insert((*key).into(), shared[*key].clone());
            }
            serde_json::Value::Object(object)
        };
        // STEPUP_E2E_DATABASE=postgres puts both stores on PostgreSQL (scripts/test.sh runs
        // the flow tests that way too); the default is one SQLite file per store.
        let mut databases = Vec::new();
        let mut database_urls = Vec::new();
        for name in ["challenge.db", "audit.db"] {
            let url = if std::env::var("STEPUP_E2E_DATABASE").as_deref() == Ok("postgres") {
                let database =
                    stepup_store::testing::TestDatabase::create(stepup_store::Backend::Postgres)
                        .await?
                        .ok_or("STEPUP_E2E_DATABASE=postgres needs STEPUP_TEST_POSTGRES_URL")?;
                let url = database.url.clone();
                databases.push(database);
                url
            } else {
                format!("sqlite://{}?mode=rwc", dir.path().join(name).display())
            };
            database_urls.push((name, url));
        }
        let db = |name: &str| {
            database_urls
                .iter()
                .find(|(file, _)| *file == name)
                .map(|(_, url)| url.clone())
                .unwrap_or_default()
        };

        let mut challenge: stepup_challenge::Config = serde_json::from_value(section(
            serde_json::json!({"database_url": db("challenge.db"), "listen": "127.0.0.1:0", "sweep_interval_secs": 1}),
            &["public_url", "providers", "policies"],
        ))?;
        if let Some(ttl) = options.challenge_ttl_secs {
            challenge.challenge_ttl_secs = ttl;
        }
        let callback: stepup_callback::Config = serde_json::from_value(section(
            serde_json::json!({"listen": format!("127.0.0.1:{callback_port}"), "allowed_return_origins": ["https://access.example.com"]}),
            &["public_url"],
        ))?;
        let mut verifier_extra = serde_json::json!({"listen": "127.0.0.1:0"});
        merge(&mut verifier_extra, options.verifier.as_ref());
        let verifier: stepup_verifier::Config =
            serde_json::from_value(section(verifier_extra, &["providers"]))?;
        let audit: stepup_audit::Config = serde_json::from_value(section(
            serde_json::json!({"database_url": db("audit.db"), "listen": "127.0.0.1:0"}),
            &[],
        ))?;

        let shutdown = CancellationToken::new();
        let mut services = Vec::new();
        let started = stepup_challenge::start(challenge, shutdown.clone()).await?;
        let challenge_url = format!("http://{}", started.http_addr);
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
        let started = stepup_audit::start(audit, shutdown.clone()).await?;
        let audit_url = format!("http://{}", started.http_addr);
        services.push(tokio::spawn(async move {
            started.wait().await.expect("audit service")
        }));

        // The other system: publishes approvals and records every event with its headers.
        let bus = Bus::connect(
            &stepup_bus::NatsSettings {
                url: nats.url(),
                ..Default::default()
            },
            "e2e-requester",
        )
        .await?;
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let mut subscription = bus.client().subscribe("stepup.>").await?;
        bus.client().flush().await?;
        let sink = recorded.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if message.subject.starts_with("stepup.rpc.") {
                    continue;
                }
                let Ok(envelope) = Envelope::from_json(&message.payload) else {
                    continue;
                };
                let traceparent = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("traceparent"))
                    .map(|v| v.as_str().to_owned());
                sink.lock().unwrap().push(Recorded {
                    subject: message.subject.to_string(),
                    envelope,
                    traceparent,
                });
            }
        });

        Ok(Self {
            nats,
            idp,
            bus,
            callback_url,
            audit_url,
            challenge_url,
            shutdown,
            services,
            recorded,
            _dir: dir,
            databases,
        })
    }

    /// Publishes `approval` as another system would.
    pub async fn request(
        &self,
        approval: &ApprovalRequested,
    ) -> Result<Envelope, stepup_bus::PublishError> {
        self.bus.publish(approval).await
    }

    /// Waits for the first event of `event_type` about `approval_id`.
    pub async fn wait_for(&self, event_type: &str, approval_id: &str) -> Recorded {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(found) = self
                .events_for(approval_id)
                .into_iter()
                .find(|event| event.envelope.event_type() == event_type)
            {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<String> = self
                    .events_for(approval_id)
                    .iter()
                    .map(|e| e.envelope.event_type().to_owned())
                    .collect();
                panic!("no {event_type} for {approval_id} within {EVENT_TIMEOUT:?}; saw {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every event recorded so far about `approval_id`, in arrival order.
    pub fn events_for(&self, approval_id: &str) -> Vec<Recorded> {
        self.recorded
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.envelope.subject() == Some(approval_id))
            .cloned()
            .collect()
    }

    pub fn count(&self, event_type: &str, approval_id: &str) -> usize {
        self.events_for(approval_id)
            .iter()
            .filter(|event| event.envelope.event_type() == event_type)
            .count()
    }

    /// Waits until the audit log holds at least `expected` records for `approval_id`, and
    /// returns their event types in sequence order.
    pub async fn audit_types(&self, approval_id: &str, expected: usize) -> Vec<String> {
        let url = format!("{}/audit/approvals/{approval_id}", self.audit_url);
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            let types: Vec<String> = body["records"]
                .as_array()
                .map(|records| {
                    records
                        .iter()
                        .filter_map(|r| r["event_type"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if types.len() >= expected || tokio::time::Instant::now() > deadline {
                return types;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens the step-up link, signs in at the IdP as `user`, with the one-time code when
    /// `with_otp` is set, and returns the callback's final page.
    pub async fn step_up(
        &self,
        step_up_url: &str,
        user: &IdpUser,
        with_otp: bool,
    ) -> Result<Page, Box<dyn std::error::Error + Send + Sync>> {
        let mut browser = Browser::new()?;
        let login_page = browser.get(step_up_url).await?;
        assert!(
            login_page.body.contains("id=\"login\""),
            "expected the IdP's login form at {}, got status {}",
            login_page.url,
            login_page.status
        );
        let otp = if with_otp {
            user.otp.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let page = browser
            .submit_form(
                &login_page,
                "login",
                &[
                    ("login", &user.login),
                    ("password", &user.password),
                    ("otp", &otp),
                ],
            )
            .await?;
        Ok(page)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for service in self.services {
            let _ = tokio::time::timeout(Duration::from_secs(10), service).await;
        }
        for database in self.databases {
            let _ = database.remove().await;
        }
    }
}

pub fn approval(step_id: &str) -> ApprovalRequested {
    ApprovalRequested {
        approval_id: format!("apr-{}", uuid::Uuid::now_v7()),
        policy_id: POLICY.into(),
        step_id: step_id.into(),
        approver: Approver {
            id: "alice".into(),
            email: "alice@example.com".into(),
            idp_subject: None,
        },
        requester: None,
        resource: Some(Resource {
            kind: "role".into(),
            id: "prod-admin".into(),
            display_name: Some("Production administrator".into()),
        }),
        channel: Channel::Web,
        automated: false,
        return_url: Some("https://access.example.com/requests/42".into()),
    }
}

pub fn step_up_url(required: &Recorded) -> String {
    required
        .envelope
        .data_json()
        .and_then(|data| data["step_up_url"].as_str())
        .map(str::to_owned)
        .expect("stepup.required has a step_up_url")
}

pub const FLOW_SUBJECTS: &[&str] = &[subject::APPROVAL_REQUESTED];
