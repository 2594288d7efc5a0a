use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

use super::*;
use crate::log::MIGRATIONS;
use crate::record::Entry;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn test_router(
    nats_connected: bool,
) -> Result<(Router, AuditLog, tempfile::TempDir), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("audit.db").display()
    );
    let log = AuditLog::new(stepup_store::open(&url, &MIGRATIONS).await?);
    let state = AppState {
        log: log.clone(),
        nats_connected: Arc::new(move || nats_connected),
    };
    Ok((router(state), log, directory))
}

async fn get_json(
    router: &Router,
    uri: &str,
) -> Result<(StatusCode, Value), Box<dyn std::error::Error>> {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty())?)
        .await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok((status, body))
}

#[tokio::test]
async fn approval_query_returns_records_with_parsed_event() -> TestResult {
    let (router, log, _directory) = test_router(true).await?;
    log.append(Entry {
        event_id: "e1".into(),
        event_type: "stepup.auth.verified".into(),
        approval_id: Some("apr-1".into()),
        outcome: "verified".into(),
        amr: Some(r#"["mfa"]"#.into()),
        event_json: r#"{"id":"e1","type":"stepup.auth.verified"}"#.into(),
        ..Entry::default()
    })
    .await?;

    let (status, body) = get_json(&router, "/audit/approvals/apr-1").await?;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["approval_id"], "apr-1");
    let record = &body["records"][0];
    assert_eq!(record["seq"], 1);
    assert_eq!(record["outcome"], "verified");
    assert_eq!(record["amr"], json!(["mfa"]));
    assert_eq!(record["event"]["type"], "stepup.auth.verified");
    assert_eq!(record["step_id"], Value::Null);
    assert_eq!(record["hash"].as_str().map(str::len), Some(64));
    Ok(())
}

#[tokio::test]
async fn unknown_approval_has_no_records() -> TestResult {
    let (router, _log, _directory) = test_router(true).await?;

    let (status, body) = get_json(&router, "/audit/approvals/nobody").await?;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records"], json!([]));
    Ok(())
}

#[tokio::test]
async fn invalid_approval_id_is_a_bad_request() -> TestResult {
    let (router, _log, _directory) = test_router(true).await?;
    let too_long = format!("/audit/approvals/{}", "a".repeat(MAX_APPROVAL_ID_LEN + 1));

    for uri in [too_long.as_str(), "/audit/approvals/a%0Ab"] {
        let (status, body) = get_json(&router, uri).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "for {uri}");
        assert_eq!(body["error"], "invalid_approval_id", "for {uri}");
    }
    Ok(())
}

#[tokio::test]
async fn verify_of_empty_log_is_ok() -> TestResult {
    let (router, _log, _directory) = test_router(true).await?;

    let (status, body) = get_json(&router, "/audit/verify").await?;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"ok": true, "records": 0}));
    Ok(())
}

#[tokio::test]
async fn readyz_follows_the_nats_connection() -> TestResult {
    let (up, _log, _directory) = test_router(true).await?;
    let (down, _other_log, _other_directory) = test_router(false).await?;

    assert_eq!(get_json(&up, "/readyz").await?.0, StatusCode::OK);
    assert_eq!(
        get_json(&down, "/readyz").await?.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_json(&down, "/healthz").await?.0, StatusCode::OK);
    Ok(())
}
