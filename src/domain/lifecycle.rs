//! The key lifecycle: escrow, device enrolment and retirement, rotation
//! requests after disclosure, and the retention of superseded keys.
//!
//! Every write is sealed (escrow) before anything is stored, conditional on
//! the version read (a concurrent write or disclosure makes it read again),
//! and carries its audit event in the same store write. No password is ever
//! in an answer, a log line or an event.

use crate::domain::audit::{Action, Audit, AuditPorts, Outcome};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::error::{ApiError, Cause, Unavailable};
use crate::domain::ids::{DeviceId, KeyId};
use crate::domain::keys::{Refusal, RequestMeta};
use crate::domain::metrics::Metric;
use crate::domain::model::{
    Device, KeyContext, KeyMeta, ManagedBy, RecoveryPassword, Retirement, SealedKey, VolumeType,
};
use crate::domain::policy::{self, Permitted, grant};
use crate::domain::ports::{
    CipherError, Clock, DeviceRecord, DeviceUpsert, EscrowWrite, KeyCipher, LifecycleStore, Portal,
    WriteOutcome,
};
use aws_lc_rs::digest;
use time::{Duration, OffsetDateTime};

/// Attempts when a concurrent write or disclosure changed the device (or
/// the settings) between our read and our conditional write.
pub(crate) const WRITE_ATTEMPTS: usize = 5;

/// What an audited write (device, settings, incident) uses of the ports:
/// the lifecycle store, and the audit builder's (its clock and metrics).
#[derive(Clone, Copy)]
pub struct WritePorts<'a> {
    pub lifecycle: &'a dyn LifecycleStore,
    pub audit: AuditPorts<'a>,
}

impl WritePorts<'_> {
    pub fn now(&self) -> OffsetDateTime {
        self.audit.clock.now()
    }

    pub fn count(&self, metric: Metric, value: u64) {
        self.audit.count(metric, value);
    }
}

impl<'a> From<&'a Portal> for WritePorts<'a> {
    fn from(p: &'a Portal) -> Self {
        Self {
            lifecycle: &*p.lifecycle,
            audit: p.into(),
        }
    }
}

/// An escrow's ports: a write's, and the cipher that seals the key.
#[derive(Clone, Copy)]
pub struct EscrowPorts<'a> {
    pub writes: WritePorts<'a>,
    pub cipher: &'a dyn KeyCipher,
}

impl<'a> From<&'a Portal> for EscrowPorts<'a> {
    fn from(p: &'a Portal) -> Self {
        Self {
            writes: p.into(),
            cipher: &*p.cipher,
        }
    }
}

fn request_id_reused() -> ApiError {
    ApiError::BadRequest(
        "this X-Request-Id was already used for another request; send a new one".into(),
    )
}

fn too_busy() -> ApiError {
    ApiError::Unavailable(Unavailable::new(
        Cause::Store,
        "the device kept changing during the write",
    ))
}

