//! The interface between the HTTP handlers and the rest of the system: the challenge
//! service's request/reply subjects and the two events this service publishes.
//!
//! The handlers see it as a trait so that router tests can run without a NATS server;
//! [`NatsBackend`] is the implementation the service runs with.

use std::time::Duration;

use futures::future::BoxFuture;
use stepup_bus::rpc::{self, RequestError};
use stepup_bus::{Bus, PublishError};
use stepup_events::Envelope;
use stepup_events::data::{AuthCodeReceived, ChallengeStarted};
use stepup_events::rpc::{CallbackReply, CallbackRequest, StartReply, StartRequest};
use stepup_events::subject;

/// The challenge service and the event bus, as the handlers use them.
pub trait Backend: Send + Sync + 'static {
    /// Sends `stepup.rpc.challenge.start`.
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<StartReply, RequestError>>;

    /// Sends `stepup.rpc.challenge.callback`.
    fn callback(
        &self,
        request: CallbackRequest,
    ) -> BoxFuture<'_, Result<CallbackReply, RequestError>>;

    /// Publishes `stepup.challenge.started`.
    fn publish_started(&self, event: ChallengeStarted) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Publishes `stepup.auth.code_received`.
    fn publish_code_received(
        &self,
        event: AuthCodeReceived,
    ) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Returns whether the connection to NATS is up, for `/readyz`.
    fn is_ready(&self) -> bool;
}

/// The backend over a NATS connection.
#[derive(Debug, Clone)]
pub struct NatsBackend {
    bus: Bus,
    rpc_timeout: Duration,
}

impl NatsBackend {
    pub fn new(bus: Bus, rpc_timeout: Duration) -> Self {
        Self { bus, rpc_timeout }
    }
}

impl Backend for NatsBackend {
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<StartReply, RequestError>> {
        Box::pin(async move {
            rpc::request(
                &self.bus,
                subject::RPC_CHALLENGE_START,
                &request,
                self.rpc_timeout,
            )
            .await
        })
    }

    fn callback(
        &self,
        request: CallbackRequest,
    ) -> BoxFuture<'_, Result<CallbackReply, RequestError>> {
        Box::pin(async move {
            rpc::request(
                &self.bus,
                subject::RPC_CHALLENGE_CALLBACK,
                &request,
                self.rpc_timeout,
            )
            .await
        })
    }

    fn publish_started(&self, event: ChallengeStarted) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move { self.bus.publish(&event).await.map(drop) })
    }

    fn publish_code_received(
        &self,
        event: AuthCodeReceived,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            // The verifier starts only when this event arrives, so one lost publish would
            // leave the challenge waiting until it expires. The second attempt sends the same
            // event id, so the stream drops it if the first attempt did land.
            let envelope = Envelope::new(crate::EVENT_SOURCE, &event)?;
            match self.bus.publish_envelope(&envelope).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    tracing::warn!(
                        challenge.id = %event.challenge_id,
                        %error,
                        "publishing stepup.auth.code_received failed, retrying once"
                    );
                    self.bus.publish_envelope(&envelope).await
                }
            }
        })
    }

    fn is_ready(&self) -> bool {
        self.bus.client().connection_state() == async_nats::connection::State::Connected
    }
}
