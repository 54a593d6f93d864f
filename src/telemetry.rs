//! Logging setup. Lambda gets JSON lines (CloudWatch parses them); the CLI
//! gets readable text on stderr. Secrets are never passed to `tracing`.
//!
//! The libraries below us are not so careful: at debug and trace level the
//! AWS SDK's orchestrator prints whole requests and responses (a KMS
//! `Encrypt` body holds the recovery password, a `Decrypt` answer too), the
//! Lambda runtime prints each raw event (with its bearer token), and the HTTP
//! and TLS stacks print what they carry. Those crates are therefore capped at
//! `info` by a filter of their own, which every event must also pass: no
//! `RUST_LOG` directive, however specific, can lift the cap.

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Target prefixes (crate names; `aws_sdk` covers every `aws_sdk_*`) whose
/// verbose output may contain request or response bodies, headers or
/// credentials. A prefix matches every target that starts with it.
pub const CAPPED_TARGETS: &[&str] = &[
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk",
    "aws_sigv4",
    "aws_smithy",
    "h2",
    "hyper",
    "lambda_http",
    "lambda_runtime",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "tower",
];

/// The most verbose level a capped target may log at.
pub const CAPPED_LEVEL: Level = Level::INFO;

/// The user's filter: `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `info`.
fn user_filter() -> EnvFilter {
    EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Everything at any level, except the capped targets above `CAPPED_LEVEL`.
pub fn library_cap() -> Targets {
    CAPPED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, CAPPED_LEVEL),
    )
}

/// The filter every log line passes: what the user asked for, and the cap.
pub fn filter(user: EnvFilter) -> impl tracing_subscriber::layer::Filter<Registry> {
    user.and(library_cap())
}

/// JSON lines with `level` and an RFC 3339 `timestamp`: what Lambda's JSON
/// log format needs to filter by level (a line without a valid timestamp
/// counts as INFO). Lambda sets `AWS_LAMBDA_LOG_LEVEL` to the configured
/// application log level, which `filter` reads.
pub fn init_lambda() {
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_filter(filter(user_filter()));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

pub fn init_cli() {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter(user_filter()));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What reaches the output under `directives` when each capped crate,
    /// and this crate, logs one line at every level.
    fn logged(directives: &str) -> String {
        let capture = Capture::default();
        let writer = capture.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_filter(filter(EnvFilter::new(directives)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            // Targets as the libraries name them (module paths).
            macro_rules! each_level {
                ($target:literal) => {
                    tracing::trace!(target: $target, "{} trace", $target);
                    tracing::debug!(target: $target, "{} debug", $target);
                    tracing::info!(target: $target, "{} info", $target);
                };
            }
            each_level!("aws_smithy_runtime::client::orchestrator");
            each_level!("aws_smithy_runtime_api::client::orchestrator");
            each_level!("aws_sdk_kms::operation::encrypt");
            each_level!("aws_sdk_dynamodb::operation::put_item");
            each_level!("aws_sigv4::http_request::sign");
            each_level!("aws_smithy_http_client::hyper_1_0");
            each_level!("hyper_util::client::legacy::pool");
            each_level!("hyper::proto::h1::io");
            each_level!("h2::codec");
            each_level!("rustls::client::hs");
            each_level!("lambda_runtime::layers::api_response");
            each_level!("recovery_portal::domain::keys");
        });
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_directive_lifts_the_cap_on_library_bodies() {
        for directives in [
            "trace",
            "debug",
            "aws_smithy_runtime::client::orchestrator=trace",
            "aws_smithy_runtime=trace,aws_smithy_runtime_api=trace,aws_sdk_kms=trace,aws_sdk_dynamodb=trace",
            "hyper=trace,hyper_util=trace,h2=trace,rustls=trace,aws_sigv4=trace,aws_smithy_http_client=trace",
            "lambda_runtime::layers::api_response=trace,[{body}]=trace",
            "off,aws_smithy_runtime::client::orchestrator[invoke]=trace",
        ] {
            let out = logged(directives);
            for line in out.lines() {
                let capped = !line.contains("recovery_portal::domain::keys");
                assert!(
                    !(capped && (line.contains(" trace") || line.contains(" debug"))),
                    "{directives}: {line}"
                );
            }
        }
        // The cap lowers nothing: info from the libraries and trace from
        // this crate still get through when asked for.
        let out = logged("trace");
        assert!(
            out.contains("aws_smithy_runtime::client::orchestrator info"),
            "{out}"
        );
        assert!(out.contains("recovery_portal::domain::keys trace"), "{out}");
        let out = logged("warn");
        assert!(!out.contains(" info"), "{out}");
    }
}
