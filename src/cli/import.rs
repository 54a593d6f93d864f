//! `portal import`: a seed file (or an AD export) into DynamoDB.

use super::{aws_settings, fail, progress, read_seed};
use clap::{Args, ValueEnum};
use recovery_portal::tools::seed;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct Import {
    file: std::path::PathBuf,
    /// Who runs the import, for the audit trail (default: the OS user
    /// from USER, LOGNAME or USERNAME).
    #[arg(long)]
    actor: Option<String>,
    /// The file's format [default: the portal's seed JSON].
    #[arg(long, value_enum)]
    format: Option<ImportFormat>,
    /// `ad-ldif`, `ad-csv`: CSV of "computer name,owner ID" (AD stores no owner).
    #[arg(long)]
    owners: Option<std::path::PathBuf>,
    /// `ad-ldif`, `ad-csv`: CSV of "volume GUID,volume type" for keys
    /// whose msFVE-VolumeGuid it lists (others: operating_system).
    #[arg(long)]
    volumes: Option<std::path::PathBuf>,
    /// `ad-ldif`, `ad-csv`: the portal's tenant ID the devices go into.
    #[arg(long)]
    tenant: Option<String>,
}

impl Import {
    pub(super) async fn run(self) -> ExitCode {
        import(
            &self.file,
            self.actor,
            self.format,
            self.owners.as_deref(),
            self.volumes.as_deref(),
            self.tenant.as_deref(),
        )
        .await
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(super) enum ImportFormat {
    /// An `ldifde` export of msFVE-RecoveryInformation objects (RFC 2849).
    AdLdif,
    /// `Get-ADObject … | Export-Csv` of the same objects (docs/getting-keys-in.md).
    AdCsv,
}

/// The importer's audit identity: `--actor`, else the OS user.
fn importer(actor: Option<String>) -> Result<recovery_portal::domain::ids::UserId, String> {
    let name = actor
        .or_else(|| {
            ["USER", "LOGNAME", "USERNAME"]
                .into_iter()
                .filter_map(|v| std::env::var(v).ok())
                .find(|v| !v.trim().is_empty())
        })
        .ok_or(
            "cannot tell who runs this import (no USER, LOGNAME or USERNAME): pass --actor NAME",
        )?;
    recovery_portal::domain::ids::UserId::importer(name.trim()).map_err(|_| {
        format!(
            "--actor (or the OS user) {name:?} must be 1 to 128 characters from A-Z a-z 0-9 . _ -"
        )
    })
}

/// `portal import --format ad-ldif|ad-csv`: the devices of an AD export
/// and what the summary must add (`tools::ad::files`).
fn read_ad(f: &recovery_portal::tools::ad::files::AdFiles) -> Result<(seed::Seed, String), String> {
    let a = recovery_portal::tools::ad::files::load(f)?;
    let note = a.note();
    Ok((a.seed, note))
}

async fn import(
    file: &std::path::Path,
    actor: Option<String>,
    format: Option<ImportFormat>,
    owners: Option<&std::path::Path>,
    volumes: Option<&std::path::Path>,
    tenant: Option<&str>,
) -> ExitCode {
    let importer = match importer(actor) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let read = match format {
        None if owners.is_some() || volumes.is_some() || tenant.is_some() => {
            Err("--owners, --volumes and --tenant apply to --format ad-ldif and ad-csv only".into())
        }
        None => read_seed(file).map(|s| (s, String::new())),
        Some(f) => read_ad(&recovery_portal::tools::ad::files::AdFiles {
            format: match f {
                ImportFormat::AdLdif => recovery_portal::tools::ad::Format::Ldif,
                ImportFormat::AdCsv => recovery_portal::tools::ad::Format::Csv,
            },
            file,
            owners,
            volumes,
            tenant,
        }),
    };
    let (seed, note) = match read {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (prefix, kms_key_id) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let Some(kms_key_id) = kms_key_id else {
        return fail("PORTAL_KMS_KEY_ID: is required to import (keys are sealed with KMS)");
    };
    let (store, cipher) =
        match recovery_portal::adapters::aws::aws_backends(&prefix, Some(&kms_key_id)).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
    let result = recovery_portal::tools::import::import_as(
        &seed,
        cipher.as_ref(),
        store.as_ref(),
        &importer,
        &progress,
    )
    .await;
    match result {
        Ok(s) => {
            println!(
                "imported into {prefix}-*: {} tenants, {} devices written, {} keys written, {} devices skipped (unchanged), {} owner changes audited as {importer}, {} tenant settings changes audited as {importer}{note}",
                s.tenants, s.devices, s.keys, s.skipped, s.owner_changes, s.settings_changes
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!(
            "import stopped: {e}. Re-running the same import is safe: unchanged devices are skipped"
        )),
    }
}
