//! Configuration from environment variables, validated once at start. A bad
//! or missing value stops the process with a message naming the variable.

mod auth;

pub use auth::{
    AuthConfig, DEFAULT_JWKS_MAX_AGE, DEFAULT_TENANT_CLAIM, DEFAULT_USER_CLAIM, IdpRoots,
    JWKS_MAX_AGE_SECS, check_fetch_url,
};

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

/// A whole number from 1 to `max` (a rate limit), `default` when unset.
fn limit(
    var: &'static str,
    value: Option<String>,
    default: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                err(
                    var,
                    format!("must be a whole number from 1 to {max}, got {v:?}"),
                )
            }),
    }
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

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `lookup` returns a variable's value; empty counts as unset. Each
    /// group is checked in turn, so the first bad variable is the one named.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let lim = |var, default, max| limit(var, get(var), default, max);
        Ok(Self {
            auth: auth::from_lookup(&get)?,
            key_rate_limit: lim("PORTAL_KEY_RATE_LIMIT", DEFAULT_KEY_RATE_LIMIT, 10_000)?,
            helpdesk_rate_limit: lim(
                "PORTAL_HELPDESK_RATE_LIMIT",
                DEFAULT_HELPDESK_RATE_LIMIT,
                100_000,
            )?,
            incident_max_rate_limit: lim(
                "PORTAL_INCIDENT_MAX_RATE_LIMIT",
                DEFAULT_INCIDENT_MAX_RATE_LIMIT,
                100_000,
            )?,
            metrics_namespace: metrics_namespace(
                get("PORTAL_METRICS_NAMESPACE"),
                get("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            )?,
            backend: backend(get("PORTAL_BACKEND"), &get)?,
            web_max_age: web_max_age(get("PORTAL_WEB_MAX_AGE"))?,
        })
    }

    /// The Lambda functions always verify real tokens.
    pub fn require_auth(&self) -> Result<&AuthConfig, ConfigError> {
        self.auth
            .as_ref()
            .ok_or_else(|| err("PORTAL_ISSUER", "is required"))
    }
}

/// `PORTAL_METRICS_NAMESPACE`: a CloudWatch namespace, `off`, or unset
/// (the default namespace on Lambda, else no metrics).
fn metrics_namespace(
    value: Option<String>,
    on_lambda: bool,
) -> Result<Option<String>, ConfigError> {
    match value {
        Some(v) if v == "off" => Ok(None),
        // CloudWatch: 1-255 of A-Z a-z 0-9 . - _ / # : and no leading colon.
        Some(v)
            if v.len() <= 255
                && !v.starts_with(':')
                && v.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#' | b':')
                }) =>
        {
            Ok(Some(v))
        }
        Some(_) => Err(err(
            "PORTAL_METRICS_NAMESPACE",
            "must be a CloudWatch namespace (A-Z a-z 0-9 . - _ / # :), or `off`",
        )),
        None => Ok(on_lambda.then(|| DEFAULT_METRICS_NAMESPACE.to_owned())),
    }
}

/// `PORTAL_BACKEND` (`embedded`, the default, or `aws` with
/// `PORTAL_TABLE_PREFIX` and `PORTAL_KMS_KEY_ID` read through `get`).
fn backend(
    value: Option<String>,
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Backend, ConfigError> {
    match value.as_deref() {
        None | Some("embedded") => Ok(Backend::Embedded),
        Some("aws") => Ok(Backend::Aws {
            table_prefix: table_prefix(get("PORTAL_TABLE_PREFIX"))?,
            kms_key_id: get("PORTAL_KMS_KEY_ID"),
        }),
        Some(other) => Err(err(
            "PORTAL_BACKEND",
            format!("must be `embedded` or `aws`, got {other:?}"),
        )),
    }
}

/// `PORTAL_TABLE_PREFIX`: up to 200 of A-Z a-z 0-9 . _ -, by default
/// `recovery-portal`.
fn table_prefix(value: Option<String>) -> Result<String, ConfigError> {
    let prefix = value.unwrap_or_else(|| "recovery-portal".into());
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        || prefix.len() > 200
    {
        return Err(err(
            "PORTAL_TABLE_PREFIX",
            "must use only A-Z a-z 0-9 . _ -",
        ));
    }
    Ok(prefix)
}

/// `PORTAL_WEB_MAX_AGE`: whole seconds in `WEB_MAX_AGE_SECS`, or unset.
fn web_max_age(value: Option<String>) -> Result<Option<u64>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    v.parse::<u64>()
        .ok()
        .filter(|n| WEB_MAX_AGE_SECS.contains(n))
        .map(Some)
        .ok_or_else(|| {
            err(
                "PORTAL_WEB_MAX_AGE",
                format!(
                    "must be a whole number of seconds from {} to {}, got {v:?}",
                    WEB_MAX_AGE_SECS.start(),
                    WEB_MAX_AGE_SECS.end()
                ),
            )
        })
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

    fn some(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn metrics_namespace_table() {
        for (value, on_lambda, want) in [
            (None, false, Ok(None)),
            (None, true, Ok(Some("RecoveryPortal"))),
            (some("off"), true, Ok(None)),
            (some("Acme/Recovery"), false, Ok(Some("Acme/Recovery"))),
            (some("a:b#c.d-e_f"), true, Ok(Some("a:b#c.d-e_f"))),
            (some(":x"), true, Err(())),
            (some("bad namespace"), true, Err(())),
            (Some("x".repeat(256)), true, Err(())),
        ] {
            let got = metrics_namespace(value.clone(), on_lambda);
            assert_eq!(
                got.as_ref().map(Option::as_deref).map_err(|_| ()),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn backend_table_prefix_and_web_max_age_tables() {
        assert_eq!(table_prefix(None).unwrap(), "recovery-portal");
        assert_eq!(table_prefix(some("a.b_c-1")).unwrap(), "a.b_c-1");
        for bad in [some("a b"), some("a/b"), Some("x".repeat(201))] {
            assert_eq!(
                table_prefix(bad).unwrap_err().to_string(),
                "PORTAL_TABLE_PREFIX: must use only A-Z a-z 0-9 . _ -"
            );
        }
        let none = |_: &str| None;
        assert_eq!(backend(None, &none).unwrap(), Backend::Embedded);
        assert_eq!(
            backend(some("s3"), &none).unwrap_err().to_string(),
            "PORTAL_BACKEND: must be `embedded` or `aws`, got \"s3\""
        );
        for (value, want) in [
            (None, Some(None)),
            (some("60"), Some(Some(60))),
            (some("86400"), Some(Some(86_400))),
            (some("59"), None),
            (some("5m"), None),
        ] {
            assert_eq!(web_max_age(value.clone()).ok(), want, "{value:?}");
        }
        assert_eq!(
            web_max_age(some("5m")).unwrap_err().to_string(),
            "PORTAL_WEB_MAX_AGE: must be a whole number of seconds from 60 to 86400, got \"5m\""
        );
        assert_eq!(
            limit("PORTAL_KEY_RATE_LIMIT", some("0"), 10, 10_000)
                .unwrap_err()
                .to_string(),
            "PORTAL_KEY_RATE_LIMIT: must be a whole number from 1 to 10000, got \"0\""
        );
        assert_eq!(limit("V", None, 10, 10_000), Ok(10));
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
        let s = c.auth.unwrap();
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
