//! `portal sync`: recovery keys copied one way from where the organisation
//! keeps them.

use super::{aws_settings, fail, progress};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum SyncCommand {
    /// Copy BitLocker recovery keys from Entra ID (Microsoft Graph) into
    /// DynamoDB, sealing each with KMS (PORTAL_TABLE_PREFIX,
    /// PORTAL_KMS_KEY_ID; PORTAL_ENTRA_TENANT_ID, PORTAL_ENTRA_CLIENT_ID,
    /// PORTAL_ENTRA_CLIENT_SECRET; PORTAL_GRAPH_URL, PORTAL_ENTRA_LOGIN_URL
    /// for national clouds). Reads a key's password only when the store
    /// does not hold that key; never deletes a key Entra no longer lists.
    /// Prints a JSON summary; writes are audited as `sync:entra`.
    Entra {
        /// The portal's tenant ID the keys go into.
        #[arg(long)]
        tenant: String,
        /// List and plan only: no password is read, nothing is written.
        #[arg(long)]
        dry_run: bool,
    },
}

impl SyncCommand {
    pub(super) async fn run(self) -> ExitCode {
        match self {
            Self::Entra { tenant, dry_run } => sync_entra(&tenant, dry_run).await,
        }
    }
}

/// `portal sync entra`: the JSON summary on stdout, progress on a terminal.
async fn sync_entra(tenant: &str, dry_run: bool) -> ExitCode {
    use recovery_portal::tools::sync;
    let tenant = match recovery_portal::domain::ids::TenantId::parse(tenant) {
        Ok(t) => t,
        Err(e) => return fail(format!("--tenant {e}")),
    };
    let graph = match sync::GraphConfig::from_lookup(|k| std::env::var(k).ok())
        .and_then(|c| sync::GraphClient::new(c).map_err(|e| e.to_string()))
    {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let (prefix, kms_key_id) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if kms_key_id.is_none() && !dry_run {
        return fail("PORTAL_KMS_KEY_ID: is required to sync (keys are sealed with KMS)");
    }
    let (store, cipher) =
        match recovery_portal::adapters::aws::aws_backends(&prefix, kms_key_id.as_deref()).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
    let portal = sync::run::portal(store, cipher);
    let opts = sync::SyncOptions { tenant, dry_run };
    match sync::sync_entra(&portal, &graph, &opts, &progress).await {
        Ok(summary) => match serde_json::to_string_pretty(&summary) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => fail(format!(
            "sync stopped: {e}. Re-running is safe: keys already stored are not read again"
        )),
    }
}
