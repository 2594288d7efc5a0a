//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "stepup",
    version,
    about = "Step-up authentication for approval workflows"
)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables `STEPUP_<SECTION>__<KEY>` override it.
    #[arg(long, short, global = true, env = "STEPUP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STEPUP_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run services in this process: `all`, or a comma-separated list of challenge,
    /// callback, verifier and audit.
    Run(RunArgs),
    /// Publish approvals and follow their outcome, as another system would.
    #[command(subcommand)]
    Approval(Box<ApprovalCommand>),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(default_value = "all")]
    pub services: String,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Publish `stepup.approval.requested` and print what the step-up services answer.
    Request(Box<RequestArgs>),
    /// Print the events of one approval as they are published, until its final outcome.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(long)]
    pub approval_id: String,
    /// How long to wait for the final outcome, in seconds.
    #[arg(long, default_value_t = 600)]
    pub wait_secs: u64,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The approval's id; a random one when omitted.
    #[arg(long)]
    pub approval_id: Option<String>,
    #[arg(long)]
    pub policy_id: String,
    #[arg(long)]
    pub step_id: String,
    /// The approver's id in the requesting system.
    #[arg(long)]
    pub approver_id: String,
    #[arg(long)]
    pub approver_email: String,
    /// The approver's subject at the IdP, for providers that bind by `sub` or `oid`.
    #[arg(long)]
    pub approver_idp_subject: Option<String>,
    /// Where the approver acted: web, mobile, slack, teams, cli, api or automation.
    #[arg(long, default_value = "web")]
    pub channel: String,
    /// Mark the approval as automated (no person acted).
    #[arg(long)]
    pub automated: bool,
    /// Resource shown to the approver, as TYPE:ID:DISPLAY NAME.
    #[arg(long)]
    pub resource: Option<String>,
    /// Where the approver's browser may return after step-up.
    #[arg(long)]
    pub return_url: Option<String>,
    /// Wait for the final outcome (completed, rejected, failed or expired), in seconds.
    /// Without it, the command returns after the first answer.
    #[arg(long)]
    pub wait_secs: Option<u64>,
}
