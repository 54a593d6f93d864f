//! Lambda function `entra-sync`: `portal sync entra` on an EventBridge
//! schedule (infra/entra_sync.tf). It runs the library's one sync
//! (`tools::sync::scheduled`), so it copies exactly what the CLI copies.
//!
//! Builds its adapters once, at init (a bad configuration stops it there);
//! reads the client secret from Secrets Manager on every run. A failed run
//! fails the invocation, which Lambda's `Errors` metric and its alarm see.
//! It seals keys (KMS `Encrypt`) and can never decrypt one.

use lambda_runtime::{LambdaEvent, service_fn};
use recovery_portal::telemetry;
use recovery_portal::tools::sync::scheduled::{self, ScheduledSync};
use serde_json::Value;

async fn handle(job: &ScheduledSync, event: LambdaEvent<Value>) -> Result<Value, String> {
    let dry_run = scheduled::dry_run(&event.payload);
    match job.run(dry_run).await {
        Ok(summary) => {
            let json = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
            // The summary holds counts and IDs, never a password.
            tracing::info!(summary = %json, dry_run, "entra sync finished");
            Ok(json)
        }
        Err(e) => {
            tracing::error!(error = %e, "entra sync failed");
            Err(format!("entra sync failed: {e}"))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_lambda();
    let job = match ScheduledSync::from_env().await {
        Ok(j) => &*Box::leak(Box::new(j)),
        Err(e) => {
            // A bad configuration must stop the function at init, loudly.
            eprintln!("entra-sync: configuration error: {e}");
            std::process::exit(1);
        }
    };
    lambda_runtime::run(service_fn(move |event| handle(job, event))).await
}
