//! The callback service as a process of its own; `stepup run callback` runs the same code.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    stepup_runtime::run_service("callback", &["public_url"], stepup_callback::run).await
}
