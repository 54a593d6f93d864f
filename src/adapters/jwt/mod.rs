//! Bearer-token authentication: JWT verification against the issuer's JWKS
//! and the caller identity and permissions the token grants.
//!
//! Accepted: RS256/384/512, PS256/384/512, ES256 and ES384; never HS* or
//! `none`. A key whose JWK names an `alg` verifies that algorithm only;
//! `jku`, `x5u` and `jwk` headers are never
//! followed (the keys come from configuration or the issuer's discovery
//! document only); any `crit` header is refused since we implement no
//! extension; `typ`, when present, must say JWT or access token. Every claim
//! we read is typed: a claim of the wrong JSON type, `null` included, rejects
//! the token. Time checks and the JWKS refresh schedule use the injected
//! `Clock` so they are testable.
//!
//! Fetched keys live for `PORTAL_JWKS_MAX_AGE`; then the next request
//! refetches them, so a key the issuer withdrew stops verifying. While the
//! issuer cannot be reached the old keys are kept for one more max age;
//! a token that cannot be checked meanwhile (no usable keys, or an unknown
//! `kid` that a refresh could not look up) is an outage
//! (`AuthFailure::IssuerUnavailable`, 503), not a sign-in error. One fetch is
//! in flight at a time and failures back off.
//!
//! Files: `keys` (JWKS parsing, accepted algorithms), `bearer` (the
//! `Authorization` header and the token's JOSE header), `claims` (what a
//! verified token says, and the caller it names), `fetch` (the HTTP client
//! for discovery and JWKS), `refresh` (when keys are fetched again), `setup`
//! (the verifier and its client from configuration, built at init).

mod bearer;
mod claims;
mod fetch;
mod keys;
mod refresh;
mod setup;

pub use fetch::{
    IdpRoots, check_fetch_url, discovered_issuer, jwks_http_client, jwks_http_client_with,
};
pub use keys::KeySet;
pub use refresh::REFRESH_INTERVAL;
pub use setup::idp_http_client;

use crate::domain::caller::Caller;
use crate::domain::error::AuthFailure;
use crate::domain::ids::TenantId;
use crate::domain::ports::{Clock, TokenVerifier};
use async_trait::async_trait;
use bearer::parse_header;
use refresh::{FetchState, Keys, Refresh};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
/// Settings defaults live with the settings; named here too for callers
/// of the adapter.
pub use crate::config::{
    DEFAULT_JWKS_MAX_AGE, DEFAULT_TENANT_CLAIM, DEFAULT_USER_CLAIM, JWKS_MAX_AGE_SECS,
};

/// Verification settings, from configuration.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub default_tenant: Option<TenantId>,
    /// The claim naming the caller's tenant (`PORTAL_TENANT_CLAIM`, `tid`).
    pub tenant_claim: String,
    /// The claim naming the caller (`PORTAL_USER_CLAIM`, `oid`); `sub`
    /// stands in when the token has no such claim.
    pub user_claim: String,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            default_tenant: None,
            tenant_claim: DEFAULT_TENANT_CLAIM.into(),
            user_claim: DEFAULT_USER_CLAIM.into(),
        }
    }
}

/// Where fresh keys come from: when a token names an unknown `kid`, and
/// when fetched keys reach their max age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Never refreshed (tests, the local development identity provider).
    Fixed,
    Url(String),
    /// `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery(String),
}

/// The production verifier: configured keys, or keys fetched from the
/// issuer and refetched after `max_age` or on an unknown `kid`.
pub struct JwtVerifier {
    settings: JwtSettings,
    source: JwksSource,
    max_age: Duration,
    keys: RwLock<Keys>,
    fetch: tokio::sync::Mutex<FetchState>,
    /// Fetches completed: a request that waited for the fetch lock learns
    /// whether a fetch finished meanwhile, and uses its result.
    fetches_done: AtomicU64,
    clock: Arc<dyn Clock>,
    http: OnceLock<Result<reqwest::Client, String>>,
}

impl JwtVerifier {
    /// `initial` keys (inline, or fixed) never expire; with a remote
    /// `source`, an empty `initial` is fetched on first use. Fetched keys
    /// live `DEFAULT_JWKS_MAX_AGE` unless `with_max_age` says otherwise.
    pub fn new(
        settings: JwtSettings,
        initial: KeySet,
        source: JwksSource,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            source,
            max_age: DEFAULT_JWKS_MAX_AGE,
            keys: RwLock::new(Keys {
                set: Arc::new(initial),
                fetched_at: None,
                generation: 0,
            }),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            fetches_done: AtomicU64::new(0),
            clock,
            http: OnceLock::new(),
        }
    }

    /// How long fetched keys are used before they are fetched again.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The client to fetch with (from configuration, built at start);
    /// without one, `jwks_http_client` is built on the first fetch.
    pub fn with_http_client(self, client: reqwest::Client) -> Self {
        let _ = self.http.set(Ok(client));
        self
    }
}

/// A token that cannot be checked: the issuer is down, or misconfigured.
fn unavailable(retry_after_secs: u64, misconfigured: bool) -> AuthFailure {
    if misconfigured {
        AuthFailure::IssuerMisconfigured
    } else {
        AuthFailure::IssuerUnavailable { retry_after_secs }
    }
}

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        // Everything decidable without keys first: a malformed token is a
        // sign-in error even while the issuer is down.
        let header = parse_header(token)?;
        let keys = self.usable_keys().await?;
        match self.check(token, &header, &keys) {
            Err(AuthFailure::UnknownKey) => {
                // The issuer may have rotated its keys: refresh (or wait for a
                // concurrent refresh) and look once more. If the issuer cannot
                // be asked, the token cannot be checked.
                let outcome = self.refresh().await;
                match (self.check(token, &header, &self.current_keys()), outcome) {
                    (
                        Err(AuthFailure::UnknownKey),
                        Refresh::Failed {
                            retry_after_secs,
                            misconfigured,
                        },
                    ) => Err(unavailable(retry_after_secs, misconfigured)),
                    (result, _) => result,
                }
            }
            other => other,
        }
    }

    fn key_generation(&self) -> Option<u64> {
        let k = self.read_keys();
        match k.fetched_at {
            Some(t) if self.clock.now() >= t + self.max_age => None,
            _ => Some(k.generation),
        }
    }
}
