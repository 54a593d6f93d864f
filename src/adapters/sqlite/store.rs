//! `Store` on SQLite: the read and disclosure paths. A granted disclosure's
//! event and its rate-limit slot are one transaction, committed and synced
//! before `commit_disclosure` returns, so before the key is decrypted.

use super::{SqliteStore, codec, rows};
use crate::domain::audit::{Action, AuditEvent, AuditPage, AuditQuery, Outcome, hour_of};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{Device, SealedDevice, TenantPolicy};
use crate::domain::ports::{Commit, Denial, KeyLocation, Store};
use crate::domain::ratelimit::{RateUpdate, RateWindow};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::BTreeSet;

/// A device with its current ciphertexts, carrying `policy`.
fn sealed_device(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    device: &DeviceId,
    policy: &TenantPolicy,
) -> rusqlite::Result<Option<SealedDevice>> {
    let Some(row) = rows::device(tx, tenant, device)? else {
        return Ok(None);
    };
    Ok(Some(SealedDevice {
        device: row.device,
        policy: policy.clone(),
        sealed: rows::sealed(tx, tenant, device, false)?,
    }))
}

/// After a granted disclosure was appended: the key is marked disclosed
/// (first disclosure wins) unless it is superseded, and the device's version
/// moves on so a concurrent escrow reads the mark before it writes.
fn mark_disclosed(tx: &Transaction<'_>, event: &AuditEvent) -> rusqlite::Result<()> {
    if event.outcome != Outcome::Granted || event.action != Action::Disclose {
        return Ok(());
    }
    let (Some(device), Some(key_id)) = (&event.device_id, event.key_id) else {
        return Ok(());
    };
    let Some(mut row) =
        rows::device(tx, &event.tenant_id, device)?.filter(|r| r.device.retired.is_none())
    else {
        return Ok(());
    };
    let Some(meta) = row
        .device
        .keys
        .iter_mut()
        .find(|m| m.key_id == key_id && !m.is_superseded())
    else {
        return Ok(());
    };
    meta.disclosed_at.get_or_insert(event.time);
    rows::put_device(tx, &row)?;
    rows::bump_device_version(tx, &event.tenant_id, device)
}

fn commit_batch_tx(
    tx: &Transaction<'_>,
    events: &[AuditEvent],
    rate: &RateUpdate,
) -> rusqlite::Result<Commit> {
    let Some(first) = events.first() else {
        return Ok(Commit::Written);
    };
    let current = rows::rate_window(tx, &first.tenant_id, &first.actor)?.version;
    if current != rate.expected_version {
        return Ok(Commit::RateConflict);
    }
    tx.execute(
        "INSERT OR REPLACE INTO rate_windows (tenant, actor, version, window)
         VALUES (?1, ?2, ?3, ?4)",
        params![
            first.tenant_id.as_str(),
            first.actor.as_str(),
            i64::try_from(rate.window.version).unwrap_or(i64::MAX),
            codec::window_to_json(&rate.window)
        ],
    )?;
    for e in events {
        rows::append(tx, e)?;
        mark_disclosed(tx, e)?;
    }
    Ok(Commit::Written)
}

/// `(count, marked)` of the actor's denied events in the event's hour.
fn denials(tx: &Transaction<'_>, e: &AuditEvent) -> rusqlite::Result<(u32, bool)> {
    tx.query_row(
        "SELECT count, marked FROM denials WHERE tenant = ?1 AND actor = ?2 AND hour = ?3",
        params![e.tenant_id.as_str(), e.actor.as_str(), hour_of(e.time)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map(|v| v.unwrap_or((0, false)))
}

fn put_denials(
    tx: &Transaction<'_>,
    e: &AuditEvent,
    count: u32,
    marked: bool,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO denials (tenant, actor, hour, count, marked)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            e.tenant_id.as_str(),
            e.actor.as_str(),
            hour_of(e.time),
            count,
            marked
        ],
    )?;
    Ok(())
}

/// The `limit + 1` newest events of the tenant matching `query`, filtered
/// in SQL on the columns the indexes cover; `audit::page` cuts the page.
fn audit_candidates(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    q: &AuditQuery,
) -> rusqlite::Result<Vec<AuditEvent>> {
    use crate::domain::audit::time_key;
    let mut sql = String::from("SELECT event FROM audit WHERE tenant = ?1");
    let mut args: Vec<String> = vec![tenant.to_string()];
    let mut filter = |clause: &str, value: String| {
        args.push(value);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(d) = &q.device_id {
        filter("device =", d.to_string());
    }
    if let Some(a) = &q.actor {
        filter("actor =", a.to_string());
    }
    if let Some(s) = q.since {
        filter("pos >=", time_key(s));
    }
    if let Some(u) = q.until {
        filter("pos <", time_key(u));
    }
    if let Some(c) = &q.after {
        filter("pos <", c.0.key());
    }
    sql.push_str(&format!(" ORDER BY pos DESC LIMIT {}", q.limit + 1));
    let mut st = tx.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|r| codec::event_from_json(&r?)).collect()
}

