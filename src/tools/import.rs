//! Loading a validated seed into a store: seals each key with the cipher
//! bound to its (tenant, device, key ID), skips devices whose stored
//! fingerprint matches, and writes the rest.
//!
//! Owner is not part of the encryption context, so moving a device to
//! another owner is recorded in the audit trail, under the importer's
//! identity (`import:<name>`), before the device is rewritten. So is a
//! change to a stored tenant's settings (a `settings_change`, as
//! `PATCH /v1/tenant/settings` records), before the tenant is rewritten.

use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, TenantId, UserId};
use crate::domain::model::{KeyContext, SealedDevice};
use crate::domain::ports::{CipherError, ImportDevice, ImportStore, KeyCipher};
use crate::tools::seed::{Seed, SeedDevice};
use aws_lc_rs::digest;
use futures_util::{StreamExt, TryStreamExt, stream};

/// The importer recorded by [`import`], which does not say who runs it
/// (the demo data, tests); `portal import` names the person.
pub const UNATTRIBUTED: &str = "unattributed";

/// Reason of the audit event for a device moved to another owner.
pub const OWNER_CHANGED: &str = "owner_changed";

/// Reason of the audit event for a tenant whose settings an import changed.
pub const SETTINGS_CHANGED: &str = "settings_changed";

/// Devices per store round (fingerprint read + write).
const CHUNK: usize = 500;
/// Concurrent seal calls (KMS `Encrypt` in production).
const SEAL_CONCURRENCY: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub tenants: usize,
    /// Devices written (new or changed).
    pub devices: usize,
    /// Keys sealed and written.
    pub keys: usize,
    /// Devices left as they were because nothing about them changed.
    pub skipped: usize,
    /// Devices moved to another owner (each recorded in the audit trail).
    pub owner_changes: usize,
    /// Tenants whose stored settings the import changed (each recorded in
    /// the audit trail as a `settings_change`).
    pub settings_changes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("sealing a key failed: {0}")]
    Cipher(#[from] CipherError),
}

/// Fingerprint of everything imported for a device, passwords included, so a
/// changed key is rewritten and an unchanged one is not. The tenant's policy
/// is not part of it: it lives on the tenant record only, so changing it
/// rewrites no device. A SHA-256 over a 128-bit-entropy secret reveals
/// nothing practical about it.
pub fn fingerprint(d: &SeedDevice) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let dev = &d.device;
    for part in [
        dev.tenant.as_str(),
        dev.device_id.as_str(),
        dev.owner.as_str(),
        &dev.display_name,
        &dev.os,
        dev.managed_by.as_str(),
    ] {
        ctx.update(part.as_bytes());
        ctx.update(b"\0");
    }
    for (meta, pw) in &d.passwords {
        ctx.update(meta.key_id.to_string().as_bytes());
        ctx.update(meta.volume_type.as_str().as_bytes());
        ctx.update(&meta.created_at.unix_timestamp_nanos().to_be_bytes());
        ctx.update(pw.expose().as_bytes());
        ctx.update(b"\0");
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn seal_device(
    cipher: &dyn KeyCipher,
    d: &SeedDevice,
    fingerprint: String,
) -> Result<ImportDevice, CipherError> {
    let mut sealed = Vec::with_capacity(d.passwords.len());
    let mut digests = Vec::with_capacity(d.passwords.len());
    for (meta, pw) in &d.passwords {
        let ctx = KeyContext {
            tenant: d.device.tenant.clone(),
            device: d.device.device_id.clone(),
            key_id: meta.key_id,
        };
        sealed.push((meta.key_id, cipher.seal(&ctx, pw).await?));
        digests.push((meta.key_id, crate::domain::lifecycle::key_digest(&ctx, pw)));
    }
    Ok(ImportDevice {
        sealed: SealedDevice {
            device: d.device.clone(),
            policy: d.policy.clone(),
            sealed,
        },
        fingerprint,
        digests,
    })
}

/// Imports a validated seed, recording ownership changes as made by
/// [`UNATTRIBUTED`]. `progress(done, total)` is called after each chunk.
pub async fn import(
    seed: &Seed,
    cipher: &dyn KeyCipher,
    store: &dyn ImportStore,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportSummary, ImportError> {
    let importer = UserId::importer(UNATTRIBUTED).expect("a valid name");
    import_as(seed, cipher, store, &importer, progress).await
}

/// The audit event of a device moved from `old` to its new owner.
fn owner_change(importer: &UserId, run: &str, d: &SeedDevice, old: &UserId) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        time: time::OffsetDateTime::now_utc(),
        tenant_id: d.device.tenant.clone(),
        actor: importer.clone(),
        device_id: Some(d.device.device_id.clone()),
        key_id: None,
        outcome: Outcome::Changed,
        reason: OWNER_CHANGED.into(),
        justification: Some(format!("owner {old} -> {}", d.device.owner)),
        source_ip: None,
        user_agent: Some(format!("portal-import/{}", env!("CARGO_PKG_VERSION"))),
        request_id: run.to_owned(),
        action: crate::domain::audit::Action::DeviceUpsert,
    }
}

