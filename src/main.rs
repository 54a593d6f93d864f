//! `portal`: the local server, the development token issuer, and admin
//! commands (import, table creation).

use clap::{Parser, Subcommand, ValueEnum};
use recovery_portal::config::{Backend, Config};
use recovery_portal::frontends::server;
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

#[derive(Subcommand)]
enum Command {
    /// Serve the API locally (embedded backends with demo data by default).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Seed file to load instead of the demo data (embedded backend).
        #[arg(long)]
        seed: Option<std::path::PathBuf>,
        /// Where data lives; `aws` uses PORTAL_TABLE_PREFIX and PORTAL_KMS_KEY_ID.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Print a token from the local development identity provider.
    Token {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// Space-separated permissions, e.g. "RecoveryKey.Read".
        #[arg(long, default_value = "RecoveryKey.Read")]
        scope: String,
        /// Must match the server's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        issuer: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Validate a seed file without loading it anywhere.
    Validate { file: std::path::PathBuf },
    /// Import a seed file into DynamoDB, sealing each key with KMS
    /// (PORTAL_TABLE_PREFIX, PORTAL_KMS_KEY_ID and the usual AWS settings).
    /// The whole file is validated first; an invalid file writes nothing.
    Import { file: std::path::PathBuf },
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

#[derive(Subcommand)]
enum KeysCommand {
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

async fn import(file: &std::path::Path) -> ExitCode {
    let seed = match read_seed(file) {
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
    match recovery_portal::tools::import::import(&seed, cipher.as_ref(), store.as_ref(), &progress)
        .await
    {
        Ok(s) => {
            println!(
                "imported into {prefix}-*: {} tenants, {} devices written, {} keys written, {} devices skipped (unchanged)",
                s.tenants, s.devices, s.keys, s.skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!(
            "import stopped: {e}. Re-running the same import is safe: unchanged devices are skipped"
        )),
    }
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
            backend,
        } => serve(addr, seed, backend).await,
        Command::Token {
            tenant,
            user,
            scope,
            issuer,
            ttl,
        } => {
            let path = DevIdentityProvider::default_key_path();
            let idp = match DevIdentityProvider::load_or_create(
                &path,
                issuer.trim_end_matches('/'),
                DEV_AUDIENCE,
            ) {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            if recovery_portal::domain::ids::TenantId::parse(&tenant).is_err()
                || recovery_portal::domain::ids::UserId::parse(&user).is_err()
            {
                return fail(
                    "--tenant and --user must be 1 to 128 characters from A-Z a-z 0-9 . _ -",
                );
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            println!(
                "{}",
                idp.token(&tenant, &user, &scope, now, ttl.clamp(60, 86_400))
            );
            ExitCode::SUCCESS
        }
        Command::Import { file } => import(&file).await,
        Command::Tables {
            command: TablesCommand::Create,
        } => create_tables().await,
        Command::Keys {
            command: KeysCommand::Verify { tenant },
        } => verify_keys(tenant).await,
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

async fn serve(
    addr: SocketAddr,
    seed_file: Option<std::path::PathBuf>,
    backend: Option<BackendArg>,
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
    let dev_mode = config.auth.is_none();
    if dev_mode && !addr.ip().is_loopback() {
        return fail(format!(
            "refusing to serve on {addr}: without PORTAL_ISSUER this server is its own identity provider, which is for local development only; bind a loopback address or configure PORTAL_ISSUER"
        ));
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {addr}: {e}")),
    };
    let local = listener.local_addr().unwrap_or(addr);
    let (verifier, idp) = match &config.auth {
        Some(auth) => (app::jwt_verifier(auth), None),
        None => {
            let issuer = format!("http://{local}");
            let idp = match DevIdentityProvider::load_or_create(
                &DevIdentityProvider::default_key_path(),
                &issuer,
                DEV_AUDIENCE,
            ) {
                Ok(i) => Arc::new(i),
                Err(e) => return fail(e),
            };
            let v: Arc<dyn recovery_portal::ports::TokenVerifier> =
                Arc::new(idp.verifier(Arc::new(recovery_portal::ports::SystemClock)));
            (v, Some(idp))
        }
    };
    let portal = match (&config.backend, seed_file) {
        (Backend::Embedded, Some(path)) => match read_seed(&path) {
            Ok(s) => app::embedded(&s, verifier, config.key_rate_limit).await.0,
            Err(e) => return fail(e),
        },
        (Backend::Embedded, None) => match seed::parse(seed::DEMO_SEED) {
            Ok(s) => app::embedded(&s, verifier, config.key_rate_limit).await.0,
            Err(e) => return fail(e),
        },
        (Backend::Aws { .. }, Some(_)) => {
            return fail(
                "--seed only applies to the embedded backend; use `portal import` for AWS",
            );
        }
        (Backend::Aws { .. }, None) => match app::from_config(&config, verifier).await {
            Ok(p) => p,
            Err(e) => return fail(e),
        },
    };
    if let Some(idp) = &idp {
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
    // Superseded keys past their retention are deleted by DynamoDB TTL on
    // AWS; the embedded store is swept from here.
    app::spawn_retention_sweep(&portal);
    tracing::info!(addr = %local, "listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match server::serve(listener, portal, idp, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
