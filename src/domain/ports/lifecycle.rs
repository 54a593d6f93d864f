//! The store port of the key lifecycle: escrow, device enrolment and
//! retirement, rotation requests, superseded keys and tenant settings.
//!
//! A trait of its own (next to `Store`, which serves the read and disclosure
//! paths) so a deployment unit gets only what it uses, and so adding it
//! changed nothing on the retrieval path.

use crate::domain::audit::AuditEvent;
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId};
use crate::domain::model::{
    Device, Incident, IncidentId, KeyContext, KeyMeta, OpenIncident, SealedKey, TenantPolicy,
};
use async_trait::async_trait;
use time::OffsetDateTime;

/// A device as the write side sees it: metadata, the metadata of every key
/// still held (superseded ones included), the ciphertexts of its current
/// keys, and the version its next write must match.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub device: Device,
    /// Ciphertexts of the current (not superseded) keys.
    pub current: Vec<(KeyId, SealedKey)>,
    /// Per key: a SHA-256 of its context and password, so a repeated escrow
    /// can be told from a conflicting one without decrypting anything.
    pub digests: Vec<(KeyId, String)>,
    /// 0 for a record written before versions existed.
    pub version: u64,
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The record changed since it was read (or the device was created or
    /// retired meanwhile): nothing was written; read again and retry.
    Conflict,
    /// The audit event's request id is already used by this caller: nothing
    /// was written.
    RequestIdReused,
    /// There is no such device (retirement): nothing was written.
    NotFound,
}

/// One escrow: the device's key metadata and current ciphertexts after it,
/// written only if the record is still at `expected_version`.
#[derive(Debug, Clone)]
pub struct EscrowWrite {
    /// The device after the escrow (metadata unchanged; `keys` holds every
    /// live key, the new one included).
    pub device: Device,
    pub expected_version: u64,
    /// The escrowed key as stored (superseded at once if a newer key of its
    /// volume type is already held).
    pub added: KeyMeta,
    /// Ciphertexts of the current keys after the escrow.
    pub current: Vec<(KeyId, SealedKey)>,
    pub digests: Vec<(KeyId, String)>,
    /// Keys that leave the current set with this write, with their
    /// ciphertexts: kept apart until their `expires_at`, then deleted.
    pub superseded: Vec<(KeyMeta, SealedKey)>,
}

/// Device enrolment or a metadata change.
#[derive(Debug, Clone)]
pub struct DeviceUpsert {
    /// The device after the change (`keys` as stored, for a change).
    pub device: Device,
    /// `None`: create; the device must not exist.
    pub expected_version: Option<u64>,
}

/// One page of `GET /v1/rotation-requests`: devices of the tenant with at
/// least one key due for rotation, oldest disclosure first.
#[derive(Debug, Clone, Default)]
pub struct RotationPage {
    pub devices: Vec<Device>,
    /// Opaque: where the next page starts, `None` after the last one.
    pub next: Option<String>,
}

/// A stored ciphertext with the context it must open under.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub context: KeyContext,
    pub sealed: SealedKey,
    pub superseded: bool,
}

/// One page of stored keys (`portal keys verify`).
#[derive(Debug, Clone, Default)]
pub struct StoredKeyPage {
    pub keys: Vec<StoredKey>,
    pub next: Option<String>,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// The device (None if it is not in this tenant) and the tenant's
    /// settings, in one consistent read.
    async fn device_for_write(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable>;

    /// Writes an escrow and its audit event, both or neither.
    async fn commit_escrow(
        &self,
        write: &EscrowWrite,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable>;

    /// Creates or updates a device and writes its audit event, both or neither.
    async fn commit_upsert(
        &self,
        write: &DeviceUpsert,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable>;

    /// Retires the device if still at `expected_version`: `device` as read,
    /// with `retired` set. It leaves the owner index and the rotation
    /// requests; it, its key pointers and its ciphertexts are deleted at
    /// `retired.expires_at` (a superseded key's earlier expiry stays), and
    /// the audit event is written, all or nothing.
    async fn retire_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable>;

    /// Restores a retired device if still at `expected_version`: `device`
    /// as read, with `retired` cleared. Back in the owner index (and the
    /// rotation requests); nothing of it expires but superseded keys at
    /// their own time; the audit event is written, all or nothing.
    async fn restore_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable>;

    /// The ciphertext of a superseded key, if still held. Callers check the
    /// key's `expires_at` themselves (a store may hold it a little longer).
    async fn superseded_key(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &KeyId,
    ) -> Result<Option<SealedKey>, Unavailable>;

    /// Devices with keys due for rotation, oldest first, at most `limit`
    /// per page, starting after `cursor` (a `next` of an earlier page).
    async fn rotation_requests(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RotationPage, Unavailable>;

    /// The tenant's settings and their version (0 when never written).
    async fn tenant_settings(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), Unavailable>;

    /// Replaces the tenant's settings if still at `expected_version`, and
    /// writes the audit event, both or neither.
    async fn commit_settings(
        &self,
        tenant: &TenantId,
        settings: &TenantPolicy,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable>;

    /// Writes `incident`'s record, sets the tenant record's incident summary
    /// to `summary` (`None` removes it) and writes the audit event, all or
    /// nothing, if the tenant record is still at `expected_version` (the
    /// version `tenant_settings` answers; the write moves it on, so a
    /// settings change and an incident cannot overwrite each other).
    async fn commit_incident(
        &self,
        incident: &Incident,
        summary: Option<&OpenIncident>,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable>;

    /// One incident of the tenant.
    async fn incident(
        &self,
        tenant: &TenantId,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Unavailable>;

    /// The tenant's incidents, newest first, at most `limit`.
    async fn incidents(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<Incident>, Unavailable>;

    /// Every stored ciphertext (current and superseded), in the given tenant
    /// or in all of them, one page at a time. Maintenance only, never on a
    /// request path (on DynamoDB this is a `Scan`).
    async fn stored_keys(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<&str>,
    ) -> Result<StoredKeyPage, Unavailable>;

    /// Deletes superseded keys whose retention ended before `now`, and
    /// retired devices (with all their keys) whose retention ended; returns
    /// how many keys. DynamoDB does this itself (TTL on `expires_at`), so there
    /// it deletes nothing.
    async fn sweep_expired(&self, now: OffsetDateTime) -> Result<usize, Unavailable>;
}
