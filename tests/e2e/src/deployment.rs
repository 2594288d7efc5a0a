//! A deployment of the service binaries for one test: nats-server, the development IdP,
//! one database per owning service (SQLite files or PostgreSQL databases), and one or more
//! instances of each service as child processes with a configuration file each.
//!
//! Unlike the in-process `System` of the flow tests, every service here is a real process,
//! so a test can kill it with SIGKILL, stop it with SIGTERM, or run two of it. Every event
//! published on `stepup.>` is recorded for waiting, and [`Deployment::stream_count`] counts
//! what the JetStream stream really stored, which is what "exactly once" is about: a core
//! subscription also sees publishes that the stream dropped as duplicates.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use stepup_events::Envelope;
use stepup_store::Backend;
use stepup_store::testing::TestDatabase;
use tokio::time::{Instant, sleep};

use crate::browser::{Browser, Page};
use crate::free_port;
use crate::idp::{DevIdp, IdpClient, IdpConfig, IdpUser, Profile};
use crate::nats::NatsServer;
use crate::process::{SERVICES, ServiceProcess};

pub const CLIENT_ID: &str = "stepup-e2e";
pub const CLIENT_SECRET: &str = "e2e-process-secret";
pub const PROVIDER: &str = "dev-idp";
pub const POLICY: &str = "production-access";
pub const STEP_UP_STEP: &str = "security-approval";
pub const TWO_FACTOR: &str = "urn:okta:loa:2fa:any";
pub const STREAM: &str = "STEPUP";

/// The NATS user the test itself connects as when the server has per-service users.
pub const TEST_USER: &str = "e2e";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the deployment is laid out.
#[derive(Debug, Clone)]
pub struct DeploymentOptions {
    /// Instances of every service.
    pub instances: usize,
    pub backend: Backend,
    /// Run nats-server with `deploy/nats/nats-server.conf`'s users and permissions, and
    /// connect every service as its own user.
    pub nats_permissions: bool,
    pub challenge_ttl_secs: u64,
    /// How long JetStream waits for an ack before redelivering, in seconds. Short, so a
    /// message in flight in a killed process comes back quickly.
    pub ack_wait_secs: u64,
    pub max_deliver: i64,
    pub backoff_ms: Vec<u64>,
    pub idp_timeout_ms: u64,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        Self {
            instances: 1,
            backend: Backend::Sqlite,
            nats_permissions: false,
            challenge_ttl_secs: 600,
            ack_wait_secs: 2,
            max_deliver: 20,
            backoff_ms: vec![200, 500, 1_000],
            idp_timeout_ms: 3_000,
        }
    }
}

/// One recorded event with the subject it was published on.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub subject: String,
    pub envelope: Envelope,
}

/// A running deployment. Dropping it kills every process and removes SQLite files; call
/// [`stop`](Self::stop) to drop PostgreSQL databases too.
#[derive(Debug)]
pub struct Deployment {
    pub nats: NatsServer,
    pub idp: DevIdp,
    /// Every service instance, in [`SERVICES`] order per instance.
    pub processes: Vec<ServiceProcess>,
    /// Base URLs of the callback instances.
    pub callback_urls: Vec<String>,
    /// Base URLs of the audit instances.
    pub audit_urls: Vec<String>,
    pub client: async_nats::Client,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    databases: Vec<TestDatabase>,
    dir: tempfile::TempDir,
}

/// Returns the IdP user that matches the approver every approval names.
pub fn alice() -> IdpUser {
    IdpUser {
        login: "alice@example.com".into(),
        password: "alice-password".into(),
        otp: Some("123456".into()),
        sub: "00u1alice".into(),
        oid: None,
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        name: Some("Alice".into()),
        contexts: Vec::new(),
    }
}

impl Deployment {
    /// Starts everything and returns once every service reports ready.
    pub async fn start(options: DeploymentOptions) -> Result<Self, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix("stepup-deploy-")
            .tempdir()?;
        let nats = start_nats(&options, dir.path()).await?;

