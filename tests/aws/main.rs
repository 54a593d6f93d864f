//! The AWS adapters and the data paths into them: the port contract on both
//! backends, moto end to end, fault injection, the trust store and import at
//! scale.

#[path = "../support/mod.rs"]
mod support;

mod ad_import;
mod aws_errors;
mod contract;
mod contract_backends;
mod e2e;
mod entra_sync;
mod faults;
mod iam;
mod import_scale;
mod incident_e2e;
mod lifecycle_contract;
mod lifecycle_e2e;
mod moto;
mod separation_e2e;
mod tls;
