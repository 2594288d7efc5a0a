use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

use super::*;
use crate::export::verify_export;
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
        shutdown: CancellationToken::new(),
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
    assert_eq!(
        body,
        json!({"ok": true, "records": 0, "first_seq": null, "last_seq": null, "last_hash": null})
    );
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

#[tokio::test]
async fn readyz_reports_unavailable_once_shutdown_begins() -> TestResult {
    let directory = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("audit.db").display()
    );
    let shutdown = CancellationToken::new();
    let state = AppState {
        log: AuditLog::new(stepup_store::open(&url, &MIGRATIONS).await?),
        nats_connected: Arc::new(|| true),
        shutdown: shutdown.clone(),
    };
    let router = router(state);
    assert_eq!(get_json(&router, "/readyz").await?.0, StatusCode::OK);

    shutdown.cancel();
    assert_eq!(
        get_json(&router, "/readyz").await?.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_json(&router, "/healthz").await?.0, StatusCode::OK);
    Ok(())
}

fn entry(index: usize, approval_id: &str, outcome: &str) -> Entry {
    Entry {
        event_id: format!("e{index}"),
        event_type: "stepup.challenge.failed".into(),
        approval_id: Some(approval_id.into()),
        provider: Some("okta".into()),
        outcome: outcome.into(),
        reason_code: (outcome == "failed").then(|| "acr_not_satisfied".into()),
        event_json: format!(r#"{{"id":"e{index}"}}"#),
        ..Entry::default()
    }
}

async fn router_with_records(
    outcomes: &[&str],
) -> Result<(Router, AuditLog, tempfile::TempDir), Box<dyn std::error::Error>> {
    let (router, log, directory) = test_router(true).await?;
    for (index, outcome) in outcomes.iter().enumerate() {
        log.append(entry(index, "apr-1", outcome)).await?;
    }
    Ok((router, log, directory))
}

async fn get_text(
    router: &Router,
    uri: &str,
) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty())?)
        .await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((status, String::from_utf8(bytes.to_vec())?))
}

#[tokio::test]
async fn records_query_filters_and_pages() -> TestResult {
    let (router, _log, _directory) =
        router_with_records(&["failed", "started", "failed", "failed"]).await?;

    let (status, first) = get_json(
        &router,
        "/audit/records?outcome=failed&reason_code=acr_not_satisfied&limit=2",
    )
    .await?;
    let (_, second) = get_json(
        &router,
        &format!(
            "/audit/records?outcome=failed&limit=2&after_seq={}",
            first["next_after_seq"]
        ),
    )
    .await?;

    assert_eq!(status, StatusCode::OK);
    let seqs = |body: &Value| -> Vec<i64> {
        body["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["seq"].as_i64())
            .collect()
    };
    assert_eq!(seqs(&first), [1, 3]);
    assert_eq!(first["next_after_seq"], 3);
    assert_eq!(seqs(&second), [4]);
    assert_eq!(second["next_after_seq"], Value::Null);
    Ok(())
}

#[tokio::test]
async fn records_query_takes_an_rfc3339_time_range() -> TestResult {
    let (router, _log, _directory) = router_with_records(&["started"]).await?;

    let (_, past) = get_json(&router, "/audit/records?to=2000-01-01T00:00:00Z").await?;
    let (_, recent) = get_json(&router, "/audit/records?from=2000-01-01T00:00:00%2B01:00").await?;

    assert_eq!(past["records"], json!([]));
    assert_eq!(recent["records"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn bad_query_parameters_are_bad_requests() -> TestResult {
    let (router, _log, _directory) = test_router(true).await?;
    let long_id = format!(
        "/audit/records?approval_id={}",
        "a".repeat(MAX_TEXT_LEN + 1)
    );
    let cases = [
        ("/audit/records?limit=0", "invalid_parameter", "limit"),
        ("/audit/records?limit=1001", "invalid_parameter", "limit"),
        ("/audit/records?limit=ten", "invalid_parameter", "limit"),
        (
            "/audit/records?after_seq=-1",
            "invalid_parameter",
            "after_seq",
        ),
        ("/audit/records?from=yesterday", "invalid_parameter", "from"),
        (
            "/audit/records?approval_id=",
            "invalid_parameter",
            "approval_id",
        ),
        (long_id.as_str(), "invalid_parameter", "approval_id"),
        (
            "/audit/records?aproval_id=apr-1",
            "unknown_parameter",
            "aproval_id",
        ),
        (
            "/audit/records?outcome=a&outcome=b",
            "repeated_parameter",
            "outcome",
        ),
        (
            "/audit/records?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            "invalid_range",
            "from",
        ),
        ("/audit/verify?from_seq=0", "invalid_parameter", "from_seq"),
        (
            "/audit/verify?from_seq=5&to_seq=4",
            "invalid_range",
            "from_seq",
        ),
        ("/audit/export?to_seq=x", "invalid_parameter", "to_seq"),
        (
            "/audit/export?approval_id=apr-1",
            "unknown_parameter",
            "approval_id",
        ),
    ];

    for (uri, code, parameter) in cases {
        let (status, body) = get_json(&router, uri).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "for {uri}");
        assert_eq!(body["error"], code, "for {uri}");
        assert_eq!(body["parameter"], parameter, "for {uri}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(parameter), "for {uri}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn verify_takes_a_seq_range() -> TestResult {
    let (router, _log, _directory) = router_with_records(&["started"; 5]).await?;

    let (status, body) = get_json(&router, "/audit/verify?from_seq=2&to_seq=4").await?;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true);
    assert_eq!(body["records"], 3);
    assert_eq!(body["first_seq"], 2);
    assert_eq!(body["last_seq"], 4);
    Ok(())
}

#[tokio::test]
async fn export_is_json_lines_that_verify() -> TestResult {
    let (router, _log, _directory) = router_with_records(&["started"; 4]).await?;

    let response = router
        .clone()
        .oneshot(Request::get("/audit/export?from_seq=2").body(Body::empty())?)
        .await?;
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let text = String::from_utf8(bytes.to_vec())?;

    assert_eq!(
        content_type.as_ref().map(|v| v.as_bytes()),
        Some(CONTENT_TYPE.as_bytes())
    );
    assert_eq!(text.lines().count(), 3);
    let verification = verify_export(text.as_bytes())?;
    assert_eq!(verification.first_broken_seq(), None);
    assert!(matches!(
        verification,
        Verification::Intact {
            records: 3,
            first_seq: Some(2),
            ..
        }
    ));
    Ok(())
}

#[tokio::test]
async fn export_spans_several_pages() -> TestResult {
    let outcomes = vec!["started"; usize::try_from(PAGE_SIZE)? + 2];
    let (router, _log, _directory) = router_with_records(&outcomes).await?;

    let (status, text) = get_text(&router, "/audit/export").await?;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.lines().count(), outcomes.len());
    assert!(verify_export(text.as_bytes())?.is_ok());
    Ok(())
}

#[tokio::test]
async fn openapi_document_lists_every_route() -> TestResult {
    let document = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))?;
    let (router, _log, _directory) = test_router(true).await?;

    for route in ROUTES {
        assert!(
            document.contains(&format!("\n  {route}:\n")),
            "openapi.yaml lacks {route}"
        );
        let uri = route.replace("{approval_id}", "apr-1");
        let (status, _) = get_text(&router, &uri).await?;
        assert_ne!(status, StatusCode::NOT_FOUND, "the router lacks {route}");
    }
    Ok(())
}
