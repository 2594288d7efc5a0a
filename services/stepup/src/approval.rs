//! `stepup approval request`: publishes an approval as another system would and prints
//! what the step-up services answer, including the step-up link.

use std::time::Duration;

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

/// How long to wait for the first answer when `--wait-secs` is not given.
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

    // Subscribe before publishing, so no answer can slip past.
    let mut answers = bus
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
    follow(&mut answers, &approval.approval_id, wait, stop_at_link).await
}

async fn watch(settings: &Settings, args: WatchArgs) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.nats()?, "cli").await?;
    let mut events = bus
        .client()
        .subscribe("stepup.>")
        .await
        .context("subscribing to step-up events")?;
    follow(
        &mut events,
        &args.approval_id,
        Duration::from_secs(args.wait_secs),
        false,
    )
    .await
}

/// Prints the events about `approval_id` until a final one, or the step-up link when
/// `stop_at_link` is set.
async fn follow(
    events: &mut async_nats::Subscriber,
    approval_id: &str,
    wait: Duration,
    stop_at_link: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(message)) = message else {
            anyhow::bail!(
                "no final answer for approval {approval_id} within {}s; check that the challenge service is running",
                wait.as_secs()
            );
        };
        let Ok(event) = Envelope::from_json(&message.payload) else {
            continue;
        };
        if event.subject() != Some(approval_id) {
            continue;
        }
        let finished = print_answer(&event)?;
        if finished || stop_at_link && event.event_type() == subject::STEPUP_REQUIRED {
            return Ok(());
        }
    }
}

/// Prints one answer; returns whether it is final.
fn print_answer(event: &Envelope) -> anyhow::Result<bool> {
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
            Ok(false)
        }
        subject::APPROVAL_COMPLETED => {
            let completed: ApprovalCompleted = event.data()?;
            println!("approval completed");
            if let Some(evidence) = completed.evidence {
                println!("  evidence: {}", serde_json::to_string_pretty(&evidence)?);
            }
            Ok(true)
        }
        subject::APPROVAL_REJECTED => {
            let rejected: ApprovalRejected = event.data()?;
            println!(
                "approval rejected: {} ({})",
                rejected.message, rejected.reason_code
            );
            Ok(true)
        }
        subject::CHALLENGE_FAILED => {
            let failed: ChallengeFailed = event.data()?;
            println!(
                "step-up failed: {} ({})",
                failed.message, failed.reason_code
            );
            Ok(true)
        }
        subject::CHALLENGE_EXPIRED => {
            let expired: ChallengeExpired = event.data()?;
            println!("step-up expired at {}", expired.expired_at);
            Ok(true)
        }
        _ => Ok(false),
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
