//! Secrets Manager: the scheduled Entra sync's client secret, read on every
//! run (not cached), so a rotated secret is used from the next run on
//! without redeploying. The value is moved into a zeroized buffer at once
//! and never put into an error or a log.

use crate::tools::sync::scheduled::SecretSource;
use aws_config::SdkConfig;
use zeroize::Zeroizing;

pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// On the process-wide SDK configuration (its trust store, timeouts and
    /// retries); builds no connection.
    pub fn new(config: &SdkConfig) -> Self {
        Self::from_client(aws_sdk_secretsmanager::Client::new(config))
    }

    pub fn from_client(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl SecretSource for SecretsManager {
    async fn secret(&self, id: &str) -> Result<Zeroizing<String>, String> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| format!("GetSecretValue {id}: {}", super::describe_sdk_error(&e)))?;
        out.secret_string
            .map(Zeroizing::new)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "{id} has no secret string: put the client secret's value (see infra/README.md)"
                )
            })
    }
}
