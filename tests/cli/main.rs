//! The `portal` command line.

#[path = "../support/mod.rs"]
mod support;

mod portal;
mod settings;
mod smoke;
mod web;
