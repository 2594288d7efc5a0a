//! Request/reply between services under `stepup.rpc.>`.
//!
//! Every request gets a reply: a handler's failure is sent back as an [`RpcFault`] with a
//! machine code and a human message, so no caller is left waiting for a timeout. Callers
//! tell "no service is listening" apart from "the service did not answer in time".

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Bus;
use crate::headers::{trace_headers_of, with_trace_headers};

/// A failure reported by the serving side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[error("{code}: {message}")]
pub struct RpcFault {
    /// Stable machine code, such as `not_found` or `invalid_request`.
    pub code: String,
    pub message: String,
}

impl RpcFault {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The reply envelope on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply<T> {
    Ok { result: T },
    Error { error: RpcFault },
}

/// A request that did not produce a result.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("no service is listening on {subject}; is it running?")]
    NoResponders { subject: String },
    #[error("request on {subject} timed out after {timeout:?}")]
    TimedOut { subject: String, timeout: Duration },
    #[error("request on {subject} failed: {source}")]
    Transport {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("reply on {subject} is not valid: {source}")]
    InvalidReply {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("request on {subject} could not be serialized: {source}")]
    InvalidRequest {
        subject: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Fault(#[from] RpcFault),
}

/// Sends `request` on `subject` and waits at most `timeout` for the reply.
pub async fn request<Req, Resp>(
    bus: &Bus,
    subject: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, RequestError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let payload = serde_json::to_vec(request).map_err(|source| RequestError::InvalidRequest {
        subject: subject.to_owned(),
        source,
    })?;
    let outgoing = async_nats::Request::new()
        .payload(payload.into())
        .headers(with_trace_headers(HeaderMap::new()))
        .timeout(Some(timeout));

    let message = bus
        .client()
        .send_request(subject.to_owned(), outgoing)
        .await
        .map_err(|source| match source.kind() {
            async_nats::RequestErrorKind::NoResponders => RequestError::NoResponders {
                subject: subject.to_owned(),
            },
            async_nats::RequestErrorKind::TimedOut => RequestError::TimedOut {
                subject: subject.to_owned(),
                timeout,
            },
            _ => RequestError::Transport {
                subject: subject.to_owned(),
                source,
            },
        })?;

    let reply: Reply<Resp> =
        serde_json::from_slice(&message.payload).map_err(|source| RequestError::InvalidReply {
            subject: subject.to_owned(),
            source,
        })?;
    match reply {
        Reply::Ok { result } => Ok(result),
        Reply::Error { error } => Err(RequestError::Fault(error)),
    }
}

/// Serves requests on `subject` in queue group `queue` until `shutdown` is cancelled. Each
/// request is handled in its own task, inside a span that continues the caller's trace.
pub async fn serve<Req, Resp, H, Fut>(
    bus: &Bus,
    subject: &str,
    queue: &str,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), async_nats::SubscribeError>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, RpcFault>> + Send + 'static,
{
    let mut subscriber = bus
        .client()
        .queue_subscribe(subject.to_owned(), queue.to_owned())
        .await?;
    // A round trip makes sure the server has registered the subscription before callers
    // are told the service is up.
    if let Err(error) = bus.client().flush().await {
        tracing::warn!(%subject, %error, "flushing after subscribe failed");
    }
    tracing::info!(%subject, "serving requests");

    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!(%subject, "request without a reply subject ignored");
            continue;
        };

        let span = tracing::info_span!("rpc", rpc.subject = %subject);
        stepup_telemetry::set_parent_from_headers(
            &span,
            &trace_headers_of(message.headers.as_ref()),
        );
        let client = bus.client().clone();
        let handler = handler.clone();
        let subject = subject.to_owned();
        tokio::spawn(
            async move {
                let reply = match serde_json::from_slice::<Req>(&message.payload) {
                    Ok(request) => match handler(request).await {
                        Ok(result) => Reply::Ok { result },
                        Err(error) => Reply::Error { error },
                    },
                    Err(error) => Reply::Error {
                        error: RpcFault::new(
                            "invalid_request",
                            format!("request body is not valid: {error}"),
                        ),
                    },
                };
                let payload = match serde_json::to_vec(&reply) {
                    Ok(payload) => payload,
                    Err(error) => {
                        tracing::error!(%subject, %error, "serializing a reply failed");
                        serde_json::to_vec(&Reply::<()>::Error {
                            error: RpcFault::new("internal", "the reply could not be serialized"),
                        })
                        .unwrap_or_default()
                    }
                };
                if let Err(error) = client.publish(reply_to, payload.into()).await {
                    tracing::warn!(%subject, %error, "sending a reply failed");
                }
            }
            .instrument(span),
        );
    }

    if let Err(error) = subscriber.unsubscribe().await {
        tracing::debug!(%subject, %error, "unsubscribing at shutdown failed");
    }
    tracing::info!(%subject, "stopped serving requests");
    Ok(())
}
