//! `portal`: the local server, the development token issuer, local Lambda
//! development helpers (events, environment), and admin commands (import,
//! table creation).

use clap::{Parser, Subcommand, ValueEnum};
use recovery_portal::adapters::sqlite::DataDir;
use recovery_portal::config::{Backend, Config};
use recovery_portal::frontends::{server, web};
#[cfg(feature = "dev-idp")]
use recovery_portal::tools::devidp::{DEV_AUDIENCE, DevIdentityProvider};
use recovery_portal::tools::seed;
use recovery_portal::{app, telemetry};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "portal",
    version,
    about = "BitLocker recovery-key portal backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum BackendArg {
    Embedded,
    Aws,
}

/// The issuer of development tokens: `portal serve`'s default address.
#[cfg(feature = "dev-idp")]
const DEV_ISSUER: &str = "http://127.0.0.1:8080";

/// The API Gateway events `portal event` prints, one per route; each is
/// `events/<name>.json` with a fresh token.
#[cfg(feature = "dev-idp")]
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum EventKind {
    /// `GET /v1/devices` (function list-devices).
    ListDevices,
    /// `POST /v1/devices/{device_id}/recovery-key` (function get-recovery-key).
    GetRecoveryKey,
    /// `GET /v1/recovery-keys?key_id_prefix=` (function list-devices).
    FindRecoveryKeys,
    /// `GET /v1/audit-events` (function list-devices).
    AuditEvents,
}

#[cfg(feature = "dev-idp")]
impl EventKind {
    fn template(self) -> &'static str {
        match self {
            Self::ListDevices => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/list-devices.json"
            )),
            Self::GetRecoveryKey => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/get-recovery-key.json"
            )),
            Self::FindRecoveryKeys => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/find-recovery-keys.json"
            )),
            Self::AuditEvents => include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/events/audit-events.json"
            )),
        }
    }

    /// The permission the route needs, as the token's default scope.
    fn default_scope(self) -> &'static str {
        match self {
            Self::ListDevices | Self::GetRecoveryKey => "RecoveryKey.Read",
            Self::FindRecoveryKeys => "RecoveryKey.Read.All",
            Self::AuditEvents => "AuditLog.Read.All",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API locally (embedded backends with demo data by default).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Seed file to load instead of the demo data (embedded backend);
        /// with --data-dir, imported into the store (unchanged devices skipped).
        #[arg(long, env = "PORTAL_SEED_FILE")]
        seed: Option<std::path::PathBuf>,
        /// Keep everything in this directory (SQLite, keys sealed under the
        /// master key); without it the embedded store is an in-memory demo.
        #[arg(long, env = "PORTAL_DATA_DIR")]
        data_dir: Option<std::path::PathBuf>,
        /// The master key file [default: master.key in --data-dir]; created
        /// mode 0600 when absent.
        #[arg(long, env = "PORTAL_MASTER_KEY_FILE")]
        master_key_file: Option<std::path::PathBuf>,
        /// Where data lives; `aws` uses PORTAL_TABLE_PREFIX and PORTAL_KMS_KEY_ID.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Let pages from this origin call the API (CORS), e.g.
        /// https://portal.example.com. Repeatable.
        #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = web::parse_origin)]
        cors_origins: Vec<String>,
        /// The portal page's OIDC client id at the issuer.
        #[arg(long, env = "PORTAL_WEB_CLIENT_ID", default_value = web::DEFAULT_CLIENT_ID)]
        web_client_id: String,
        /// Scopes the portal page requests when it signs in.
        #[arg(long, env = "PORTAL_WEB_SCOPES", default_value = web::DEFAULT_SCOPES)]
        web_scopes: String,
        /// Extra parameters of the page's authorization request,
        /// form-encoded, e.g. resource=api://recovery-portal (RFC 8707) or
        /// audience=https://api.example (Auth0); `resource` is sent in the
        /// token request too. The page's own parameters cannot be set.
        #[arg(long, env = "PORTAL_WEB_AUTH_PARAMS", default_value = "", value_parser = web::parse_auth_params)]
        web_auth_params: String,
    },
    /// Print a token from the local development identity provider.
    #[cfg(feature = "dev-idp")]
    Token {
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
    },
    /// Print an API Gateway HTTP API (payload 2.0) event for a Lambda
    /// function, carrying a fresh dev token: the data of
    /// `cargo lambda invoke <function> --data-file`. The function must trust
    /// the dev key: see `portal dev-env`.
    #[cfg(feature = "dev-idp")]
    Event {
        #[arg(value_enum)]
        route: EventKind,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "contoso")]
        tenant: String,
        /// Space-separated permissions [default: the one the route needs].
        #[arg(long)]
        scope: Option<String>,
        /// The device whose key get-recovery-key asks for.
        #[arg(long)]
        device: Option<String>,
        /// Must match PORTAL_ISSUER of the function (`portal dev-env --issuer`).
        #[arg(long, default_value = DEV_ISSUER)]
        issuer: String,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Print the environment under which a Lambda function run locally
    /// (`cargo lambda watch`) trusts the dev identity provider's tokens, as
    /// shell `export` lines: `eval "$(portal dev-env)"`.
    #[cfg(feature = "dev-idp")]
    DevEnv {
        /// The issuer the tokens name (`portal event --issuer`).
        #[arg(long, default_value = DEV_ISSUER)]
        issuer: String,
    },
    /// Validate a seed file without loading it anywhere.
    Validate { file: std::path::PathBuf },
    /// Import a seed file into DynamoDB, sealing each key with KMS
    /// (PORTAL_TABLE_PREFIX, PORTAL_KMS_KEY_ID and the usual AWS settings).
    /// The whole file is validated first; an invalid file writes nothing.
    /// A device moved to another owner, and a stored tenant whose settings
    /// change, are recorded in the audit trail as changed by `import:<actor>`.
    Import {
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
    },
    /// Copy recovery keys one way from where the organisation keeps them.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// The audit trail (PORTAL_TABLE_PREFIX and the usual AWS settings).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// DynamoDB tables for local and test use (production: Terraform).
    Tables {
        #[command(subcommand)]
        command: TablesCommand,
    },
    /// Stored recovery keys (PORTAL_TABLE_PREFIX, PORTAL_KMS_KEY_ID and the
    /// usual AWS settings).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ImportFormat {
    /// An `ldifde` export of msFVE-RecoveryInformation objects (RFC 2849).
    AdLdif,
    /// `Get-ADObject … | Export-Csv` of the same objects (docs/getting-keys-in.md).
    AdCsv,
}

