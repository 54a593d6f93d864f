//! The domain: the rules of the portal, on its own ports only (`ports`).

pub mod audit;
pub mod batch;
pub mod caller;
pub mod denial;
pub mod devices;
pub mod error;
pub mod ids;
pub mod incidents;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod ports;
pub mod ratelimit;
pub mod settings;
pub mod text;

#[cfg(test)]
mod boundary;
