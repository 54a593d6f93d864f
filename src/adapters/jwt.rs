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

use crate::domain::caller::{Caller, Permissions};
use crate::domain::error::AuthFailure;
use crate::domain::ids::{DeviceId, TenantId, UserId};
use crate::ports::{Clock, TokenVerifier};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
/// After a successful fetch, an unknown `kid` triggers another at most once
/// per this interval (anyone can send tokens with made-up `kid`s).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default lifetime of fetched keys (`PORTAL_JWKS_MAX_AGE`).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Accepted `PORTAL_JWKS_MAX_AGE` values, in seconds.
pub const JWKS_MAX_AGE_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;
/// The wait after a failed fetch; it doubles with each further failure, up
/// to `REFRESH_INTERVAL`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Whole fetch (discovery and JWKS each), and connecting: below the
/// functions' request budget, so an outage answers 503 in time.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT: usize = 512 * 1024;
/// Longest accepted token: bounds the work an attacker can make us do.
const MAX_TOKEN_LEN: usize = 16 * 1024;

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

/// `PORTAL_TENANT_CLAIM` unless set: Entra ID's tenant ID.
pub const DEFAULT_TENANT_CLAIM: &str = "tid";
/// `PORTAL_USER_CLAIM` unless set: Entra ID's object ID.
pub const DEFAULT_USER_CLAIM: &str = "oid";

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    /// P-256 (ES256).
    Ec,
    /// P-384 (ES384).
    Ec384,
}

struct Key {
    family: Family,
    /// The JWK's `alg`, when it names one: the only algorithm it verifies.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
    /// The key's public parameters as published: tells a replaced key from
    /// a kept one.
    material: String,
}