fn devices_of_owner(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    owner: &UserId,
) -> rusqlite::Result<Vec<Device>> {
    let mut st = tx.prepare_cached(
        "SELECT device, record FROM devices WHERE tenant = ?1 AND owner = ?2 ORDER BY device",
    )?;
    let rows = st.query_map([tenant.as_str(), owner.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let devices: Vec<Device> = rows
        .map(|r| {
            let (id, json) = r?;
            codec::device_from_json(tenant.clone(), codec::device_id(&id)?, &json)
        })
        .collect::<rusqlite::Result<_>>()?;
    // A retired device leaves its owner's list (its keys stay findable).
    Ok(devices
        .into_iter()
        .filter(|d| d.retired.is_none())
        .collect())
}

fn find_keys_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    prefix: &KeyIdPrefix,
) -> rusqlite::Result<Vec<KeyLocation>> {
    // Hex digits sort below 'g': [prefix, prefix + "g") holds every match.
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT DISTINCT device FROM key_index
             WHERE tenant = ?1 AND key_hex >= ?2 AND key_hex < ?3 ORDER BY device",
        )?
        .query_map(
            [
                tenant.as_str(),
                prefix.as_str(),
                &format!("{}g", prefix.as_str()),
            ],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for id in ids {
        let Some(row) = rows::device(tx, tenant, &codec::device_id(&id)?)? else {
            continue;
        };
        let dev = row.device;
        for k in dev.keys.iter().filter(|k| prefix.matches(&k.key_id)) {
            out.push(KeyLocation {
                key_id: k.key_id,
                device_id: dev.device_id.clone(),
                display_name: dev.display_name.clone(),
                owner: dev.owner.clone(),
                volume_type: k.volume_type,
                created_at: k.created_at,
            });
        }
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn list_devices(
        &self,
        tenant: &TenantId,
        owner: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
        let (tenant, owner) = (tenant.clone(), owner.clone());
        self.read(move |tx| {
            Ok((
                devices_of_owner(tx, &tenant, &owner)?,
                rows::policy(tx, &tenant)?,
            ))
        })
        .await
    }

    async fn find_keys(
        &self,
        tenant: &TenantId,
        prefix: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable> {
        let (tenant, prefix) = (tenant.clone(), prefix.clone());
        self.read(move |tx| find_keys_tx(tx, &tenant, &prefix))
            .await
    }

    async fn load_for_disclosure(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        actor: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
        let (tenant, device, actor) = (tenant.clone(), device.clone(), actor.clone());
        self.read(move |tx| {
            let policy = rows::policy(tx, &tenant)?;
            Ok((
                sealed_device(tx, &tenant, &device, &policy)?,
                rows::rate_window(tx, &tenant, &actor)?,
            ))
        })
        .await
    }

    async fn commit_disclosure(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        // A single disclosure is a batch of one here.
        self.commit_batch(std::slice::from_ref(event), rate).await
    }

    async fn load_batch_state(
        &self,
        tenant: &TenantId,
        actor: &UserId,
    ) -> Result<(TenantPolicy, RateWindow), Unavailable> {
        let (tenant, actor) = (tenant.clone(), actor.clone());
        self.read(move |tx| {
            Ok((
                rows::policy(tx, &tenant)?,
                rows::rate_window(tx, &tenant, &actor)?,
            ))
        })
        .await
    }

    async fn load_devices(
        &self,
        tenant: &TenantId,
        devices: &[DeviceId],
        policy: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable> {
        let (tenant, policy) = (tenant.clone(), policy.clone());
        let mut seen = BTreeSet::new();
        let devices: Vec<DeviceId> = devices
            .iter()
            .filter(|d| seen.insert(*d))
            .cloned()
            .collect();
        self.read(move |tx| {
            let mut out = Vec::new();
            for d in &devices {
                out.extend(sealed_device(tx, &tenant, d, &policy)?);
            }
            Ok(out)
        })
        .await
    }

    async fn commit_batch(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        let (events, rate) = (events.to_vec(), rate.clone());
        self.write(move |tx| commit_batch_tx(tx, &events, &rate))
            .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        let event = event.clone();
        self.write(move |tx| rows::append(tx, &event)).await
    }

    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        let event = event.clone();
        self.write(move |tx| {
            let (count, marked) = denials(tx, &event)?;
            if count >= cap {
                return Ok(Denial::OverCap { marked });
            }
            put_denials(tx, &event, count + 1, marked)?;
            rows::append(tx, &event)?;
            Ok(Denial::Stored)
        })
        .await
    }

    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable> {
        let marker = marker.clone();
        self.write(move |tx| {
            let (count, marked) = denials(tx, &marker)?;
            if marked {
                return Ok(false);
            }
            put_denials(tx, &marker, count, true)?;
            rows::append(tx, &marker)?;
            Ok(true)
        })
        .await
    }

    async fn audit_events(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<AuditPage, Unavailable> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.read(move |tx| {
            let candidates = audit_candidates(tx, &tenant, &query)?;
            Ok(crate::domain::audit::page(candidates, &tenant, &query))
        })
        .await
    }
}
