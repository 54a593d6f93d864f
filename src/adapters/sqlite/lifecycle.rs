//! `LifecycleStore` on SQLite, with the other stores' semantics: every
//! write is conditional on the record's version and carries its audit
//! event in the same transaction; superseded ciphertexts are kept apart
//! until they expire, and `sweep_expired` deletes them (DynamoDB's TTL
//! does that on AWS; `portal serve` runs the sweep every hour).

use super::{SqliteStore, codec, rows};
use crate::domain::audit::{AuditEvent, time_key};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::{Device, KeyContext, SealedKey, TenantPolicy};
use crate::domain::ports::{
    DeviceRecord, DeviceUpsert, EscrowWrite, LifecycleStore, RotationPage, StoredKey,
    StoredKeyPage, WriteOutcome,
};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;

/// Drops ciphertexts and digests of keys no longer in the device's metadata.
fn prune(tx: &Transaction<'_>, row: &mut rows::DeviceRow) -> rusqlite::Result<()> {
    let ids: Vec<KeyId> = row.device.keys.iter().map(|m| m.key_id).collect();
    row.digests.retain(|(id, _)| ids.contains(id));
    let names: Vec<String> = ids.iter().map(|k| k.to_string()).collect();
    tx.execute(
        "DELETE FROM sealed_keys WHERE tenant = ?1 AND device = ?2
         AND key_id NOT IN (SELECT value FROM json_each(?3))",
        params![
            row.device.tenant.as_str(),
            row.device.device_id.as_str(),
            serde_json::to_string(&names).expect("strings serialise")
        ],
    )?;
    Ok(())
}

fn escrow_tx(
    tx: &Transaction<'_>,
    w: &EscrowWrite,
    event: &AuditEvent,
) -> rusqlite::Result<WriteOutcome> {
    let (t, d) = (&w.device.tenant, &w.device.device_id);
    let Some(mut row) = rows::device(tx, t, d)? else {
        return Ok(WriteOutcome::Conflict);
    };
    if rows::device_version(tx, t, d)? != w.expected_version {
        return Ok(WriteOutcome::Conflict);
    }
    row.device.keys = w.device.keys.clone();
    row.digests = w.digests.clone();
    rows::put_current(tx, t, d, &w.current)?;
    for (meta, sealed) in &w.superseded {
        rows::put_sealed(tx, t, d, &meta.key_id, sealed, true)?;
    }
    prune(tx, &mut row)?;
    rows::put_device(tx, &row)?;
    rows::bump_device_version(tx, t, d)?;
    rows::append(tx, event)?;
    Ok(WriteOutcome::Written)
}

fn upsert_tx(
    tx: &Transaction<'_>,
    w: &DeviceUpsert,
    event: &AuditEvent,
) -> rusqlite::Result<WriteOutcome> {
    let dev = &w.device;
    let old = rows::device(tx, &dev.tenant, &dev.device_id)?;
    let version = rows::device_version(tx, &dev.tenant, &dev.device_id)?;
    match w.expected_version {
        None if old.is_some() => return Ok(WriteOutcome::Conflict),
        Some(v) if old.is_none() || v != version => return Ok(WriteOutcome::Conflict),
        _ => {}
    }
    let mut row = match old {
        Some(mut old) => {
            old.device = dev.clone();
            old
        }
        None => rows::DeviceRow {
            device: dev.clone(),
            digests: Vec::new(),
            fingerprint: String::new(),
        },
    };
    prune(tx, &mut row)?;
    rows::put_device(tx, &row)?;
    rows::bump_device_version(tx, &dev.tenant, &dev.device_id)?;
    rows::append(tx, event)?;
    Ok(WriteOutcome::Written)
}

/// Retirement and restoration: the device's `retired` and keys replaced
/// if still at `expected_version`. A retired device stays stored (its keys
/// findable by key ID) but leaves owner listings and rotation requests,
/// which read `retired`; the sweep deletes it once it expires.
fn replace_retired_tx(
    tx: &Transaction<'_>,
    device: &Device,
    expected_version: u64,
    event: &AuditEvent,
) -> rusqlite::Result<WriteOutcome> {
    let (t, d) = (&device.tenant, &device.device_id);
    let Some(mut row) = rows::device(tx, t, d)? else {
        return Ok(WriteOutcome::Conflict);
    };
    if rows::device_version(tx, t, d)? != expected_version {
        return Ok(WriteOutcome::Conflict);
    }
    row.device.retired = device.retired;
    row.device.keys = device.keys.clone();
    prune(tx, &mut row)?;
    rows::put_device(tx, &row)?;
    rows::bump_device_version(tx, t, d)?;
    rows::append(tx, event)?;
    Ok(WriteOutcome::Written)
}