/// Parsed signing keys by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Key>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the RSA (2048 bits and more), P-256
    /// and P-384 signing keys and skipping anything else (encryption keys,
    /// symmetric keys, other curves, short RSA).
    pub fn from_jwks_json(json: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct RawKey {
            kty: String,
            kid: Option<String>,
            #[serde(rename = "use")]
            use_: Option<String>,
            alg: Option<String>,
            n: Option<String>,
            e: Option<String>,
            crv: Option<String>,
            x: Option<String>,
            y: Option<String>,
        }
        let doc: Doc =
            serde_json::from_str(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for v in doc.keys {
            let Ok(k) = serde_json::from_value::<RawKey>(v) else {
                continue;
            };
            let Some(kid) = k.kid else { continue };
            if k.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let alg = match k.alg.as_deref() {
                None => None,
                Some(a) => match algorithm_of(a) {
                    Some((alg, _)) => Some(alg),
                    None => continue,
                },
            };
            let parsed = match (k.kty.as_str(), k.crv.as_deref()) {
                ("RSA", _) => match (k.n, k.e) {
                    (Some(n), Some(e)) if rsa_bits(&n) >= 2048 => {
                        DecodingKey::from_rsa_components(&n, &e)
                            .ok()
                            .map(|d| (Family::Rsa, d, format!("RSA {n} {e}")))
                    }
                    _ => None,
                },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => match (k.x, k.y) {
                    (Some(x), Some(y)) => {
                        let family = if crv == "P-256" {
                            Family::Ec
                        } else {
                            Family::Ec384
                        };
                        DecodingKey::from_ec_components(&x, &y)
                            .ok()
                            .map(|d| (family, d, format!("EC {crv} {x} {y}")))
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some((family, decoding, material)) = parsed
                && alg.is_none_or(|a| algorithm_family(a) == family)
            {
                keys.insert(
                    kid,
                    Key {
                        family,
                        alg,
                        decoding,
                        material,
                    },
                );
            }
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether some key of `old` is missing from this set or was replaced.
    fn withdraws_any_of(&self, old: &KeySet) -> bool {
        old.keys.iter().any(|(kid, k)| {
            self.keys
                .get(kid)
                .is_none_or(|new| new.material != k.material)
        })
    }
}

fn rsa_bits(n_b64: &str) -> usize {
    URL_SAFE_NO_PAD
        .decode(n_b64.trim_end_matches('='))
        .map(|n| n.iter().skip_while(|&&b| b == 0).count() * 8)
        .unwrap_or(0)
}

/// Whether `raw` may be fetched for keys or discovery: `https://`, or
/// `http://` to this host only (127.0.0.0/8, `[::1]`, `localhost`), which
/// tests and local identity providers use. Never credentials in the URL.
pub fn check_fetch_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    let scheme_ok = match url.scheme() {
        "https" => raw.starts_with("https://"),
        "http" => raw.starts_with("http://") && loopback,
        _ => false,
    };
    if !scheme_ok || url.host_str().is_none_or(str::is_empty) {
        return Err(
            "must be an https:// URL (plain http:// only to localhost, 127.0.0.1 or [::1])".into(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(url)
}

/// Which root CAs the client that fetches discovery documents and JWKS
/// trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdpRoots {
    /// Mozilla's root program, compiled into the binary (`webpki-roots`):
    /// every public identity provider (Entra ID, Okta, Auth0, Cognito) has
    /// a certificate under one of them, and building the client reads no
    /// file. The platform's store means one file per CA at every cold start
    /// (146 under Debian's `/etc/ssl/certs`; BENCHMARKS.md §1).
    #[default]
    Compiled,
    /// The platform's trust store (`PORTAL_TLS_ROOTS=system`): for an
    /// identity provider behind a private CA, at the cost above.
    System,
}

/// The HTTP client that fetches discovery documents and JWKS: short
/// timeouts, no redirects, the compiled-in roots. Built at start
/// (configuration), so a platform that cannot provide it stops the process
/// there rather than at the first token.
pub fn jwks_http_client() -> Result<reqwest::Client, String> {
    jwks_http_client_with(IdpRoots::Compiled)
}

/// [`jwks_http_client`] trusting `roots`.
pub fn jwks_http_client_with(roots: IdpRoots) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let builder = match roots {
        IdpRoots::System => builder,
        IdpRoots::Compiled => builder.tls_backend_preconfigured(compiled_roots_tls()?),
    };
    builder.build().map_err(|e| {
        use std::error::Error;
        let mut msg = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        format!("cannot build the HTTP client that fetches the issuer's signing keys: {msg}")
    })
}

/// A rustls configuration on aws-lc with Mozilla's roots, already parsed
/// into trust anchors at compile time: no file, no parsing at start.
fn compiled_roots_tls() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS for the issuer's signing keys: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A claim or header that may be absent but, when present, must have its
/// type: `null` is not "absent".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The claims we read. Typed, so a claim of the wrong JSON type fails
/// deserialisation and rejects the token.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    exp: f64,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<f64>,
    /// Read only for its type.
    #[serde(default, deserialize_with = "present")]
    #[allow(dead_code)]
    iat: Option<f64>,
    /// When the person signed in (OIDC Core): `PORTAL_WEB_MAX_AGE` is
    /// checked against it.
    #[serde(default, deserialize_with = "present")]
    auth_time: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    sub: Option<String>,
    #[serde(default, deserialize_with = "present")]
    scp: Option<Scopes>,
    #[serde(default, deserialize_with = "present")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "present")]
    roles: Option<Vec<String>>,
    /// The device a device-bound escrow credential belongs to.
    #[serde(default, deserialize_with = "present")]
    device_id: Option<String>,
    /// Cognito: `access` or `id`.
    #[serde(default, deserialize_with = "present")]
    token_use: Option<String>,
    /// Claims only OIDC ID tokens carry: present at all (even `null`), the
    /// token is an ID token, whatever its `aud` says.
    #[serde(default, deserialize_with = "present")]
    nonce: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    at_hash: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    c_hash: Option<serde_json::Value>,
}

/// `aud`: one value, or an array of values. A string is never split.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(v) => v.iter().any(|a| a == audience),
        }
    }
}

/// `scp`: space-separated names (Entra), or an array of names.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scopes {
    Spaced(String),
    Many(Vec<String>),
}

impl Scopes {
    fn items(&self) -> Vec<&str> {
        match self {
            Self::Spaced(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default, deserialize_with = "present")]
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    typ: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
}

impl RawHeader {
    fn algorithm(&self) -> Result<(Algorithm, Family), AuthFailure> {
        algorithm_of(&self.alg).ok_or(AuthFailure::Algorithm)
    }
}

/// The accepted signature algorithms (never HS* or `none`).
fn algorithm_of(alg: &str) -> Option<(Algorithm, Family)> {
    let a = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    };
    Some((a, algorithm_family(a)))
}

fn algorithm_family(a: Algorithm) -> Family {
    match a {
        Algorithm::ES256 => Family::Ec,
        Algorithm::ES384 => Family::Ec384,
        _ => Family::Rsa,
    }
}

