//! What a token says: its signature checked against a key, its claims
//! typed and checked, and the caller it names.

use super::JwtVerifier;
use super::LEEWAY_SECS;
use super::bearer::RawHeader;
use super::keys::KeySet;
use crate::domain::caller::{Caller, Permissions};
use crate::domain::error::AuthFailure;
use crate::domain::ids::{DeviceId, TenantId, UserId};
use jsonwebtoken::Validation;
use serde::{Deserialize, Deserializer};

/// A claim or header that may be absent but, when present, must have its
/// type: `null` is not "absent".
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
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

impl JwtVerifier {
    pub(super) fn check(
        &self,
        token: &str,
        header: &RawHeader,
        keys: &KeySet,
    ) -> Result<Caller, AuthFailure> {
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
