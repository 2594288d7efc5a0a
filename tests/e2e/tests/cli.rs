//! The `stepup provider` and `stepup policy` commands against a running challenge service:
//! the binary is run as an operator would, and its effects are checked through the admin
//! API, the events and a real provider test at the development IdP.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod registry_support;

use std::process::Output;

use registry_support::{
    ADMIN_TOKEN, CLIENT_ID, CLIENT_SECRET, Idps, RegistrySystem, TWO_FACTOR, TestResult, sign_in,
};
use stepup_e2e::browser::Browser;
use stepup_events::subject;

/// Runs the `stepup` binary with the admin API's URL and token in its environment.
async fn stepup(system: &RegistrySystem, args: &[&str]) -> Result<Output, std::io::Error> {
    let binary = stepup_e2e::process::service_binaries()
        .await
        .map_err(std::io::Error::other)?
        .join("stepup");
    tokio::process::Command::new(binary)
        .args(args)
        .env("STEPUP_ADMIN_URL", &system.admin_url)
        .env("STEPUP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("STEPUP_E2E_CLIENT_SECRET", CLIENT_SECRET)
        .env("STEPUP_NATS__URL", system.nats.url())
        .env_remove("STEPUP_CONFIG")
        .output()
        .await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} exited with {}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_and_policy_commands_manage_the_store() -> TestResult {
    let system = RegistrySystem::start(Idps {
        okta: true,
        ..Idps::default()
    })
    .await?;
    let issuer = system.okta_issuer();

    // 1. Add a provider; the secret comes from an environment variable and is sent to be
    //    stored encrypted, never printed.
    let added = stepup(
        &system,
        &[
            "provider",
            "add",
            "--name",
            "okta-cli",
            "--kind",
            "oauth2",
            "--issuer",
            &issuer,
            "--client-id",
            CLIENT_ID,
            "--client-secret-env",
            "STEPUP_E2E_CLIENT_SECRET",
            "--acr-value",
            TWO_FACTOR,
        ],
    )
    .await?;
    assert_success(&added, "provider add");
    assert!(stdout(&added).contains("okta-cli"), "{}", stdout(&added));
    assert!(!stdout(&added).contains(CLIENT_SECRET));

    // 2. It is listed, enabled, without its secret.
    let listed = stepup(&system, &["provider", "list"]).await?;
    assert_success(&listed, "provider list");
    let listing = stdout(&listed);
    assert!(listing.contains("okta-cli"), "{listing}");
    assert!(listing.contains(&issuer), "{listing}");
    assert!(!listing.contains(CLIENT_SECRET));

    // 3. A policy sends one step to it, and the list shows the policy.
    let set = stepup(
        &system,
        &[
            "policy",
            "set",
            "--policy-id",
            "cli-policy",
            "--step-id",
            "cli-step",
            "--provider",
            "okta-cli",
        ],
    )
    .await?;
    assert_success(&set, "policy set");
    let policies = stepup(&system, &["policy", "list"]).await?;
    assert_success(&policies, "policy list");
    assert!(
        stdout(&policies).contains("cli-policy"),
        "{}",
        stdout(&policies)
    );
    assert!(
        stdout(&policies).contains("okta-cli"),
        "{}",
        stdout(&policies)
    );

    // 4. A provider test prints a link; signing in with both factors passes the test.
    let tested = stepup(
        &system,
        &[
            "provider",
            "test",
            "okta-cli",
            "--approver-email",
            "alice@example.com",
        ],
    )
    .await?;
    assert_success(&tested, "provider test");
    let link = stdout(&tested)
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("http://"))
        .map(str::to_owned)
        .expect("provider test prints the link");
    let mut browser = Browser::new()?;
    sign_in(&mut browser, &link, true).await?;
    let report = system.wait_for(subject::PROVIDER_TESTED, "okta-cli").await;
    assert_eq!(report.data_json().unwrap()["passed"], true, "{report:?}");

    // 5. Disabling it shows in the list.
    let disabled = stepup(&system, &["provider", "disable", "okta-cli"]).await?;
    assert_success(&disabled, "provider disable");
    let listed = stepup(&system, &["provider", "list"]).await?;
    let row = stdout(&listed)
        .lines()
        .find(|line| line.starts_with("okta-cli"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(row.contains("false"), "{row}");

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_add_reports_a_bad_issuer() -> TestResult {
    let system = RegistrySystem::start(Idps::default()).await?;

    let added = stepup(
        &system,
        &[
            "provider",
            "add",
            "--name",
            "broken",
            "--kind",
            "oauth2",
            "--issuer",
            "not a url",
            "--client-id",
            CLIENT_ID,
            "--client-secret-env",
            "STEPUP_E2E_CLIENT_SECRET",
        ],
    )
    .await?;
    assert!(!added.status.success());
    let stderr = String::from_utf8_lossy(&added.stderr);
    assert!(stderr.contains("issuer"), "{stderr}");
    assert!(!stderr.contains(CLIENT_SECRET));

    system.stop().await;
    Ok(())
}
