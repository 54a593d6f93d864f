//! Reads and writes of single rows, inside a transaction the caller holds:
//! the building blocks the port implementations compose, so each port
//! method is one transaction.

use super::codec;
use crate::domain::audit::{AuditEvent, Position};
use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::model::{Device, SealedKey, TenantPolicy};
use crate::domain::ratelimit::RateWindow;
use rusqlite::{OptionalExtension, Transaction, params};

/// A device row as stored.
pub(super) struct DeviceRow {
    pub device: Device,
    pub digests: Vec<(KeyId, String)>,
    pub fingerprint: String,
}

/// The tenant record's settings; no record: `TenantPolicy::default()` (no
/// self-service), as on the other stores.
pub(super) fn policy(tx: &Transaction<'_>, tenant: &TenantId) -> rusqlite::Result<TenantPolicy> {
    let json: Option<Option<String>> = tx
        .query_row(
            "SELECT policy FROM tenants WHERE tenant = ?1",
            [tenant.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    match json.flatten() {
        Some(j) => codec::policy_from_json(&j),
        None => Ok(TenantPolicy::default()),
    }
}

pub(super) fn tenant_version(tx: &Transaction<'_>, tenant: &TenantId) -> rusqlite::Result<u64> {
    tx.query_row(
        "SELECT version FROM tenants WHERE tenant = ?1",
        [tenant.as_str()],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.unwrap_or(0).max(0) as u64)
}

/// Writes the tenant's settings and moves its version on.
pub(super) fn put_policy(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    policy: &TenantPolicy,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO tenants (tenant, policy, version) VALUES (?1, ?2, 1)
         ON CONFLICT (tenant) DO UPDATE SET policy = ?2, version = version + 1",
        params![tenant.as_str(), codec::policy_to_json(policy)],
    )?;
    Ok(())
}

pub(super) fn device(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
) -> rusqlite::Result<Option<DeviceRow>> {
    tx.query_row(
        "SELECT record, digests, fingerprint FROM devices WHERE tenant = ?1 AND device = ?2",
        [tenant.as_str(), device.as_str()],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
    )
    .optional()?
    .map(|(record, digests, fingerprint)| {
        Ok(DeviceRow {
            device: codec::device_from_json(tenant.clone(), device.clone(), &record)?,
            digests: codec::digests_from_json(&digests)?,
            fingerprint,
        })
    })
    .transpose()
}

/// Creates or replaces the device row and its key-ID index entries.
pub(super) fn put_device(tx: &Transaction<'_>, row: &DeviceRow) -> rusqlite::Result<()> {
    let d = &row.device;
    tx.execute(
        "INSERT OR REPLACE INTO devices (tenant, device, owner, record, digests, fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            d.tenant.as_str(),
            d.device_id.as_str(),
            d.owner.as_str(),
            codec::device_to_json(d),
            codec::digests_to_json(&row.digests),
            row.fingerprint,
        ],
    )?;
    tx.execute(
        "DELETE FROM key_index WHERE tenant = ?1 AND device = ?2",
        [d.tenant.as_str(), d.device_id.as_str()],
    )?;
    for k in &d.keys {
        tx.execute(
            "INSERT OR IGNORE INTO key_index (tenant, key_hex, device) VALUES (?1, ?2, ?3)",
            [d.tenant.as_str(), &k.key_id.hex(), d.device_id.as_str()],
        )?;
    }
    Ok(())
}

/// Deletes the device row, its index entries and every ciphertext it has.
pub(super) fn delete_device(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
) -> rusqlite::Result<bool> {
    let ids = [tenant.as_str(), device.as_str()];
    tx.execute(
        "DELETE FROM key_index WHERE tenant = ?1 AND device = ?2",
        ids,
    )?;
    tx.execute(
        "DELETE FROM sealed_keys WHERE tenant = ?1 AND device = ?2",
        ids,
    )?;
    Ok(tx.execute("DELETE FROM devices WHERE tenant = ?1 AND device = ?2", ids)? > 0)
}

/// Ciphertexts of the device's keys, current or superseded.
pub(super) fn sealed(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
    superseded: bool,
) -> rusqlite::Result<Vec<(KeyId, SealedKey)>> {
    let mut st = tx.prepare_cached(
        "SELECT key_id, sealed FROM sealed_keys
         WHERE tenant = ?1 AND device = ?2 AND superseded = ?3 ORDER BY rowid",
    )?;
    let rows = st.query_map(params![tenant.as_str(), device.as_str(), superseded], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    rows.map(|r| {
        let (id, blob) = r?;
        Ok((codec::key_id(&id)?, SealedKey(blob)))
    })
    .collect()
}

/// Replaces the device's current ciphertexts with `current`.
pub(super) fn put_current(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
    current: &[(KeyId, SealedKey)],
) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM sealed_keys WHERE tenant = ?1 AND device = ?2 AND superseded = 0",
        [tenant.as_str(), device.as_str()],
    )?;
    for (id, s) in current {
        put_sealed(tx, tenant, device, id, s, false)?;
    }
    Ok(())
}

pub(super) fn put_sealed(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
    key: &KeyId,
    sealed: &SealedKey,
    superseded: bool,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO sealed_keys (tenant, device, key_id, superseded, sealed)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            tenant.as_str(),
            device.as_str(),
            key.to_string(),
            superseded,
            sealed.0
        ],
    )?;
    Ok(())
}

pub(super) fn device_version(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
) -> rusqlite::Result<u64> {
    tx.query_row(
        "SELECT version FROM device_versions WHERE tenant = ?1 AND device = ?2",
        [tenant.as_str(), device.as_str()],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.unwrap_or(0).max(0) as u64)
}

/// Moves the device's version on by one.
pub(super) fn bump_device_version(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO device_versions (tenant, device, version) VALUES (?1, ?2, 1)
         ON CONFLICT (tenant, device) DO UPDATE SET version = version + 1",
        [tenant.as_str(), device.as_str()],
    )?;
    Ok(())
}

/// Appends one event: every event is a record of its own.
pub(super) fn append(tx: &Transaction<'_>, e: &AuditEvent) -> rusqlite::Result<()> {
    let json = serde_json::to_string(e).expect("audit events always serialise");
    tx.prepare_cached(
        "INSERT INTO audit (tenant, pos, actor, device, event) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        e.tenant_id.as_str(),
        Position::of(e).key(),
        e.actor.as_str(),
        e.device_id.as_ref().map(|d| d.as_str()),
        json
    ])?;
    Ok(())
}

pub(super) fn rate_window(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    actor: &UserId,
) -> rusqlite::Result<RateWindow> {
    let row: Option<(String, i64)> = tx
        .query_row(
            "SELECT window, version FROM rate_windows WHERE tenant = ?1 AND actor = ?2",
            [tenant.as_str(), actor.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((json, version)) => codec::window_from_json(&json, version.max(0) as u64),
        None => Ok(RateWindow::default()),
    }
}
