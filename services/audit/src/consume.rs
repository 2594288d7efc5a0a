//! The consumer handler: every event of the stream becomes one audit record.

use stepup_bus::consumer::{Delivery, Outcome};

use crate::extract::entry_of;
use crate::log::{Appended, AuditLog};

/// The durable consumer's name.
pub const DURABLE: &str = "audit";

/// Appends the delivered event to the log. Runs inside the consume span, which has
/// joined the producer's trace, so the record gets the approval's trace id.
pub async fn handle(log: &AuditLog, delivery: Delivery) -> Outcome {
    let envelope = &delivery.envelope;
    let trace_id = stepup_telemetry::current_trace_id();

    let entry = match entry_of(envelope, trace_id) {
        Ok(entry) => entry,
        Err(error) => {
            return Outcome::Poison {
                error: error.to_string(),
            };
        }
    };
    let approval_id = entry.approval_id.clone().unwrap_or_default();
    let challenge_id = entry.challenge_id.clone().unwrap_or_default();

    match log.append(entry).await {
        Ok(Appended::New { seq }) => {
            tracing::info!(
                approval.id = %approval_id,
                challenge.id = %challenge_id,
                event.id = %envelope.id(),
                event.r#type = %envelope.event_type(),
                seq,
                "event recorded"
            );
            Outcome::Done
        }
        Ok(Appended::Duplicate { seq }) => {
            tracing::debug!(event.id = %envelope.id(), seq, "event already recorded");
            Outcome::Done
        }
        Err(error) => Outcome::Retry {
            error: error.to_string(),
        },
    }
}
