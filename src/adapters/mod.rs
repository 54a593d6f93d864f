//! Implementations of the ports.

pub mod aws;
pub mod embedded;
pub mod emf;
pub mod jwt;
/// Only the `portal` CLI serves from disk; the Lambda functions never link SQLite.
#[cfg(feature = "cli")]
pub mod sqlite;
pub mod token_cache;
