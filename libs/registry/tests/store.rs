//! The store against a real nats-server: live views in two handles, compare-and-set
//! writes, seeding from the configuration file, and key rotation.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use stepup_bus::{Bus, NatsSettings};
use stepup_e2e::nats::NatsServer;
use stepup_oidc::provider::ProviderSettings;
use stepup_registry::{
    Origin, PolicyRecord, ProviderRecord, Registry, RegistrySettings, StoredSecret,
};
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn bus(nats: &NatsServer) -> Bus {
    let settings = NatsSettings {
        url: nats.url(),
        ..NatsSettings::default()
    };
    Bus::connect(&settings, "registry-test")
        .await
        .expect("connects")
}

fn okta(secret: &str) -> ProviderSettings {
    serde_json::from_value(serde_json::json!({
        "name": "okta",
        "kind": "oauth2",
        "issuer": "https://example.okta.com",
        "client_id": "client",
        "client_secret": secret,
        "acr_values": ["urn:okta:loa:2fa:any"]
    }))
    .expect("settings deserialize")
}

fn policy(step_id: &str, provider: &str) -> PolicyRecord {
    PolicyRecord {
        policy_id: "prod".into(),
        step_id: step_id.into(),
        step_up: true,
        provider: Some(provider.into()),
        max_age: None,
        acr_values: None,
        allow_self_approval: false,
        origin: Origin::Config,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn key_file(dir: &std::path::Path, name: &str, byte: u8) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        base64::engine::general_purpose::STANDARD.encode([byte; 32]),
    )
    .unwrap();
    format!("file:{}", path.display())
}

async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn change_reaches_other_handle_live() -> TestResult {
    let nats = NatsServer::start().await?;
    let shutdown = CancellationToken::new();
    let writer = Registry::open(
        &bus(&nats).await,
        &RegistrySettings::default(),
        shutdown.clone(),
    )
    .await?;
    let reader = Registry::open(
        &bus(&nats).await,
        &RegistrySettings::default(),
        shutdown.clone(),
    )
    .await?;

    let record = ProviderRecord::from_settings(
        &okta("env:OKTA_SECRET"),
        StoredSecret::Env {
            name: "OKTA_SECRET".into(),
        },
        Origin::Api,
        Utc::now(),
    );
    writer.create_provider(&record).await?;
    assert!(eventually(|| reader.provider("okta").is_some()).await);

    writer
        .update_provider("okta", |record| {
            record.enabled = false;
            Ok(())
        })
        .await?;
    assert!(eventually(|| reader.provider("okta").is_some_and(|p| !p.enabled)).await);

    writer.delete_provider("okta").await?;
    assert!(eventually(|| reader.provider("okta").is_none()).await);

    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn existing_records_load_at_open() -> TestResult {
    let nats = NatsServer::start().await?;
    let shutdown = CancellationToken::new();
    let first = Registry::open(
        &bus(&nats).await,
        &RegistrySettings::default(),
        shutdown.clone(),
    )
    .await?;
    first.put_policy(&policy("security", "okta")).await?;
    first.put_policy(&policy("other", "okta")).await?;

    let second = Registry::open(
        &bus(&nats).await,
        &RegistrySettings::default(),
        shutdown.clone(),
    )
    .await?;
    assert_eq!(second.catalog().policies.len(), 2);
    assert!(second.catalog().policy("prod", "security").is_some());

    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn duplicate_create_is_rejected() -> TestResult {
    let nats = NatsServer::start().await?;
    let shutdown = CancellationToken::new();
    let registry = Registry::open(
        &bus(&nats).await,
        &RegistrySettings::default(),
        shutdown.clone(),
    )
    .await?;
    let record = ProviderRecord::from_settings(
        &okta("env:X"),
        StoredSecret::Env { name: "X".into() },
        Origin::Api,
        Utc::now(),
    );
    registry.create_provider(&record).await?;
    let again = registry.create_provider(&record).await;
    assert!(
        matches!(again, Err(stepup_registry::RegistryError::Exists { .. })),
        "{again:?}"
    );
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn seeding_keeps_api_changes_and_never_stores_plain_secret() -> TestResult {
    let nats = NatsServer::start().await?;
    let shutdown = CancellationToken::new();
    let registry = Registry::open(
        &bus(&nats).await,
        &RegistrySettings::default(),
        shutdown.clone(),
    )
    .await?;

    // Without a key, a secret value from the file stays in the file.
    let summary = registry
        .seed(&[okta("plain-value")], &[policy("security", "okta")])
        .await?;
    assert_eq!(summary.created, 2);
    let stored = registry.provider("okta").expect("seeded");
    assert_eq!(stored.client_secret, StoredSecret::Config);
    assert_eq!(
        registry.resolve_secret(&stored, &[okta("plain-value")])?,
        "plain-value"
    );

    // Seeding again changes nothing; a changed file entry updates a file-born record.
    assert_eq!(
        registry.seed(&[okta("plain-value")], &[]).await?.unchanged,
        1
    );
    let mut changed = okta("plain-value");
    changed.acr_values = vec!["phrh".into()];
    assert_eq!(registry.seed(&[changed.clone()], &[]).await?.updated, 1);
    assert_eq!(registry.provider("okta").unwrap().acr_values, vec!["phrh"]);

    // A record saved through the API wins over the file.
    registry
        .update_provider("okta", |record| {
            record.origin = Origin::Api;
            record.acr_values = vec!["phr".into()];
            Ok(())
        })
        .await?;
    assert_eq!(registry.seed(&[changed], &[]).await?.kept_api, 1);
    assert_eq!(registry.provider("okta").unwrap().acr_values, vec!["phr"]);

    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn rotation_reencrypts_with_current_key() -> TestResult {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let old_key = key_file(dir.path(), "old", 1);
    let new_key = key_file(dir.path(), "new", 2);
    let shutdown = CancellationToken::new();

    let before = RegistrySettings {
        secret_key: Some(old_key.clone()),
        ..RegistrySettings::default()
    };
    let registry = Registry::open(&bus(&nats).await, &before, shutdown.clone()).await?;
    registry.seed(&[okta("rotating-secret")], &[]).await?;
    let sealed = registry.provider("okta").unwrap().client_secret;
    assert!(matches!(sealed, StoredSecret::Encrypted { .. }));

    let during = RegistrySettings {
        secret_key: Some(new_key.clone()),
        previous_secret_keys: vec![old_key],
        ..RegistrySettings::default()
    };
    let rotated = Registry::open(&bus(&nats).await, &during, shutdown.clone()).await?;
    assert_eq!(rotated.reencrypt_secrets().await?, 1);

    let after = RegistrySettings {
        secret_key: Some(new_key),
        ..RegistrySettings::default()
    };
    let only_new = Registry::open(&bus(&nats).await, &after, shutdown.clone()).await?;
    let record = only_new.provider("okta").unwrap();
    assert_eq!(only_new.resolve_secret(&record, &[])?, "rotating-secret");

    shutdown.cancel();
    Ok(())
}
