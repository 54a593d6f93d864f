//! Authentication: bearer tokens and the JWT verifier.

#[path = "../support/mod.rs"]
mod support;

mod jwt;
