//! recovery-portal: the backend of a company portal's "Get recovery key" page.
//!
//! Ports and adapters: the domain (`auth`, `policy`, `devices`, `keys`,
//! `audit`, `ratelimit`) depends only on the traits in `ports`; `embedded` and
//! `aws` implement them; `http` maps requests and errors; `lambda` and
//! `server` are the two front ends.

pub mod app;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod config;
pub mod devices;
pub mod devidp;
pub mod embedded;
pub mod error;
pub mod http;
pub mod ids;
pub mod import;
pub mod keys;
pub mod lambda;
#[cfg(feature = "cli")]
pub mod lambda_emulator;
pub mod model;
pub mod policy;
pub mod ports;
pub mod ratelimit;
pub mod seed;
#[cfg(feature = "cli")]
pub mod server;
pub mod telemetry;
pub mod token_cache;
#[cfg(feature = "cli")]
pub mod web;
