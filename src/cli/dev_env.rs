//! `portal dev-env`: the environment under which a local Lambda function
//! trusts the development identity provider.

use super::{DEV_ISSUER, dev_idp, fail};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct DevEnv {
    /// The issuer the tokens name (`portal event --issuer`).
    #[arg(long, default_value = DEV_ISSUER)]
    issuer: String,
}

impl DevEnv {
    pub(super) fn run(self) -> ExitCode {
        match dev_idp(&self.issuer) {
            Ok(idp) => {
                for (name, value) in [
                    ("PORTAL_BACKEND", "embedded".to_owned()),
                    ("PORTAL_ISSUER", idp.issuer.clone()),
                    ("PORTAL_AUDIENCE", idp.audience.clone()),
                    ("PORTAL_JWKS", idp.jwks_json()),
                ] {
                    println!("export {name}={}", shell_quote(&value));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// `value` as one single-quoted POSIX shell word.
#[cfg(feature = "dev-idp")]
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
