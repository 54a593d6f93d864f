//! `portal token`: a token from the local development identity provider.

use super::{DEV_ISSUER, dev_idp, fail};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct Token {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    user: String,
    /// Space-separated permissions, e.g. "RecoveryKey.Read".
    #[arg(long, default_value = "RecoveryKey.Read")]
    scope: String,
    /// Must match the server's address.
    #[arg(long, default_value = DEV_ISSUER)]
    issuer: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

impl Token {
    pub(super) fn run(self) -> ExitCode {
        match dev_token(
            &self.issuer,
            &self.tenant,
            &self.user,
            &self.scope,
            self.ttl,
        ) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// A dev token valid from now for `ttl` seconds (clamped to 1 minute–1 day).
#[cfg(feature = "dev-idp")]
pub(super) fn dev_token(
    issuer: &str,
    tenant: &str,
    user: &str,
    scope: &str,
    ttl: i64,
) -> Result<String, String> {
    if recovery_portal::domain::ids::TenantId::parse(tenant).is_err()
        || recovery_portal::domain::ids::UserId::parse(user).is_err()
    {
        return Err(
            "--tenant and --user must be 1 to 128 characters from A-Z a-z 0-9 . _ -".into(),
        );
    }
    let idp = dev_idp(issuer)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(idp.token(tenant, user, scope, now, ttl.clamp(60, 86_400)))
}