/// Replaces the tenant's settings or incident summary if the tenant record
/// is still at `expected`, with the audit event.
fn tenant_write(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    policy: &TenantPolicy,
    expected: u64,
    event: &AuditEvent,
) -> rusqlite::Result<WriteOutcome> {
    if rows::tenant_version(tx, tenant)? != expected {
        return Ok(WriteOutcome::Conflict);
    }
    rows::put_policy(tx, tenant, policy)?;
    rows::append(tx, event)?;
    Ok(WriteOutcome::Written)
}

/// `<unix nanoseconds, zero-padded>#<device id>`: sorts as the pages go.
fn rotation_sort_key(since: OffsetDateTime, device: &DeviceId) -> String {
    format!("{:020}#{device}", since.unix_timestamp_nanos().max(0))
}

fn tenant_devices(tx: &Transaction<'_>, tenant: &TenantId) -> rusqlite::Result<Vec<Device>> {
    let mut st = tx.prepare("SELECT device, record FROM devices WHERE tenant = ?1")?;
    let rows = st.query_map([tenant.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|r| {
        let (id, json) = r?;
        codec::device_from_json(tenant.clone(), codec::device_id(&id)?, &json)
    })
    .collect()
}

fn rotation_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    cursor: Option<&str>,
    limit: usize,
) -> rusqlite::Result<RotationPage> {
    let mut due: Vec<(String, Device)> = tenant_devices(tx, tenant)?
        .into_iter()
        .filter(|dev| dev.retired.is_none())
        .filter_map(|dev| {
            let since = dev
                .keys
                .iter()
                .filter(|k| k.rotation_due())
                .filter_map(|k| k.disclosed_at)
                .min()?;
            Some((rotation_sort_key(since, &dev.device_id), dev))
        })
        .filter(|(sort, _)| cursor.is_none_or(|c| sort.as_str() > c))
        .collect();
    due.sort_by(|a, b| a.0.cmp(&b.0));
    let more = due.len() > limit;
    due.truncate(limit);
    let next = more.then(|| due.last().map(|(s, _)| s.clone())).flatten();
    Ok(RotationPage {
        devices: due.into_iter().map(|(_, d)| d).collect(),
        next,
    })
}

fn stored_keys_tx(
    tx: &Transaction<'_>,
    tenant: Option<&TenantId>,
) -> rusqlite::Result<StoredKeyPage> {
    let mut st = tx.prepare(
        "SELECT tenant, device, key_id, sealed, superseded FROM sealed_keys
         WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, device, superseded, rowid",
    )?;
    let rows = st.query_map([tenant.map(|t| t.as_str())], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })?;
    let keys = rows
        .map(|r| {
            let (t, d, k, sealed, superseded) = r?;
            Ok(StoredKey {
                context: KeyContext {
                    tenant: codec::tenant_id(&t)?,
                    device: codec::device_id(&d)?,
                    key_id: codec::key_id(&k)?,
                },
                sealed: SealedKey(sealed),
                superseded,
            })
        })
        .collect::<rusqlite::Result<_>>()?;
    Ok(StoredKeyPage { keys, next: None })
}

