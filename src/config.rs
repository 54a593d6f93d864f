//! Configuration from environment variables, validated once at start. A bad
//! or missing value stops the process with a message naming the variable.

use crate::adapters::jwt::{JwksSource, JwtSettings, KeySet};
use crate::domain::ids::TenantId;
use std::time::Duration;

pub const DEFAULT_KEY_RATE_LIMIT: u32 = 10;
pub const DEFAULT_HELPDESK_RATE_LIMIT: u32 = 200;
/// Default ceiling on an incident's helpdesk limit
/// (`PORTAL_INCIDENT_MAX_RATE_LIMIT`).
pub const DEFAULT_INCIDENT_MAX_RATE_LIMIT: u32 = 5_000;
/// `PORTAL_METRICS_NAMESPACE` on Lambda when unset.
pub const DEFAULT_METRICS_NAMESPACE: &str = "RecoveryPortal";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// Which adapters back the ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In-process store and AES-256-GCM cipher (local server, tests).
    Embedded,
    /// DynamoDB tables `<prefix>-devices|audit|rate_limits` and a KMS key.
    Aws {
        table_prefix: String,
        kms_key_id: Option<String>,
    },
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
    /// Fetches discovery documents and keys; built here so that a platform
    /// that cannot provide it stops the process at start.
    pub jwks_client: reqwest::Client,
}

impl AuthConfig {
    pub fn settings(&self) -> JwtSettings {
        JwtSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            default_tenant: self.default_tenant.clone(),
            tenant_claim: self.tenant_claim.clone(),
            user_claim: self.user_claim.clone(),
        }
    }

    /// Where keys are refreshed from. Inline keys (`PORTAL_JWKS`) are the
    /// whole set: nothing is fetched, so an unknown `kid` is a 401 and never
    /// replaces them with what the network answers.
    pub fn source(&self) -> JwksSource {
        if self.jwks.is_some() {
            return JwksSource::Fixed;
        }
        match &self.jwks_url {
            Some(u) => JwksSource::Url(u.clone()),
            None => JwksSource::Discovery(self.issuer.clone()),
        }
    }

    /// The initial key set: the inline JWKS, or empty (fetched on first use).
    pub fn initial_keys(&self) -> KeySet {
        self.jwks
            .as_deref()
            .map(|j| KeySet::from_jwks_json(j).unwrap_or_default())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// None only for `portal serve`, which then is its own identity provider.
    pub auth: Option<AuthConfig>,
    pub key_rate_limit: u32,
    /// Keys per helpdesk agent per rolling hour (`PORTAL_HELPDESK_RATE_LIMIT`).
    pub helpdesk_rate_limit: u32,
    /// The highest helpdesk limit an incident may set
    /// (`PORTAL_INCIDENT_MAX_RATE_LIMIT`).
    pub incident_max_rate_limit: u32,
    /// CloudWatch namespace of the EMF metrics (`PORTAL_METRICS_NAMESPACE`);
    /// `None`: no metrics. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) it
    /// defaults to `RecoveryPortal`; `PORTAL_METRICS_NAMESPACE=off` turns
    /// metrics off.
    pub metrics_namespace: Option<String>,
    pub backend: Backend,
    /// `PORTAL_WEB_MAX_AGE`: the page asks for a sign-in at most this many
    /// seconds old (`max_age`), and a disclosure needs one (`auth_time`).
    pub web_max_age: Option<u64>,
}