#[derive(Subcommand)]
enum SyncCommand {
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

#[derive(Subcommand)]
enum KeysCommand {
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Write one tenant's audit events as JSON Lines on stdout (newest
    /// first, the API's event fields), for a SIEM. Pages through the store
    /// as `GET /v1/audit-events` does; progress goes to stderr on a terminal.
    Export {
        #[arg(long)]
        tenant: String,
        /// Events at or after this RFC 3339 time.
        #[arg(long)]
        since: String,
        /// Events before this RFC 3339 time (default: no end).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        device_id: Option<String>,
        /// A user id, or `import:<name>` for an importer.
        #[arg(long)]
        actor: Option<String>,
        /// Events per store read (1–1000).
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
    },
}

#[derive(Subcommand)]
enum TablesCommand {
    /// Create `<PORTAL_TABLE_PREFIX>-devices`, `-audit` and `-rate_limits`
    /// as src/adapters/aws/schema.rs defines them; existing tables are checked.
    Create,
}

/// `(table prefix, KMS key id)` from the environment, as `PORTAL_BACKEND=aws` reads them.
fn aws_settings() -> Result<(String, Option<String>), String> {
    let c = Config::from_lookup(|k| match k {
        "PORTAL_BACKEND" => Some("aws".into()),
        _ => std::env::var(k).ok(),
    })
    .map_err(|e| e.to_string())?;
    match c.backend {
        Backend::Aws {
            table_prefix,
            kms_key_id,
        } => Ok((table_prefix, kms_key_id)),
        Backend::Embedded => Err("PORTAL_BACKEND: expected aws".into()),
    }
}

/// A progress bar on a terminal, nothing otherwise.
fn progress(done: usize, total: usize) {
    use std::io::{IsTerminal, Write};
    let mut err = std::io::stderr();
    if !err.is_terminal() || total == 0 {
        return;
    }
    let width = 40;
    let filled = done * width / total;
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} devices",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    if done == total {
        let _ = writeln!(err);
    }
    let _ = err.flush();
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

