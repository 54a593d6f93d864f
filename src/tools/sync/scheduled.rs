//! The scheduled Entra sync (functions/entra-sync): the same
//! [`sync_entra`](super::sync_entra) as `portal sync entra`, run on an
//! EventBridge schedule. What differs is only where its inputs come from:
//!
//! - the portal's tenant from `PORTAL_SYNC_TENANT` (the CLI's `--tenant`);
//! - the client secret from Secrets Manager (`PORTAL_ENTRA_CLIENT_SECRET_ARN`),
//!   read on every run so a rotated secret applies from the next run, and
//!   never from the function's environment; a value that is a PEM
//!   (certificate and private key) is used as the certificate credential;
//! - everything else of Graph (`PORTAL_ENTRA_*`, `PORTAL_GRAPH_URL`) as the
//!   CLI reads it ([`GraphConfig::from_lookup`]).
//!
//! A run that fails is an error (the invocation fails: Lambda's `Errors`
//! metric and its alarm); a run that finishes writes `EntraSyncSucceeded`
//! (watched by the "no successful run in 25 hours" alarm) and
//! `EntraSyncKeysCopied`.

use super::certificate::ClientCertificate;
use super::graph::{ClientCredential, GraphClient, GraphConfig};
use super::run::{SyncError, SyncOptions, SyncSummary, sync_entra};
use crate::domain::ids::TenantId;
use crate::domain::metrics::Metric;
use crate::domain::ports::{Metrics, Portal};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The portal tenant the scheduled sync writes into.
pub const TENANT_VAR: &str = "PORTAL_SYNC_TENANT";
/// The Secrets Manager secret (ARN or name) holding the client secret.
pub const SECRET_VAR: &str = "PORTAL_ENTRA_CLIENT_SECRET_ARN";
/// The CLI's secret variable, refused here: the function's environment is
/// readable by anyone who may read its configuration.
const CLI_SECRET_VAR: &str = "PORTAL_ENTRA_CLIENT_SECRET";

/// Where the client secret is read from, on every run.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret's current value. The error never holds the value.
    async fn secret(&self, id: &str) -> Result<Zeroizing<String>, String>;
}

/// An environment lookup (`std::env::var` in the function).
pub type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The scheduled sync's own settings, validated at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub tenant: TenantId,
    pub secret_id: String,
}

impl Settings {
    /// From `lookup`: every problem at once, each naming its variable. The
    /// Graph settings are checked too (with a stand-in secret), so a bad
    /// one stops the function at init rather than failing every run.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let tenant = match get(TENANT_VAR).map(|t| TenantId::parse(&t)) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                errors.push(format!("{TENANT_VAR}: {e}"));
                None
            }
            None => {
                errors.push(format!(
                    "{TENANT_VAR}: is required (the portal's tenant ID)"
                ));
                None
            }
        };
        let secret_id = get(SECRET_VAR);
        if secret_id.is_none() {
            errors.push(format!(
                "{SECRET_VAR}: is required (the Secrets Manager secret with the client secret)"
            ));
        }
        if get(CLI_SECRET_VAR).is_some() {
            errors.push(format!(
                "{CLI_SECRET_VAR}: must not be set on the function (the secret is read from {SECRET_VAR})"
            ));
        }
        let stand_in = ClientCredential::Secret(Zeroizing::new("stand-in".into()));
        if let Err(e) = graph_config(lookup, stand_in) {
            errors.push(e);
        }
        match (tenant, secret_id) {
            (Some(tenant), Some(secret_id)) if errors.is_empty() => Ok(Self { tenant, secret_id }),
            _ => Err(errors.join("; ")),
        }
    }
}

/// The CLI's Graph configuration with `credential` as the app's credential.
fn graph_config(
    lookup: &dyn Fn(&str) -> Option<String>,
    credential: ClientCredential,
) -> Result<GraphConfig, String> {
    let mut config = GraphConfig::from_lookup(|k| match k {
        CLI_SECRET_VAR => Some("stand-in".to_owned()),
        _ => lookup(k),
    })?;
    config.credential = credential;
    Ok(config)
}

