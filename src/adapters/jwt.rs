//! Bearer-token authentication: JWT verification against the issuer's JWKS
//! and the caller identity and permissions the token grants.
//!
//! Only RS256 and ES256 are accepted; `jku`, `x5u` and `jwk` headers are never
//! followed (the keys come from configuration or the issuer's discovery
//! document only); any `crit` header is refused since we implement no
//! extension. Time checks use the injected `Clock` so they are testable.

use crate::domain::caller::{Caller, Permissions};
use crate::domain::error::AuthFailure;
use crate::domain::ids::{TenantId, UserId};
use crate::ports::{Clock, TokenVerifier};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
/// An unknown `kid` triggers at most one JWKS refresh per this interval.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest accepted token: bounds the work an attacker can make us do.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verification settings, from configuration.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub default_tenant: Option<TenantId>,
}

/// Where fresh keys come from when a token names an unknown `kid`.
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
    Ec,
}

/// Parsed signing keys by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, (Family, DecodingKey)>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the RS256/ES256 signing keys and
    /// skipping anything else (encryption keys, other curves, short RSA).
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
            let parsed = match (k.kty.as_str(), k.alg.as_deref()) {
                ("RSA", None | Some("RS256")) => match (k.n, k.e) {
                    (Some(n), Some(e)) if rsa_bits(&n) >= 2048 => {
                        DecodingKey::from_rsa_components(&n, &e)
                            .ok()
                            .map(|d| (Family::Rsa, d))
                    }
                    _ => None,
                },
                ("EC", None | Some("ES256")) if k.crv.as_deref() == Some("P-256") => {
                    match (k.x, k.y) {
                        (Some(x), Some(y)) => DecodingKey::from_ec_components(&x, &y)
                            .ok()
                            .map(|d| (Family::Ec, d)),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(p) = parsed {
                keys.insert(kid, p);
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
}

fn rsa_bits(n_b64: &str) -> usize {
    URL_SAFE_NO_PAD
        .decode(n_b64.trim_end_matches('='))
        .map(|n| n.iter().skip_while(|&&b| b == 0).count() * 8)
        .unwrap_or(0)
}

/// The claims we read. Typed, so a claim of the wrong JSON type fails
/// deserialisation and rejects the token.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: OneOrMany,
    exp: f64,
    nbf: Option<f64>,
    tid: Option<String>,
    oid: Option<String>,
    sub: Option<String>,
    scp: Option<OneOrMany>,
    scope: Option<String>,
    roles: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            Self::One(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The production verifier: JWKS from configuration, refreshed on an
/// unknown `kid` at most once per `REFRESH_INTERVAL`.
pub struct JwtVerifier {
    settings: JwtSettings,
    source: JwksSource,
    keys: RwLock<Arc<KeySet>>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
    clock: Arc<dyn Clock>,
    http: std::sync::OnceLock<reqwest::Client>,
}

impl JwtVerifier {
    pub fn new(
        settings: JwtSettings,
        initial: KeySet,
        source: JwksSource,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            source,
            keys: RwLock::new(Arc::new(initial)),
            refresh: tokio::sync::Mutex::new(None),
            clock,
            http: std::sync::OnceLock::new(),
        }
    }

    fn current_keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the JWKS again unless it was tried less than
    /// `REFRESH_INTERVAL` ago; concurrent callers share one fetch.
    async fn refresh_keys(&self) {
        let url_or_discovery = match &self.source {
            JwksSource::Fixed => return,
            other => other.clone(),
        };
        let mut last = self.refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch(&url_or_discovery).await {
            Ok(set) if !set.is_empty() => {
                tracing::info!(keys = set.len(), "refreshed JWKS");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            }
            Ok(_) => {
                tracing::warn!("JWKS refresh returned no usable signing keys; keeping the old set")
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refresh failed"),
        }
    }

    async fn fetch(&self, source: &JwksSource) -> Result<KeySet, String> {
        let http = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .connect_timeout(Duration::from_secs(2))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        });
        let url = match source {
            JwksSource::Url(u) => u.clone(),
            JwksSource::Discovery(issuer) => {
                #[derive(Deserialize)]
                struct Discovery {
                    jwks_uri: String,
                }
                let d = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc: Discovery = http
                    .get(&d)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                doc.jwks_uri
            }
            JwksSource::Fixed => return Err("no JWKS source".into()),
        };
        let body = http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        KeySet::from_jwks_json(&body)
    }

    fn check(&self, token: &str, header: &RawHeader, keys: &KeySet) -> Result<Caller, AuthFailure> {
        let (alg, family) = match header.alg.as_str() {
            "RS256" => (Algorithm::RS256, Family::Rsa),
            "ES256" => (Algorithm::ES256, Family::Ec),
            _ => return Err(AuthFailure::Algorithm),
        };
        let kid = header.kid.as_deref().ok_or(AuthFailure::UnknownKey)?;
        let (key_family, key) = keys.keys.get(kid).ok_or(AuthFailure::UnknownKey)?;
        if *key_family != family {
            return Err(AuthFailure::Algorithm);
        }
        // Signature only: the library's time checks use the system clock and
        // its issuer/audience checks skip absent claims, so we do those below.
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| {
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
        let c = data.claims;
        if c.iss != self.settings.issuer {
            return Err(AuthFailure::Issuer);
        }
        if !c.aud.items().contains(&self.settings.audience.as_str()) {
            return Err(AuthFailure::Audience);
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
        let tenant = match c.tid.as_deref() {
            Some(t) => TenantId::parse(t).map_err(|_| AuthFailure::Claims("tid"))?,
            None => self
                .settings
                .default_tenant
                .clone()
                .ok_or(AuthFailure::NoTenant)?,
        };
        let user = c
            .oid
            .as_deref()
            .or(c.sub.as_deref())
            .ok_or(AuthFailure::Claims("no oid or sub"))
            .and_then(|u| UserId::parse(u).map_err(|_| AuthFailure::Claims("oid/sub")))?;
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
        Ok(Caller {
            tenant,
            user,
            permissions: Permissions::from_names(names),
            expires_at: c.exp as i64,
        })
    }
}

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
    Ok(header)
}

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let header = parse_header(token)?;
        let keys = self.current_keys();
        match self.check(token, &header, &keys) {
            Err(AuthFailure::UnknownKey) if header.kid.is_some() => {
                // The issuer may have rotated its keys: refresh (or wait for a
                // concurrent refresh) and look once more.
                self.refresh_keys().await;
                self.check(token, &header, &self.current_keys())
            }
            other => other,
        }
    }
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer_token(value: Option<&str>) -> Result<&str, AuthFailure> {
    let v = value.ok_or(AuthFailure::Missing)?;
    let (scheme, token) = v.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(token)
}
