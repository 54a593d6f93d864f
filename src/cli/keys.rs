//! `portal keys`: stored recovery keys (`verify` on AWS, `rewrap` of a
//! `--data-dir` store).

use super::{aws_settings, fail};
use clap::Subcommand;
use recovery_portal::adapters::sqlite::DataDir;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Re-seal every key of a `portal serve --data-dir` store under a new
    /// master key, all or nothing (the server must be stopped). Then start
    /// the server with the new key file; keep the old one for older backups.
    Rewrap {
        #[arg(long, env = "PORTAL_DATA_DIR")]
        data_dir: std::path::PathBuf,
        /// The key the store uses now [default: master.key in --data-dir].
        #[arg(long, env = "PORTAL_MASTER_KEY_FILE")]
        master_key_file: Option<std::path::PathBuf>,
        /// The new key: created (mode 0600) when absent.
        #[arg(long)]
        new_key_file: std::path::PathBuf,
    },
    /// Check that every stored key opens under its own context and holds a
    /// well-formed recovery password, printing none of them. Lists broken
    /// keys by tenant, device and key ID; records the run in each tenant's
    /// audit trail; exits non-zero when any key is broken.
    Verify {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
}

impl KeysCommand {
    pub(super) async fn run(self) -> ExitCode {
        match self {
            Self::Verify { tenant } => verify_keys(tenant).await,
            Self::Rewrap {
                data_dir,
                master_key_file,
                new_key_file,
            } => rewrap(&data_dir, master_key_file.as_deref(), &new_key_file).await,
        }
    }
}

/// Who runs a maintenance command, as its audit events name it.
fn cli_actor() -> recovery_portal::domain::ids::UserId {
    let user: String = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(100)
        .collect();
    let name = if user.is_empty() {
        "cli".to_owned()
    } else {
        format!("cli.{user}")
    };
    recovery_portal::domain::ids::UserId::parse(&name)
        .unwrap_or_else(|_| recovery_portal::domain::ids::UserId::parse("cli").expect("valid"))
}

async fn verify_keys(tenant: Option<String>) -> ExitCode {
    use recovery_portal::tools::verify;
    let tenant = match tenant
        .map(|t| recovery_portal::domain::ids::TenantId::parse(&t))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return fail(format!("--tenant {e}")),
    };
    let (prefix, kms_key_id) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let Some(kms_key_id) = kms_key_id else {
        return fail("PORTAL_KMS_KEY_ID: is required to verify keys (they are opened with KMS)");
    };
    let (store, cipher) =
        match recovery_portal::adapters::aws::aws_backends(&prefix, Some(&kms_key_id)).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
    let show = |checked: usize| {
        use std::io::{IsTerminal, Write};
        let mut err = std::io::stderr();
        if err.is_terminal() {
            let _ = write!(err, "\rchecked {checked} keys");
            let _ = err.flush();
        }
    };
    let report = match verify::verify(store.as_ref(), cipher.as_ref(), tenant.as_ref(), &show).await
    {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "verification stopped: {e}. Nothing was changed; run it again"
            ));
        }
    };
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    let events = verify::audit_events(&report, &cli_actor(), time::OffsetDateTime::now_utc());
    if let Err(e) = verify::record(store.as_ref(), &events).await {
        return fail(format!("could not record the run in the audit trail: {e}"));
    }
    for b in &report.broken {
        println!(
            "BROKEN tenant {} device {} key {}{}: {}",
            b.tenant,
            b.device,
            b.key_id,
            if b.superseded { " (superseded)" } else { "" },
            b.why
        );
    }
    println!(
        "{} keys checked in {} tenants, {} broken",
        report.total(),
        report.checked.len(),
        report.broken.len()
    );
    if report.broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `portal keys rewrap`: every key of the store in `data_dir` re-sealed
/// under the key in `new_key_file`, in one transaction.
async fn rewrap(
    data_dir: &std::path::Path,
    key_file: Option<&std::path::Path>,
    new_key_file: &std::path::Path,
) -> ExitCode {
    use recovery_portal::adapters::sqlite::{MasterKey, SqliteStore};
    if !data_dir
        .join(recovery_portal::adapters::sqlite::DB_FILE)
        .exists()
    {
        return fail(format!(
            "{}: holds no portal database (start `portal serve --data-dir` there first)",
            data_dir.display()
        ));
    }
    let dir = match DataDir::open(data_dir) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let old_file = dir.key_file(key_file);
    if old_file == new_key_file {
        return fail("--new-key-file must be another file than the current master key file");
    }
    let run = async {
        let old = MasterKey::load_or_create(&old_file).map_err(|e| e.to_string())?;
        let new = MasterKey::load_or_create(new_key_file).map_err(|e| e.to_string())?;
        let store = SqliteStore::open(dir.path())?;
        recovery_portal::adapters::sqlite::rewrap(&store, &old, &new)
            .await
            .map_err(|e| e.to_string())
    };
    match run.await {
        Ok(n) => {
            println!(
                "{n} keys re-sealed under {}. Start the server with PORTAL_MASTER_KEY_FILE={} (or move it to {}); keep {} as long as you keep backups made before now",
                new_key_file.display(),
                new_key_file.display(),
                old_file.display(),
                old_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("rewrap stopped, nothing changed: {e}")),
    }
}
