//! Observability of a whole step-up flow: one approval is one trace across the four
//! services, no secret reaches a log line, a span, a stream message or the audit log, and
//! the step-up metrics are served as Prometheus text.
//!
//! This binary installs its own global subscriber: the production one from
//! `stepup_telemetry::subscriber` with a tracer that exports to memory, plus a layer that
//! captures every log line as JSON, at `trace` level for the step-up crates.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt as _;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use stepup_e2e::browser::Browser;
use stepup_events::subject;
use support::{
    CLIENT_ID, CLIENT_SECRET, PROVIDER, STEP_UP_STEP, System, TestResult, alice, approval,
    step_up_url,
};
use tracing::Instrument as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log levels of the captured lines: everything the step-up crates emit, `info` from the
/// libraries under them.
const CAPTURE_FILTER: &str = "info,stepup_challenge=trace,stepup_callback=trace,\
    stepup_verifier=trace,stepup_audit=trace,stepup_bus=trace,stepup_oidc=trace,\
    stepup_store=trace,stepup_telemetry=trace,stepup_events=trace,stepup_runtime=trace";

/// The events of a completed step-up flow, each of which the audit service consumes.
const FLOW_EVENTS: [&str; 6] = [
    subject::APPROVAL_REQUESTED,
    subject::STEPUP_REQUIRED,
    subject::CHALLENGE_STARTED,
    subject::AUTH_CODE_RECEIVED,
    subject::AUTH_VERIFIED,
    subject::APPROVAL_COMPLETED,
];

/// How long a test waits for the spans of a finished flow to be exported.
const SPAN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the subscriber of this binary captures.
struct Captured {
    spans: InMemorySpanExporter,
    provider: SdkTracerProvider,
    logs: LogBuffer,
}

/// Every log line written so far, shared with the subscriber.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs this binary's subscriber once and returns what it captures.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("stepup-e2e"));

        let logs = LogBuffer::default();
        let writer = logs.clone();
        let capture = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || writer.clone())
            .with_filter(tracing_subscriber::EnvFilter::new(CAPTURE_FILTER));

        stepup_telemetry::subscriber(stepup_telemetry::LogFormat::Text, otel)
            .unwrap()
            .with(capture)
            .try_init()
            .unwrap();
        Captured {
            spans,
            provider,
            logs,
        }
    })
}

