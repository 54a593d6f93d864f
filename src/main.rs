//! `portal`: the local server, the development token issuer, local Lambda
//! development helpers (events, environment), and admin commands (import,
//! table creation).

use clap::{Parser, Subcommand, ValueEnum};
use recovery_portal::config::{Backend, Config};
use recovery_portal::devidp::{DEV_AUDIENCE, DevIdentityProvider};
use recovery_portal::{app, seed, server, telemetry};
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
const DEV_ISSUER: &str = "http://127.0.0.1:8080";

/// The API Gateway events `portal event` prints, one per route; each is
/// `events/<name>.json` with a fresh token.
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
        /// Seed file to load instead of the demo data (embedded backend).
        #[arg(long, env = "PORTAL_SEED_FILE")]
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
    Import { file: std::path::PathBuf },
    /// DynamoDB tables for local and test use (production: Terraform).
    Tables {
        #[command(subcommand)]
        command: TablesCommand,
    },
}

#[derive(Subcommand)]
enum TablesCommand {
    /// Create `<PORTAL_TABLE_PREFIX>-devices`, `-audit` and `-rate_limits`
    /// as src/aws/schema.rs defines them; existing tables are checked.
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
    let (store, cipher) = match recovery_portal::aws::aws_backends(&prefix, Some(&kms_key_id)).await
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    match recovery_portal::import::import(&seed, cipher.as_ref(), store.as_ref(), &progress).await {
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
    let client = match recovery_portal::aws::sdk_config().await {
        Ok(config) => recovery_portal::aws::dynamodb_client(config),
        Err(e) => return fail(e),
    };
    match recovery_portal::aws::create_tables(&client, &prefix).await {
        Ok(tables) => {
            for (name, status) in tables {
                println!("{name}: {status:?}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The dev identity provider for `issuer`, with its key in
/// `PORTAL_DEV_KEY_FILE` (created on first use), so every command agrees.
fn dev_idp(issuer: &str) -> Result<DevIdentityProvider, String> {
    DevIdentityProvider::load_or_create(
        &DevIdentityProvider::default_key_path(),
        issuer.trim_end_matches('/'),
        DEV_AUDIENCE,
    )
}

/// A dev token valid from now for `ttl` seconds (clamped to 1 minute–1 day).
fn dev_token(
    issuer: &str,
    tenant: &str,
    user: &str,
    scope: &str,
    ttl: i64,
) -> Result<String, String> {
    if recovery_portal::ids::TenantId::parse(tenant).is_err()
        || recovery_portal::ids::UserId::parse(user).is_err()
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
        recovery_portal::ids::DeviceId::parse(device).map_err(|e| format!("--device {e}"))?;
        let path = format!("/v1/devices/{device}/recovery-key");
        event["rawPath"] = path.clone().into();
        event["requestContext"]["http"]["path"] = path.into();
        event["pathParameters"]["device_id"] = device.into();
    }
    serde_json::to_string_pretty(&event).map_err(|e| e.to_string())
}

/// `value` as one single-quoted POSIX shell word.
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
            backend,
        } => serve(addr, seed, backend).await,
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
        Command::Import { file } => import(&file).await,
        Command::Tables {
            command: TablesCommand::Create,
        } => create_tables().await,
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
            Err(e) => return fail(format!("seed file (--seed or PORTAL_SEED_FILE) {e}")),
        },
        (Backend::Embedded, None) => match seed::parse(seed::DEMO_SEED) {
            Ok(s) => app::embedded(&s, verifier, config.key_rate_limit).await.0,
            Err(e) => return fail(e),
        },
        (Backend::Aws { .. }, Some(_)) => {
            return fail(
                "--seed (PORTAL_SEED_FILE) only applies to the embedded backend; use `portal import` for AWS",
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
    tracing::info!(addr = %local, "listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match server::serve(listener, portal, idp, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