/// Accepted `PORTAL_WEB_MAX_AGE` values, in seconds.
pub const WEB_MAX_AGE_SECS: std::ops::RangeInclusive<u64> = 60..=86_400;

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

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `lookup` returns a variable's value; empty counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let auth = match get("PORTAL_ISSUER") {
            None => None,
            Some(issuer) => {
                if let Err(e) = crate::adapters::jwt::check_fetch_url(&issuer) {
                    return Err(err(
                        "PORTAL_ISSUER",
                        format!("{e}, e.g. https://login.microsoftonline.com/<tenant>/v2.0"),
                    ));
                }
                let audience = get("PORTAL_AUDIENCE").ok_or_else(|| {
                    err("PORTAL_AUDIENCE", "is required when PORTAL_ISSUER is set")
                })?;
                let jwks = get("PORTAL_JWKS");
                if let Some(j) = &jwks {
                    let set = KeySet::from_jwks_json(j).map_err(|e| err("PORTAL_JWKS", e))?;
                    if set.is_empty() {
                        return Err(err(
                            "PORTAL_JWKS",
                            "holds no RSA, P-256 or P-384 signing key with a kid",
                        ));
                    }
                }
                let jwks_url = get("PORTAL_JWKS_URL");
                if let Some(u) = &jwks_url {
                    crate::adapters::jwt::check_fetch_url(u)
                        .map_err(|e| err("PORTAL_JWKS_URL", e))?;
                }
                let jwks_max_age = match get("PORTAL_JWKS_MAX_AGE") {
                    None => crate::adapters::jwt::DEFAULT_JWKS_MAX_AGE,
                    Some(v) => v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| crate::adapters::jwt::JWKS_MAX_AGE_SECS.contains(n))
                        .map(Duration::from_secs)
                        .ok_or_else(|| {
                            let r = crate::adapters::jwt::JWKS_MAX_AGE_SECS;
                            err(
                                "PORTAL_JWKS_MAX_AGE",
                                format!(
                                    "must be a whole number of seconds from {} to {}, got {v:?}",
                                    r.start(),
                                    r.end()
                                ),
                            )
                        })?,
                };
                let default_tenant = get("PORTAL_DEFAULT_TENANT")
                    .map(|t| {
                        TenantId::parse(&t).map_err(|e| err("PORTAL_DEFAULT_TENANT", e.to_string()))
                    })
                    .transpose()?;
                let roots = match get("PORTAL_TLS_ROOTS").as_deref().map(str::trim) {
                    None | Some("amazon") => crate::adapters::jwt::IdpRoots::Compiled,
                    Some("system") => crate::adapters::jwt::IdpRoots::System,
                    Some(other) => {
                        return Err(err(
                            "PORTAL_TLS_ROOTS",
                            format!("must be `amazon` or `system`, not {other:?}"),
                        ));
                    }
                };
                let jwks_client =
                    crate::adapters::jwt::jwks_http_client_with(roots).map_err(|e| {
                        let var = if jwks_url.is_some() {
                            "PORTAL_JWKS_URL"
                        } else {
                            "PORTAL_ISSUER"
                        };
                        err(var, e)
                    })?;
                let tenant_claim = claim_name(
                    "PORTAL_TENANT_CLAIM",
                    get("PORTAL_TENANT_CLAIM"),
                    crate::adapters::jwt::DEFAULT_TENANT_CLAIM,
                )?;
                let user_claim = claim_name(
                    "PORTAL_USER_CLAIM",
                    get("PORTAL_USER_CLAIM"),
                    crate::adapters::jwt::DEFAULT_USER_CLAIM,
                )?;
                Some(AuthConfig {
                    issuer,
                    audience,
                    jwks,
                    jwks_url,
                    default_tenant,
                    tenant_claim,
                    user_claim,
                    jwks_max_age,
                    jwks_client,
                })
            }
        };
        if auth.is_none() {
            for var in [
                "PORTAL_AUDIENCE",
                "PORTAL_JWKS",
                "PORTAL_JWKS_URL",
                "PORTAL_JWKS_MAX_AGE",
                "PORTAL_TENANT_CLAIM",
                "PORTAL_USER_CLAIM",
            ] {
                if get(var).is_some() {
                    return Err(ConfigError {
                        var: "PORTAL_ISSUER",
                        problem: format!("is required when {var} is set"),
                    });
                }
            }
        }
        let key_rate_limit = match get("PORTAL_KEY_RATE_LIMIT") {
            None => DEFAULT_KEY_RATE_LIMIT,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    err(
                        "PORTAL_KEY_RATE_LIMIT",
                        format!("must be a whole number from 1 to 10000, got {v:?}"),
                    )
                })?,
        };
        let helpdesk_rate_limit = match get("PORTAL_HELPDESK_RATE_LIMIT") {
            None => DEFAULT_HELPDESK_RATE_LIMIT,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| {
                    err(
                        "PORTAL_HELPDESK_RATE_LIMIT",
                        format!("must be a whole number from 1 to 100000, got {v:?}"),
                    )
                })?,
        };
        let incident_max_rate_limit = match get("PORTAL_INCIDENT_MAX_RATE_LIMIT") {
            None => DEFAULT_INCIDENT_MAX_RATE_LIMIT,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| {
                    err(
                        "PORTAL_INCIDENT_MAX_RATE_LIMIT",
                        format!("must be a whole number from 1 to 100000, got {v:?}"),
                    )
                })?,
        };
        let metrics_namespace = match get("PORTAL_METRICS_NAMESPACE") {
            Some(v) if v == "off" => None,
            Some(v) => {
                // CloudWatch: 1-255 of A-Z a-z 0-9 . - _ / # : and no leading colon.
                let ok = v.len() <= 255
                    && !v.starts_with(':')
                    && v.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#' | b':')
                    });
                if !ok {
                    return Err(err(
                        "PORTAL_METRICS_NAMESPACE",
                        "must be a CloudWatch namespace (A-Z a-z 0-9 . - _ / # :), or `off`",
                    ));
                }
                Some(v)
            }
            None => get("AWS_LAMBDA_FUNCTION_NAME").map(|_| DEFAULT_METRICS_NAMESPACE.to_owned()),
        };
        let backend = match get("PORTAL_BACKEND").as_deref() {
            None | Some("embedded") => Backend::Embedded,
            Some("aws") => {
                let table_prefix =
                    get("PORTAL_TABLE_PREFIX").unwrap_or_else(|| "recovery-portal".into());
                if !table_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                    || table_prefix.len() > 200
                {
                    return Err(err(
                        "PORTAL_TABLE_PREFIX",
                        "must use only A-Z a-z 0-9 . _ -",
                    ));
                }
                Backend::Aws {
                    table_prefix,
                    kms_key_id: get("PORTAL_KMS_KEY_ID"),
                }
            }
            Some(other) => {
                return Err(err(
                    "PORTAL_BACKEND",
                    format!("must be `embedded` or `aws`, got {other:?}"),
                ));
            }
        };
        let web_max_age = match get("PORTAL_WEB_MAX_AGE") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|n| WEB_MAX_AGE_SECS.contains(n))
                    .ok_or_else(|| {
                        err(
                            "PORTAL_WEB_MAX_AGE",
                            format!(
                                "must be a whole number of seconds from {} to {}, got {v:?}",
                                WEB_MAX_AGE_SECS.start(),
                                WEB_MAX_AGE_SECS.end()
                            ),
                        )
                    })?,
            ),
        };
        Ok(Self {
            auth,
            key_rate_limit,
            helpdesk_rate_limit,
            incident_max_rate_limit,
            metrics_namespace,
            backend,
            web_max_age,
        })
    }

    /// The Lambda functions always verify real tokens.
    pub fn require_auth(&self) -> Result<&AuthConfig, ConfigError> {
        self.auth
            .as_ref()
            .ok_or_else(|| err("PORTAL_ISSUER", "is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn helpdesk_limit_and_metrics_namespace() {
        let c = cfg(&[
            ("PORTAL_HELPDESK_RATE_LIMIT", "100000"),
            ("AWS_LAMBDA_FUNCTION_NAME", "get-recovery-key"),
        ])
        .unwrap();
        assert_eq!(c.helpdesk_rate_limit, 100_000);
        assert_eq!(c.metrics_namespace.as_deref(), Some("RecoveryPortal"));
        let c = cfg(&[
            ("PORTAL_METRICS_NAMESPACE", "Acme/Recovery"),
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
        ])
        .unwrap();
        assert_eq!(c.metrics_namespace.as_deref(), Some("Acme/Recovery"));
        let c = cfg(&[
            ("PORTAL_METRICS_NAMESPACE", "off"),
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
        ])
        .unwrap();
        assert_eq!(c.metrics_namespace, None);
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            cfg(&[("PORTAL_ISSUER", "ftp://x")]).unwrap_err().var,
            "PORTAL_ISSUER"
        );
        assert_eq!(
            cfg(&[("PORTAL_ISSUER", "https://x")]).unwrap_err().var,
            "PORTAL_AUDIENCE"
        );
        let base = [("PORTAL_ISSUER", "https://x"), ("PORTAL_AUDIENCE", "a")];
        for (var, val) in [
            ("PORTAL_JWKS", "{"),
            ("PORTAL_JWKS", r#"{"keys":[]}"#),
            ("PORTAL_JWKS_URL", "file:///etc/passwd"),
            ("PORTAL_DEFAULT_TENANT", "a b"),
            ("PORTAL_KEY_RATE_LIMIT", "0"),
            ("PORTAL_KEY_RATE_LIMIT", "ten"),
            ("PORTAL_BACKEND", "s3"),
            ("PORTAL_JWKS_URL", "http://keys.example.test/jwks"),
            ("PORTAL_JWKS_MAX_AGE", "59"),
            ("PORTAL_JWKS_MAX_AGE", "86401"),
            ("PORTAL_JWKS_MAX_AGE", "1h"),
            ("PORTAL_JWKS_MAX_AGE", "-5"),
            ("PORTAL_HELPDESK_RATE_LIMIT", "0"),
            ("PORTAL_HELPDESK_RATE_LIMIT", "100001"),
            ("PORTAL_HELPDESK_RATE_LIMIT", "many"),
            ("PORTAL_INCIDENT_MAX_RATE_LIMIT", "0"),
            ("PORTAL_INCIDENT_MAX_RATE_LIMIT", "100001"),
            ("PORTAL_METRICS_NAMESPACE", "bad namespace"),
            ("PORTAL_METRICS_NAMESPACE", ":x"),
            ("PORTAL_TLS_ROOTS", "mozilla"),
            ("PORTAL_TENANT_CLAIM", "has space"),
            ("PORTAL_USER_CLAIM", "t\u{e9}"),
            ("PORTAL_WEB_MAX_AGE", "59"),
            ("PORTAL_WEB_MAX_AGE", "86401"),
            ("PORTAL_WEB_MAX_AGE", "5m"),
        ] {
            let mut v = base.to_vec();
            v.push((var, val));
            assert_eq!(cfg(&v).unwrap_err().var, var, "{var}={val}");
        }
        assert_eq!(
            cfg(&[("PORTAL_AUDIENCE", "a")]).unwrap_err().var,
            "PORTAL_ISSUER"
        );
    }

    #[test]
    fn claims_and_max_age() {
        let base = [("PORTAL_ISSUER", "https://x"), ("PORTAL_AUDIENCE", "a")];
        let c = cfg(&base).unwrap();
        let a = c.auth.unwrap();
        assert_eq!(
            (a.tenant_claim.as_str(), a.user_claim.as_str()),
            ("tid", "oid")
        );
        assert_eq!(c.web_max_age, None);
        let mut v = base.to_vec();
        v.extend([
            ("PORTAL_TENANT_CLAIM", "https://example.com/tenant"),
            ("PORTAL_USER_CLAIM", "sub"),
            ("PORTAL_WEB_MAX_AGE", "600"),
        ]);
        let c = cfg(&v).unwrap();
        assert_eq!(c.web_max_age, Some(600));
        let s = c.auth.unwrap().settings();
        assert_eq!(s.tenant_claim, "https://example.com/tenant");
        assert_eq!(s.user_claim, "sub");
        assert_eq!(
            cfg(&[("PORTAL_USER_CLAIM", "sub")]).unwrap_err().var,
            "PORTAL_ISSUER"
        );
    }

    #[test]
    fn jwks_max_age() {
        let base = [("PORTAL_ISSUER", "https://x"), ("PORTAL_AUDIENCE", "a")];
        let age = |v: Option<&str>| {
            let mut pairs = base.to_vec();
            pairs.extend(v.map(|v| ("PORTAL_JWKS_MAX_AGE", v)));
            cfg(&pairs).map(|c| c.auth.unwrap().jwks_max_age.as_secs())
        };
        assert_eq!(age(None), Ok(3600));
        assert_eq!(age(Some("60")), Ok(60));
        assert_eq!(age(Some("86400")), Ok(86400));
        let e = age(Some("30")).unwrap_err();
        assert_eq!(e.var, "PORTAL_JWKS_MAX_AGE");
        assert!(e.problem.contains("60 to 86400"), "{e}");
        assert_eq!(
            cfg(&[("PORTAL_JWKS_MAX_AGE", "600")]).unwrap_err().var,
            "PORTAL_ISSUER"
        );
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert!(c.auth.is_none());
        assert_eq!(c.key_rate_limit, 10);
        assert_eq!(c.helpdesk_rate_limit, DEFAULT_HELPDESK_RATE_LIMIT);
        assert_eq!(c.incident_max_rate_limit, DEFAULT_INCIDENT_MAX_RATE_LIMIT);
        assert_eq!(
            c.metrics_namespace, None,
            "no metrics off Lambda by default"
        );
        assert_eq!(c.backend, Backend::Embedded);
        assert!(c.require_auth().is_err());
        let c = cfg(&[("PORTAL_BACKEND", "aws")]).unwrap();
        assert_eq!(
            c.backend,
            Backend::Aws {
                table_prefix: "recovery-portal".into(),
                kms_key_id: None
            }
        );
    }

    #[test]
    fn issuer_and_jwks_url_must_be_https_except_on_loopback() {
        for var in ["PORTAL_ISSUER", "PORTAL_JWKS_URL"] {
            let with = |value: &str| {
                let mut v = vec![("PORTAL_ISSUER", "https://login.example.test/t/v2.0")];
                v.push(("PORTAL_AUDIENCE", "api://a"));
                v.retain(|(k, _)| *k != var);
                v.push((var, value));
                cfg(&v)
            };
            for bad in [
                "http://login.example.test/t/v2.0",
                "http://127.0.0.1.evil.example/",
                "http://localhost.evil.example/",
                "http://evil.example/?x=http://127.0.0.1",
                "http://user@evil.example/",
                "http://10.0.0.1/",
                "http://0.0.0.0:8080/",
                "ftp://127.0.0.1/",
                "https:/login.example.test",
                "https://",
                "login.example.test",
            ] {
                assert_eq!(with(bad).unwrap_err().var, var, "{var}={bad}");
            }
            for good in [
                "https://login.example.test/t/v2.0",
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/realms/x",
                "http://localhost:9000/x",
                "http://[::1]:9000",
            ] {
                assert!(with(good).is_ok(), "{var}={good}");
            }
        }
    }
}
