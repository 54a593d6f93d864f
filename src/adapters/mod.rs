//! Implementations of the ports.

pub mod aws;
pub mod embedded;
pub mod emf;
pub mod jwt;
pub mod token_cache;
