//! One-way copies of recovery keys from where organisations already keep
//! them into the portal's store (`portal sync entra`).
//!
//! - `graph`: the Microsoft Graph client (token, throttling, paging);
//! - `certificate`: the certificate credential's client assertion;
//! - `entra`: Graph's BitLocker key and device shapes, validated;
//! - `plan`: the pure decisions (what to read, write, skip, report);
//! - `run`: the I/O shell that carries a plan out;
//! - `scheduled`: one run of the scheduled function (functions/entra-sync).

pub mod certificate;
pub mod entra;
pub mod graph;
pub mod plan;
pub mod run;
pub mod scheduled;

pub use graph::{ClientCredential, GraphClient, GraphConfig, GraphError};
pub use run::{SyncError, SyncOptions, SyncSummary, sync_entra};
