//! `stepup`: runs any set of the step-up services in one process, and publishes approvals
//! from the command line.

mod approval;
mod audit;
mod cli;
mod policy;
mod provider;
mod supervisor;

use std::process::ExitCode;

use clap::Parser as _;

use cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match stepup_runtime::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("stepup: {error:#}");
            return ExitCode::from(stepup_runtime::EXIT_CONFIG);
        }
    };

    let result = match cli.command {
        Command::Run(args) => supervisor::run(&settings, &args.services, cli.log_format).await,
        Command::Approval(command) => approval::run(&settings, *command).await,
        Command::Audit(command) => audit::run(command),
        Command::Provider(args) => provider::run(&settings, &args.admin, args.command).await,
        Command::Policy(args) => policy::run(&args.admin, args.command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stepup: {error:#}");
            ExitCode::FAILURE
        }
    }
}