/// The audit event of a stored tenant's settings changed from `old` to
/// those of `t`.
fn settings_change(
    importer: &UserId,
    run: &str,
    t: &crate::domain::model::Tenant,
    old: &crate::domain::model::TenantPolicy,
) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        time: time::OffsetDateTime::now_utc(),
        tenant_id: t.id.clone(),
        actor: importer.clone(),
        device_id: None,
        key_id: None,
        outcome: Outcome::Changed,
        reason: SETTINGS_CHANGED.into(),
        justification: Some(crate::domain::settings::describe_change(old, &t.policy)),
        source_ip: None,
        user_agent: Some(format!("portal-import/{}", env!("CARGO_PKG_VERSION"))),
        request_id: run.to_owned(),
        action: crate::domain::audit::Action::SettingsChange,
    }
}

/// Imports a validated seed as `importer` (`UserId::importer`): a device
/// moved to another owner gets an audit event by that actor, stored before
/// the device is rewritten (if it cannot be stored, the device is not);
/// likewise a stored tenant whose settings the file changes gets a
/// `settings_change` event before its settings are written (a new tenant
/// is created, not changed: no event, as for a new device).
pub async fn import_as(
    seed: &Seed,
    cipher: &dyn KeyCipher,
    store: &dyn ImportStore,
    importer: &UserId,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportSummary, ImportError> {
    // One id for every event of this run, to find them together.
    let run = format!("import-{}", uuid::Uuid::new_v4().simple());
    let ids: Vec<TenantId> = seed.tenants.iter().map(|t| t.id.clone()).collect();
    let stored = store.stored_tenants(&ids).await?;
    let settings_changes: Vec<AuditEvent> = seed
        .tenants
        .iter()
        .filter_map(|t| {
            // Settings only: an incident is not one (and an import keeps it).
            let old = stored.get(&t.id).filter(|old| {
                let mut old = (*old).clone();
                old.incident = None;
                old != t.policy
            })?;
            Some(settings_change(importer, &run, t, old))
        })
        .collect();
    // The record of who changed which settings first: if it cannot be
    // stored, no tenant is written.
    if !settings_changes.is_empty() {
        store.append_import_events(&settings_changes).await?;
    }
    store.put_tenants(&seed.tenants).await?;
    let mut summary = ImportSummary {
        tenants: seed.tenants.len(),
        settings_changes: settings_changes.len(),
        ..Default::default()
    };
    let total = seed.devices.len();
    progress(0, total);
    for (n, chunk) in seed.devices.chunks(CHUNK).enumerate() {
        let ids: Vec<(TenantId, DeviceId)> = chunk
            .iter()
            .map(|d| (d.device.tenant.clone(), d.device.device_id.clone()))
            .collect();
        let stored = store.stored_devices(&ids).await?;
        let mut moved = Vec::new();
        let mut changed: Vec<(&SeedDevice, String)> = Vec::new();
        for (d, id) in chunk.iter().zip(&ids) {
            let fp = fingerprint(d);
            let old = stored.get(id);
            if old.and_then(|o| o.fingerprint.as_ref()) == Some(&fp) {
                continue;
            }
            if let Some(old) = old.filter(|o| o.owner != d.device.owner) {
                moved.push(owner_change(importer, &run, d, &old.owner));
            }
            changed.push((d, fp));
        }
        summary.skipped += chunk.len() - changed.len();
        let sealed: Vec<ImportDevice> = stream::iter(changed)
            .map(|(d, fp)| seal_device(cipher, d, fp))
            .buffered(SEAL_CONCURRENCY)
            .try_collect()
            .await?;
        // Sealed first (a sealing failure changes nothing), then the record
        // of who moved which device, then the devices themselves.
        if !moved.is_empty() {
            store.append_import_events(&moved).await?;
            summary.owner_changes += moved.len();
        }
        store.put_devices(&sealed).await?;
        summary.devices += sealed.len();
        summary.keys += sealed.iter().map(|d| d.sealed.sealed.len()).sum::<usize>();
        progress((n * CHUNK + chunk.len()).min(total), total);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(self_service: bool, owner: &str) -> Seed {
        crate::tools::seed::parse(&format!(
            r#"{{"tenants":[{{"tenant_id":"contoso","self_service":{self_service}}}],
               "devices":[{{"tenant_id":"contoso","device_id":"PC-1","owner":"{owner}",
                 "display_name":"Alice's laptop","os":"Windows 11","managed_by":"organization",
                 "recovery_keys":[{{"key_id":"1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
                   "volume_type":"operating_system",
                   "recovery_password":"038258-286682-604857-317823-647658-401093-009361-230186",
                   "created_at":"2024-05-15T09:30:00Z"}}]}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn fingerprints_are_sha256_of_the_documented_fields() {
        // SHA-256 of "contoso\0PC-1\0alice\0Alice's laptop\0Windows 11\0organization\0"
        // then, per key, the canonical key ID, the volume type, created_at in
        // Unix nanoseconds (i128 big-endian), the password and "\0"; computed
        // outside this code (Python's hashlib).
        let s = seed(true, "alice");
        assert_eq!(
            fingerprint(&s.devices[0]),
            "465f43973ecdb930f5ef9a3c54942163dafec2910b3f07aee216efb6d7d0537b"
        );
        // The tenant's policy is not part of it; the owner is.
        assert_eq!(
            fingerprint(&seed(false, "alice").devices[0]),
            fingerprint(&s.devices[0])
        );
        assert_ne!(
            fingerprint(&seed(true, "bob").devices[0]),
            fingerprint(&s.devices[0])
        );
    }
}
