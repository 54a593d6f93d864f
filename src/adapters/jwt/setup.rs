//! The verifier from configuration. Configuration only parses settings;
//! the adapter builds its objects from them, once, at init (the function
//! binaries and `portal serve` call these before serving).

use super::fetch::jwks_http_client_with;
use super::{JwksSource, JwtSettings, JwtVerifier, KeySet};
use crate::config::{AuthConfig, ConfigError};
use crate::domain::ports::Clock;
use std::sync::Arc;

/// The client that fetches the issuer's discovery document and keys,
/// trusting `auth.tls_roots`. Built at init so that a platform that cannot
/// provide it stops the process there, naming where keys come from.
pub fn idp_http_client(auth: &AuthConfig) -> Result<reqwest::Client, ConfigError> {
    jwks_http_client_with(auth.tls_roots).map_err(|problem| ConfigError {
        var: auth.key_source_var(),
        problem,
    })
}

impl JwtSettings {
    /// The claims a token must carry under `auth`.
    pub fn of(auth: &AuthConfig) -> Self {
        Self {
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            default_tenant: auth.default_tenant.clone(),
            tenant_claim: auth.tenant_claim.clone(),
            user_claim: auth.user_claim.clone(),
        }
    }
}

impl JwksSource {
    /// Where keys are refreshed from. Inline keys (`PORTAL_JWKS`) are the
    /// whole set: nothing is fetched, so an unknown `kid` is a 401 and never
    /// replaces them with what the network answers.
    pub fn of(auth: &AuthConfig) -> Self {
        if auth.jwks.is_some() {
            return Self::Fixed;
        }
        match &auth.jwks_url {
            Some(u) => Self::Url(u.clone()),
            None => Self::Discovery(auth.issuer.clone()),
        }
    }
}

impl JwtVerifier {
    /// The verifier `auth` describes, fetching with `http` (from
    /// [`idp_http_client`]): inline keys, or none until the first fetch.
    pub fn from_config(auth: &AuthConfig, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        let initial = auth
            .jwks
            .as_deref()
            .map(|j| KeySet::from_jwks_json(j).unwrap_or_default())
            .unwrap_or_default();
        Self::new(JwtSettings::of(auth), initial, JwksSource::of(auth), clock)
            .with_max_age(auth.jwks_max_age)
            .with_http_client(http)
    }
}
