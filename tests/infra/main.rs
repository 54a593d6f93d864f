//! The deployment: Terraform against the code, and what the function
//! binaries are built from.

mod binaries;
mod entra_sync;
mod provider_schema;
mod terraform;
