//! The ports: small traits the domain depends on. Adapters (embedded
//! in-process, DynamoDB, KMS, JWKS) implement them; handlers never know which.

mod lifecycle;
mod portal;
pub use lifecycle::{
    DeviceRecord, DeviceUpsert, EscrowWrite, LifecycleStore, RotationPage, StoredKey,
    StoredKeyPage, WriteOutcome,
};
pub use portal::Portal;

use crate::domain::audit::{AuditEvent, AuditQuery};
use crate::domain::caller::Caller;
use crate::domain::error::{AuthFailure, Unavailable};
use crate::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{
    Device, KeyContext, RecoveryPassword, SealedDevice, SealedKey, Tenant, TenantPolicy,
};
use crate::domain::ratelimit::{RateUpdate, RateWindow};
use async_trait::async_trait;
use time::OffsetDateTime;

/// One row of a helpdesk key-ID lookup: metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    pub key_id: crate::domain::ids::KeyId,
    pub device_id: DeviceId,
    pub display_name: String,
    pub owner: UserId,
    pub volume_type: crate::domain::model::VolumeType,
    pub created_at: OffsetDateTime,
}

/// Result of writing a granted disclosure's audit event and rate-limit slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Both written, atomically.
    Written,
    /// A granted event with this (tenant, actor, request id) already exists
    /// for the same device and key: a client retry. Nothing was written; the
    /// earlier event stands for this disclosure.
    Duplicate,
    /// The request id was already used by this caller for another device,
    /// key or outcome. Nothing was written and nothing may be disclosed.
    RequestIdReused,
    /// The rate window changed since it was read (a concurrent disclosure by
    /// the same caller). Nothing was written; read again and retry.
    RateConflict,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// A user's devices (metadata only) and their tenant's policy.
    async fn list_devices(
        &self,
        tenant: &TenantId,
        owner: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable>;

    /// Keys in the tenant whose ID starts with `prefix`.
    async fn find_keys(
        &self,
        tenant: &TenantId,
        prefix: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable>;

    /// The device with its sealed keys (None if it is not in this tenant), and
    /// the caller's rate window: everything retrieval needs, in one read.
    async fn load_for_disclosure(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        actor: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable>;

    /// Append a granted event and take a rate-limit slot, both or neither.
    async fn commit_disclosure(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable>;

    /// Append a denied event (idempotent on tenant, actor and request id).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable>;

    /// The tenant's events, newest first.
    async fn audit_events(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, Unavailable>;
}

/// A device ready to store: its sealed keys and a fingerprint of everything
/// imported for it, so a re-import can skip what has not changed.
#[derive(Debug, Clone)]
pub struct ImportDevice {
    pub sealed: SealedDevice,
    pub fingerprint: String,
    /// Per key, `domain::lifecycle::key_digest`, so a later escrow of the
    /// same key is recognised without decrypting.
    pub digests: Vec<(crate::domain::ids::KeyId, String)>,
}

/// The write side used by `portal import` and the embedded demo data.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Stored fingerprints of these devices (absent ones are left out).
    async fn fingerprints(
        &self,
        devices: &[(TenantId, DeviceId)],
    ) -> Result<std::collections::HashMap<(TenantId, DeviceId), String>, Unavailable>;
    async fn put_tenants(&self, tenants: &[Tenant]) -> Result<(), Unavailable>;
    /// Create or replace devices, their keys and their key-ID index entries.
    async fn put_devices(&self, devices: &[ImportDevice]) -> Result<(), Unavailable>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// Wrong context, tampered or foreign ciphertext: never retried.
    #[error("ciphertext rejected: {0}")]
    Rejected(String),
}

/// Seals and opens recovery passwords, bound to their `KeyContext`.
#[async_trait]
pub trait KeyCipher: Send + Sync {
    async fn seal(
        &self,
        ctx: &KeyContext,
        password: &RecoveryPassword,
    ) -> Result<SealedKey, CipherError>;
    async fn open(
        &self,
        ctx: &KeyContext,
        sealed: &SealedKey,
    ) -> Result<RecoveryPassword, CipherError>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Turns a bearer token into a verified caller.
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    async fn verify(&self, token: &str) -> Result<Caller, AuthFailure>;
}
