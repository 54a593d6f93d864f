//! Lambda function `manage-keys`: the key lifecycle's write routes (escrow,
//! device enrolment and retirement, rotation requests, tenant settings).
//! It seals keys (KMS `Encrypt`) and can never decrypt one.
//!
//! Builds its adapters once, at init, then serves events with the library's
//! one implementation of its routes.

use recovery_portal::api::Routes;
use recovery_portal::frontends::lambda;
use recovery_portal::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_lambda();
    let portal = match lambda::portal_from_env(Routes::Manage).await {
        Ok(p) => &*Box::leak(Box::new(p)),
        Err(e) => {
            // A bad configuration must stop the function at init, loudly.
            eprintln!("manage-keys: configuration error: {e}");
            std::process::exit(1);
        }
    };
    lambda_http::run(lambda_http::service_fn(move |req| {
        lambda::handle(portal, Routes::Manage, req)
    }))
    .await
}
