//! The key lifecycle: escrow, device enrolment and retirement, rotation
//! requests after disclosure, and the retention of superseded keys.
//!
//! Every write is sealed (escrow) before anything is stored, conditional on
//! the version read (a concurrent write or disclosure makes it read again),
//! and carries its audit event in the same store write. No password is ever
//! in an answer, a log line or an event.

use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::caller::Caller;
use crate::domain::error::{ApiError, Unavailable};
use crate::domain::ids::{DeviceId, KeyId};
use crate::domain::keys::RequestMeta;
use crate::domain::metrics::Metric;
use crate::domain::model::{
    Device, KeyContext, KeyMeta, ManagedBy, RecoveryPassword, Retirement, VolumeType,
};
use crate::domain::policy;
use crate::ports::{CipherError, DeviceUpsert, EscrowWrite, Portal, WriteOutcome};
use aws_lc_rs::digest;
use time::{Duration, OffsetDateTime};

/// Attempts when a concurrent write or disclosure changed the device (or
/// the settings) between our read and our conditional write.
pub(crate) const WRITE_ATTEMPTS: usize = 5;

/// The audit event of one write request.
pub(crate) struct WriteEvent<'a> {
    pub portal: &'a Portal,
    pub caller: &'a Caller,
    pub meta: &'a RequestMeta,
    pub action: Action,
    pub device_id: Option<&'a DeviceId>,
}

impl WriteEvent<'_> {
    pub fn event(
        &self,
        key_id: Option<KeyId>,
        outcome: Outcome,
        reason: &str,
        detail: Option<String>,
    ) -> AuditEvent {
        AuditEvent {
            action: self.action,
            event_id: uuid::Uuid::new_v4().to_string(),
            time: self.portal.clock.now(),
            tenant_id: self.caller.tenant.clone(),
            actor: self.caller.user.clone(),
            device_id: self.device_id.cloned(),
            key_id,
            outcome,
            reason: reason.to_owned(),
            justification: detail,
            source_ip: self.meta.source_ip.clone(),
            user_agent: self.meta.user_agent.clone(),
            request_id: self.meta.request_id.clone(),
        }
    }

    /// Records a refused write (best effort, as for refused retrievals: the
    /// refusal changed nothing, so a failed audit write must not turn a 4xx
    /// into a 5xx; it is logged).
    pub async fn deny(&self, key_id: Option<KeyId>, reason: &str, error: ApiError) -> ApiError {
        let event = self.event(key_id, Outcome::Denied, reason, None);
        if let Err(e) = self.portal.store.append_audit(&event).await {
            tracing::error!(error = %e, request_id = %self.meta.request_id, reason, "could not audit a refused write");
        }
        error
    }
}

fn request_id_reused() -> ApiError {
    ApiError::BadRequest(
        "this X-Request-Id was already used for another request; send a new one".into(),
    )
}