/// SHA-256 of a key's context and password: tells a repeated escrow from a
/// conflicting one without decrypting. The password has about 128 bits of
/// entropy, so the digest reveals nothing practical about it.
pub fn key_digest(ctx: &KeyContext, password: &RecoveryPassword) -> String {
    let mut d = digest::Context::new(&digest::SHA256);
    for part in [
        ctx.tenant.as_str(),
        ctx.device.as_str(),
        &ctx.key_id.to_string(),
        password.expose(),
    ] {
        d.update(part.as_bytes());
        d.update(b"\0");
    }
    d.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `a` is newer than `b`: later `created_at`, ties to the lower key ID (the
/// same order the default key selection uses).
fn newer(a: &KeyMeta, b: &KeyMeta) -> bool {
    a.created_at > b.created_at || (a.created_at == b.created_at && a.key_id < b.key_id)
}

pub struct EscrowRequest {
    pub device_id: DeviceId,
    pub key_id: KeyId,
    pub volume_type: VolumeType,
    pub password: RecoveryPassword,
    pub created_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escrowed {
    /// Stored now (201).
    Created(KeyMeta),
    /// The same key with the same password was already held (200).
    AlreadyHeld(KeyMeta),
}

/// What an escrow does to the device as read (`plan_escrow`).
#[derive(Debug, Clone)]
pub(crate) enum EscrowPlan {
    /// The same key with the same password is already held: nothing to do.
    AlreadyHeld(KeyMeta),
    /// Another password (or a key stored before digests existed, which
    /// cannot be compared without decrypting) holds this key ID.
    Conflict,
    /// Store it: the write, short of the new key's ciphertext.
    Write(Box<EscrowDraft>),
}

/// An escrow write waiting for its ciphertext, which is sealed only once
/// the plan says a write is due (and only once across retries).
#[derive(Debug, Clone)]
pub(crate) struct EscrowDraft {
    write: EscrowWrite,
    /// Whether the new key becomes current (else it is superseded at once).
    current: bool,
}

impl EscrowDraft {
    pub fn sealed_with(self: Box<Self>, sealed: SealedKey) -> EscrowWrite {
        let EscrowDraft { mut write, current } = *self;
        if current {
            write.current.push((write.added.key_id, sealed));
        } else {
            write.superseded.push((write.added.clone(), sealed));
        }
        write
    }
}

/// The key an escrow stores, as `plan_escrow` needs it.
#[derive(Debug, Clone)]
pub(crate) struct EscrowKey {
    pub key_id: KeyId,
    pub volume_type: VolumeType,
    pub created_at: OffsetDateTime,
    /// `key_digest` of its context and password.
    pub digest: String,
}

/// Pure: what escrowing `key` into `record` at `now` means. A stored
/// ciphertext is never replaced: the same key ID is the same key or a
/// conflict. A new key newer than the current one of its volume type
/// supersedes it; an older one (an out-of-order sync) is kept for the
/// helpdesk like any superseded key, never current.
pub(crate) fn plan_escrow(
    record: &DeviceRecord,
    key: &EscrowKey,
    retention_days: u16,
    now: OffsetDateTime,
) -> EscrowPlan {
    let live = record.device.keys.iter().filter(|k| k.is_live(now));
    let stored_digest = record.digests.iter().find(|(id, _)| *id == key.key_id);
    match (live.clone().find(|k| k.key_id == key.key_id), stored_digest) {
        (None, _) => {}
        (Some(h), Some((_, d))) if h.volume_type == key.volume_type && *d == key.digest => {
            return EscrowPlan::AlreadyHeld(h.clone());
        }
        (Some(_), _) => return EscrowPlan::Conflict,
    }
    let mut keys: Vec<KeyMeta> = live.cloned().collect();
    let expires_at = now + Duration::days(i64::from(retention_days));
    let mut added = KeyMeta::new(key.key_id, key.volume_type, key.created_at);
    let same_current = |k: &KeyMeta| k.volume_type == key.volume_type && !k.is_superseded();
    let newest_current =
        keys.iter()
            .filter(|k| same_current(k))
            .fold(None::<&KeyMeta>, |best, k| match best {
                Some(b) if !newer(k, b) => Some(b),
                _ => Some(k),
            });
    let becomes_current = newest_current.is_none_or(|c| newer(&added, c));
    let mut current: Vec<_> = record
        .current
        .iter()
        .filter(|(id, _)| *id != key.key_id)
        .cloned()
        .collect();
    let mut superseded = Vec::new();
    if becomes_current {
        for k in keys.iter_mut().filter(|k| same_current(k)) {
            k.superseded_at = Some(now);
            k.expires_at = Some(expires_at);
            if let Some(pos) = current.iter().position(|(id, _)| *id == k.key_id) {
                superseded.push((k.clone(), current.remove(pos).1));
            }
        }
    } else {
        added.superseded_at = Some(now);
        added.expires_at = Some(expires_at);
    }
    keys.push(added.clone());
    let mut digests: Vec<(KeyId, String)> = record
        .digests
        .iter()
        .filter(|(id, _)| *id != key.key_id && keys.iter().any(|k| k.key_id == *id))
        .cloned()
        .collect();
    digests.push((key.key_id, key.digest.clone()));
    EscrowPlan::Write(Box::new(EscrowDraft {
        write: EscrowWrite {
            device: Device {
                keys,
                ..record.device.clone()
            },
            expected_version: record.version,
            added,
            current,
            digests,
            superseded,
        },
        current: becomes_current,
    }))
}

fn key_conflict() -> ApiError {
    ApiError::Conflict(
        "A different recovery password is already stored under this key ID. \
         Key IDs are unique per key: check the key ID, or retire the device \
         and enrol it again if it was reinstalled."
            .into(),
    )
}

/// `PUT /v1/devices/{device_id}/recovery-keys/{key_id}`.
pub async fn escrow(
    ports: EscrowPorts<'_>,
    who: Permitted<'_, grant::Escrow>,
    meta: &RequestMeta,
    req: EscrowRequest,
) -> Result<Escrowed, ApiError> {
    let caller = who.caller();
    let w = ports.writes;
    let audit = Audit::write(w.audit, caller, meta, Action::Escrow, Some(&req.device_id));
    let key_id = Some(req.key_id);
    let (ctx, key) = escrow_key(&audit, &req).await?;
    let mut sealed = None;
    for _ in 0..WRITE_ATTEMPTS {
        let (record, settings) = w
            .lifecycle
            .device_for_write(&caller.tenant, &req.device_id)
            .await?;
        let Some(record) = record.filter(|r| r.device.retired.is_none()) else {
            let e = ApiError::DeviceNotFound;
            return Err(audit.deny(key_id, Denied::NotFound, e).await);
        };
        let retention = settings.superseded_key_retention_days;
        let draft = match plan_escrow(&record, &key, retention, w.now()) {
            EscrowPlan::AlreadyHeld(k) => return Ok(Escrowed::AlreadyHeld(k)),
            EscrowPlan::Conflict => {
                return Err(audit
                    .deny(key_id, Denied::KeyConflict, key_conflict())
                    .await);
            }
            EscrowPlan::Write(d) => d,
        };
        // Sealed before anything is stored, and only once across retries.
        let sealed_key = match &sealed {
            Some(s) => s,
            None => sealed.insert(seal(ports.cipher, meta, &ctx, &req.password).await?),
        };
        let write = draft.sealed_with(sealed_key.clone());
        let reason = if write.added.is_superseded() {
            "escrowed_superseded"
        } else {
            "escrowed"
        };
        let event = audit.detailed(key_id, Outcome::Granted, reason, None);
        match w.lifecycle.commit_escrow(&write, &event).await? {
            WriteOutcome::Written => {
                tracing::info!(
                    request_id = %meta.request_id,
                    tenant = %caller.tenant,
                    actor = %caller.user,
                    device = %req.device_id,
                    key_id = %req.key_id,
                    superseded = write.superseded.len(),
                    "recovery key escrowed"
                );
                return Ok(Escrowed::Created(write.added));
            }
            WriteOutcome::Conflict | WriteOutcome::NotFound => continue,
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
        }
    }
    Err(too_busy())
}

/// The checks before any read (permission, `created_at`), and the key's
/// context and digest.
async fn escrow_key(
    audit: &Audit<'_>,
    req: &EscrowRequest,
) -> Result<(KeyContext, EscrowKey), ApiError> {
    let caller = audit.caller;
    if let Err(e) = policy::may_escrow_to(caller, &req.device_id) {
        return Err(audit.deny(None, Denied::InsufficientScope, e).await);
    }
    let now = audit.ports.clock.now();
    let created_at = req.created_at.unwrap_or(now);
    // A key "from the future" would become the device's current key ahead
    // of the real one, and read as newer than any ownership change.
    if created_at > now {
        let e = ApiError::BadRequest(
            "created_at must not be in the future: send the time the key was created (UTC), or leave it out to use the time of this request".into(),
        );
        return Err(audit
            .deny(Some(req.key_id), Denied::InvalidRequest, e)
            .await);
    }
    let ctx = KeyContext {
        tenant: caller.tenant.clone(),
        device: req.device_id.clone(),
        key_id: req.key_id,
    };
    let key = EscrowKey {
        key_id: req.key_id,
        volume_type: req.volume_type,
        created_at,
        digest: key_digest(&ctx, &req.password),
    };
    Ok((ctx, key))
}

async fn seal(
    cipher: &dyn KeyCipher,
    meta: &RequestMeta,
    ctx: &KeyContext,
    password: &RecoveryPassword,
) -> Result<SealedKey, ApiError> {
    match cipher.seal(ctx, password).await {
        Ok(s) => Ok(s),
        Err(CipherError::Unavailable(e)) => Err(ApiError::Unavailable(e)),
        Err(CipherError::Rejected(why)) => {
            tracing::error!(request_id = %meta.request_id, why, "sealing a key was rejected");
            Err(ApiError::Internal("the key could not be sealed".into()))
        }
    }
}

/// Device metadata as `PUT /v1/devices/{device_id}` sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMetadata {
    pub owner: crate::domain::ids::UserId,
    pub display_name: String,
    pub os: String,
    pub managed_by: ManagedBy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    Created(Device),
    Updated(Device),
    /// Nothing differed: nothing written.
    Unchanged(Device),
}

/// What a device upsert does to the device as read (`plan_upsert`).
#[derive(Debug)]
pub(crate) enum UpsertPlan {
    Refuse(Refusal),
    /// Nothing differs: nothing to write.
    Unchanged(Device),
    /// Write this, audited with `reason` and `detail` (an owner change).
    Write {
        write: DeviceUpsert,
        reason: &'static str,
        detail: Option<String>,
    },
}

/// Pure: creating `device_id` as `md`, or changing the stored `record` to
/// it (see `may_change`). Expired keys are dropped on the way.
pub(crate) fn plan_upsert(
    caller: &Caller,
    device_id: &DeviceId,
    record: Option<DeviceRecord>,
    md: &DeviceMetadata,
    now: OffsetDateTime,
) -> UpsertPlan {
    let Some(record) = record else {
        let device = Device {
            tenant: caller.tenant.clone(),
            device_id: device_id.clone(),
            owner: md.owner.clone(),
            display_name: md.display_name.clone(),
            os: md.os.clone(),
            managed_by: md.managed_by,
            keys: Vec::new(),
            owner_since: None,
            retired: None,
        };
        let write = DeviceUpsert {
            device,
            expected_version: None,
        };
        let (reason, detail) = ("created", None);
        return UpsertPlan::Write {
            write,
            reason,
            detail,
        };
    };
    let d = &record.device;
    if let Err(refusal) = may_change(caller, d, md) {
        return UpsertPlan::Refuse(refusal);
    }
    if d.owner == md.owner
        && d.display_name == md.display_name
        && d.os == md.os
        && d.managed_by == md.managed_by
    {
        return UpsertPlan::Unchanged(record.device);
    }
    // Owner is not part of the KMS context: an ownership change is named in
    // the trail so it can never pass unnoticed.
    let detail = (d.owner != md.owner).then(|| format!("owner {} -> {}", d.owner, md.owner));
    // The new owner reads only keys created from now on, unless the
    // directory itself (a sync, like an import) names the owner: it is
    // authoritative, and its own portal shows the owner every key.
    let owner_since = if d.owner == md.owner {
        d.owner_since
    } else if caller.user.is_directory_sync() {
        None
    } else {
        Some(now)
    };
    let device = Device {
        owner: md.owner.clone(),
        display_name: md.display_name.clone(),
        os: md.os.clone(),
        managed_by: md.managed_by,
        keys: d.keys.iter().filter(|k| k.is_live(now)).cloned().collect(),
        owner_since,
        ..d.clone()
    };
    let write = DeviceUpsert {
        device,
        expected_version: Some(record.version),
    };
    let reason = "updated";
    UpsertPlan::Write {
        write,
        reason,
        detail,
    }
}

/// `PUT /v1/devices/{device_id}`.
pub async fn upsert_device(
    ports: WritePorts<'_>,
    who: Permitted<'_, grant::WriteDevices>,
    meta: &RequestMeta,
    device_id: &DeviceId,
    md: DeviceMetadata,
) -> Result<Upserted, ApiError> {
    let caller = who.caller();
    let audit = Audit::write(
        ports.audit,
        caller,
        meta,
        Action::DeviceUpsert,
        Some(device_id),
    );
    for _ in 0..WRITE_ATTEMPTS {
        let (record, _) = ports
            .lifecycle
            .device_for_write(&caller.tenant, device_id)
            .await?;
        let now = ports.now();
        let (write, reason, detail) = match plan_upsert(caller, device_id, record, &md, now) {
            UpsertPlan::Refuse((e, reason)) => {
                if reason == Denied::SelfAssignment {
                    ports.count(Metric::OwnerChangesRefused, 1);
                }
                return Err(audit.deny(None, reason, e).await);
            }
            UpsertPlan::Unchanged(d) => return Ok(Upserted::Unchanged(d)),
            UpsertPlan::Write {
                write,
                reason,
                detail,
            } => (write, reason, detail),
        };
        let event = audit.detailed(None, Outcome::Granted, reason, detail);
        match ports.lifecycle.commit_upsert(&write, &event).await? {
            WriteOutcome::Written => {
                if event.justification.is_some() {
                    ports.count(Metric::OwnerChanges, 1);
                }
                return Ok(if write.expected_version.is_none() {
                    Upserted::Created(write.device)
                } else {
                    Upserted::Updated(write.device)
                });
            }
            WriteOutcome::Conflict | WriteOutcome::NotFound => continue,
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
        }
    }
    Err(too_busy())
}

/// Whether `caller` may change the stored device `d` to `md`. An owner
/// change naming the caller needs a second administrator: otherwise a
/// device administrator could give themselves anyone's device. A retired
/// device is restored first, so no change reaches it unseen.
fn may_change(caller: &Caller, d: &Device, md: &DeviceMetadata) -> Result<(), Refusal> {
    if d.retired.is_some() {
        let e = ApiError::Conflict(format!(
            "Device {} is retired. Restore it first (POST /v1/devices/{}/restore), then change it.",
            d.device_id, d.device_id
        ));
        return Err((e, Denied::Retired));
    }
    if d.owner != md.owner && md.owner == caller.user {
        let e = ApiError::SecondPersonRequired(
            "You cannot make yourself the owner of a device: ask another administrator with Devices.ReadWrite.All to change the owner, or a helpdesk agent to read its key."
                .into(),
        );
        return Err((e, Denied::SelfAssignment));
    }
    Ok(())
}

/// `DELETE /v1/devices/{device_id}`: retires the device. It leaves its
/// owner's list and self-service at once (the uniform 404 there); for the
/// tenant's `retired_device_retention_days` the helpdesk can still read its
/// keys by key ID with a reason and `restore_device` brings it back; then
/// it is deleted (TTL on AWS, the sweep when embedded).
pub async fn retire_device(
    ports: WritePorts<'_>,
    who: Permitted<'_, grant::WriteDevices>,
    meta: &RequestMeta,
    device_id: &DeviceId,
    reason: Option<String>,
) -> Result<(), ApiError> {
    let caller = who.caller();
    let audit = Audit::write(
        ports.audit,
        caller,
        meta,
        Action::DeviceRetire,
        Some(device_id),
    );
    for _ in 0..WRITE_ATTEMPTS {
        let (record, settings) = ports
            .lifecycle
            .device_for_write(&caller.tenant, device_id)
            .await?;
        let Some(record) = record.filter(|r| r.device.retired.is_none()) else {
            return Err(audit
                .deny(None, Denied::NotFound, ApiError::DeviceNotFound)
                .await);
        };
        let now = ports.now();
        let days = i64::from(settings.retired_device_retention_days);
        let retired = Device {
            retired: Some(Retirement {
                at: now,
                expires_at: now + Duration::days(days),
            }),
            keys: record
                .device
                .keys
                .iter()
                .filter(|k| k.is_live(now))
                .cloned()
                .collect(),
            ..record.device
        };
        let mut event = audit.detailed(None, Outcome::Granted, "retired", reason.clone());
        event.justification = Some(match &reason {
            Some(r) => format!("{r} (restorable for {days} days)"),
            None => format!("restorable for {days} days"),
        });
        match ports
            .lifecycle
            .retire_device(&retired, record.version, &event)
            .await?
        {
            WriteOutcome::Written => {
                ports.count(Metric::DevicesRetired, 1);
                tracing::info!(request_id = %meta.request_id, tenant = %caller.tenant, actor = %caller.user, device = %device_id, "device retired");
                return Ok(());
            }
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
            WriteOutcome::NotFound | WriteOutcome::Conflict => continue,
        }
    }
    Err(too_busy())
}

/// `POST /v1/devices/{device_id}/restore`: a retired device, still within
/// its retention, back to its owner as it was (the uniform 404 otherwise).
pub async fn restore_device(
    ports: WritePorts<'_>,
    who: Permitted<'_, grant::WriteDevices>,
    meta: &RequestMeta,
    device_id: &DeviceId,
) -> Result<Device, ApiError> {
    let caller = who.caller();
    let audit = Audit::write(
        ports.audit,
        caller,
        meta,
        Action::DeviceRestore,
        Some(device_id),
    );
    for _ in 0..WRITE_ATTEMPTS {
        let (record, _) = ports
            .lifecycle
            .device_for_write(&caller.tenant, device_id)
            .await?;
        let now = ports.now();
        let Some(record) = record.filter(|r| r.device.retired.is_some() && !r.device.is_gone(now))
        else {
            return Err(audit
                .deny(None, Denied::NotFound, ApiError::DeviceNotFound)
                .await);
        };
        let restored = Device {
            retired: None,
            keys: record
                .device
                .keys
                .iter()
                .filter(|k| k.is_live(now))
                .cloned()
                .collect(),
            ..record.device
        };
        let event = audit.detailed(None, Outcome::Granted, "restored", None);
        match ports
            .lifecycle
            .restore_device(&restored, record.version, &event)
            .await?
        {
            WriteOutcome::Written => {
                ports.count(Metric::DevicesRestored, 1);
                tracing::info!(request_id = %meta.request_id, tenant = %caller.tenant, actor = %caller.user, device = %device_id, "device restored");
                return Ok(restored);
            }
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
            WriteOutcome::NotFound | WriteOutcome::Conflict => continue,
        }
    }
    Err(too_busy())
}

/// One key due for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRequest {
    pub device_id: DeviceId,
    pub key_id: KeyId,
    pub volume_type: VolumeType,
    pub disclosed_at: OffsetDateTime,
}

pub struct RotationRequests {
    pub requests: Vec<RotationRequest>,
    pub next: Option<String>,
}

/// Largest and default page of `GET /v1/rotation-requests` (devices).
pub const ROTATION_MAX_LIMIT: usize = 1000;
pub const ROTATION_DEFAULT_LIMIT: usize = 100;

/// `GET /v1/rotation-requests`: keys of the caller's tenant that were
/// disclosed and not superseded since.
pub async fn rotation_requests(
    lifecycle: &dyn LifecycleStore,
    clock: &dyn Clock,
    who: Permitted<'_, grant::Escrow>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<RotationRequests, ApiError> {
    let caller = who.caller();
    let only = policy::escrow_scope(caller);
    let page = lifecycle
        .rotation_requests(&caller.tenant, cursor, limit)
        .await?;
    let now = clock.now();
    let mut requests = Vec::new();
    // A device-bound credential sees its own device's requests only.
    for d in page
        .devices
        .iter()
        .filter(|d| d.tenant == caller.tenant && only.is_none_or(|o| o == &d.device_id))
    {
        let mut due: Vec<RotationRequest> = d
            .keys
            .iter()
            .filter(|k| k.rotation_due() && k.is_live(now))
            .filter_map(|k| {
                Some(RotationRequest {
                    device_id: d.device_id.clone(),
                    key_id: k.key_id,
                    volume_type: k.volume_type,
                    disclosed_at: k.disclosed_at?,
                })
            })
            .collect();
        due.sort_by(|a, b| {
            a.disclosed_at
                .cmp(&b.disclosed_at)
                .then(a.key_id.cmp(&b.key_id))
        });
        requests.extend(due);
    }
    Ok(RotationRequests {
        requests,
        next: page.next,
    })
}

#[cfg(test)]
mod tests;