/// Deletes retired devices past their retention with every key they hold,
/// and removes keys past their retention from every other device's
/// metadata, with their ciphertexts and digests; how many keys.
fn sweep_tx(tx: &Transaction<'_>, now: OffsetDateTime) -> rusqlite::Result<usize> {
    // Only keys and retirements with an `expires_at` ever expire (codec
    // writes `null` for the others), so only their devices are read.
    let ids: Vec<(String, String)> = tx
        .prepare("SELECT tenant, device FROM devices WHERE record LIKE '%\"expires_at\":\"%'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut removed = 0;
    for (t, d) in ids {
        let (t, d) = (codec::tenant_id(&t)?, codec::device_id(&d)?);
        let Some(mut row) = rows::device(tx, &t, &d)? else {
            continue;
        };
        if row.device.is_gone(now) {
            removed += row.device.keys.len();
            rows::delete_device(tx, &t, &d)?;
            // The version survives: a write that read the retired device
            // must not pass against one enrolled again under its ID.
            rows::bump_device_version(tx, &t, &d)?;
            continue;
        }
        let before = row.device.keys.len();
        row.device.keys.retain(|m| m.is_live(now));
        let gone = before - row.device.keys.len();
        if gone > 0 {
            removed += gone;
            prune(tx, &mut row)?;
            rows::put_device(tx, &row)?;
            rows::bump_device_version(tx, &t, &d)?;
        }
    }
    Ok(removed)
}

impl SqliteStore {
    /// Retiring and restoring write the same way: the device as the domain
    /// left it (retired or not), if its version is still the one read.
    async fn replace_retired(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let (d, e) = (device.clone(), event.clone());
        self.write(move |tx| replace_retired_tx(tx, &d, expected_version, &e))
            .await
    }
}

#[async_trait]
impl LifecycleStore for SqliteStore {
    async fn device_for_write(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable> {
        let (tenant, device) = (tenant.clone(), device.clone());
        self.read(move |tx| {
            let record = match rows::device(tx, &tenant, &device)? {
                None => None,
                Some(row) => Some(DeviceRecord {
                    device: row.device,
                    current: rows::sealed(tx, &tenant, &device, false)?,
                    digests: row.digests,
                    version: rows::device_version(tx, &tenant, &device)?,
                }),
            };
            Ok((record, rows::policy(tx, &tenant)?))
        })
        .await
    }

    async fn commit_escrow(
        &self,
        write: &EscrowWrite,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let (w, e) = (write.clone(), event.clone());
        self.write(move |tx| escrow_tx(tx, &w, &e)).await
    }

    async fn commit_upsert(
        &self,
        write: &DeviceUpsert,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let (w, e) = (write.clone(), event.clone());
        self.write(move |tx| upsert_tx(tx, &w, &e)).await
    }

    async fn retire_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        self.replace_retired(device, expected_version, event).await
    }

    async fn restore_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        self.replace_retired(device, expected_version, event).await
    }

    async fn superseded_key(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &KeyId,
    ) -> Result<Option<SealedKey>, Unavailable> {
        let (t, d, k) = (tenant.clone(), device.clone(), *key);
        self.read(move |tx| {
            Ok(rows::sealed(tx, &t, &d, true)?
                .into_iter()
                .find(|(id, _)| *id == k)
                .map(|(_, s)| s))
        })
        .await
    }

    async fn rotation_requests(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RotationPage, Unavailable> {
        let (t, c) = (tenant.clone(), cursor.map(str::to_owned));
        self.read(move |tx| rotation_tx(tx, &t, c.as_deref(), limit))
            .await
    }

    async fn tenant_settings(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), Unavailable> {
        let t = tenant.clone();
        self.read(move |tx| Ok((rows::policy(tx, &t)?, rows::tenant_version(tx, &t)?)))
            .await
    }

    async fn commit_settings(
        &self,
        tenant: &TenantId,
        settings: &TenantPolicy,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let (t, s, e) = (tenant.clone(), settings.clone(), event.clone());
        self.write(move |tx| tenant_write(tx, &t, &s, expected_version, &e))
            .await
    }

    async fn commit_incident(
        &self,
        incident: &Incident,
        summary: Option<&OpenIncident>,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let (i, s, e) = (incident.clone(), summary.cloned(), event.clone());
        self.write(move |tx| {
            let mut policy = rows::policy(tx, &i.tenant)?;
            policy.incident = s;
            let out = tenant_write(tx, &i.tenant, &policy, expected_version, &e)?;
            if out == WriteOutcome::Written {
                tx.execute(
                    "INSERT OR REPLACE INTO incidents (tenant, incident_id, opened_at, record)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        i.tenant.as_str(),
                        i.incident_id.as_str(),
                        time_key(i.opened_at),
                        codec::incident_to_json(&i)
                    ],
                )?;
            }
            Ok(out)
        })
        .await
    }

    async fn incident(
        &self,
        tenant: &TenantId,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Unavailable> {
        let (t, id) = (tenant.clone(), id.clone());
        self.read(move |tx| {
            tx.query_row(
                "SELECT record FROM incidents WHERE tenant = ?1 AND incident_id = ?2",
                [t.as_str(), id.as_str()],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(|json| codec::incident_from_json(t.clone(), id.as_str(), &json))
            .transpose()
        })
        .await
    }

    async fn incidents(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<Incident>, Unavailable> {
        let t = tenant.clone();
        self.read(move |tx| {
            let mut st = tx.prepare(
                "SELECT incident_id, record FROM incidents WHERE tenant = ?1
                 ORDER BY opened_at DESC, incident_id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![t.as_str(), limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|r| {
                let (id, json) = r?;
                codec::incident_from_json(t.clone(), &id, &json)
            })
            .collect()
        })
        .await
    }

    async fn stored_keys(
        &self,
        tenant: Option<&TenantId>,
        _cursor: Option<&str>,
    ) -> Result<StoredKeyPage, Unavailable> {
        let t = tenant.cloned();
        self.read(move |tx| stored_keys_tx(tx, t.as_ref())).await
    }

    async fn sweep_expired(&self, now: OffsetDateTime) -> Result<usize, Unavailable> {
        self.write(move |tx| sweep_tx(tx, now)).await
    }
}
