//! Delivery of challenge outcomes to the callback pages that wait for them.
//!
//! A callback page that handed an authorization code to the verifier waits, for a bounded
//! time, until the challenge ends. Any callback instance may be serving that page, so each
//! process has its own core NATS subscription to the outcome subjects. A shared JetStream
//! consumer would not do, because it hands each outcome to one instance only. The
//! subscription wakes the [`Waiter`]s registered for the challenge in the event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::SelectAll;
use stepup_bus::Bus;
use stepup_events::data::{ApprovalCompleted, ChallengeExpired, ChallengeFailed};
use stepup_events::rpc::ChallengeOutcome;
use stepup_events::{DecodeError, Envelope, ReasonCode, subject};
use thiserror::Error;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The subjects whose events end a challenge.
pub const OUTCOME_SUBJECTS: [&str; 3] = [
    subject::APPROVAL_COMPLETED,
    subject::CHALLENGE_FAILED,
    subject::CHALLENGE_EXPIRED,
];

/// The outcome subscriptions could not be set up.
#[derive(Debug, Error)]
pub enum SubscribeError {
    #[error("subscribing to {subject} failed: {source}")]
    Subscribe {
        subject: &'static str,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("confirming the outcome subscriptions with the NATS server failed: {reason}")]
    Probe { reason: String },
}

/// How long the subscription round trip at start may take.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

type Senders = HashMap<String, Vec<(u64, oneshot::Sender<ChallengeOutcome>)>>;

/// The pages waiting for an outcome, by challenge id.
#[derive(Debug, Default)]
pub struct Waiters {
    senders: Mutex<Senders>,
    next_id: AtomicU64,
}

impl Waiters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers interest in `challenge_id`'s outcome. Register before the action that can
    /// cause the outcome, so that a fast outcome is not missed.
    pub fn register(self: &Arc<Self>, challenge_id: &str) -> Waiter {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.lock()
            .entry(challenge_id.to_owned())
            .or_default()
            .push((id, sender));
        Waiter {
            waiters: Arc::clone(self),
            challenge_id: challenge_id.to_owned(),
            id,
            receiver: Some(receiver),
        }
    }

    /// Wakes every waiter of `challenge_id` with `outcome` and returns how many there were.
    pub fn notify(&self, challenge_id: &str, outcome: &ChallengeOutcome) -> usize {
        let senders = self.lock().remove(challenge_id).unwrap_or_default();
        let count = senders.len();
        for (_, sender) in senders {
            // A waiter that gave up in the meantime has dropped its receiver; that is fine.
            let _ = sender.send(outcome.clone());
        }
        count
    }

    /// Counts the challenges that have waiters, for tests and diagnostics.
    pub fn waiting_challenges(&self) -> usize {
        self.lock().len()
    }