/// `typ` values of a JWT access token (RFC 7519, RFC 9068), compared
/// case-insensitively, with or without the `application/` prefix
/// (RFC 7515 §4.1.9).
fn acceptable_typ(typ: &str) -> bool {
    let t = typ.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    t == "jwt" || t == "at+jwt"
}

/// The keys in use.
struct Keys {
    set: Arc<KeySet>,
    /// When `set` was fetched; `None` for configured keys (inline or
    /// fixed), which never expire.
    fetched_at: Option<OffsetDateTime>,
    /// Changes whenever a refresh withdraws or replaces a key: a cache of
    /// verified tokens drops what it verified before.
    generation: u64,
}

/// The fetch schedule, under the lock that keeps one fetch in flight.
#[derive(Default)]
struct FetchState {
    /// No fetch before this (the back-off after a failure, or
    /// `REFRESH_INTERVAL` after a success).
    not_before: Option<OffsetDateTime>,
    failures: u32,
    /// The last failure was the configuration's, not the network's.
    misconfigured: bool,
    /// The misconfiguration already logged as an error: logged once, not
    /// at every retry.
    reported: Option<String>,
}

/// What the last fetch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refresh {
    /// It succeeded: the keys are the issuer's current ones.
    Current,
    /// It failed; the next attempt is allowed in this many seconds.
    /// `misconfigured`: the issuer answered, but contradicts the
    /// configuration (retrying will not help until someone fixes it).
    Failed {
        retry_after_secs: u64,
        misconfigured: bool,
    },
    /// Fixed keys: nothing to fetch.
    Fixed,
}

