//! functions/get-recovery-key with the prototype axum `Router`
//! (benches/support/axum_router.rs) served through `lambda_http::run`, as
//! the runtime's `http-axum` example serves one: its binary size against
//! `dispatch_fn_table` (BENCHMARKS.md §6). Nothing runs it.

#[path = "support/axum_router.rs"]
mod axum_router;

use recovery_portal::api::Routes;
use recovery_portal::frontends::lambda;
use recovery_portal::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_lambda();
    let portal = match lambda::portal_from_env(Routes::Key).await {
        Ok(p) => &*Box::leak(Box::new(p)),
        Err(e) => {
            eprintln!("dispatch_fn_axum: configuration error: {e}");
            std::process::exit(1);
        }
    };
    lambda_http::run(axum_router::router(portal, Routes::Key)).await
}
