//! The bearer token: taken from the `Authorization` header, and its JOSE
//! header checked before any key is looked at.

use super::claims::present;
use super::keys::{Family, algorithm_of};
use crate::domain::error::AuthFailure;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Longest accepted token: bounds the work an attacker can make us do.
const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Deserialize)]
pub(super) struct RawHeader {
    alg: String,
    #[serde(default, deserialize_with = "present")]
    pub(super) kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    typ: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: Option<serde_json::Value>,
}

impl RawHeader {
    pub(super) fn algorithm(&self) -> Result<(Algorithm, Family), AuthFailure> {
        algorithm_of(&self.alg).ok_or(AuthFailure::Algorithm)
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

/// Splits and decodes the header, refusing what no key could make valid.
pub(super) fn parse_header(token: &str) -> Result<RawHeader, AuthFailure> {
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
