//! `stepup approval request`: publishes an approval as another system would and prints
//! what the step-up services answer, including the step-up link.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream;
use futures::Stream;

use anyhow::Context as _;
use futures::StreamExt as _;
use stepup_bus::Bus;
use stepup_events::data::{
    ApprovalCompleted, ApprovalRejected, ApprovalRequested, Approver, ChallengeExpired,
    ChallengeFailed, Channel, Resource, StepUpRequired,
};
use stepup_events::{Envelope, subject};

use crate::cli::{ApprovalCommand, RequestArgs, WatchArgs};
use stepup_runtime::Settings;

/// How long to wait for the first response when `--wait-secs` is not given.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(settings: &Settings, command: ApprovalCommand) -> anyhow::Result<()> {
    match command {
        ApprovalCommand::Request(args) => request(settings, *args).await,
        ApprovalCommand::Watch(args) => watch(settings, args).await,
    }
}

async fn request(settings: &Settings, args: RequestArgs) -> anyhow::Result<()> {
    let approval = approval_from(&args)?;
    let bus = Bus::connect(&settings.nats()?, "cli").await?;

    // Subscribe before publishing, so no response can slip past.
    let answers = bus
        .client()
        .subscribe("stepup.>")
        .await
        .context("subscribing to step-up events")?;

    let envelope = bus.publish(&approval).await.context(
        "publishing stepup.approval.requested failed; are the step-up services running (they create the stream)?",
    )?;
    println!(
        "published {} (event {}, approval {})",
        subject::APPROVAL_REQUESTED,
        envelope.id(),
        approval.approval_id
    );

    let wait = args
        .wait_secs
        .map_or(FIRST_ANSWER_TIMEOUT, Duration::from_secs);
    let stop_at_link = args.wait_secs.is_none();
    let answers = answers.map(|message| message.payload.to_vec());
    follow(Box::pin(answers), &approval.approval_id, wait, stop_at_link).await
}

async fn watch(settings: &Settings, args: WatchArgs) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.nats()?, "cli").await?;
    let stream_name = settings.stream_name()?;

    // Replay the recent past from the stream, then follow live: an approval whose approver
    // acted before this command started is still shown.
    let since = time::OffsetDateTime::now_utc()
        - time::Duration::seconds(i64::try_from(args.since_secs).unwrap_or(i64::MAX));
    let stream = bus
        .jetstream()
        .get_stream(&stream_name)
        .await
        .with_context(|| {
            format!("stream {stream_name} not found; are the step-up services running?")
        })?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        })
        .await
        .context("creating an ordered consumer on the event stream")?;
    let messages = consumer
        .messages()
        .await
        .context("reading the event stream")?
        .filter_map(|message| async move { message.ok().map(|m| m.payload.to_vec()) });
    println!(
        "watching approval {} (events since {}s ago, then live, for up to {}s)",
        args.approval_id, args.since_secs, args.wait_secs
    );
    follow(
        Box::pin(messages),
        &args.approval_id,
        Duration::from_secs(args.wait_secs),
        false,
    )
    .await
}

/// Prints the events about `approval_id` until a final one, or until the step-up link when
/// `stop_at_link` is set. Fails when the final event is not a completion, so scripts can
/// tell the outcomes apart by exit code.
async fn follow(
    mut events: Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>,
    approval_id: &str,
    wait: Duration,
    stop_at_link: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let payload = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(payload)) = payload else {
            anyhow::bail!(
                "no final outcome for approval {approval_id} within {}s; check that the challenge service is running",
                wait.as_secs()
            );
        };
        let Ok(event) = Envelope::from_json(&payload) else {
            continue;
        };
        // Audit records repeat each event of the approval; the events themselves suffice.
        if event.subject() != Some(approval_id) || event.event_type() == subject::AUDIT_RECORDED {
            continue;
        }
        match print_event(&event)? {
            Progress::Completed => return Ok(()),
            Progress::NotCompleted(summary) => {
                anyhow::bail!("approval {approval_id} was not completed: {summary}")
            }
            Progress::Pending if stop_at_link && event.event_type() == subject::STEPUP_REQUIRED => {
                return Ok(());
            }
            Progress::Pending => {}
        }
    }
}

