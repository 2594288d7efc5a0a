//! The challenge service as a process of its own; `stepup run challenge` runs the same code.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    stepup_runtime::run_service(
        "challenge",
        &["public_url", "providers", "policies", "registry"],
        stepup_challenge::run,
    )
    .await
}
