//! The two ways requests arrive: API Gateway events in Lambda, and HTTP on
//! the local server (`portal serve`).

pub mod lambda;
#[cfg(feature = "cli")]
pub mod server;
#[cfg(feature = "cli")]
pub mod web;