/// One finished step-up flow and the secrets the test saw on the way.
struct Flow {
    approval_id: String,
    challenge_id: String,
    trace_id: TraceId,
    /// The authorization URL's `state` and `nonce`, the callback's `code`, and the value of
    /// the browser-binding cookie.
    browser_secrets: Vec<(&'static str, String)>,
}

/// Publishes an approval inside a span of the "other system", signs in as alice (with the
/// one-time code when `with_otp`), and waits until the audit log contains `audited` records.
async fn run_flow(system: &System, with_otp: bool, audited: usize) -> Flow {
    captured();
    let approval = approval(STEP_UP_STEP);

    // 1. The other system publishes inside a trace of its own.
    let span = tracing::info_span!("access-request", approval.id = %approval.approval_id);
    let trace_id = async {
        system.request(&approval).await.unwrap();
        stepup_telemetry::current_trace_id().unwrap()
    }
    .instrument(span)
    .await;
    let trace_id = TraceId::from_hex(&trace_id).unwrap();

    // 2. The approver follows the link and signs in.
    let required = system
        .wait_for(subject::STEPUP_REQUIRED, &approval.approval_id)
        .await;
    let challenge_id = required.envelope.data_json().unwrap()["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut browser = Browser::new().unwrap();
    let login_page = browser.get(step_up_url(&required)).await.unwrap();
    let authorize = browser
        .redirect_chain()
        .iter()
        .find(|url| url.query_pairs().any(|(name, _)| name == "code_challenge"))
        .cloned()
        .expect("the step-up link redirects to the authorization endpoint");
    let user = alice();
    let otp = if with_otp {
        user.otp.clone().unwrap()
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
        .await
        .unwrap();
    assert!(
        page.url.path().ends_with("/auth/callback"),
        "ended at {}",
        page.url
    );
    let callback = browser
        .redirect_chain()
        .iter()
        .find(|url| url.path().ends_with("/auth/callback"))
        .cloned()
        .unwrap();
    let cookie = browser.cookie_header(&callback).unwrap_or_default();

    // 3. The flow settles: every event is in the audit log.
    let audit = system.audit_types(&approval.approval_id, audited).await;
    assert_eq!(audit.len(), audited, "{audit:?}");

    let mut browser_secrets = vec![
        ("state", query_value(&authorize, "state")),
        ("nonce", query_value(&authorize, "nonce")),
        ("authorization code", query_value(&callback, "code")),
    ];
    for pair in cookie.split(';') {
        if let Some((_, value)) = pair.trim().split_once('=') {
            browser_secrets.push(("browser-binding cookie", value.to_owned()));
        }
    }
    Flow {
        approval_id: approval.approval_id,
        challenge_id,
        trace_id,
        browser_secrets,
    }
}

fn query_value(url: &url::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("{url} has no {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approval_is_one_trace() -> TestResult {
    captured();
    let system = System::start().await?;
    let flow = run_flow(&system, true, 6).await;
    let event_ids: HashMap<String, String> = system
        .events_for(&flow.approval_id)
        .into_iter()
        .map(|event| {
            (
                event.envelope.event_type().to_owned(),
                event.envelope.id().to_owned(),
            )
        })
        .collect();

    // Every consumer's span of every event of the flow, once all are exported.
    let expected_consumers = [
        (subject::APPROVAL_REQUESTED, "challenge"),
        (subject::AUTH_CODE_RECEIVED, "verifier"),
        (subject::AUTH_VERIFIED, "challenge"),
    ]
    .into_iter()
    .chain(FLOW_EVENTS.iter().map(|event_type| (*event_type, "audit")))
    .collect::<Vec<_>>();
    let spans = wait_for_spans(|spans| {
        expected_consumers.iter().all(|(event_type, service)| {
            consume_span(spans, &event_ids[*event_type], service).is_some()
        })
    })
    .await;

    // 1. Every consumer's span of the flow's events is in the approval's trace.
    for (event_type, service) in &expected_consumers {
        let span = consume_span(&spans, &event_ids[*event_type], service)
            .unwrap_or_else(|| panic!("no span of {service} consuming {event_type}"));
        assert_eq!(
            span.span_context.trace_id(),
            flow.trace_id,
            "{service}'s consume span of {event_type} is in another trace"
        );
    }
    let in_trace = |name: &str, key: &str, value: &str| -> Vec<&SpanData> {
        spans
            .iter()
            .filter(|span| span.name == name && attribute(span, key).as_deref() == Some(value))
            .collect()
    };

    // 2. The callback's event spans join the approval's trace; its HTTP request spans
    //    stay in the browser's trace and link to the approval's.
    for name in ["challenge_started", "code_received"] {
        let found = in_trace(name, "challenge.id", &flow.challenge_id);
        assert_eq!(found.len(), 1, "{name} spans: {found:?}");
        assert_eq!(found[0].span_context.trace_id(), flow.trace_id, "{name}");
    }
    for name in ["start", "callback"] {
        let found = in_trace(name, "challenge.id", &flow.challenge_id);
        assert!(!found.is_empty(), "no {name} span of the challenge");
        for span in found {
            assert!(
                span.links
                    .iter()
                    .any(|link| link.span_context.trace_id() == flow.trace_id),
                "the {name} span does not link to the approval's trace"
            );
        }
    }

    // 3. The parent chain: requester -> challenge -> callback -> verifier -> challenge
    //    -> audit, with the verifier's code request served inside its consume span.
    let requester = spans
        .iter()
        .find(|span| span.name == "access-request" && span.span_context.trace_id() == flow.trace_id)
        .expect("the requester's span is exported");
    let requested =
        consume_span(&spans, &event_ids[subject::APPROVAL_REQUESTED], "challenge").unwrap();
    let code_received = in_trace("code_received", "challenge.id", &flow.challenge_id)[0];
    let redeeming =
        consume_span(&spans, &event_ids[subject::AUTH_CODE_RECEIVED], "verifier").unwrap();
    let verified = consume_span(&spans, &event_ids[subject::AUTH_VERIFIED], "challenge").unwrap();
    let audited_completion =
        consume_span(&spans, &event_ids[subject::APPROVAL_COMPLETED], "audit").unwrap();
    let redemption_rpc = spans
        .iter()
        .find(|span| {
            span.name == "rpc"
                && span.span_context.trace_id() == flow.trace_id
                && attribute(span, "rpc.subject").as_deref()
                    == Some(subject::RPC_CHALLENGE_REDEMPTION)
        })
        .expect("the redemption request is served in the approval's trace");

    assert_eq!(
        requested.parent_span_id,
        requester.span_context.span_id(),
        "the challenge's consume span of the approval is not the requester's child"
    );
    assert_descends(&spans, code_received, requested, "code_received");
    assert_descends(&spans, redeeming, code_received, "verifier consume");
    assert_descends(&spans, redemption_rpc, redeeming, "redemption rpc");
    assert_descends(&spans, verified, redeeming, "challenge consume of verified");
    assert_descends(
        &spans,
        audited_completion,
        verified,
        "audit consume of completed",
    );

    // 4. The audit records carry the same trace id.
    let records = audit_records(&system, &flow.approval_id).await;
    for record in records["records"].as_array().unwrap() {
        assert_eq!(
            record["trace_id"].as_str(),
            Some(flow.trace_id.to_string().as_str()),
            "audit record of {}",
            record["event_type"]
        );
    }

    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_leaks_no_secret() -> TestResult {
    let logs = &captured().logs;
    let system = System::start().await?;

    // The RPC replies carry the code and PKCE verifier by design, over core NATS only;
    // listening to them is how the test learns the verifier.
    let mut replies = system.bus.client().subscribe("_INBOX.>").await?;
    system.bus.client().flush().await?;
    let flow = run_flow(&system, true, 6).await;

    let mut secrets: Vec<(&str, String)> = flow.browser_secrets.clone();
    secrets.push(("client secret", CLIENT_SECRET.to_owned()));
    secrets.push((
        "form-encoded client secret",
        url::form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect(),
    ));
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), replies.next()).await
    {
        let Ok(reply) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
            continue;
        };
        if let Some(verifier) = reply["result"]["pkce_verifier"].as_str() {
            secrets.push(("PKCE verifier", verifier.to_owned()));
        }
    }
    let kinds: Vec<&str> = secrets.iter().map(|(kind, _)| *kind).collect();
    for kind in [
        "state",
        "nonce",
        "authorization code",
        "PKCE verifier",
        "browser-binding cookie",
    ] {
        assert!(kinds.contains(&kind), "the test did not learn the {kind}");
    }
    for (kind, value) in &secrets {
        assert!(
            value.len() >= 16,
            "the {kind} is too short to search for: {value:?}"
        );
    }

    // Every place a secret must never reach.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let places = [
        ("logs", logs.text()),
        ("stream", stream_text(&system).await),
        (
            "audit log",
            audit_records(&system, &flow.approval_id).await.to_string(),
        ),
        ("spans", spans_text(&captured().spans.get_finished_spans()?)),
    ];
    for (place, text) in &places {
        assert!(!text.is_empty(), "nothing captured from the {place}");
        for (kind, value) in &secrets {
            assert!(
                !text.contains(value.as_str()),
                "the {kind} appears in the {place}"
            );
        }
        assert!(
            !contains_jwt(text),
            "something like a JWT appears in the {place}"
        );
    }

    // The ID token is represented by its SHA-256 only.
    let completed = system
        .wait_for(subject::APPROVAL_COMPLETED, &flow.approval_id)
        .await;
    let hash = completed.envelope.data_json().unwrap()["evidence"]["id_token_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hash.len(), 64);

    assert_decision_logs(&logs.text(), &flow);
    system.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_outcomes() -> TestResult {
    captured();
    let system = System::start().await?;
    run_flow(&system, true, 6).await;
    run_flow(&system, false, 6).await;

    let challenge = fetch_metrics(&format!("{}/metrics", system.challenge_url)).await;
    let provider = format!("provider=\"{PROVIDER}\"");
    for (name, label) in [
        ("stepup_challenges_issued_total{", provider.as_str()),
        ("stepup_challenges_completed_total{", provider.as_str()),
        (
            "stepup_challenges_failed_total{",
            "reason=\"acr_not_satisfied\"",
        ),
        ("stepup_challenges_failed_total{", provider.as_str()),
        (
            "stepup_challenge_completion_duration_seconds_count{",
            provider.as_str(),
        ),
        ("stepup_consumer_pending{", "consumer=\"challenge\""),
    ] {
        assert!(
            challenge
                .lines()
                .any(|line| line.starts_with(name) && line.contains(label)),
            "no {name}..{label}..}} series in:\n{challenge}"
        );
    }

    let callback = fetch_metrics(&format!("{}/metrics", system.callback_url)).await;
    for outcome in ["satisfied", "failed"] {
        let label = format!("outcome=\"{outcome}\"");
        assert!(
            callback.lines().any(|line| {
                line.starts_with("stepup_callback_wait_duration_seconds_bucket{")
                    && line.contains(&label)
            }),
            "no callback wait histogram for {outcome} in:\n{callback}"
        );
    }

    system.stop().await;
    Ok(())
}

async fn fetch_metrics(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

/// Waits until `complete` holds for the exported spans, and returns them.
async fn wait_for_spans(complete: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + SPAN_TIMEOUT;
    loop {
        captured().provider.force_flush().unwrap();
        let spans = captured().spans.get_finished_spans().unwrap();
        if complete(&spans) || tokio::time::Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|pair| pair.key.as_str() == key)
        .map(|pair| pair.value.to_string())
}

/// Finds the span in which `service` consumed the event `event_id`.
fn consume_span<'a>(spans: &'a [SpanData], event_id: &str, service: &str) -> Option<&'a SpanData> {
    spans.iter().find(|span| {
        span.name == "consume"
            && attribute(span, "event.id").as_deref() == Some(event_id)
            && attribute(span, "service").as_deref() == Some(service)
    })
}

fn assert_descends(spans: &[SpanData], span: &SpanData, ancestor: &SpanData, what: &str) {
    let by_id: HashMap<SpanId, &SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == ancestor.span_context.trace_id())
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    let mut current = span;
    for _ in 0..64 {
        if current.parent_span_id == ancestor.span_context.span_id() {
            return;
        }
        match by_id.get(&current.parent_span_id) {
            Some(parent) => current = parent,
            None => break,
        }
    }
    panic!(
        "{what} ({}) does not descend from {} ({})",
        span.name,
        ancestor.name,
        ancestor.span_context.span_id()
    );
}

async fn audit_records(system: &System, approval_id: &str) -> serde_json::Value {
    let url = format!("{}/audit/approvals/{approval_id}", system.audit_url);
    reqwest::get(&url).await.unwrap().json().await.unwrap()
}

/// Reads every message of the `STEPUP` stream, headers and payload, as text.
async fn stream_text(system: &System) -> String {
    let mut stream = system.bus.jetstream().get_stream("STEPUP").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut text = String::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        text.push_str(&format!("{} {:?} ", message.subject, message.headers));
        text.push_str(&String::from_utf8_lossy(&message.payload));
        text.push('\n');
    }
    text
}