fn too_busy() -> ApiError {
    ApiError::Unavailable(Unavailable::new(
        "store",
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

/// `PUT /v1/devices/{device_id}/recovery-keys/{key_id}`.
pub async fn escrow(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    req: EscrowRequest,
) -> Result<Escrowed, ApiError> {
    let audit = WriteEvent {
        portal,
        caller,
        meta,
        action: Action::Escrow,
        device_id: Some(&req.device_id),
    };
    if let Err(e) = policy::may_escrow_to(caller, &req.device_id) {
        return Err(audit.deny(None, "insufficient_scope", e).await);
    }
    let now = portal.clock.now();
    let created_at = req.created_at.unwrap_or(now);
    // A key "from the future" would become the device's current key ahead
    // of the real one, and read as newer than any ownership change.
    if created_at > now {
        let e = ApiError::BadRequest(
            "created_at must not be in the future: send the time the key was created (UTC), or leave it out to use the time of this request".into(),
        );
        return Err(audit.deny(Some(req.key_id), "invalid_request", e).await);
    }
    let ctx = KeyContext {
        tenant: caller.tenant.clone(),
        device: req.device_id.clone(),
        key_id: req.key_id,
    };
    let digest = key_digest(&ctx, &req.password);
    let mut sealed = None;
    for _ in 0..WRITE_ATTEMPTS {
        let (record, settings) = portal
            .lifecycle
            .device_for_write(&caller.tenant, &req.device_id)
            .await?;
        let Some(record) = record.filter(|r| r.device.retired.is_none()) else {
            return Err(audit
                .deny(Some(req.key_id), "not_found", ApiError::DeviceNotFound)
                .await);
        };
        let now = portal.clock.now();
        let live: Vec<KeyMeta> = record
            .device
            .keys
            .iter()
            .filter(|k| k.is_live(now))
            .cloned()
            .collect();
        let stored_digest = record
            .digests
            .iter()
            .find(|(id, _)| *id == req.key_id)
            .map(|(_, d)| d.as_str());
        let held = live.iter().find(|k| k.key_id == req.key_id);
        // A stored ciphertext is never replaced: the same key ID is the same
        // key or a conflict. A key stored before digests existed cannot be
        // compared without decrypting, which the writer may not do: 409.
        match (held, stored_digest) {
            (None, _) => {}
            (Some(h), Some(d)) if h.volume_type == req.volume_type && d == digest => {
                return Ok(Escrowed::AlreadyHeld(h.clone()));
            }
            (Some(_), _) => {
                return Err(audit
                    .deny(
                        Some(req.key_id),
                        "key_conflict",
                        ApiError::Conflict(
                            "A different recovery password is already stored under this key ID. \
                         Key IDs are unique per key: check the key ID, or retire the device \
                         and enrol it again if it was reinstalled."
                                .into(),
                        ),
                    )
                    .await);
            }
        }
        let live: Vec<KeyMeta> = live
            .into_iter()
            .filter(|k| k.key_id != req.key_id)
            .collect();
        // Sealed before anything is stored, and only once across retries.
        let sealed_key = match &sealed {
            Some(s) => s,
            None => match portal.cipher.seal(&ctx, &req.password).await {
                Ok(s) => sealed.insert(s),
                Err(CipherError::Unavailable(e)) => return Err(ApiError::Unavailable(e)),
                Err(CipherError::Rejected(why)) => {
                    tracing::error!(request_id = %meta.request_id, why, "sealing a key was rejected");
                    return Err(ApiError::Internal("the key could not be sealed".into()));
                }
            },
        };

        let expires_at = now + Duration::days(i64::from(settings.superseded_key_retention_days));
        let mut added = KeyMeta::new(req.key_id, req.volume_type, created_at);
        let newest_current = live
            .iter()
            .filter(|k| k.volume_type == req.volume_type && !k.is_superseded())
            .fold(None::<&KeyMeta>, |best, k| match best {
                Some(b) if !newer(k, b) => Some(b),
                _ => Some(k),
            });
        let mut keys = live.clone();
        let mut current: Vec<_> = record
            .current
            .iter()
            .filter(|(id, _)| *id != req.key_id)
            .cloned()
            .collect();
        let mut superseded = Vec::new();
        if newest_current.is_none_or(|c| newer(&added, c)) {
            for k in keys
                .iter_mut()
                .filter(|k| k.volume_type == req.volume_type && !k.is_superseded())
            {
                k.superseded_at = Some(now);
                k.expires_at = Some(expires_at);
                if let Some(pos) = current.iter().position(|(id, _)| *id == k.key_id) {
                    superseded.push((k.clone(), current.remove(pos).1));
                }
            }
            current.push((req.key_id, sealed_key.clone()));
        } else {
            // An older key than the one held (an out-of-order sync): kept
            // for the helpdesk like any superseded key, never current.
            added.superseded_at = Some(now);
            added.expires_at = Some(expires_at);
            superseded.push((added.clone(), sealed_key.clone()));
        }
        keys.push(added.clone());
        let mut digests: Vec<(KeyId, String)> = record
            .digests
            .iter()
            .filter(|(id, _)| *id != req.key_id && keys.iter().any(|k| k.key_id == *id))
            .cloned()
            .collect();
        digests.push((req.key_id, digest.clone()));
        let write = EscrowWrite {
            device: Device {
                keys,
                ..record.device.clone()
            },
            expected_version: record.version,
            added: added.clone(),
            current,
            digests,
            superseded,
        };
        let reason = if added.is_superseded() {
            "escrowed_superseded"
        } else {
            "escrowed"
        };
        let event = audit.event(Some(req.key_id), Outcome::Granted, reason, None);
        match portal.lifecycle.commit_escrow(&write, &event).await? {
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
                return Ok(Escrowed::Created(added));
            }
            WriteOutcome::Conflict | WriteOutcome::NotFound => continue,
            WriteOutcome::RequestIdReused => return Err(request_id_reused()),
        }
    }
    Err(too_busy())
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

/// `PUT /v1/devices/{device_id}`.
pub async fn upsert_device(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    device_id: &DeviceId,
    md: DeviceMetadata,
) -> Result<Upserted, ApiError> {
    let audit = WriteEvent {
        portal,
        caller,
        meta,
        action: Action::DeviceUpsert,
        device_id: Some(device_id),
    };
    for _ in 0..WRITE_ATTEMPTS {
        let (record, _) = portal
            .lifecycle
            .device_for_write(&caller.tenant, device_id)
            .await?;
        let now = portal.clock.now();
        if let Some(r) = &record
            && let Err((e, reason)) = may_change(caller, &r.device, &md)
        {
            if reason == "self_assignment" {
                portal.count(Metric::OwnerChangesRefused, 1);
            }
            return Err(audit.deny(None, reason, e).await);
        }
        let (write, reason, detail) = match record {
            None => (
                DeviceUpsert {
                    device: Device {
                        tenant: caller.tenant.clone(),
                        device_id: device_id.clone(),
                        owner: md.owner.clone(),
                        display_name: md.display_name.clone(),
                        os: md.os.clone(),
                        managed_by: md.managed_by,
                        keys: Vec::new(),
                        owner_since: None,
                        retired: None,
                    },
                    expected_version: None,
                },
                "created",
                None,
            ),
            Some(record) => {
                let d = &record.device;
                if d.owner == md.owner
                    && d.display_name == md.display_name
                    && d.os == md.os
                    && d.managed_by == md.managed_by
                {
                    return Ok(Upserted::Unchanged(record.device));
                }
                // Owner is not part of the KMS context: an ownership change
                // is named in the trail so it can never pass unnoticed.
                let detail =
                    (d.owner != md.owner).then(|| format!("owner {} -> {}", d.owner, md.owner));
                (
                    DeviceUpsert {
                        device: Device {
                            owner: md.owner.clone(),
                            display_name: md.display_name.clone(),
                            os: md.os.clone(),
                            managed_by: md.managed_by,
                            keys: d.keys.iter().filter(|k| k.is_live(now)).cloned().collect(),
                            // The new owner reads only keys created from now on,
                            // unless the directory itself (a sync, like an
                            // import) names the owner: it is authoritative, and
                            // its own portal shows the owner every key.
                            owner_since: if d.owner == md.owner {
                                d.owner_since
                            } else if caller.user.is_directory_sync() {
                                None
                            } else {
                                Some(now)
                            },
                            ..d.clone()
                        },
                        expected_version: Some(record.version),
                    },
                    "updated",
                    detail,
                )
            }
        };
        let event = audit.event(None, Outcome::Granted, reason, detail);
        match portal.lifecycle.commit_upsert(&write, &event).await? {
            WriteOutcome::Written => {
                if event.justification.is_some() {
                    portal.count(Metric::OwnerChanges, 1);
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
fn may_change(
    caller: &Caller,
    d: &Device,
    md: &DeviceMetadata,
) -> Result<(), (ApiError, &'static str)> {
    if d.retired.is_some() {
        let e = ApiError::Conflict(format!(
            "Device {} is retired. Restore it first (POST /v1/devices/{}/restore), then change it.",
            d.device_id, d.device_id
        ));
        return Err((e, "retired"));
    }
    if d.owner != md.owner && md.owner == caller.user {
        let e = ApiError::SecondPersonRequired(
            "You cannot make yourself the owner of a device: ask another administrator with Devices.ReadWrite.All to change the owner, or a helpdesk agent to read its key."
                .into(),
        );
        return Err((e, "self_assignment"));
    }
    Ok(())
}

/// `DELETE /v1/devices/{device_id}`: retires the device. It leaves its
/// owner's list and self-service at once (the uniform 404 there); for the
/// tenant's `retired_device_retention_days` the helpdesk can still read its
/// keys by key ID with a reason and `restore_device` brings it back; then
/// it is deleted (TTL on AWS, the sweep when embedded).
pub async fn retire_device(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    device_id: &DeviceId,
    reason: Option<String>,
) -> Result<(), ApiError> {
    let audit = WriteEvent {
        portal,
        caller,
        meta,
        action: Action::DeviceRetire,
        device_id: Some(device_id),
    };
    for _ in 0..WRITE_ATTEMPTS {
        let (record, settings) = portal
            .lifecycle
            .device_for_write(&caller.tenant, device_id)
            .await?;
        let Some(record) = record.filter(|r| r.device.retired.is_none()) else {
            return Err(audit
                .deny(None, "not_found", ApiError::DeviceNotFound)
                .await);
        };
        let now = portal.clock.now();
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
        let mut event = audit.event(None, Outcome::Granted, "retired", reason.clone());
        event.justification = Some(match &reason {
            Some(r) => format!("{r} (restorable for {days} days)"),
            None => format!("restorable for {days} days"),
        });
        match portal
            .lifecycle
            .retire_device(&retired, record.version, &event)
            .await?
        {
            WriteOutcome::Written => {
                portal.count(Metric::DevicesRetired, 1);
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
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    device_id: &DeviceId,
) -> Result<Device, ApiError> {
    let audit = WriteEvent {
        portal,
        caller,
        meta,
        action: Action::DeviceRestore,
        device_id: Some(device_id),
    };
    for _ in 0..WRITE_ATTEMPTS {
        let (record, _) = portal
            .lifecycle
            .device_for_write(&caller.tenant, device_id)
            .await?;
        let now = portal.clock.now();
        let Some(record) = record.filter(|r| r.device.retired.is_some() && !r.device.is_gone(now))
        else {
            return Err(audit
                .deny(None, "not_found", ApiError::DeviceNotFound)
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
        let event = audit.event(None, Outcome::Granted, "restored", None);
        match portal
            .lifecycle
            .restore_device(&restored, record.version, &event)
            .await?
        {
            WriteOutcome::Written => {
                portal.count(Metric::DevicesRestored, 1);
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
    portal: &Portal,
    caller: &Caller,
    cursor: Option<&str>,
    limit: usize,
) -> Result<RotationRequests, ApiError> {
    let only = policy::escrow_scope(caller);
    let page = portal
        .lifecycle
        .rotation_requests(&caller.tenant, cursor, limit)
        .await?;
    let now = portal.clock.now();
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
mod tests {
    use super::*;
    use crate::domain::ids::TenantId;

    #[test]
    fn digests_bind_the_context() {
        let pw = RecoveryPassword::parse("123453-234564-345675-456786-567897-679008-700007-000000")
            .unwrap();
        let ctx = |d: &str| KeyContext {
            tenant: TenantId::parse("t1").unwrap(),
            device: DeviceId::parse(d).unwrap(),
            key_id: KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap(),
        };
        let a = key_digest(&ctx("PC-1"), &pw);
        assert_eq!(a.len(), 64);
        assert_eq!(a, key_digest(&ctx("PC-1"), &pw));
        assert_ne!(a, key_digest(&ctx("PC-2"), &pw));
        assert!(!a.contains("123453"));
    }

    #[test]
    fn newer_orders_by_time_then_lower_key_id() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let k =
            |id: &str, t| KeyMeta::new(KeyId::parse(id).unwrap(), VolumeType::OperatingSystem, t);
        let a = k("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", t);
        let b = k("2f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", t);
        let c = k(
            "0f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
            t + Duration::seconds(1),
        );
        assert!(newer(&a, &b) && !newer(&b, &a));
        assert!(newer(&c, &a) && !newer(&a, &c));
        assert!(!newer(&a, &a));
    }
}
