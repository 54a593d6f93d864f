//! Logging setup. Lambda gets JSON lines (CloudWatch parses them); the CLI
//! gets readable text on stderr. Secrets are never passed to `tracing`.

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// JSON lines with `level` and an RFC 3339 `timestamp`: what Lambda's JSON
/// log format needs to filter by level (a line without a valid timestamp
/// counts as INFO). Lambda sets `AWS_LAMBDA_LOG_LEVEL` to the configured
/// application log level, which `filter` reads.
pub fn init_lambda() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

pub fn init_cli() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
