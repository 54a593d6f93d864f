//! Token verification settings (`PORTAL_ISSUER` and what depends on it),
//! parsed into plain values. The JWT adapter builds its HTTP client and
//! verifier from them at init; nothing here opens a file or a socket.

use super::{ConfigError, err};
use crate::domain::ids::TenantId;
use std::time::Duration;

/// Default lifetime of fetched keys (`PORTAL_JWKS_MAX_AGE`).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Accepted `PORTAL_JWKS_MAX_AGE` values, in seconds.
pub const JWKS_MAX_AGE_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;
/// The claim naming the caller's tenant unless `PORTAL_TENANT_CLAIM` says.
pub const DEFAULT_TENANT_CLAIM: &str = "tid";
/// The claim naming the caller unless `PORTAL_USER_CLAIM` says (with `sub`
/// as the fallback).
pub const DEFAULT_USER_CLAIM: &str = "oid";

/// The settings that only mean something with an issuer.
const NEEDS_ISSUER: [&str; 6] = [
    "PORTAL_AUDIENCE",
    "PORTAL_JWKS",
    "PORTAL_JWKS_URL",
    "PORTAL_JWKS_MAX_AGE",
    "PORTAL_TENANT_CLAIM",
    "PORTAL_USER_CLAIM",
];

/// Which root CAs the client that fetches discovery documents and JWKS
/// trusts (`PORTAL_TLS_ROOTS`).
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

/// Token verification settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    /// Inline JWKS JSON (`PORTAL_JWKS`): no network at cold start.
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
    pub default_tenant: Option<TenantId>,
    /// `PORTAL_TENANT_CLAIM` (default `tid`) and `PORTAL_USER_CLAIM`
    /// (default `oid`, with `sub` as the fallback).
    pub tenant_claim: String,
    pub user_claim: String,
    /// How long fetched keys are used before they are fetched again
    /// (`PORTAL_JWKS_MAX_AGE`); inline keys never expire.
    pub jwks_max_age: Duration,
    /// The roots the key-fetching client trusts (`PORTAL_TLS_ROOTS`).
    pub tls_roots: IdpRoots,
}

impl AuthConfig {
    /// The variable a failure to build the key-fetching client is blamed
    /// on: where the keys come from.
    pub fn key_source_var(&self) -> &'static str {
        if self.jwks_url.is_some() {
            "PORTAL_JWKS_URL"
        } else {
            "PORTAL_ISSUER"
        }
    }
}

/// Everything `PORTAL_ISSUER` brings, read through `get` (trimmed, empty
/// as unset); `None` without an issuer, which then forbids the rest.
pub(super) fn from_lookup(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AuthConfig>, ConfigError> {
    let Some(issuer) = get("PORTAL_ISSUER") else {
        return no_issuer(NEEDS_ISSUER.into_iter().find(|v| get(v).is_some()));
    };
    check_fetch_url(&issuer).map_err(|e| {
        err(
            "PORTAL_ISSUER",
            format!("{e}, e.g. https://login.microsoftonline.com/<tenant>/v2.0"),
        )
    })?;
    let audience = get("PORTAL_AUDIENCE")
        .ok_or_else(|| err("PORTAL_AUDIENCE", "is required when PORTAL_ISSUER is set"))?;
    let jwks = get("PORTAL_JWKS");
    if let Some(j) = &jwks {
        inline_jwks(j)?;
    }
    let jwks_url = get("PORTAL_JWKS_URL");
    if let Some(u) = &jwks_url {
        check_fetch_url(u).map_err(|e| err("PORTAL_JWKS_URL", e))?;
    }
    let jwks_max_age = jwks_max_age(get("PORTAL_JWKS_MAX_AGE"))?;
    let default_tenant = get("PORTAL_DEFAULT_TENANT")
        .map(|t| TenantId::parse(&t).map_err(|e| err("PORTAL_DEFAULT_TENANT", e.to_string())))
        .transpose()?;
    let tls_roots = tls_roots(get("PORTAL_TLS_ROOTS"))?;
    let tenant_claim = claim_name(
        "PORTAL_TENANT_CLAIM",
        get("PORTAL_TENANT_CLAIM"),
        DEFAULT_TENANT_CLAIM,
    )?;
    let user_claim = claim_name(
        "PORTAL_USER_CLAIM",
        get("PORTAL_USER_CLAIM"),
        DEFAULT_USER_CLAIM,
    )?;
    Ok(Some(AuthConfig {
        issuer,
        audience,
        jwks,
        jwks_url,
        default_tenant,
        tenant_claim,
        user_claim,
        jwks_max_age,
        tls_roots,
    }))
}

/// Without an issuer, a setting that needs one (`set`) is an error.
fn no_issuer(set: Option<&'static str>) -> Result<Option<AuthConfig>, ConfigError> {
    match set {
        None => Ok(None),
        Some(var) => Err(err(
            "PORTAL_ISSUER",
            format!("is required when {var} is set"),
        )),
    }
}

/// `PORTAL_JWKS` must hold at least one key the verifier can use. The
/// adapter's parser decides, so that the two never disagree.
fn inline_jwks(json: &str) -> Result<(), ConfigError> {
    let set =
        crate::adapters::jwt::KeySet::from_jwks_json(json).map_err(|e| err("PORTAL_JWKS", e))?;
    if set.is_empty() {
        return Err(err(
            "PORTAL_JWKS",
            "holds no RSA, P-256 or P-384 signing key with a kid",
        ));
    }
    Ok(())
}

/// `PORTAL_JWKS_MAX_AGE`: whole seconds in `JWKS_MAX_AGE_SECS`.
fn jwks_max_age(value: Option<String>) -> Result<Duration, ConfigError> {
    let Some(v) = value else {
        return Ok(DEFAULT_JWKS_MAX_AGE);
    };
    v.parse::<u64>()
        .ok()
        .filter(|n| JWKS_MAX_AGE_SECS.contains(n))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            let r = JWKS_MAX_AGE_SECS;
            err(
                "PORTAL_JWKS_MAX_AGE",
                format!(
                    "must be a whole number of seconds from {} to {}, got {v:?}",
                    r.start(),
                    r.end()
                ),
            )
        })
}

