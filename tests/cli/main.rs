//! The `portal` command line.

#[path = "../support/mod.rs"]
mod support;

mod persistent;
mod portal;
mod settings;
mod smoke;
mod web;