/// `portal audit export`: every matching event, page by page, as JSON Lines.
async fn audit_export(
    tenant: &str,
    since: &str,
    until: Option<&str>,
    device_id: Option<&str>,
    actor: Option<&str>,
    page_size: usize,
) -> ExitCode {
    use recovery_portal::domain::audit::AuditQuery;
    use recovery_portal::domain::ids::{DeviceId, TenantId, UserId};
    use std::io::{IsTerminal, Write};
    let rfc3339 = |flag: &str, v: &str| {
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(
            |_| format!("{flag} must be an RFC 3339 time such as 2026-01-01T00:00:00Z, got {v:?}"),
        )
    };
    let parsed = (|| -> Result<(TenantId, AuditQuery), String> {
        let tenant = TenantId::parse(tenant).map_err(|e| format!("--tenant {e}"))?;
        let query = AuditQuery {
            since: Some(rfc3339("--since", since)?),
            until: until.map(|u| rfc3339("--until", u)).transpose()?,
            device_id: device_id
                .map(|d| DeviceId::parse(d).map_err(|e| format!("--device-id {e}")))
                .transpose()?,
            actor: actor
                .map(|a| UserId::parse_actor(a).map_err(|e| format!("--actor {e}")))
                .transpose()?,
            after: None,
            limit: page_size,
        };
        if !(1..=AuditQuery::MAX_LIMIT).contains(&page_size) {
            return Err(format!(
                "--page-size must be from 1 to {}",
                AuditQuery::MAX_LIMIT
            ));
        }
        if query.is_empty_range() {
            return Err("--since must be earlier than --until".into());
        }
        Ok((tenant, query))
    })();
    let (tenant, mut query) = match parsed {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (prefix, _) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (store, _) = match recovery_portal::adapters::aws::aws_backends(&prefix, None).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let store: &dyn recovery_portal::ports::Store = store.as_ref();
    let terminal = std::io::stderr().is_terminal();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut written = 0usize;
    loop {
        let page = match store.audit_events(&tenant, &query).await {
            Ok(p) => p,
            Err(e) => {
                let _ = out.flush();
                return fail(format!(
                    "audit export stopped after {written} events: {e}. Export the same range again (events are written newest first)"
                ));
            }
        };
        for e in &page.events {
            let line = recovery_portal::api::event_json(e).to_string();
            if let Err(e) = writeln!(out, "{line}") {
                return fail(format!("writing to stdout: {e}"));
            }
            written += 1;
        }
        if terminal {
            eprint!("\r{written} events exported");
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    if let Err(e) = out.flush() {
        return fail(format!("writing to stdout: {e}"));
    }
    if terminal {
        eprintln!();
    }
    ExitCode::SUCCESS
}

async fn create_tables() -> ExitCode {
    let (prefix, _) = match aws_settings() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let client = match recovery_portal::adapters::aws::sdk_config().await {
        Ok(config) => recovery_portal::adapters::aws::dynamodb_client(config),
        Err(e) => return fail(e),
    };
    match recovery_portal::adapters::aws::create_tables(&client, &prefix).await {
        Ok(tables) => {
            for (name, status) in tables {
                println!("{name}: {status:?}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
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

/// The dev identity provider for `issuer`, with its key in
/// `PORTAL_DEV_KEY_FILE` (created on first use), so every command agrees.
#[cfg(feature = "dev-idp")]
fn dev_idp(issuer: &str) -> Result<DevIdentityProvider, String> {
    DevIdentityProvider::load_or_create(
        &DevIdentityProvider::default_key_path(),
        issuer.trim_end_matches('/'),
        DEV_AUDIENCE,
    )
}

/// A dev token valid from now for `ttl` seconds (clamped to 1 minute–1 day).
#[cfg(feature = "dev-idp")]
fn dev_token(
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

/// `events/<route>.json` carrying `token` (and `device`, for a key retrieval).
#[cfg(feature = "dev-idp")]
fn api_gateway_event(
    route: EventKind,
    token: &str,
    device: Option<&str>,
) -> Result<String, String> {
    let mut event: serde_json::Value =
        serde_json::from_str(route.template()).map_err(|e| format!("event template: {e}"))?;
    event["headers"]["authorization"] = format!("Bearer {token}").into();
    if let Some(device) = device {
        if route != EventKind::GetRecoveryKey {
            return Err("--device applies to get-recovery-key only".into());
        }
        recovery_portal::domain::ids::DeviceId::parse(device)
            .map_err(|e| format!("--device {e}"))?;
        let path = format!("/v1/devices/{device}/recovery-key");
        event["rawPath"] = path.clone().into();
        event["requestContext"]["http"]["path"] = path.into();
        event["pathParameters"]["device_id"] = device.into();
    }
    serde_json::to_string_pretty(&event).map_err(|e| e.to_string())
}

/// `value` as one single-quoted POSIX shell word.
#[cfg(feature = "dev-idp")]
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("portal: {msg}");
    ExitCode::FAILURE
}

fn read_seed(path: &std::path::Path) -> Result<seed::Seed, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    seed::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_cli();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            addr,
            seed,
            data_dir,
            master_key_file,
            backend,
            cors_origins,
            web_client_id,
            web_scopes,
            web_auth_params,
        } => {
            let page = PageSettings {
                cors_origins,
                client_id: web_client_id,
                scopes: web_scopes,
                auth_params: web_auth_params,
            };
            let data = DataSettings {
                seed,
                data_dir,
                master_key_file,
            };
            serve(addr, data, backend, page).await
        }
        #[cfg(feature = "dev-idp")]
        Command::Token {
            tenant,
            user,
            scope,
            issuer,
            ttl,
        } => match dev_token(&issuer, &tenant, &user, &scope, ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        #[cfg(feature = "dev-idp")]
        Command::Event {
            route,
            user,
            tenant,
            scope,
            device,
            issuer,
            ttl,
        } => {
            let scope = scope.as_deref().unwrap_or(route.default_scope());
            let event = dev_token(&issuer, &tenant, &user, scope, ttl)
                .and_then(|token| api_gateway_event(route, &token, device.as_deref()));
            match event {
                Ok(event) => {
                    println!("{event}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Import {
            file,
            actor,
            format,
            owners,
            volumes,
            tenant,
        } => {
            let paths = (owners.as_deref(), volumes.as_deref());
            import(&file, actor, format, paths.0, paths.1, tenant.as_deref()).await
        }
        Command::Sync {
            command: SyncCommand::Entra { tenant, dry_run },
        } => sync_entra(&tenant, dry_run).await,
        Command::Audit {
            command:
                AuditCommand::Export {
                    tenant,
                    since,
                    until,
                    device_id,
                    actor,
                    page_size,
                },
        } => {
            audit_export(
                &tenant,
                &since,
                until.as_deref(),
                device_id.as_deref(),
                actor.as_deref(),
                page_size,
            )
            .await
        }
        #[cfg(feature = "dev-idp")]
        Command::DevEnv { issuer } => match dev_idp(&issuer) {
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
        },
        Command::Tables {
            command: TablesCommand::Create,
        } => create_tables().await,
        Command::Keys {
            command: KeysCommand::Verify { tenant },
        } => verify_keys(tenant).await,
        Command::Keys {
            command:
                KeysCommand::Rewrap {
                    data_dir,
                    master_key_file,
                    new_key_file,
                },
        } => rewrap(&data_dir, master_key_file.as_deref(), &new_key_file).await,
        Command::Validate { file } => match read_seed(&file) {
            Ok(s) => {
                println!(
                    "{}: valid: {} tenants, {} devices, {} keys",
                    file.display(),
                    s.tenants.len(),
                    s.devices.len(),
                    s.key_count()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

/// At start, the issuer's discovery document must name `PORTAL_ISSUER`
/// exactly (OIDC Discovery §4.3): a mismatch (a trailing slash, http for
/// https, another tenant) would otherwise make every sign-in fail later.
/// An issuer that cannot be reached now is only a warning: tokens are
/// checked when it answers.
async fn check_issuer(auth: &recovery_portal::config::AuthConfig) -> Result<(), String> {
    match recovery_portal::adapters::jwt::discovered_issuer(&auth.jwks_client, &auth.issuer).await {
        Ok(found) if found == auth.issuer => Ok(()),
        Ok(found) => Err(format!(
            "PORTAL_ISSUER: the identity provider's discovery document names issuer {found:?}, but PORTAL_ISSUER is {:?}; they must be identical (set PORTAL_ISSUER={found:?})",
            auth.issuer
        )),
        Err(e) => {
            tracing::warn!(error = %e, issuer = %auth.issuer, "cannot check the issuer's discovery document at start; tokens are checked once it answers");
            Ok(())
        }
    }
}

/// `portal serve`'s settings for the portal page and browsers.
struct PageSettings {
    cors_origins: Vec<String>,
    client_id: String,
    scopes: String,
    auth_params: String,
}

/// Where `portal serve` takes its data from.
struct DataSettings {
    seed: Option<std::path::PathBuf>,
    data_dir: Option<std::path::PathBuf>,
    master_key_file: Option<std::path::PathBuf>,
}

/// The portal on the configured backend: the in-memory demo, the
/// persistent store in `--data-dir`, or AWS. The data directory's lock is
/// returned with it and must live as long as the server.
async fn serve_backend(
    config: &Config,
    data: DataSettings,
    verifier: Arc<dyn recovery_portal::ports::TokenVerifier>,
) -> Result<(recovery_portal::ports::Portal, Option<DataDir>), String> {
    let limits = app::RateLimits::of(config);
    let seed = match &data.seed {
        Some(path) => Some(
            read_seed(path).map_err(|e| format!("seed file (--seed or PORTAL_SEED_FILE) {e}"))?,
        ),
        None => None,
    };
    match (&config.backend, data.data_dir) {
        (Backend::Embedded, Some(dir)) => {
            let dir = DataDir::open(&dir)?;
            let key_file = dir.key_file(data.master_key_file.as_deref());
            let (portal, store) =
                app::persistent(&dir, &key_file, seed.as_ref(), verifier, limits).await?;
            eprintln!(
                "Data: {} (SQLite, WAL; keys sealed under {})",
                store.path().display(),
                key_file.display()
            );
            Ok((portal, Some(dir)))
        }
        (Backend::Embedded, None) => {
            let seed = match seed {
                Some(s) => s,
                None => seed::parse(seed::DEMO_SEED).map_err(|e| e.to_string())?,
            };
            eprintln!(
                "IN-MEMORY DEMO: nothing is kept; everything is lost when this process stops. Use --data-dir DIR (PORTAL_DATA_DIR) to keep keys, settings and the audit trail."
            );
            Ok((app::embedded(&seed, verifier, limits).await.0, None))
        }
        (Backend::Aws { .. }, Some(_)) => {
            Err("--data-dir (PORTAL_DATA_DIR) only applies to the embedded backend".into())
        }
        (Backend::Aws { .. }, None) if seed.is_some() => Err(
            "--seed (PORTAL_SEED_FILE) only applies to the embedded backend; use `portal import` for AWS"
                .into(),
        ),
        (Backend::Aws { .. }, None) => Ok((app::from_config(config, verifier).await?, None)),
    }
}

/// Why `portal serve` must not listen on `addr`, if it must not: the dev
/// identity provider and the in-memory store are for this machine only
/// (the first mints tokens for anyone; the second loses what it is given).
fn refuse_address(addr: SocketAddr, config: &Config, in_memory: bool) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    if config.auth.is_none() {
        return Some(format!(
            "refusing to serve on {addr}: without PORTAL_ISSUER this server is its own identity provider, which is for local development only; bind a loopback address or configure PORTAL_ISSUER"
        ));
    }
    in_memory.then(|| format!(
        "refusing to serve on {addr}: the in-memory store loses every key it is given when the process stops; pass --data-dir DIR (PORTAL_DATA_DIR) or bind a loopback address"
    ))
}

/// The configured issuer's verifier, or (no `PORTAL_ISSUER`) the dev
/// identity provider at `local` with its own.
fn token_verifier(config: &Config, local: SocketAddr) -> Result<Verifier, String> {
    if let Some(auth) = &config.auth {
        return Ok((app::jwt_verifier(auth), None));
    }
    dev_verifier(local)
}

/// A token verifier, and the dev identity provider behind it if any.
type Verifier = (
    Arc<dyn recovery_portal::ports::TokenVerifier>,
    Option<server::DevIdp>,
);

/// Why the operator build (without the `dev-idp` feature) will not serve
/// without an issuer: it has no identity provider of its own to fall back on.
#[cfg(not(feature = "dev-idp"))]
const NO_DEV_IDP: &str = "PORTAL_ISSUER is not set, and this portal is the operator build \
(without the dev-idp feature): it has no development identity provider. Set PORTAL_ISSUER and \
PORTAL_AUDIENCE to your organisation's identity provider (docs/identity-providers.md), or run a \
development build (`cargo run --release -- serve`, default features) on your own machine";

#[cfg(not(feature = "dev-idp"))]
fn dev_verifier(_local: SocketAddr) -> Result<Verifier, String> {
    Err(NO_DEV_IDP.into())
}

/// The dev identity provider at `local`, and a verifier of its tokens.
#[cfg(feature = "dev-idp")]
fn dev_verifier(local: SocketAddr) -> Result<Verifier, String> {
    let idp = Arc::new(DevIdentityProvider::load_or_create(
        &DevIdentityProvider::default_key_path(),
        &format!("http://{local}"),
        DEV_AUDIENCE,
    )?);
    let v: Arc<dyn recovery_portal::ports::TokenVerifier> =
        Arc::new(idp.verifier(Arc::new(recovery_portal::ports::SystemClock)));
    Ok((v, Some(idp)))
}

async fn serve(
    addr: SocketAddr,
    data: DataSettings,
    backend: Option<BackendArg>,
    page: PageSettings,
) -> ExitCode {
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match backend {
        Some(BackendArg::Embedded) => config.backend = Backend::Embedded,
        Some(BackendArg::Aws) => match aws_settings() {
            Ok((table_prefix, kms_key_id)) => {
                config.backend = Backend::Aws {
                    table_prefix,
                    kms_key_id,
                }
            }
            Err(e) => return fail(e),
        },
        _ => {}
    }
    let in_memory = matches!(config.backend, Backend::Embedded) && data.data_dir.is_none();
    if let Some(why) = refuse_address(addr, &config, in_memory) {
        return fail(why);
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {addr}: {e}")),
    };
    let local = listener.local_addr().unwrap_or(addr);
    if let Some(auth) = &config.auth
        && let Err(e) = check_issuer(auth).await
    {
        return fail(e);
    }
    let (verifier, idp) = match token_verifier(&config, local) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (mut portal, _data_dir_lock) = match serve_backend(&config, data, verifier).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    portal.max_auth_age = config.web_max_age;
    #[cfg(feature = "dev-idp")]
    announce(idp.as_deref());
    #[cfg(feature = "dev-idp")]
    let dev_issuer = idp.as_ref().map(|i| i.issuer.clone());
    #[cfg(not(feature = "dev-idp"))]
    let dev_issuer: Option<String> = None;
    // Exactly one of the two exists: a configured issuer, or the dev provider.
    let issuer = dev_issuer
        .or_else(|| config.auth.as_ref().map(|a| a.issuer.clone()))
        .unwrap_or_default();
    eprintln!("Portal page: http://{local}/");
    if idp.is_some() {
        eprintln!("  (sign in with the form the page shows, e.g. tenant contoso, user alice)");
    }
    eprintln!();
    let options = server::Options {
        cors_origins: page.cors_origins,
        web: Some(web::WebConfig {
            issuer,
            client_id: page.client_id,
            scopes: page.scopes,
            auth_params: page.auth_params,
            max_age: config.web_max_age,
        }),
    };
    // Superseded keys past their retention are deleted by DynamoDB TTL on
    // AWS; the embedded store is swept from here.
    app::spawn_retention_sweep(&portal);
    tracing::info!(addr = %local, "listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match server::serve_with(listener, portal, idp, options, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// What `portal serve` says at start in development mode: how to get a
/// token and call the API.
#[cfg(feature = "dev-idp")]
fn announce(idp: Option<&DevIdentityProvider>) {
    let Some(idp) = idp else {
        return;
    };
    eprintln!(
        "LOCAL DEVELOPMENT MODE: no PORTAL_ISSUER is set, so this server is its own identity provider"
    );
    eprintln!(
        "(issuer {}, audience {}). Never expose it beyond this machine.",
        idp.issuer, idp.audience
    );
    eprintln!();
    eprintln!(
        "  TOKEN=$(cargo run --release -q -- token --issuer {} --tenant contoso --user alice --scope RecoveryKey.Read)",
        idp.issuer
    );
    eprintln!(
        "  curl -s -H \"Authorization: Bearer $TOKEN\" {}/v1/devices",
        idp.issuer
    );
    eprintln!(
        "  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" {}/v1/devices/DESKTOP-7Q2M4K1/recovery-key",
        idp.issuer
    );
    eprintln!();
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