/// `PORTAL_TLS_ROOTS`: `amazon` (the default: the compiled-in roots) or
/// `system`.
fn tls_roots(value: Option<String>) -> Result<IdpRoots, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("amazon") => Ok(IdpRoots::Compiled),
        Some("system") => Ok(IdpRoots::System),
        Some(other) => Err(err(
            "PORTAL_TLS_ROOTS",
            format!("must be `amazon` or `system`, not {other:?}"),
        )),
    }
}

/// A claim name (`PORTAL_TENANT_CLAIM`, `PORTAL_USER_CLAIM`): 1–256
/// visible ASCII characters, e.g. `tid`, `sub` or Auth0's namespaced
/// `https://example.com/tenant`.
fn claim_name(
    var: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<String, ConfigError> {
    match value {
        None => Ok(default.to_owned()),
        Some(v) if v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic()) => Ok(v),
        Some(v) => Err(err(
            var,
            format!(
                "must be a claim name such as tid, sub or https://example.com/tenant, got {v:?}"
            ),
        )),
    }
}

/// Whether `raw` may be fetched for keys or discovery: `https://`, or
/// `http://` to this host only (127.0.0.0/8, `[::1]`, `localhost`), which
/// tests and local identity providers use. Never credentials in the URL.
/// Checked here at start, and again by the adapter before each fetch.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn jwks_max_age_table() {
        for (value, want) in [
            (None, Some(3600)),
            (some("60"), Some(60)),
            (some("86400"), Some(86_400)),
            (some("59"), None),
            (some("86401"), None),
            (some("1h"), None),
            (some("-5"), None),
        ] {
            let got = jwks_max_age(value.clone());
            assert_eq!(got.as_ref().ok().map(Duration::as_secs), want, "{value:?}");
            if let Err(e) = got {
                assert_eq!(e.var, "PORTAL_JWKS_MAX_AGE");
                assert!(e.problem.contains("from 60 to 86400"), "{e}");
            }
        }
    }

    #[test]
    fn tls_roots_table() {
        for (value, want) in [
            (None, Some(IdpRoots::Compiled)),
            (some("amazon"), Some(IdpRoots::Compiled)),
            (some("system"), Some(IdpRoots::System)),
            (some("mozilla"), None),
        ] {
            assert_eq!(tls_roots(value.clone()).ok(), want, "{value:?}");
        }
        assert_eq!(
            tls_roots(some("mozilla")).unwrap_err().to_string(),
            "PORTAL_TLS_ROOTS: must be `amazon` or `system`, not \"mozilla\""
        );
    }

    #[test]
    fn claim_name_table() {
        for (value, want) in [
            (None, Some("tid")),
            (some("sub"), Some("sub")),
            (
                some("https://example.com/tenant"),
                Some("https://example.com/tenant"),
            ),
            (some("has space"), None),
            (some("t\u{e9}"), None),
            (Some("x".repeat(257)), None),
        ] {
            let got = claim_name("PORTAL_TENANT_CLAIM", value.clone(), "tid");
            assert_eq!(got.as_deref().ok(), want, "{value:?}");
        }
    }

    #[test]
    fn no_issuer_names_the_first_setting_that_needs_one() {
        assert!(no_issuer(None).unwrap().is_none());
        assert_eq!(
            no_issuer(Some("PORTAL_JWKS")).unwrap_err().to_string(),
            "PORTAL_ISSUER: is required when PORTAL_JWKS is set"
        );
    }
}
