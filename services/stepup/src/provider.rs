//! `stepup provider add|list|test|disable`: the admin API's provider operations from the
//! command line.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use serde_json::{Value, json};
use stepup_runtime::Settings;

use crate::cli::{AddProviderArgs, AdminArgs, ProviderCommand, TestProviderArgs};

pub async fn run(
    settings: &Settings,
    admin: &AdminArgs,
    command: ProviderCommand,
) -> anyhow::Result<()> {
    let client = AdminClient::new(admin)?;
    match command {
        ProviderCommand::Add(args) => add(&client, *args).await,
        ProviderCommand::List => list(&client).await,
        ProviderCommand::Test(args) => test(settings, &client, args).await,
        ProviderCommand::Disable { name } => {
            let answer = client
                .send(
                    reqwest::Method::POST,
                    &format!("/admin/providers/{name}/disable"),
                    None,
                )
                .await?;
            println!("provider {name} disabled (enabled: {})", answer["enabled"]);
            Ok(())
        }
    }
}

async fn add(client: &AdminClient, args: AddProviderArgs) -> anyhow::Result<()> {
    let secret = client_secret(&args)?;
    let mut body = json!({
        "name": args.name,
        "kind": args.kind,
        "issuer": args.issuer,
        "client_id": args.client_id,
        "client_secret": secret,
        "prompt_login": args.prompt_login,
    });
    let optional = [
        (
            "acr_values",
            (!args.acr_values.is_empty()).then(|| json!(args.acr_values)),
        ),
        ("max_age", args.max_age.map(Value::from)),
        ("entra_mode", args.entra_mode.map(Value::from)),
        ("auth_context", args.auth_context.map(Value::from)),
        ("token_auth_method", args.token_auth_method.map(Value::from)),
        ("binding", args.binding.map(Value::from)),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            body[field] = value;
        }
    }

    let answer = client
        .send(reqwest::Method::POST, "/admin/providers", Some(body))
        .await?;
    for warning in answer["warnings"].as_array().into_iter().flatten() {
        eprintln!(
            "warning: {}: {}",
            warning["field"].as_str().unwrap_or(""),
            warning["message"].as_str().unwrap_or("")
        );
    }
    println!("{}", serde_json::to_string_pretty(&answer["provider"])?);
    Ok(())
}

/// Returns the secret to send. A reference stays a reference for the verifier to resolve.
/// A value is read here from a file or variable, so it never appears on the command line.
fn client_secret(args: &AddProviderArgs) -> anyhow::Result<String> {
    if let Some(reference) = &args.client_secret {
        if !(reference.starts_with("env:") || reference.starts_with("file:")) {
            anyhow::bail!(
                "--client-secret takes a reference env:NAME or file:/path that the verifier resolves; to store the value encrypted, pass --client-secret-file or --client-secret-env"
            );
        }
        return Ok(reference.clone());
    }
    if let Some(path) = &args.client_secret_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the client secret from {}", path.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Some(name) = &args.client_secret_env {
        return std::env::var(name).with_context(|| {
            format!("environment variable {name} with the client secret is not set")
        });
    }
    anyhow::bail!(
        "the client secret is missing: pass --client-secret-file, --client-secret-env or --client-secret env:NAME|file:/path"
    )
}

async fn list(client: &AdminClient) -> anyhow::Result<()> {
    let providers = client
        .send(reqwest::Method::GET, "/admin/providers", None)
        .await?;
    println!(
        "{:<20} {:<7} {:<8} {:<22} ISSUER",
        "NAME", "KIND", "ENABLED", "LAST TESTED"
    );
    for provider in providers.as_array().into_iter().flatten() {
        println!(
            "{:<20} {:<7} {:<8} {:<22} {}",
            provider["name"].as_str().unwrap_or(""),
            provider["kind"].as_str().unwrap_or(""),
            provider["enabled"].to_string(),
            provider["last_tested_at"].as_str().unwrap_or("never"),
            provider["issuer"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

/// Starts a provider test, prints its link and, with `--wait-secs`, the report.
async fn test(
    settings: &Settings,
    client: &AdminClient,
    args: TestProviderArgs,
) -> anyhow::Result<()> {
    // Subscribe before the test starts, so a fast report cannot slip past.
    let mut reports = match args.wait_secs {
        Some(_) => {
            let bus = stepup_bus::Bus::connect(&settings.nats()?, "cli").await?;
            let subscription = bus
                .client()
                .subscribe(stepup_events::subject::PROVIDER_TESTED)
                .await
                .context("subscribing to stepup.provider.tested")?;
            Some((bus, subscription))
        }
        None => None,
    };

    let body = json!({"approver_email": args.approver_email, "approver_idp_subject": args.approver_idp_subject});
    let path = format!("/admin/providers/{}/test", args.name);
    let started = client
        .send(reqwest::Method::POST, &path, Some(body))
        .await?;
    println!(
        "open this link in a browser and sign in as the tester:\n  {}",
        started["url"].as_str().unwrap_or("")
    );

    let (Some(wait), Some((_bus, subscription))) = (args.wait_secs, reports.as_mut()) else {
        return Ok(());
    };
    let test_id = started["test_id"].as_str().unwrap_or_default().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let message = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .with_context(|| {
                format!(
                    "no test report within {wait} seconds; the link stays valid until {}",
                    started["expires_at"]
                )
            })?
            .context("the NATS subscription ended")?;
        let Ok(envelope) = stepup_events::Envelope::from_json(&message.payload) else {
            continue;
        };
        let Some(report) = envelope
            .data_json()
            .filter(|data| data["test_id"] == test_id.as_str())
        else {
            continue;
        };
        println!("{}", serde_json::to_string_pretty(report)?);
        if report["passed"] == true {
            return Ok(());
        }
        anyhow::bail!(
            "the test failed at check {}: {}",
            report["failure"]["check"].as_str().unwrap_or("?"),
            report["failure"]["message"].as_str().unwrap_or("")
        );
    }
}

/// A small client of the admin API that turns its JSON errors into readable ones.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let token = match (&args.admin_token_file, &args.admin_token) {
            (Some(path), _) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin token from {}", path.display()))?
                .trim()
                .to_owned(),
            (None, Some(token)) => token.clone(),
            (None, None) => {
                anyhow::bail!("no admin token: set STEPUP_ADMIN_TOKEN or pass --admin-token-file")
            }
        };
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: args.admin_url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends a request and returns the JSON response, or an error with the API's message.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{url} is not reachable: is the challenge service running, and is --admin-url right?"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let mut message = format!(
            "{} ({}): {}",
            json["code"].as_str().unwrap_or("error"),
            status.as_u16(),
            json["message"].as_str().unwrap_or(&text)
        );
        for problem in json["problems"].as_array().into_iter().flatten().skip(1) {
            message.push_str(&format!(
                "\n  {}: {}",
                problem["field"].as_str().unwrap_or(""),
                problem["message"].as_str().unwrap_or("")
            ));
        }
        anyhow::bail!(message)
    }
}
