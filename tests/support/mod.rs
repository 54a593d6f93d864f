//! The helpers the test binaries share, included by each as
//! `#[path = "../support/mod.rs"] mod support;`.

pub mod aws;
pub mod common;
pub mod fault_proxy;
pub mod portal_cli;
pub mod racing;
pub mod serve;
