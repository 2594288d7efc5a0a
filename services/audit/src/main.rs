//! The audit service as a process of its own; `stepup run audit` runs the same code.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    stepup_runtime::run_service("audit", &[], stepup_audit::run).await
}