/// The state of an approval after an event.
enum Progress {
    Pending,
    Completed,
    /// Rejected, failed or expired, with a one-line summary.
    NotCompleted(String),
}

/// Prints one event about the approval.
fn print_event(event: &Envelope) -> anyhow::Result<Progress> {
    match event.event_type() {
        subject::STEPUP_REQUIRED => {
            let required: StepUpRequired = event.data()?;
            println!("step-up required with provider {}", required.provider);
            if !required.requirement.acr_values.is_empty() {
                println!(
                    "  acr values: {}",
                    required.requirement.acr_values.join(" ")
                );
            }
            println!("  expires at: {}", required.expires_at);
            println!("  step-up link: {}", required.step_up_url);
            Ok(Progress::Pending)
        }
        subject::APPROVAL_COMPLETED => {
            let completed: ApprovalCompleted = event.data()?;
            println!("approval completed");
            if let Some(evidence) = completed.evidence {
                println!("  evidence:");
                for line in serde_json::to_string_pretty(&evidence)?.lines() {
                    println!("    {line}");
                }
            }
            Ok(Progress::Completed)
        }
        subject::APPROVAL_REJECTED => {
            let rejected: ApprovalRejected = event.data()?;
            let summary = format!(
                "rejected with {}: {}",
                rejected.reason_code, rejected.message
            );
            println!("approval {summary}");
            Ok(Progress::NotCompleted(summary))
        }
        subject::CHALLENGE_FAILED => {
            let failed: ChallengeFailed = event.data()?;
            let summary = format!(
                "step-up failed with {}: {}",
                failed.reason_code, failed.message
            );
            println!("{summary}");
            Ok(Progress::NotCompleted(summary))
        }
        subject::CHALLENGE_EXPIRED => {
            let expired: ChallengeExpired = event.data()?;
            let summary = format!("step-up expired at {}", expired.expired_at);
            println!("{summary}");
            Ok(Progress::NotCompleted(summary))
        }
        other => {
            println!(
                "{other} ({})",
                event.time().map(|t| t.to_rfc3339()).unwrap_or_default()
            );
            Ok(Progress::Pending)
        }
    }
}

fn approval_from(args: &RequestArgs) -> anyhow::Result<ApprovalRequested> {
    let channel: Channel = serde_json::from_value(serde_json::Value::String(args.channel.clone()))
        .map_err(|_| {
            anyhow::anyhow!(
                "invalid --channel {:?}: use web, mobile, slack, teams, cli, api or automation",
                args.channel
            )
        })?;
    let resource = args.resource.as_deref().map(parse_resource).transpose()?;
    Ok(ApprovalRequested {
        approval_id: args
            .approval_id
            .clone()
            .unwrap_or_else(|| format!("apr-{}", uuid::Uuid::now_v7())),
        policy_id: args.policy_id.clone(),
        step_id: args.step_id.clone(),
        approver: Approver {
            id: args.approver_id.clone(),
            email: args.approver_email.clone(),
            idp_subject: args.approver_idp_subject.clone(),
        },
        requester: None,
        resource,
        channel,
        automated: args.automated,
        return_url: args.return_url.clone(),
    })
}

fn parse_resource(text: &str) -> anyhow::Result<Resource> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(kind), Some(id), display_name) if !kind.is_empty() && !id.is_empty() => {
            Ok(Resource {
                kind: kind.to_owned(),
                id: id.to_owned(),
                display_name: display_name.map(str::to_owned),
            })
        }
        _ => anyhow::bail!("invalid --resource {text:?}: use TYPE:ID or TYPE:ID:DISPLAY NAME"),
    }
}
