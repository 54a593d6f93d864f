//! Loading a validated seed into a store: seals each key with the cipher
//! bound to its (tenant, device, key ID), skips devices whose stored
//! fingerprint matches, and writes the rest.

use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, TenantId};
use crate::domain::model::{KeyContext, SealedDevice};
use crate::ports::{CipherError, ImportDevice, ImportStore, KeyCipher};
use crate::tools::seed::{Seed, SeedDevice};
use aws_lc_rs::digest;
use futures_util::{StreamExt, TryStreamExt, stream};

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
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("sealing a key failed: {0}")]
    Cipher(#[from] CipherError),
}

/// Fingerprint of everything imported for a device, passwords included, so a
/// changed key (or tenant setting, which is copied onto device items) is
/// rewritten and an unchanged one is not. A SHA-256 over a 128-bit-entropy
/// secret reveals nothing practical about it.
pub fn fingerprint(d: &SeedDevice) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let dev = &d.device;
    let h = d.policy.helpdesk.clone().unwrap_or_default();
    for part in [
        dev.tenant.as_str(),
        dev.device_id.as_str(),
        dev.owner.as_str(),
        &dev.display_name,
        &dev.os,
        dev.managed_by.as_str(),
        if d.policy.self_service { "1" } else { "0" },
        h.name.as_deref().unwrap_or("\u{1}"),
        h.email.as_deref().unwrap_or("\u{1}"),
        h.phone.as_deref().unwrap_or("\u{1}"),
        h.url.as_deref().unwrap_or("\u{1}"),
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

/// Imports a validated seed. `progress(done, total)` is called after each chunk.
pub async fn import(
    seed: &Seed,
    cipher: &dyn KeyCipher,
    store: &dyn ImportStore,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportSummary, ImportError> {
    store.put_tenants(&seed.tenants).await?;
    let mut summary = ImportSummary {
        tenants: seed.tenants.len(),
        ..Default::default()
    };
    let total = seed.devices.len();
    progress(0, total);
    for (n, chunk) in seed.devices.chunks(CHUNK).enumerate() {
        let ids: Vec<(TenantId, DeviceId)> = chunk
            .iter()
            .map(|d| (d.device.tenant.clone(), d.device.device_id.clone()))
            .collect();
        let stored = store.fingerprints(&ids).await?;
        let changed: Vec<(&SeedDevice, String)> = chunk
            .iter()
            .zip(&ids)
            .map(|(d, id)| (d, fingerprint(d), id))
            .filter(|(_, fp, id)| stored.get(*id) != Some(fp))
            .map(|(d, fp, _)| (d, fp))
            .collect();
        summary.skipped += chunk.len() - changed.len();
        let sealed: Vec<ImportDevice> = stream::iter(changed)
            .map(|(d, fp)| seal_device(cipher, d, fp))
            .buffered(SEAL_CONCURRENCY)
            .try_collect()
            .await?;
        store.put_devices(&sealed).await?;
        summary.devices += sealed.len();
        summary.keys += sealed.iter().map(|d| d.sealed.sealed.len()).sum::<usize>();
        progress((n * CHUNK + chunk.len()).min(total), total);
    }
    Ok(summary)
}
