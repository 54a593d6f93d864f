//! The cold-start floor of `scripts/bench.sh`: a hello-world `lambda_http`
//! function with the same runtime flavour, dependencies' features and
//! release profile as `functions/*`, and no work of its own.

use lambda_http::{Error, Request, service_fn};

async fn run() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async { Ok::<_, Error>("hello") })).await
}

#[cfg(not(feature = "multi-thread"))]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run().await
}

#[cfg(feature = "multi-thread")]
#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    run().await
}
