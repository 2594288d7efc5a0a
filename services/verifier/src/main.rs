//! The verifier service as a process of its own; `stepup run verifier` runs the same code.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    stepup_runtime::run_service("verifier", &["providers", "registry"], stepup_verifier::run).await
}