    fn remove(&self, challenge_id: &str, id: u64) {
        let mut senders = self.lock();
        if let Some(list) = senders.get_mut(challenge_id) {
            list.retain(|(entry, _)| *entry != id);
            if list.is_empty() {
                senders.remove(challenge_id);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Senders> {
        // Every update leaves the map consistent, so a poisoned lock is still usable.
        self.senders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One page's registration. Dropping it (after a timeout, or when the request is
/// cancelled) removes the registration.
#[derive(Debug)]
pub struct Waiter {
    waiters: Arc<Waiters>,
    challenge_id: String,
    id: u64,
    receiver: Option<oneshot::Receiver<ChallengeOutcome>>,
}

impl Waiter {
    /// Waits at most `timeout` for the outcome. `None` means it did not arrive in time.
    pub async fn wait(mut self, timeout: Duration) -> Option<ChallengeOutcome> {
        let receiver = self.receiver.take()?;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(outcome)) => Some(outcome),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.remove(&self.challenge_id, self.id);
    }
}

/// The merged subscriptions to the outcome subjects.
pub type OutcomeMessages = SelectAll<async_nats::Subscriber>;

/// Subscribes to the outcome subjects. Returns after the server has registered the
/// subscriptions, so outcomes published afterwards are not missed.
pub async fn subscribe(bus: &Bus) -> Result<OutcomeMessages, SubscribeError> {
    let mut subscribers = Vec::with_capacity(OUTCOME_SUBJECTS.len());
    for subject in OUTCOME_SUBJECTS {
        let subscriber = bus
            .client()
            .subscribe(subject)
            .await
            .map_err(|source| SubscribeError::Subscribe { subject, source })?;
        subscribers.push(subscriber);
    }

    confirm_round_trip(bus.client()).await?;
    Ok(futures::stream::select_all(subscribers))
}

/// Sends a message to ourselves and waits for it. The server handles a connection's
/// commands in order, so once the message is back, every earlier subscription is in place.
/// `flush` alone only empties the client's write buffer.
async fn confirm_round_trip(client: &async_nats::Client) -> Result<(), SubscribeError> {
    let inbox = client.new_inbox();
    let mut probe =
        client
            .subscribe(inbox.clone())
            .await
            .map_err(|source| SubscribeError::Subscribe {
                subject: "the round-trip inbox",
                source,
            })?;
    client
        .publish(inbox, Default::default())
        .await
        .map_err(|source| SubscribeError::Probe {
            reason: source.to_string(),
        })?;

    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(SubscribeError::Probe {
            reason: "the subscription closed".into(),
        }),
        Err(_) => Err(SubscribeError::Probe {
            reason: format!("no reply within {ROUND_TRIP_TIMEOUT:?}"),
        }),
    }
}

/// Runs the delivery loop until `shutdown` is cancelled or the subscriptions end.
pub async fn deliver(
    mut messages: impl futures::Stream<Item = async_nats::Message> + Unpin,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    tracing::info!(subjects = ?OUTCOME_SUBJECTS, "delivering challenge outcomes");
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = messages.next() => match message {
                Some(message) => message,
                None => break,
            },
        };

        match decode_outcome(&message.payload) {
            Ok(Some((challenge_id, outcome))) => {
                let woken = waiters.notify(&challenge_id, &outcome);
                tracing::debug!(challenge.id = %challenge_id, woken, "challenge outcome received");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(subject = %message.subject, %error, "undecodable outcome event ignored");
            }
        }
    }
    tracing::info!("stopped delivering challenge outcomes");
}

/// Reads the challenge id and the outcome from an outcome event. `Ok(None)` is an
/// approval completed without a challenge (a step that needed no step-up).
pub fn decode_outcome(payload: &[u8]) -> Result<Option<(String, ChallengeOutcome)>, DecodeError> {
    let envelope = Envelope::from_json(payload)?;

    match envelope.event_type() {
        subject::APPROVAL_COMPLETED => {
            let data: ApprovalCompleted = envelope.data()?;
            Ok(data.challenge_id.map(|id| (id, satisfied())))
        }
        subject::CHALLENGE_FAILED => {
            let data: ChallengeFailed = envelope.data()?;
            Ok(Some((data.challenge_id, failed(data.reason_code))))
        }
        // An unexpected type fails here with the expected type named in the error.
        _ => {
            let data: ChallengeExpired = envelope.data()?;
            Ok(Some((data.challenge_id, failed(ReasonCode::Expired))))
        }
    }
}

/// Builds the outcome of a satisfied challenge.
pub fn satisfied() -> ChallengeOutcome {
    ChallengeOutcome {
        reason_code: None,
        message: "Your sign-in was verified and the approval is complete.".into(),
    }
}

/// Builds the outcome of a challenge that ended for `reason`.
pub fn failed(reason: ReasonCode) -> ChallengeOutcome {
    ChallengeOutcome {
        reason_code: Some(reason),
        message: reason.message().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use stepup_events::data::Approver;

    fn payload<T: stepup_events::EventData>(
        data: &T,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        Ok(Envelope::new("/test", data)?.to_json()?)
    }

    #[test]
    fn decodes_each_outcome_event() -> Result<(), Box<dyn std::error::Error>> {
        let completed = ApprovalCompleted {
            approval_id: "apr-1".into(),
            step_id: "s".into(),
            challenge_id: Some("ch-1".into()),
            approver: Approver {
                id: "u".into(),
                email: "u@example.com".into(),
                idp_subject: None,
            },
            evidence: None,
        };
        let failed_event = ChallengeFailed {
            approval_id: "apr-2".into(),
            step_id: "s".into(),
            challenge_id: "ch-2".into(),
            reason_code: ReasonCode::AcrNotSatisfied,
            message: "m".into(),
        };
        let expired = ChallengeExpired {
            approval_id: "apr-3".into(),
            step_id: "s".into(),
            challenge_id: "ch-3".into(),
            expired_at: Utc::now(),
        };

        assert_eq!(
            decode_outcome(&payload(&completed)?)?,
            Some(("ch-1".into(), satisfied()))
        );
        assert_eq!(
            decode_outcome(&payload(&failed_event)?)?,
            Some(("ch-2".into(), failed(ReasonCode::AcrNotSatisfied)))
        );
        assert_eq!(
            decode_outcome(&payload(&expired)?)?,
            Some(("ch-3".into(), failed(ReasonCode::Expired)))
        );
        Ok(())
    }

    #[test]
    fn completion_without_challenge_wakes_nobody() -> Result<(), Box<dyn std::error::Error>> {
        let completed = ApprovalCompleted {
            approval_id: "apr-1".into(),
            step_id: "s".into(),
            challenge_id: None,
            approver: Approver {
                id: "u".into(),
                email: "u@example.com".into(),
                idp_subject: None,
            },
            evidence: None,
        };
        assert_eq!(decode_outcome(&payload(&completed)?)?, None);
        Ok(())
    }

    #[tokio::test]
    async fn notify_wakes_every_waiter_of_challenge() {
        let waiters = Waiters::new();
        let first = waiters.register("ch-1");
        let second = waiters.register("ch-1");
        let other = waiters.register("ch-2");

        assert_eq!(waiters.notify("ch-1", &satisfied()), 2);

        assert_eq!(
            first.wait(Duration::from_millis(10)).await,
            Some(satisfied())
        );
        assert_eq!(
            second.wait(Duration::from_millis(10)).await,
            Some(satisfied())
        );
        assert_eq!(waiters.waiting_challenges(), 1);
        drop(other);
        assert_eq!(waiters.waiting_challenges(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn timed_out_waiter_is_removed() {
        let waiters = Waiters::new();
        let waiter = waiters.register("ch-1");

        assert_eq!(waiter.wait(Duration::from_secs(20)).await, None);

        assert_eq!(waiters.waiting_challenges(), 0);
        assert_eq!(waiters.notify("ch-1", &satisfied()), 0);
    }
}
