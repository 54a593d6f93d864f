//! The ports: small traits the domain depends on. Adapters (embedded
//! in-process, DynamoDB, KMS, JWKS) implement them; handlers never know which.

mod lifecycle;
mod portal;
pub use lifecycle::{
    DeviceRecord, DeviceUpsert, EscrowWrite, LifecycleStore, RotationPage, StoredKey,
    StoredKeyPage, WriteOutcome,
};
pub use portal::Portal;

use crate::domain::audit::{AuditEvent, AuditPage, AuditQuery};
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

/// Granted events one `commit_batch` writes at most: with its key mark and
/// the rate window, 2 × 49 + 1 = 99 items fit one DynamoDB transaction (100).
pub const BATCH_COMMIT_MAX: usize = 49;

/// Result of writing a granted disclosure's audit event and rate-limit slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Both written, atomically.
    Written,
    /// The rate window changed since it was read (a concurrent disclosure by
    /// the same caller). Nothing was written; read again and retry.
    RateConflict,
}

/// What became of a denied event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Stored.
    Stored,
    /// The caller already has the capped number of denied events in the
    /// event's clock hour: nothing was stored. `marked`: the hour's marker
    /// event is known to be stored already.
    OverCap { marked: bool },
}

#[async_trait]
pub trait Store: Send + Sync {
    /// A user's devices (metadata only) and their tenant's policy, read from
    /// the tenant record (no record: no self-service).
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

    /// The device with its sealed keys (None if it is not in this tenant),
    /// its tenant's policy as the tenant record holds it (no record: no
    /// self-service), and the caller's rate window: everything retrieval
    /// needs, in one read.
    async fn load_for_disclosure(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        actor: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable>;

    /// Append a granted event and take a rate-limit slot, both or neither.
    /// Every event is its own record: events are keyed by their event id.
    async fn commit_disclosure(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable>;

    /// Batch retrieval: the tenant's policy (with its incident) and the
    /// caller's rate window, in one consistent read.
    async fn load_batch_state(
        &self,
        tenant: &TenantId,
        actor: &UserId,
    ) -> Result<(TenantPolicy, RateWindow), Unavailable>;

    /// Batch retrieval: these devices of the tenant with their sealed keys
    /// (absent ones are left out), each carrying `policy`.
    async fn load_devices(
        &self,
        tenant: &TenantId,
        devices: &[DeviceId],
        policy: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable>;

    /// Batch retrieval: append these granted events (at most
    /// [`BATCH_COMMIT_MAX`], of distinct devices, all of one actor), take
    /// their rate-limit slots and mark their keys disclosed, all or nothing.
    /// Sent again with the same events after a `RateConflict`; if one of
    /// them is durable already, that is an earlier send applied: `Written`.
    async fn commit_batch(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable>;

    /// Append the event of an administrative write (escrow, device change,
    /// retirement, settings change, key verification) or of a write refused
    /// to a caller holding its permission: append-only, and not capped (a
    /// write refused for lack of permission goes through `append_denied`).
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable>;

    /// Append a denied event unless its actor already has `cap` denied
    /// events stored in the event's clock hour (`audit::hour_of`).
    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable>;

    /// Append the marker saying the actor reached the cap, unless that
    /// actor's marker for the event's clock hour is stored already. True when
    /// it was written now.
    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable>;

    /// One page of the tenant's events matching `query`, newest first.
    async fn audit_events(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<AuditPage, Unavailable>;
}

/// The audit trail's append side, as the audit builder (`audit::Audit`)
/// writes refusals and markers through it: three of `Store`'s methods, so a
/// service that only audits holds no read of devices or keys.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// See [`Store::append_audit`].
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable>;
    /// See [`Store::append_denied`].
    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable>;
    /// See [`Store::append_cap_marker`].
    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable>;
}

/// Every store is an audit log (`Arc`, so a `Portal`'s `Arc<dyn Store>`
/// coerces to `&dyn AuditLog`).
#[async_trait]
impl<S: Store + ?Sized> AuditLog for std::sync::Arc<S> {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        Store::append_audit(&**self, event).await
    }
    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        Store::append_denied(&**self, event, cap).await
    }
    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable> {
        Store::append_cap_marker(&**self, marker).await
    }
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

/// What a re-import compares with: a device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    /// The fingerprint of the last import that wrote it, if any.
    pub fingerprint: Option<String>,
    pub owner: UserId,
}

/// The write side used by `portal import` and the embedded demo data.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// These devices as stored (absent ones are left out).
    async fn stored_devices(
        &self,
        devices: &[(TenantId, DeviceId)],
    ) -> Result<std::collections::HashMap<(TenantId, DeviceId), StoredDevice>, Unavailable>;
    /// These tenants' settings as stored (tenants without a record left
    /// out), so an import can audit the settings it changes.
    async fn stored_tenants(
        &self,
        tenants: &[TenantId],
    ) -> Result<std::collections::HashMap<TenantId, TenantPolicy>, Unavailable>;
    async fn put_tenants(&self, tenants: &[Tenant]) -> Result<(), Unavailable>;
    /// Create or replace devices, their keys and their key-ID index entries.
    async fn put_devices(&self, devices: &[ImportDevice]) -> Result<(), Unavailable>;
    /// Append audit events of the import itself (ownership and settings
    /// changes).
    async fn append_import_events(&self, events: &[AuditEvent]) -> Result<(), Unavailable>;
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

/// Operational metrics. Recording never fails and never waits on the
/// network (on Lambda the adapter writes CloudWatch Embedded Metric Format
/// lines to the log).
pub trait Metrics: Send + Sync {
    fn record(&self, metric: crate::domain::metrics::Metric, value: u64);
}

/// Metrics that go nowhere (the local server; tests that do not count).
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _: crate::domain::metrics::Metric, _: u64) {}
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

    /// Identifies the signing keys behind `verify`'s answers, for caches of
    /// verified tokens: a cached caller may be served only while this is
    /// `Some` and equal to its value when that caller was verified. It
    /// changes when a key is withdrawn; `None` while the keys are due for a
    /// refresh (nothing may be served from a cache then).
    fn key_generation(&self) -> Option<u64> {
        Some(0)
    }
}