/// The credential the secret's value is: a PEM (`-----BEGIN`) is the
/// certificate and its private key, anything else the client secret. JSON
/// is the console's key/value default, which the sync would otherwise send
/// to Entra as the secret itself. Errors never hold the value.
pub fn credential_of(value: Zeroizing<String>) -> Result<ClientCredential, String> {
    let text = value.trim();
    if text.starts_with("-----BEGIN") {
        return ClientCertificate::from_pem(text.as_bytes())
            .map(ClientCredential::Certificate)
            .map_err(|e| format!("the secret's PEM {e}"));
    }
    if text.starts_with('{') {
        return Err("the secret's value is JSON (the console's key/value default): store the plain value, the client secret or the PEM of the certificate and its private key, as the secret's plaintext".into());
    }
    if text.is_empty() {
        return Err("the secret is empty: store the client secret, or the PEM of the certificate and its private key".into());
    }
    Ok(ClientCredential::Secret(Zeroizing::new(text.to_owned())))
}

/// Whether the invocation asks for a dry run: `{"dry_run": true}` (a
/// manual `aws lambda invoke`); the schedule's own event asks for none.
pub fn dry_run(event: &serde_json::Value) -> bool {
    event.get("dry_run").and_then(serde_json::Value::as_bool) == Some(true)
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduledError {
    #[error("reading the client secret: {0}")]
    Secret(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}. The next scheduled run resumes: keys already stored are not read again")]
    Sync(#[from] SyncError),
}

/// The function's state, built once at init; [`run`](Self::run) per
/// invocation.
pub struct ScheduledSync {
    pub portal: Portal,
    /// Shared by every run's Graph client (its connection pool).
    pub http: reqwest::Client,
    pub secrets: Arc<dyn SecretSource>,
    pub settings: Settings,
    pub lookup: Lookup,
    pub metrics: Arc<dyn Metrics>,
}

impl ScheduledSync {
    /// One sync run: the secret read now, a Graph client of its own (its
    /// token and counters are this run's), then the CLI's sync.
    pub async fn run(&self, dry_run: bool) -> Result<SyncSummary, ScheduledError> {
        let secret = self
            .secrets
            .secret(&self.settings.secret_id)
            .await
            .map_err(ScheduledError::Secret)?;
        let credential = credential_of(secret).map_err(ScheduledError::Secret)?;
        let config =
            graph_config(self.lookup.as_ref(), credential).map_err(ScheduledError::Config)?;
        let graph = GraphClient::with_http(config, self.http.clone());
        let opts = SyncOptions {
            tenant: self.settings.tenant.clone(),
            dry_run,
        };
        let summary = sync_entra(&self.portal, &graph, &opts, &|_, _| {}).await?;
        if !dry_run {
            self.metrics.record(Metric::EntraSyncSucceeded, 1);
            self.metrics
                .record(Metric::EntraSyncKeysCopied, summary.keys.new as u64);
        }
        Ok(summary)
    }
}

#[cfg(feature = "secrets-manager")]
impl ScheduledSync {
    /// The function's init: settings from the environment, the store and
    /// cipher on the AWS backend, Secrets Manager and the HTTP client.
    /// Connects nowhere (credentials and connections come on first use).
    pub async fn from_env() -> Result<Self, String> {
        let lookup: Lookup = Arc::new(|k| std::env::var(k).ok());
        let settings = Settings::from_lookup(lookup.as_ref())?;
        let config = crate::config::Config::from_lookup(|k| match k {
            "PORTAL_BACKEND" => Some("aws".into()),
            _ => lookup(k),
        })
        .map_err(|e| e.to_string())?;
        let crate::config::Backend::Aws {
            table_prefix,
            kms_key_id: Some(kms_key_id),
        } = &config.backend
        else {
            return Err("PORTAL_KMS_KEY_ID: is required (keys are sealed with KMS)".into());
        };
        let sdk = crate::adapters::aws::sdk_config()
            .await
            .map_err(|e| e.to_string())?;
        let (store, cipher) =
            crate::adapters::aws::backends_from_config(sdk, table_prefix, Some(kms_key_id));
        let metrics: Arc<dyn Metrics> = match &config.metrics_namespace {
            Some(ns) => Arc::new(crate::adapters::emf::EmfMetrics::stdout(ns)),
            None => Arc::new(crate::domain::ports::NoMetrics),
        };
        Ok(Self {
            portal: super::run::portal(store, cipher),
            http: crate::adapters::jwt::jwks_http_client()?,
            secrets: Arc::new(crate::adapters::aws::secrets::SecretsManager::new(sdk)),
            settings,
            lookup,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::certificate;
    use super::*;
    use serde_json::json;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const BASE: &[(&str, &str)] = &[
        ("PORTAL_SYNC_TENANT", "contoso"),
        (
            "PORTAL_ENTRA_CLIENT_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:portal-entra-AbCdEf",
        ),
        ("PORTAL_ENTRA_TENANT_ID", "contoso.onmicrosoft.com"),
        (
            "PORTAL_ENTRA_CLIENT_ID",
            "11111111-2222-3333-4444-555555555555",
        ),
    ];

    #[test]
    fn settings_name_every_problem_and_refuse_a_secret_in_the_environment() {
        let ok = Settings::from_lookup(&env(BASE)).unwrap();
        assert_eq!(ok.tenant.as_str(), "contoso");
        for (drop, add, want) in [
            (
                "PORTAL_SYNC_TENANT",
                None,
                "PORTAL_SYNC_TENANT: is required",
            ),
            (
                "PORTAL_ENTRA_CLIENT_SECRET_ARN",
                None,
                "PORTAL_ENTRA_CLIENT_SECRET_ARN: is required",
            ),
            ("PORTAL_ENTRA_CLIENT_ID", None, "PORTAL_ENTRA_CLIENT_ID"),
            (
                "",
                Some(("PORTAL_ENTRA_CLIENT_SECRET", "s3cr3t")),
                "must not be set on the function",
            ),
            (
                "",
                Some(("PORTAL_GRAPH_URL", "http://graph.example.com")),
                "PORTAL_GRAPH_URL",
            ),
            (
                "PORTAL_SYNC_TENANT",
                Some(("PORTAL_SYNC_TENANT", "a b")),
                "PORTAL_SYNC_TENANT: ",
            ),
        ] {
            let mut pairs: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != drop).collect();
            pairs.extend(add);
            let e = Settings::from_lookup(&env(&pairs)).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    /// Issue 21 (F4): a PEM is the certificate credential, JSON (the
    /// console's default) is refused, anything else is the client secret;
    /// errors never echo the value.
    #[test]
    fn the_secret_value_is_a_client_secret_or_a_certificate_never_json() {
        let z = |s: &str| Zeroizing::new(s.to_owned());
        match credential_of(z(" s3cr3t~value\n")).unwrap() {
            ClientCredential::Secret(s) => assert_eq!(s.as_str(), "s3cr3t~value"),
            ClientCredential::Certificate(_) => panic!("a secret taken for a certificate"),
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["sync".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        match credential_of(z(&pem)).unwrap() {
            ClientCredential::Certificate(c) => {
                assert_eq!(c.thumbprint(), certificate::thumbprint_s256(cert.der()))
            }
            ClientCredential::Secret(_) => panic!("a PEM sent as a client secret"),
        }
        for (value, want) in [
            (r#"{"client_secret":"s3cr3t"}"#, "store the plain value"),
            (
                "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n",
                "the secret's PEM has no PRIVATE KEY block",
            ),
            ("  ", "the secret is empty"),
        ] {
            let e = match credential_of(z(value)) {
                Err(e) => e,
                Ok(_) => panic!("{value:?} accepted"),
            };
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("s3cr3t") && !e.contains("QUJD"), "{e}");
        }
    }

    #[test]
    fn only_an_explicit_dry_run_is_one() {
        for (event, want) in [
            (json!({}), false),
            (json!({"dry_run": true}), true),
            (json!({"dry_run": "true"}), false),
            (
                json!({"version": "0", "detail-type": "Scheduled Event"}),
                false,
            ),
            (json!(null), false),
        ] {
            assert_eq!(dry_run(&event), want, "{event}");
        }
    }
}
