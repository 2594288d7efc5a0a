//! Trace context in NATS headers.

use std::collections::HashMap;

use async_nats::HeaderMap;

/// Adds the current span's `traceparent` and `tracestate` to `headers`.
pub fn with_trace_headers(mut headers: HeaderMap) -> HeaderMap {
    for (name, value) in stepup_telemetry::current_trace_headers() {
        headers.insert(name.as_str(), value.as_str());
    }
    headers
}

/// Reads the trace-context headers of a received message.
pub fn trace_headers_of(headers: Option<&HeaderMap>) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let Some(headers) = headers else {
        return found;
    };
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = headers.get(name) {
            found.insert(name.to_owned(), value.as_str().to_owned());
        }
    }
    found
}
