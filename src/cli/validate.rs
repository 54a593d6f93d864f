//! `portal validate`: a seed file checked without loading it anywhere.

use super::{fail, read_seed};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct Validate {
    file: std::path::PathBuf,
}

impl Validate {
    pub(super) fn run(self) -> ExitCode {
        match read_seed(&self.file) {
            Ok(s) => {
                println!(
                    "{}: valid: {} tenants, {} devices, {} keys",
                    self.file.display(),
                    s.tenants.len(),
                    s.devices.len(),
                    s.key_count()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}
