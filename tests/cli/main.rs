//! The `portal` command line.

#[path = "../support/mod.rs"]
mod support;

mod portal;
mod smoke;
mod web;