/// Formats the names, attributes and events of `spans` as text.
fn spans_text(spans: &[SpanData]) -> String {
    spans
        .iter()
        .map(|span| format!("{} {:?} {:?}\n", span.name, span.attributes, span.events))
        .collect()
}

/// Checks whether `text` contains something shaped like a JWS: `eyJ` base64url, a dot, `eyJ`
/// base64url, a dot.
fn contains_jwt(text: &str) -> bool {
    let is_base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("eyJ").any(|(start, _)| {
        let rest = &text[start..];
        let header_end = rest.find(|c: char| !is_base64url(c)).unwrap_or(rest.len());
        let Some(after_header) = rest[header_end..].strip_prefix('.') else {
            return false;
        };
        let payload_end = after_header
            .find(|c: char| !is_base64url(c))
            .unwrap_or(after_header.len());
        after_header.starts_with("eyJ") && after_header[payload_end..].starts_with('.')
    })
}

/// Asserts that each service logs its security decision about the flow at `info`, with
/// the approval, the challenge, the approver, the provider and the decision as fields.
fn assert_decision_logs(logs: &str, flow: &Flow) {
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for decision in ["step_up_required", "verified", "completed"] {
        let line = lines
            .iter()
            .find(|line| {
                line["fields"]["decision"] == decision
                    && line["fields"]["challenge.id"] == flow.challenge_id.as_str()
            })
            .unwrap_or_else(|| panic!("no {decision} decision logged for the challenge"));
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(
            line["fields"]["approval.id"],
            flow.approval_id.as_str(),
            "{line}"
        );
        assert_eq!(line["fields"]["approver"], "alice", "{line}");
        assert_eq!(line["fields"]["provider"], PROVIDER, "{line}");
    }
}

#[test]
fn jwt_shape_is_recognised() {
    assert!(contains_jwt(
        "token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln rest"
    ));
    assert!(!contains_jwt("eyJhbGciOiJSUzI1NiJ9 only a header"));
    assert!(!contains_jwt(&format!("client {CLIENT_ID}")));
}