        let callback_ports = (0..options.instances)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let callback_urls: Vec<String> = callback_ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect();
        let idp = DevIdp::start(IdpConfig {
            profile: Profile::Okta,
            users: vec![alice()],
            clients: vec![IdpClient {
                redirect_uris: callback_urls
                    .iter()
                    .map(|url| format!("{url}/auth/callback"))
                    .collect(),
                ..IdpClient::new(CLIENT_ID, CLIENT_SECRET, "http://unused/")
            }],
            ..IdpConfig::default()
        })
        .await?;

        let mut databases = Vec::new();
        let mut database_urls = Vec::new();
        for service in ["challenge", "audit"] {
            let database = TestDatabase::create(options.backend)
                .await?
                .ok_or("set STEPUP_TEST_POSTGRES_URL to run the deployment on PostgreSQL")?;
            database_urls.push((service, database.url.clone()));
            databases.push(database);
        }

        let mut deployment = Self {
            client: connect_test_client(&nats, options.nats_permissions).await?,
            nats,
            idp,
            processes: Vec::new(),
            callback_urls,
            audit_urls: Vec::new(),
            recorded: Arc::new(Mutex::new(Vec::new())),
            databases,
            dir,
        };
        deployment.record_events().await?;

        for (instance, callback_port) in callback_ports.iter().enumerate() {
            let ports = InstancePorts {
                callback: *callback_port,
                challenge: free_port()?,
                verifier: free_port()?,
                audit: free_port()?,
            };
            let config = deployment.write_config(&options, instance, &ports, &database_urls)?;
            for service in SERVICES {
                let name = format!("{service}-{}", instance + 1);
                let port = ports.of(service);
                let process = ServiceProcess::start(
                    service,
                    &name,
                    &config,
                    &format!("http://127.0.0.1:{port}/readyz"),
                    &deployment.dir.path().join(format!("{name}.log")),
                )
                .await?;
                deployment.processes.push(process);
            }
            deployment
                .audit_urls
                .push(format!("http://127.0.0.1:{}", ports.audit));
        }
        Ok(deployment)
    }

    /// Returns the database URL of `service` (`challenge` or `audit`).
    pub fn database_url(&self, service: &str) -> Option<String> {
        let index = ["challenge", "audit"].iter().position(|s| *s == service)?;
        self.databases
            .get(index)
            .map(|database| database.url.clone())
    }

    /// Returns instance `instance` (from 0) of `service`.
    pub fn process(&mut self, service: &str, instance: usize) -> &mut ServiceProcess {
        let name = format!("{service}-{}", instance + 1);
        match self.processes.iter_mut().find(|p| p.name == name) {
            Some(process) => process,
            None => unreachable_process(&name),
        }
    }

    /// Publishes `stepup.approval.requested` for a new approval of alice's and returns the
    /// approval id.
    pub async fn request_approval(&self) -> Result<String, BoxError> {
        let approval_id = format!("apr-{}", uuid::Uuid::now_v7());
        let data = stepup_events::data::ApprovalRequested {
            approval_id: approval_id.clone(),
            policy_id: POLICY.into(),
            step_id: STEP_UP_STEP.into(),
            approver: stepup_events::data::Approver {
                id: "alice".into(),
                email: "alice@example.com".into(),
                idp_subject: None,
            },
            requester: None,
            resource: None,
            channel: stepup_events::data::Channel::Web,
            automated: false,
            return_url: None,
        };
        let envelope = Envelope::new("/e2e/requester", &data)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, envelope.id());
        let ack = jetstream::new(self.client.clone())
            .publish_with_headers(
                stepup_events::subject::APPROVAL_REQUESTED,
                headers,
                envelope.to_json()?.into(),
            )
            .await?;
        ack.await?;
        Ok(approval_id)
    }

    /// Waits up to `timeout` for the first event of `event_type` about `approval_id`.
    pub async fn wait_for(
        &self,
        event_type: &str,
        approval_id: &str,
        timeout: Duration,
    ) -> Result<Recorded, BoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .events_for(approval_id)
                .into_iter()
                .find(|event| event.envelope.event_type() == event_type)
            {
                return Ok(found);
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .events_for(approval_id)
                    .iter()
                    .map(|e| e.envelope.event_type().to_owned())
                    .collect();
                return Err(format!(
                    "no {event_type} for {approval_id} within {timeout:?}; saw {seen:?}"
                )
                .into());
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns every event published about `approval_id` so far, as a core subscriber
    /// received them.
    pub fn events_for(&self, approval_id: &str) -> Vec<Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|event| event.envelope.subject() == Some(approval_id))
            .cloned()
            .collect()
    }

    /// Counts the events of `event_type` that the stream stored, per approval id.
    pub async fn stream_counts(
        &self,
        event_type: &str,
    ) -> Result<std::collections::HashMap<String, usize>, BoxError> {
        let stream = jetstream::new(self.client.clone())
            .get_stream(STREAM)
            .await?;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                filter_subject: event_type.to_owned(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await?;
        let mut counts = std::collections::HashMap::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(500)
                .expires(Duration::from_millis(500))
                .messages()
                .await?;
            let mut fetched = 0;
            while let Some(message) = batch.next().await {
                let message = message?;
                fetched += 1;
                let envelope = Envelope::from_json(&message.payload)?;
                let approval = envelope.subject().unwrap_or_default().to_owned();
                *counts.entry(approval).or_insert(0) += 1;
            }
            if fetched == 0 {
                return Ok(counts);
            }
        }
    }

    /// Counts the stored events of `event_type` about `approval_id`.
    pub async fn stream_count(
        &self,
        event_type: &str,
        approval_id: &str,
    ) -> Result<usize, BoxError> {
        let counts = self.stream_counts(event_type).await?;
        Ok(counts.get(approval_id).copied().unwrap_or(0))
    }

    /// Returns the event types the audit log (of the first audit instance) holds for
    /// `approval_id`, once it holds at least `expected` records or `timeout` passed.
    pub async fn audit_types(
        &self,
        approval_id: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, BoxError> {
        let url = format!("{}/audit/approvals/{approval_id}", self.audit_urls[0]);
        let deadline = Instant::now() + timeout;
        loop {
            let types = match reqwest::get(&url).await {
                Ok(response) => {
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    body["records"]
                        .as_array()
                        .map(|records| {
                            records
                                .iter()
                                .filter_map(|r| r["event_type"].as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                }
                Err(_) => Vec::new(),
            };
            if types.len() >= expected || Instant::now() > deadline {
                return Ok(types);
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `step_up_url` in a new browser, signs in as alice with her one-time code, and
    /// returns the last page.
    pub async fn step_up(&self, step_up_url: &str) -> Result<Page, BoxError> {
        step_up(step_up_url).await
    }

    /// Kills every process and drops the PostgreSQL databases.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        for process in &mut self.processes {
            process.kill().await?;
        }
        self.nats.stop().await?;
        for database in self.databases.drain(..) {
            database.remove().await?;
        }
        Ok(())
    }

    /// Returns every process's log, for failure messages.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.name, tail(&p.log(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn record_events(&self) -> Result<(), BoxError> {
        let mut subscription = self.client.subscribe("stepup.>").await?;
        self.client.flush().await?;
        let sink = self.recorded.clone();
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                if message.subject.starts_with("stepup.rpc.") {
                    continue;
                }
                let Ok(envelope) = Envelope::from_json(&message.payload) else {
                    continue;
                };
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Recorded {
                        subject: message.subject.to_string(),
                        envelope,
                    });
            }
        });
        Ok(())
    }

    fn write_config(
        &self,
        options: &DeploymentOptions,
        instance: usize,
        ports: &InstancePorts,
        database_urls: &[(&str, String)],
    ) -> Result<PathBuf, BoxError> {
        let database = |service: &str| {
            database_urls
                .iter()
                .find(|(name, _)| *name == service)
                .map(|(_, url)| url.clone())
                .unwrap_or_default()
        };
        let consumer = serde_json::json!({
            "ack_wait_secs": options.ack_wait_secs,
            "max_deliver": options.max_deliver,
            "backoff_ms": options.backoff_ms,
        });
        let nats = |service: &str| {
            let mut nats = serde_json::json!({"url": self.nats.url()});
            if options.nats_permissions {
                nats["user"] = service.into();
                nats["password"] = crate::nats_users::password_of(service).into();
            }
            nats
        };
        let config = serde_json::json!({
            // The step-up links point at the first callback; any callback instance can
            // serve any challenge.
            "public_url": self.callback_urls[0],
            "challenge": {
                "nats": nats("challenge"),
                "database_url": database("challenge"),
                "listen": format!("127.0.0.1:{}", ports.challenge),
                "challenge_ttl_secs": options.challenge_ttl_secs,
                "sweep_interval_secs": 1,
                "consumer": consumer,
            },
            "callback": {
                "nats": nats("callback"),
                "listen": format!("127.0.0.1:{}", ports.callback),
                // Every browser of the tests comes from 127.0.0.1.
                "rate_limit_per_client_per_minute": 100_000,
            },
            "verifier": {
                "nats": nats("verifier"),
                "listen": format!("127.0.0.1:{}", ports.verifier),
                "idp_timeout_ms": options.idp_timeout_ms,
                "consumer": consumer,
            },
            "audit": {
                "nats": nats("audit"),
                "database_url": database("audit"),
                "listen": format!("127.0.0.1:{}", ports.audit),
                "consumer": consumer,
            },
            "providers": [{
                "name": PROVIDER,
                "kind": "oauth2",
                "issuer": self.idp.issuer(),
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "acr_values": [TWO_FACTOR],
            }],
            "policies": [
                {"policy_id": POLICY, "step_id": STEP_UP_STEP, "provider": PROVIDER},
            ],
        });
        let path = self
            .dir
            .path()
            .join(format!("stepup-{}.toml", instance + 1));
        std::fs::write(&path, toml::to_string(&config)?)?;
        Ok(path)
    }
}

