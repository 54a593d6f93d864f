//! `portal serve`: the API and the portal page, locally.

use super::{aws_settings, fail, read_seed};
use clap::{Args, ValueEnum};
use recovery_portal::adapters::jwt;
use recovery_portal::adapters::sqlite::DataDir;
use recovery_portal::app;
use recovery_portal::config::{Backend, Config};
use recovery_portal::frontends::{server, web};
#[cfg(feature = "dev-idp")]
use recovery_portal::tools::devidp::{DEV_AUDIENCE, DevIdentityProvider};
use recovery_portal::tools::seed;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub(super) struct Serve {
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
}

impl Serve {
    pub(super) async fn run(self) -> ExitCode {
        let page = PageSettings {
            cors_origins: self.cors_origins,
            client_id: self.web_client_id,
            scopes: self.web_scopes,
            auth_params: self.web_auth_params,
        };
        let data = DataSettings {
            seed: self.seed,
            data_dir: self.data_dir,
            master_key_file: self.master_key_file,
        };
        serve(self.addr, data, self.backend, page).await
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(super) enum BackendArg {
    Embedded,
    Aws,
}

/// At start, the issuer's discovery document must name `PORTAL_ISSUER`
/// exactly (OIDC Discovery §4.3): a mismatch (a trailing slash, http for
/// https, another tenant) would otherwise make every sign-in fail later.
/// An issuer that cannot be reached now is only a warning: tokens are
/// checked when it answers.
async fn check_issuer(
    auth: &recovery_portal::config::AuthConfig,
    http: &reqwest::Client,
) -> Result<(), String> {
    match recovery_portal::adapters::jwt::discovered_issuer(http, &auth.issuer).await {
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
    verifier: Arc<dyn recovery_portal::domain::ports::TokenVerifier>,
) -> Result<(recovery_portal::domain::ports::Portal, Option<DataDir>), String> {
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

/// The configured issuer's verifier (fetching with `http`), or (no
/// `PORTAL_ISSUER`) the dev identity provider at `local` with its own.
fn token_verifier(
    config: &Config,
    http: Option<&reqwest::Client>,
    local: SocketAddr,
) -> Result<Verifier, String> {
    if let (Some(auth), Some(http)) = (&config.auth, http) {
        let clock = Arc::new(recovery_portal::domain::ports::SystemClock);
        return Ok((app::jwt_verifier_with(auth, http.clone(), clock), None));
    }
    dev_verifier(local)
}

/// A token verifier, and the dev identity provider behind it if any.
type Verifier = (
    Arc<dyn recovery_portal::domain::ports::TokenVerifier>,
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
    let v: Arc<dyn recovery_portal::domain::ports::TokenVerifier> =
        Arc::new(idp.verifier(Arc::new(recovery_portal::domain::ports::SystemClock)));
    Ok((v, Some(idp)))
}

/// What `--backend` asks for in place of the environment's backend, if
/// anything (`aws` reads its table prefix and key from the environment).
fn backend_override(backend: Option<BackendArg>) -> Result<Option<Backend>, String> {
    match backend {
        Some(BackendArg::Embedded) => Ok(Some(Backend::Embedded)),
        Some(BackendArg::Aws) => {
            let (table_prefix, kms_key_id) = aws_settings()?;
            Ok(Some(Backend::Aws {
                table_prefix,
                kms_key_id,
            }))
        }
        None => Ok(None),
    }
}

/// Everything `portal serve` opens before it serves. The data directory's
/// lock must live as long as the server.
struct Started {
    config: Config,
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    portal: recovery_portal::domain::ports::Portal,
    idp: Option<server::DevIdp>,
    _data_dir_lock: Option<DataDir>,
}

/// The configuration, the listening socket, the token verifier and the
/// store, in that order: each step stops start-up with a message.
async fn start(
    addr: SocketAddr,
    data: DataSettings,
    backend: Option<BackendArg>,
) -> Result<Started, String> {
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    // Built once, at start: a platform that cannot provide it stops here.
    let idp_http = (config.auth.as_ref().map(jwt::idp_http_client))
        .transpose()
        .map_err(|e| e.to_string())?;
    if let Some(backend) = backend_override(backend)? {
        config.backend = backend;
    }
    let in_memory = matches!(config.backend, Backend::Embedded) && data.data_dir.is_none();
    if let Some(why) = refuse_address(addr, &config, in_memory) {
        return Err(why);
    }
    let listener = (tokio::net::TcpListener::bind(addr).await)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    if let (Some(auth), Some(http)) = (&config.auth, &idp_http) {
        check_issuer(auth, http).await?;
    }
    let (verifier, idp) = token_verifier(&config, idp_http.as_ref(), local)?;
    let (mut portal, data_dir_lock) = serve_backend(&config, data, verifier).await?;
    portal.max_auth_age = config.web_max_age;
    Ok(Started {
        config,
        listener,
        local,
        portal,
        idp,
        _data_dir_lock: data_dir_lock,
    })
}

/// The issuer the portal page signs in at: exactly one of the two exists,
/// a configured issuer or the dev provider.
fn page_issuer(config: &Config, idp: Option<&server::DevIdp>) -> String {
    #[cfg(feature = "dev-idp")]
    let dev_issuer = idp.map(|i| i.issuer.clone());
    #[cfg(not(feature = "dev-idp"))]
    let dev_issuer: Option<String> = idp.map(|never| match *never {});
    dev_issuer
        .or_else(|| config.auth.as_ref().map(|a| a.issuer.clone()))
        .unwrap_or_default()
}

/// The local server's options: CORS, and the portal page's sign-in.
fn server_options(page: PageSettings, issuer: String, config: &Config) -> server::Options {
    server::Options {
        cors_origins: page.cors_origins,
        web: Some(web::WebConfig {
            issuer,
            client_id: page.client_id,
            scopes: page.scopes,
            auth_params: page.auth_params,
            max_age: config.web_max_age,
        }),
    }
}

async fn serve(
    addr: SocketAddr,
    data: DataSettings,
    backend: Option<BackendArg>,
    page: PageSettings,
) -> ExitCode {
    let started = match start(addr, data, backend).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Started {
        config,
        listener,
        local,
        portal,
        idp,
        _data_dir_lock,
    } = started;
    #[cfg(feature = "dev-idp")]
    announce(idp.as_deref());
    let issuer = page_issuer(&config, idp.as_ref());
    eprintln!("Portal page: http://{local}/");
    if idp.is_some() {
        eprintln!("  (sign in with the form the page shows, e.g. tenant contoso, user alice)");
    }
    eprintln!();
    let options = server_options(page, issuer, &config);
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