enum FetchError {
    /// Refused, timed out, 5xx, malformed, no usable keys.
    Unreachable(String),
    /// The issuer's documents contradict the configuration.
    Misconfigured(String),
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

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.read_keys().set.clone()
    }

    /// The keys, unless they are due for a refresh (or none were fetched
    /// yet from a remote source).
    fn fresh_keys(&self) -> Option<Arc<KeySet>> {
        let k = self.read_keys();
        let fresh = match k.fetched_at {
            None => !k.set.is_empty() || self.source == JwksSource::Fixed,
            Some(t) => self.clock.now() < t + self.max_age,
        };
        fresh.then(|| k.set.clone())
    }

    /// Keys to check a token with: fresh ones, refreshed ones, or, while
    /// the issuer cannot be reached, the old ones for one more max age.
    async fn usable_keys(&self) -> Result<Arc<KeySet>, AuthFailure> {
        if let Some(set) = self.fresh_keys() {
            return Ok(set);
        }
        let outcome = self.refresh().await;
        if let Some(set) = self.fresh_keys() {
            return Ok(set);
        }
        let k = self.read_keys();
        match outcome {
            Refresh::Failed {
                retry_after_secs,
                misconfigured,
            } => match k.fetched_at {
                Some(t) if self.clock.now() < t + self.max_age * 2 && !k.set.is_empty() => {
                    Ok(k.set.clone())
                }
                _ => Err(unavailable(retry_after_secs, misconfigured)),
            },
            Refresh::Current | Refresh::Fixed => Ok(k.set.clone()),
        }
    }

    /// Fetches the keys unless a fetch is not due yet (back-off, or a
    /// recent success); concurrent callers wait for one fetch and share its
    /// result.
    async fn refresh(&self) -> Refresh {
        if self.source == JwksSource::Fixed {
            return Refresh::Fixed;
        }
        let seen = self.fetches_done.load(Ordering::SeqCst);
        let mut st = self.fetch.lock().await;
        let now = self.clock.now();
        let finished_meanwhile = self.fetches_done.load(Ordering::SeqCst) != seen;
        if !finished_meanwhile && st.not_before.is_none_or(|t| now >= t) {
            let result = self.fetch_keys().await;
            let now = self.clock.now();
            match result {
                Ok(set) => {
                    tracing::info!(keys = set.len(), "fetched the issuer's signing keys");
                    let mut k = self.keys.write().unwrap_or_else(|e| e.into_inner());
                    if set.withdraws_any_of(&k.set) {
                        k.generation += 1;
                    }
                    k.set = Arc::new(set);
                    k.fetched_at = Some(now);
                    st.failures = 0;
                    st.misconfigured = false;
                    st.reported = None;
                    st.not_before = Some(now + REFRESH_INTERVAL);
                }
                Err(e) => {
                    st.failures = st.failures.saturating_add(1);
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1 << st.failures.min(16).saturating_sub(1))
                        .min(REFRESH_INTERVAL);
                    st.not_before = Some(now + backoff);
                    let retry_in_secs = backoff.as_secs();
                    st.misconfigured = matches!(e, FetchError::Misconfigured(_));
                    match e {
                        FetchError::Unreachable(e) => tracing::warn!(
                            error = %e, failures = st.failures, retry_in_secs,
                            "cannot fetch the issuer's signing keys; keeping the current ones"
                        ),
                        // Once as an error (an operator must act), then quietly.
                        FetchError::Misconfigured(e) if st.reported.as_ref() != Some(&e) => {
                            tracing::error!(
                                error = %e, failures = st.failures, retry_in_secs,
                                "the issuer's documents do not match the configuration: no token can be checked until it is fixed"
                            );
                            st.reported = Some(e);
                        }
                        FetchError::Misconfigured(e) => tracing::debug!(
                            error = %e, failures = st.failures, "the issuer is still misconfigured"
                        ),
                    }
                }
            }
            self.fetches_done.fetch_add(1, Ordering::SeqCst);
        }
        if st.failures == 0 {
            return Refresh::Current;
        }
        let wait = st.not_before.map_or(0, |t| {
            let secs = (t - self.clock.now()).as_seconds_f64().ceil();
            if secs > 0.0 { secs as u64 } else { 0 }
        });
        Refresh::Failed {
            retry_after_secs: wait.clamp(1, REFRESH_INTERVAL.as_secs()),
            misconfigured: st.misconfigured,
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, FetchError> {
        use FetchError::{Misconfigured, Unreachable};
        let http = self
            .http
            .get_or_init(jwks_http_client)
            .as_ref()
            .map_err(|e| Misconfigured(e.clone()))?;
        let url = match &self.source {
            JwksSource::Url(u) => u.clone(),
            JwksSource::Discovery(issuer) => {
                #[derive(Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                }
                let d = discovery_url(issuer);
                check_fetch_url(&d).map_err(|e| Misconfigured(format!("issuer {issuer:?} {e}")))?;
                let doc: Discovery = serde_json::from_slice(&get(http, &d).await?)
                    .map_err(|e| Unreachable(format!("{d}: not a discovery document: {e}")))?;
                // OpenID Connect Discovery §4.3: the document must be the
                // configured issuer's own.
                if doc.issuer != *issuer {
                    return Err(Misconfigured(format!(
                        "{d} names issuer {:?}, not PORTAL_ISSUER {issuer:?}",
                        doc.issuer
                    )));
                }
                doc.jwks_uri
            }
            JwksSource::Fixed => return Err(Misconfigured("no JWKS source".into())),
        };
        check_fetch_url(&url).map_err(|e| Misconfigured(format!("JWKS URL {url:?} {e}")))?;
        let body = get(http, &url).await?;
        let set = std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(KeySet::from_jwks_json)
            .map_err(|e| Unreachable(format!("{url}: {e}")))?;
        if set.is_empty() {
            return Err(Unreachable(format!(
                "{url}: no RSA, P-256 or P-384 signing key with a kid"
            )));
        }
        Ok(set)
    }

    fn check(&self, token: &str, header: &RawHeader, keys: &KeySet) -> Result<Caller, AuthFailure> {
        let (alg, family) = header.algorithm()?;
        let kid = header.kid.as_deref().ok_or(AuthFailure::UnknownKey)?;
        let key = keys.keys.get(kid).ok_or(AuthFailure::UnknownKey)?;
        if key.family != family || key.alg.is_some_and(|a| a != alg) {
            return Err(AuthFailure::Algorithm);
        }
        // Signature only: the library's time checks use the system clock and
        // its issuer/audience checks skip absent claims, so we do those below.
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &v).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => {
                        AuthFailure::Signature
                    }
                    K::InvalidAlgorithm => AuthFailure::Algorithm,
                    K::Json(_) => AuthFailure::Claims("a claim is missing or has the wrong type"),
                    _ => AuthFailure::Malformed,
                }
            })?;
        let raw = data.claims;
        let c = Claims::deserialize(&raw)
            .map_err(|_| AuthFailure::Claims("a claim is missing or has the wrong type"))?;
        if c.iss != self.settings.issuer {
            return Err(AuthFailure::Issuer);
        }
        if !c.aud.contains(&self.settings.audience) {
            return Err(AuthFailure::Audience);
        }
        // Cognito marks its ID tokens; only access tokens grant access.
        if c.token_use.as_deref().is_some_and(|u| u != "access") {
            return Err(AuthFailure::TokenType);
        }
        // An ID token whose `aud` is this API (one Entra app registration
        // for both the API and the page) still grants nothing.
        if c.nonce.is_some() || c.at_hash.is_some() || c.c_hash.is_some() {
            return Err(AuthFailure::TokenType);
        }
        let now = self.clock.now().unix_timestamp() as f64;
        if !c.exp.is_finite() || c.exp + (LEEWAY_SECS as f64) < now {
            return Err(AuthFailure::Expired);
        }
        if let Some(nbf) = c.nbf
            && (!nbf.is_finite() || nbf - (LEEWAY_SECS as f64) > now)
        {
            return Err(AuthFailure::NotYetValid);
        }
        self.caller(&c, &raw)
    }

    /// Who the verified token names, and what it grants.
    fn caller(&self, c: &Claims, raw: &serde_json::Value) -> Result<Caller, AuthFailure> {
        let tenant = match string_claim(raw, &self.settings.tenant_claim)? {
            Some(t) => TenantId::parse(t).map_err(|_| AuthFailure::Claims("tenant claim"))?,
            None => self
                .settings
                .default_tenant
                .clone()
                .ok_or(AuthFailure::NoTenant)?,
        };
        // `sub` stands in only for an absent user claim (a null one was refused).
        let user = string_claim(raw, &self.settings.user_claim)?
            .or(c.sub.as_deref())
            .ok_or(AuthFailure::Claims("no user claim or sub"))
            .and_then(|u| UserId::parse(u).map_err(|_| AuthFailure::Claims("user claim")))?;
        let auth_time = match c.auth_time {
            Some(t) if t.is_finite() => Some(t as i64),
            Some(_) => return Err(AuthFailure::Claims("auth_time")),
            None => None,
        };
        let mut names: Vec<&str> = Vec::new();
        if let Some(s) = &c.scp {
            names.extend(s.items());
        }
        if let Some(s) = &c.scope {
            names.extend(s.split(' ').filter(|s| !s.is_empty()));
        }
        if let Some(r) = &c.roles {
            names.extend(r.iter().map(String::as_str));
        }
        let device = c
            .device_id
            .as_deref()
            .map(|d| DeviceId::parse(d).map_err(|_| AuthFailure::Claims("device_id")))
            .transpose()?;
        Ok(Caller {
            tenant,
            user,
            device,
            permissions: Permissions::from_names(names),
            expires_at: c.exp as i64,
            auth_time,
        })
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

/// What `{issuer}/.well-known/openid-configuration` names as its `issuer`
/// (`portal serve` compares it with `PORTAL_ISSUER` at start). `Err`: the
/// document could not be fetched or read.
pub async fn discovered_issuer(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
    }
    let d = discovery_url(issuer);
    check_fetch_url(&d).map_err(|e| format!("{d} {e}"))?;
    let body = get(http, &d).await.map_err(|e| match e {
        FetchError::Unreachable(e) | FetchError::Misconfigured(e) => e,
    })?;
    serde_json::from_slice::<Discovery>(&body)
        .map(|doc| doc.issuer)
        .map_err(|e| format!("{d}: not a discovery document: {e}"))
}

/// OIDC Discovery §4: the issuer with any trailing slash removed, then
/// `/.well-known/openid-configuration`.
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// A claim that may be absent but, when present, must be a string.
fn string_claim<'a>(
    claims: &'a serde_json::Value,
    name: &str,
) -> Result<Option<&'a str>, AuthFailure> {
    match claims.get(name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthFailure::Claims(
            "a claim is missing or has the wrong type",
        )),
    }
}

/// GETs `url`, reading at most `MAX_DOCUMENT` bytes of a 2xx answer.
async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let fail = |e: String| FetchError::Unreachable(format!("{url}: {e}"));
    let mut resp = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.to_string()))?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(fail(format!("document over {MAX_DOCUMENT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Splits and decodes the header, refusing what no key could make valid.
fn parse_header(token: &str) -> Result<RawHeader, AuthFailure> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthFailure::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| AuthFailure::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&bytes).map_err(|_| AuthFailure::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthFailure::Critical);
    }
    if header.typ.as_deref().is_some_and(|t| !acceptable_typ(t)) {
        return Err(AuthFailure::TokenType);
    }
    header.algorithm()?;
    if header.kid.is_none() {
        return Err(AuthFailure::UnknownKey);
    }
    Ok(header)
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
