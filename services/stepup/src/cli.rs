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
    /// Check audit log exports offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage identity providers through the challenge service's admin API.
    Provider(ProviderArgs),
    /// Manage step-up policies through the challenge service's admin API.
    Policy(PolicyArgs),
}

/// How to reach the admin API.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the challenge service's admin API.
    #[arg(
        long,
        global = true,
        env = "STEPUP_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin_url: String,
    /// The admin token (challenge.admin_token). Prefer the variable or --admin-token-file
    /// to keep it out of the process list.
    #[arg(
        long,
        global = true,
        env = "STEPUP_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// File that contains the admin token.
    #[arg(long, global = true)]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProviderArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: ProviderCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Save a new provider; the admin API checks it against the IdP's discovery document.
    Add(Box<AddProviderArgs>),
    /// List the providers.
    List,
    /// Start a provider test and print the link to sign in with.
    Test(TestProviderArgs),
    /// Disable a provider: steps that use it are rejected with provider_unknown.
    Disable { name: String },
}

#[derive(Debug, Args)]
pub struct AddProviderArgs {
    #[arg(long)]
    pub name: String,
    /// oauth2 (Okta, Keycloak, Auth0, Ping, ...) or entra.
    #[arg(long)]
    pub kind: String,
    /// The issuer URL, exactly as the IdP's discovery document names it.
    #[arg(long)]
    pub issuer: String,
    #[arg(long)]
    pub client_id: String,
    /// A reference the verifier resolves: env:NAME or file:/path.
    #[arg(long, conflicts_with_all = ["client_secret_file", "client_secret_env"])]
    pub client_secret: Option<String>,
    /// File whose content is sent as the secret and stored encrypted.
    #[arg(long, conflicts_with = "client_secret_env")]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable whose value is sent as the secret and stored encrypted.
    #[arg(long)]
    pub client_secret_env: Option<String>,
    /// An allowed acr value (kind oauth2); repeat for several, most preferred first.
    #[arg(long = "acr-value")]
    pub acr_values: Vec<String>,
    /// Maximum authentication age sent as max_age, in seconds (default 0).
    #[arg(long)]
    pub max_age: Option<u64>,
    /// Send prompt=login (kind oauth2).
    #[arg(long)]
    pub prompt_login: bool,
    /// Entra only: oidc (require re-authentication) or acrs (authentication context).
    #[arg(long)]
    pub entra_mode: Option<String>,
    /// Entra mode acrs: the authentication context id, c1 to c99.
    #[arg(long)]
    pub auth_context: Option<String>,
    /// client_secret_basic (default) or client_secret_post.
    #[arg(long)]
    pub token_auth_method: Option<String>,
    /// email, sub, oid or preferred_username (default email, oid for entra).
    #[arg(long)]
    pub binding: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestProviderArgs {
    pub name: String,
    /// The tester's email, sent as login_hint.
    #[arg(long)]
    pub approver_email: String,
    /// The tester's subject at the IdP (sub, or the Entra object id) for those bindings.
    #[arg(long)]
    pub approver_idp_subject: Option<String>,
    /// Wait this many seconds for the test report and print it; exits non-zero on failure.
    #[arg(long)]
    pub wait_secs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or replace the policy of one approval step.
    Set(SetPolicyArgs),
    /// List the policies.
    List,
}

#[derive(Debug, Args)]
pub struct SetPolicyArgs {
    /// The policy id the approval events carry; * with --step-id * is the default policy.
    #[arg(long)]
    pub policy_id: String,
    /// The step id; * covers every step of the policy without a policy of its own.
    #[arg(long)]
    pub step_id: String,
    /// The provider that re-authenticates the approver.
    #[arg(
        long,
        required_unless_present = "no_step_up",
        conflicts_with = "no_step_up"
    )]
    pub provider: Option<String>,
    /// The step needs no step-up and completes at once.
    #[arg(long)]
    pub no_step_up: bool,
    /// Replaces the provider's max_age for this step, in seconds.
    #[arg(long)]
    pub max_age: Option<u64>,
    /// Replaces the provider's acr values for this step; repeat for several.
    #[arg(long = "acr-value")]
    pub acr_values: Vec<String>,
    /// Lets the requester approve their own request.
    #[arg(long)]
    pub allow_self_approval: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of a JSON Lines export from `GET /audit/export`. Exits
    /// non-zero with the first broken seq and the reason when it does not verify.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The export file (JSON Lines, one record per line).
    #[arg(long)]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(default_value = "all")]
    pub services: String,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Publish `stepup.approval.requested` and print the events published in response.
    Request(Box<RequestArgs>),
    /// Print the events of one approval (recent ones replayed from the stream, then live)
    /// until its final outcome. Exits non-zero unless the approval completed.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(long)]
    pub approval_id: String,
    /// How long to wait for the final outcome, in seconds.
    #[arg(long, default_value_t = 600)]
    pub wait_secs: u64,
    /// How far back to replay the approval's events from the stream, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub since_secs: u64,
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
    /// Wait for the final outcome (completed, rejected, failed or expired), in seconds, and
    /// exit non-zero unless the approval completed. Without it, the command returns after
    /// the first response.
    #[arg(long)]
    pub wait_secs: Option<u64>,
}
