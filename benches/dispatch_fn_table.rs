//! Binary-size twin of functions/get-recovery-key (BENCHMARKS.md §6): the
//! same `main`, built as a bench target like `dispatch_fn_axum`, so the two
//! differ only in the dispatcher. `scripts/bench.sh dispatch` compares
//! their sizes; nothing runs them.

use recovery_portal::api::Routes;
use recovery_portal::frontends::lambda;
use recovery_portal::telemetry;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_lambda();
    let portal = match lambda::portal_from_env(Routes::Key).await {
        Ok(p) => &*Box::leak(Box::new(p)),
        Err(e) => {
            eprintln!("dispatch_fn_table: configuration error: {e}");
            std::process::exit(1);
        }
    };
    lambda_http::run(lambda_http::service_fn(move |req| {
        lambda::handle(portal, Routes::Key, req)
    }))
    .await
}
