//! The assembled application: ports wired to adapters, built once per process.

use crate::adapters::embedded::{LocalCipher, MemoryStore};
use crate::adapters::jwt::JwtVerifier;
use crate::config::{AuthConfig, Backend, Config, ConfigError};
use crate::domain::ports::{Clock, Portal, SystemClock, TokenVerifier};
use crate::tools::seed::Seed;
use std::sync::Arc;

/// The production verifier for a configured issuer, behind a bounded cache
/// of verified tokens (a user lists devices, then retrieves a key, with the
/// same token; see `token_cache` for what the cache keeps safe). Builds the
/// key-fetching client now: call it at init.
pub fn jwt_verifier(auth: &AuthConfig) -> Result<Arc<dyn TokenVerifier>, ConfigError> {
    jwt_verifier_with_clock(auth, Arc::new(SystemClock))
}

/// `jwt_verifier` on another clock (tests drive the JWKS max age with it).
pub fn jwt_verifier_with_clock(
    auth: &AuthConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn TokenVerifier>, ConfigError> {
    let http = crate::adapters::jwt::idp_http_client(auth)?;
    Ok(jwt_verifier_with(auth, http, clock))
}

/// `jwt_verifier` fetching with `http` (`portal serve` also checks the
/// issuer with it, so it is built once).
pub fn jwt_verifier_with(
    auth: &AuthConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
) -> Arc<dyn TokenVerifier> {
    let jwt = JwtVerifier::from_config(auth, http, clock.clone());
    Arc::new(crate::adapters::token_cache::CachingVerifier::new(
        Arc::new(jwt),
        clock,
    ))
}

pub use crate::domain::policy::RateLimits;

impl RateLimits {
    pub fn of(config: &Config) -> Self {
        Self {
            key: config.key_rate_limit,
            helpdesk: config.helpdesk_rate_limit,
            incident_max: config.incident_max_rate_limit,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            key: crate::config::DEFAULT_KEY_RATE_LIMIT,
            helpdesk: crate::config::DEFAULT_HELPDESK_RATE_LIMIT,
            incident_max: crate::config::DEFAULT_INCIDENT_MAX_RATE_LIMIT,
        }
    }
}

/// A portal on the embedded backends, loaded with `seed`.
pub async fn embedded(
    seed: &Seed,
    verifier: Arc<dyn TokenVerifier>,
    limits: RateLimits,
) -> (Portal, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let cipher = Arc::new(LocalCipher::random());
    crate::tools::import::import(seed, cipher.as_ref(), store.as_ref(), &|_, _| {})
        .await
        .expect("the embedded store and cipher cannot fail");
    let portal = Portal {
        store: store.clone(),
        lifecycle: store.clone(),
        cipher,
        clock: Arc::new(SystemClock),
        verifier,
        key_rate_limit: limits.key,
        helpdesk_rate_limit: limits.helpdesk,
        incident_max_rate_limit: limits.incident_max,
        metrics: Arc::new(crate::domain::ports::NoMetrics),
        max_auth_age: None,
    };
    (portal, store)
}

/// How often `spawn_retention_sweep` sweeps.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes superseded keys past their retention every `SWEEP_INTERVAL`
/// (the embedded store; on DynamoDB, TTL does it and the sweep is a no-op).
pub fn spawn_retention_sweep(portal: &Portal) -> tokio::task::JoinHandle<()> {
    let portal = portal.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            match portal.lifecycle.sweep_expired(portal.clock.now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(deleted = n, "superseded keys past their retention deleted")
                }
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
    })
}

/// CloudWatch Embedded Metric Format lines on stdout when configured (the
/// Lambda functions), else nothing.
fn metrics(config: &Config) -> Arc<dyn crate::domain::ports::Metrics> {
    match &config.metrics_namespace {
        Some(ns) => Arc::new(crate::adapters::emf::EmfMetrics::stdout(ns)),
        None => Arc::new(crate::domain::ports::NoMetrics),
    }
}

/// A portal on the backend the configuration names. The embedded backend
/// serves the demo data set (or `PORTAL_SEED_FILE`).
pub async fn from_config(
    config: &Config,
    verifier: Arc<dyn TokenVerifier>,
) -> Result<Portal, String> {
    match &config.backend {
        Backend::Embedded => {
            let text = match std::env::var("PORTAL_SEED_FILE") {
                Ok(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("PORTAL_SEED_FILE: {path}: {e}"))?,
                Err(_) => crate::tools::seed::DEMO_SEED.to_owned(),
            };
            let seed =
                crate::tools::seed::parse(&text).map_err(|e| format!("PORTAL_SEED_FILE: {e}"))?;
            let mut portal = embedded(&seed, verifier, RateLimits::of(config)).await.0;
            portal.metrics = metrics(config);
            portal.max_auth_age = config.web_max_age;
            Ok(portal)
        }
        Backend::Aws {
            table_prefix,
            kms_key_id,
        } => {
            let (store, cipher) =
                crate::adapters::aws::aws_backends(table_prefix, kms_key_id.as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
            Ok(Portal {
                store: store.clone(),
                lifecycle: store,
                cipher,
                clock: Arc::new(SystemClock),
                verifier,
                key_rate_limit: config.key_rate_limit,
                helpdesk_rate_limit: config.helpdesk_rate_limit,
                incident_max_rate_limit: config.incident_max_rate_limit,
                metrics: metrics(config),
                max_auth_age: config.web_max_age,
            })
        }
    }
}

/// `portal serve --data-dir`: the persistent store in `dir`, its keys
/// sealed under the master key in `key_file`, after importing `seed` (if
/// given) the way `portal import` does: unchanged devices are skipped, so
/// starting again with the same file changes nothing.
#[cfg(feature = "cli")]
pub async fn persistent(
    dir: &crate::adapters::sqlite::DataDir,
    key_file: &std::path::Path,
    seed: Option<&Seed>,
    verifier: Arc<dyn TokenVerifier>,
    limits: RateLimits,
) -> Result<(Portal, Arc<crate::adapters::sqlite::SqliteStore>), String> {
    use crate::adapters::sqlite::{MasterKey, SqliteStore};
    let key = MasterKey::load_or_create(key_file).map_err(|e| e.to_string())?;
    let path = dir.path().to_owned();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
        .await
        .map_err(|e| e.to_string())??;
    let store = Arc::new(store);
    let cipher = Arc::new(store.unlock(&key).await.map_err(|e| e.to_string())?);
    if let Some(seed) = seed {
        let importer = crate::domain::ids::UserId::importer("portal-serve").expect("a valid name");
        crate::tools::import::import_as(
            seed,
            cipher.as_ref(),
            store.as_ref(),
            &importer,
            &|_, _| {},
        )
        .await
        .map_err(|e| format!("importing the seed file: {e}"))?;
    }
    let portal = Portal {
        store: store.clone(),
        lifecycle: store.clone(),
        cipher,
        clock: Arc::new(SystemClock),
        verifier,
        key_rate_limit: limits.key,
        helpdesk_rate_limit: limits.helpdesk,
        incident_max_rate_limit: limits.incident_max,
        metrics: Arc::new(crate::domain::ports::NoMetrics),
        max_auth_age: None,
    };
    Ok((portal, store))
}
