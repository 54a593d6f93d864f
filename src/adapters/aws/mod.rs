//! AWS adapters: DynamoDB store and KMS cipher.
//!
//! The SDK configuration is built once per process ([`sdk_config`]) with
//! explicit timeouts and a bounded standard retry policy, so a slow
//! dependency ends in a 503 well within the Lambda timeout. Nothing here does
//! network I/O at construction: credentials are resolved on first use.

pub mod dynamodb;
pub mod items;
pub mod kms;
pub mod schema;
#[cfg(feature = "secrets-manager")]
pub mod secrets;
mod tables;
pub mod tls;

pub use dynamodb::DynamoStore;
pub use kms::KmsCipher;
pub use tables::{TableStatus, create_tables};

use crate::config::ConfigError;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::sync::Arc;
use std::time::Duration;

/// TCP + TLS connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One HTTP attempt, connect included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// One SDK operation, all attempts and back-off included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per SDK operation (the first one included).
pub const MAX_ATTEMPTS: u32 = 3;

/// The timeouts every client uses.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Standard retry mode (exponential back-off with jitter, throttling and
/// transient errors only), at most [`MAX_ATTEMPTS`] attempts.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

/// The usual AWS configuration chain (environment, profile, container and
/// instance credentials; `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`
/// are honoured) with our timeouts and retry policy. When `AWS_REGION` (or
/// `AWS_DEFAULT_REGION`) is set, as it always is on Lambda, the region is
/// taken from it directly and the region chain is skipped; likewise for
/// credentials in the environment. Does no network I/O when the region is
/// set (credentials are resolved on first use). The HTTPS client trusts
/// the Amazon Trust Services roots only, unless `AWS_CA_BUNDLE` or
/// `PORTAL_TLS_ROOTS=system` say otherwise ([`tls`]); a bad value of those
/// is the error.
pub async fn load_sdk_config() -> Result<SdkConfig, ConfigError> {
    let roots = tls::TrustRoots::from_env()?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(roots.http_client())
        .timeout_config(timeout_config())
        .retry_config(retry_config());
    let env_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|r| r.trim().to_owned())
        .find(|r| !r.is_empty());
    if let Some(region) = env_region {
        loader = loader.region(Region::new(region));
    }
    // The default chain starts with the environment provider anyway; when
    // the environment holds credentials (always, on Lambda) use that
    // provider alone and skip building the rest of the chain (profile, SSO,
    // web identity, container, instance metadata), which costs about 5 ms of
    // cold start. Same credentials either way.
    let has = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    if has("AWS_ACCESS_KEY_ID") && has("AWS_SECRET_ACCESS_KEY") {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    Ok(loader.load().await)
}

static SDK_CONFIG: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();

/// The process-wide SDK configuration, loaded on first call.
pub async fn sdk_config() -> Result<&'static SdkConfig, ConfigError> {
    SDK_CONFIG.get_or_try_init(load_sdk_config).await
}

/// A DynamoDB client for `config` (timeouts and retries as configured there).
pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// A KMS client for `config`.
pub fn kms_client(config: &SdkConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(config)
}

/// The store and cipher on the given SDK configuration.
pub fn backends_from_config(
    config: &SdkConfig,
    table_prefix: &str,
    kms_key_id: Option<&str>,
) -> (Arc<DynamoStore>, Arc<KmsCipher>) {
    (
        Arc::new(DynamoStore::new(dynamodb_client(config), table_prefix)),
        Arc::new(KmsCipher::new(
            kms_client(config),
            kms_key_id.map(str::to_owned),
        )),
    )
}

/// The store and cipher for `Backend::Aws { table_prefix, kms_key_id }`, on
/// the process-wide SDK configuration. Call once per process (the clients
/// are cheap to clone and share connection pools).
pub async fn aws_backends(
    table_prefix: &str,
    kms_key_id: Option<&str>,
) -> Result<(Arc<DynamoStore>, Arc<KmsCipher>), ConfigError> {
    Ok(backends_from_config(
        sdk_config().await?,
        table_prefix,
        kms_key_id,
    ))
}

/// A short, secret-free description of an SDK failure for logs and
/// `Unavailable` details: the service's error code and message, or the kind
/// of transport failure. Never includes request or response bodies.
pub(crate) fn describe_sdk_error<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_dynamodb::error::SdkError;
    let text = match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("unknown error");
            match err.message() {
                Some(m) => format!("{code} (HTTP {}): {m}", se.raw().status().as_u16()),
                None => format!("{code} (HTTP {})", se.raw().status().as_u16()),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "timed out connecting".to_owned(),
        other => aws_sdk_dynamodb::error::DisplayErrorContext(other).to_string(),
    };
    truncate(text, 300)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}
