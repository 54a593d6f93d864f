//! The deployment: Terraform against the code, and what the function
//! binaries are built from.

mod binaries;
mod entra_sync;
mod evaluation;
mod provider_schema;
mod readme;
mod terraform;
#[path = "../support/tfeval.rs"]
mod tfeval;
