//! Data loading and development tooling.

#[cfg(feature = "dev-idp")]
pub mod devidp;
pub mod import;
pub mod seed;
pub mod sync;
pub mod verify;
