//! `portal`: the local server, the development token issuer, local Lambda
//! development helpers (events, environment), and admin commands (import,
//! table creation).

mod cli;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    recovery_portal::telemetry::init_cli();
    cli::Cli::parse().run().await
}
