//! The KMS cipher: `seal` is `Encrypt`, `open` is `Decrypt`, both under the
//! configured key and bound to the encryption context
//! `{tenant_id, device_id, key_id}` (`schema::KMS_CONTEXT_KEYS`), so a
//! ciphertext copied to another tenant, device or key ID does not decrypt.

use super::describe_sdk_error;
use super::schema::KMS_CONTEXT_KEYS;
use crate::domain::error::{Cause, Unavailable};
use crate::domain::model::{KeyContext, RecoveryPassword, SealedKey};
use crate::domain::ports::{CipherError, KeyCipher};
use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;

const SERVICE: Cause = Cause::Kms;

/// Error codes that say this ciphertext, key or permission will never work:
/// not retried, answered as an internal error.
const REJECTED: &[&str] = &[
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "AccessDeniedException",
    "InvalidKeyUsageException",
    "InvalidGrantTokenException",
    "DisabledException",
    "NotFoundException",
    "KMSInvalidStateException",
    "ValidationException",
    "UnrecognizedClientException",
];

/// Error codes of a dependency that may recover: answered 503.
const TRANSIENT: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "DependencyTimeoutException",
    "KMSInternalException",
    "KeyUnavailableException",
    "InternalFailure",
    "ServiceUnavailable",
    "ExpiredTokenException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// KMS-backed `KeyCipher`.
#[derive(Clone, Debug)]
pub struct KmsCipher {
    client: Client,
    key_id: Option<String>,
}

impl KmsCipher {
    /// `key_id`: key ID, key ARN, alias name or alias ARN of the recovery-key
    /// CMK (`PORTAL_KMS_KEY_ID`). Without it every operation fails (503):
    /// decryption is never attempted with an unpinned key.
    pub fn new(client: Client, key_id: Option<String>) -> Self {
        Self { client, key_id }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn require_key(&self) -> Result<&str, CipherError> {
        self.key_id.as_deref().ok_or_else(|| {
            CipherError::Unavailable(Unavailable::new(
                SERVICE,
                "no KMS key is configured (set PORTAL_KMS_KEY_ID)",
            ))
        })
    }
}

/// The encryption context bound to a sealed key. The key ID is in its
/// canonical upper-case GUID form.
pub fn encryption_context(ctx: &KeyContext) -> HashMap<String, String> {
    let [tenant, device, key] = KMS_CONTEXT_KEYS;
    HashMap::from([
        (tenant.to_owned(), ctx.tenant.to_string()),
        (device.to_owned(), ctx.device.to_string()),
        (key.to_owned(), ctx.key_id.to_string()),
    ])
}

/// Rejected (never retried) or unavailable (503), with a secret-free detail.
fn classify<E>(op: &'static str, e: &SdkError<E>) -> CipherError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = format!("{op}: {}", describe_sdk_error(e));
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            let status = se.raw().status().as_u16();
            if TRANSIENT.contains(&code) || status == 429 || status >= 500 {
                CipherError::Unavailable(Unavailable::new(SERVICE, detail))
            } else if REJECTED.contains(&code) || (400..500).contains(&status) {
                CipherError::Rejected(detail)
            } else {
                CipherError::Unavailable(Unavailable::new(SERVICE, detail))
            }
        }
        // Timeouts, connection failures, unreadable responses.
        _ => CipherError::Unavailable(Unavailable::new(SERVICE, detail)),
    }
}

#[async_trait]
impl KeyCipher for KmsCipher {
    async fn seal(
        &self,
        ctx: &KeyContext,
        password: &RecoveryPassword,
    ) -> Result<SealedKey, CipherError> {
        let key_id = self.require_key()?;
        let resp = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(password.expose().as_bytes().to_vec()))
            .set_encryption_context(Some(encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| classify("Encrypt", &e))?;
        let blob = resp.ciphertext_blob.ok_or_else(|| {
            CipherError::Unavailable(Unavailable::new(SERVICE, "Encrypt returned no ciphertext"))
        })?;
        Ok(SealedKey(blob.into_inner()))
    }

    async fn open(
        &self,
        ctx: &KeyContext,
        sealed: &SealedKey,
    ) -> Result<RecoveryPassword, CipherError> {
        let key_id = self.require_key()?;
        let resp = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(sealed.0.clone()))
            .set_encryption_context(Some(encryption_context(ctx)))
            .send()
            .await
            .map_err(|e| classify("Decrypt", &e))?;
        let plain = resp
            .plaintext
            .ok_or_else(|| CipherError::Rejected("Decrypt returned no plaintext".into()))?;
        // from_plaintext wipes the buffer whether or not it parses.
        RecoveryPassword::from_plaintext(plain.into_inner())
            .map_err(|_| CipherError::Rejected("plaintext is not a recovery password".into()))
    }
}