/// Opens `step_up_url` in a new browser, signs in as alice with her one-time code, and
/// returns the last page.
pub async fn step_up(step_up_url: &str) -> Result<Page, BoxError> {
    let user = alice();
    let mut browser = Browser::new()?;
    let login_page = browser.get(step_up_url).await?;
    if !login_page.body.contains("id=\"login\"") {
        return Err(format!(
            "expected the IdP's login form at {}, got status {}",
            login_page.url, login_page.status
        )
        .into());
    }
    let otp = user.otp.clone().unwrap_or_default();
    let fields = [
        ("login", user.login.as_str()),
        ("password", user.password.as_str()),
        ("otp", otp.as_str()),
    ];
    Ok(browser.submit_form(&login_page, "login", &fields).await?)
}

/// Returns the `step_up_url` of a `stepup.required` event.
pub fn step_up_url(required: &Recorded) -> Result<String, BoxError> {
    required
        .envelope
        .data_json()
        .and_then(|data| data["step_up_url"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| "stepup.required has no step_up_url".into())
}

struct InstancePorts {
    callback: u16,
    challenge: u16,
    verifier: u16,
    audit: u16,
}

impl InstancePorts {
    fn of(&self, service: &str) -> u16 {
        match service {
            "challenge" => self.challenge,
            "callback" => self.callback,
            "verifier" => self.verifier,
            _ => self.audit,
        }
    }
}

async fn start_nats(options: &DeploymentOptions, dir: &Path) -> Result<NatsServer, BoxError> {
    if !options.nats_permissions {
        return Ok(NatsServer::start().await?);
    }
    let config = crate::nats_users::write_server_config(dir)?;
    Ok(NatsServer::start_with_config(Some(config)).await?)
}

async fn connect_test_client(
    nats: &NatsServer,
    with_user: bool,
) -> Result<async_nats::Client, BoxError> {
    let mut options = async_nats::ConnectOptions::new();
    if with_user {
        options =
            options.user_and_password("admin".into(), crate::nats_users::password_of(TEST_USER));
    }
    Ok(options.connect(nats.url()).await?)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[allow(clippy::panic)]
fn unreachable_process(name: &str) -> ! {
    // A test asking for an instance it did not start is a bug in the test.
    panic!("no service process named {name} in this deployment")
}
