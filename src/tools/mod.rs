//! Data loading and development tooling.

pub mod ad;
#[cfg(feature = "dev-idp")]
pub mod devidp;
pub mod import;
pub mod seed;
pub mod sync;
pub mod verify;
