//! OTLP export switched on by `OTEL_EXPORTER_OTLP_ENDPOINT`: spans and metrics reach a
//! collector when the process's telemetry shuts down.
//!
//! The variable is read once per process, so the test runs itself again as a child
//! process with the variable set, against a minimal HTTP collector on loopback that
//! records which OTLP paths were posted to.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Set in the child process, which records telemetry instead of collecting it.
const CHILD_VARIABLE: &str = "STEPUP_TELEMETRY_OTLP_CHILD";
const TEST_NAME: &str = "spans_and_metrics_reach_the_collector";

#[test]
fn spans_and_metrics_reach_the_collector() {
    if std::env::var_os(CHILD_VARIABLE).is_some() {
        record_and_shut_down();
        return;
    }

    // 1. A collector that accepts every request and remembers its request line.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Some(line) = answer(stream) {
                sink.lock().unwrap().push(line);
            }
        }
    });

    // 2. The child records a span and a metric, then shuts telemetry down.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_METRIC_EXPORT_INTERVAL", "60000")
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed: {status}");

    // 3. Both signals were posted to their OTLP/HTTP paths.
    let received = received.lock().unwrap().clone();
    assert!(
        received
            .iter()
            .any(|line| line.starts_with("POST /v1/traces ")),
        "no spans exported: {received:?}"
    );
    assert!(
        received
            .iter()
            .any(|line| line.starts_with("POST /v1/metrics ")),
        "no metrics exported: {received:?}"
    );
}

fn record_and_shut_down() {
    let guard = stepup_telemetry::init("otlp-test", stepup_telemetry::LogFormat::Text).unwrap();
    tracing::info_span!("probe").in_scope(|| {
        tracing::info!("probe event");
        stepup_telemetry::metrics::challenge_issued("otlp-test");
    });
    drop(guard);
}

/// Reads one HTTP request from `stream`, replies `200 OK`, and returns the request line.
fn answer(stream: TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;

    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;

    let mut stream = stream;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    Some(request_line.trim_end().to_owned())
}
