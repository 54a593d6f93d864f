//! `LifecycleStore` on the embedded store, with the DynamoDB store's
//! semantics: every write is conditional on the record version and carries
//! its audit event (both or neither), a granted disclosure marks its key and
//! bumps the version, superseded ciphertexts are kept apart until they
//! expire, and `sweep_expired` does what DynamoDB TTL does there.

use super::{MemoryStore, State};
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::{Device, KeyContext, SealedDevice, SealedKey, TenantPolicy};
use crate::domain::ports::{
    DeviceRecord, DeviceUpsert, EscrowWrite, ImportDevice, LifecycleStore, RotationPage, StoredKey,
    StoredKeyPage, WriteOutcome,
};
use async_trait::async_trait;
use std::collections::HashMap;
use time::OffsetDateTime;

#[derive(Default)]
pub(super) struct LifeState {
    versions: HashMap<(TenantId, DeviceId), u64>,
    /// Ciphertexts of superseded keys, until they expire.
    superseded: HashMap<(TenantId, DeviceId), Vec<(KeyId, SealedKey)>>,
    tenant_versions: HashMap<TenantId, u64>,
    /// Every incident's record.
    incidents: HashMap<(TenantId, IncidentId), Incident>,
}

fn device_key(tenant: &TenantId, device: &DeviceId) -> (TenantId, DeviceId) {
    (tenant.clone(), device.clone())
}

/// After a granted disclosure was appended: the key is marked disclosed
/// (first disclosure wins) unless it is superseded, and the record version
/// moves on so a concurrent escrow reads the mark before it writes.
pub(super) fn mark_disclosed(st: &mut State, event: &AuditEvent) {
    if event.outcome != Outcome::Granted || event.action != Action::Disclose {
        return;
    }
    let (Some(device), Some(key_id)) = (&event.device_id, event.key_id) else {
        return;
    };
    let k = device_key(&event.tenant_id, device);
    let Some(d) = st
        .devices
        .get_mut(&k)
        .filter(|d| d.sealed.device.retired.is_none())
    else {
        return;
    };
    let Some(meta) = d
        .sealed
        .device
        .keys
        .iter_mut()
        .find(|m| m.key_id == key_id && !m.is_superseded())
    else {
        return;
    };
    meta.disclosed_at.get_or_insert(event.time);
    *st.life.versions.entry(k).or_default() += 1;
}

/// An import replaces a device wholesale, superseded keys included.
pub(super) fn replaced_by_import(st: &mut State, d: &ImportDevice) {
    let dev = &d.sealed.device;
    let k = device_key(&dev.tenant, &dev.device_id);
    st.life.superseded.remove(&k);
    *st.life.versions.entry(k).or_default() += 1;
}

/// An import rewrote the tenant's settings: a settings change read before
/// must read again.
pub(super) fn tenant_replaced_by_import(st: &mut State, tenant: &TenantId) {
    *st.life.tenant_versions.entry(tenant.clone()).or_default() += 1;
}

/// Every attempt is an audit record of its own (the README's request-id
/// rule), so a write never finds its request id taken; kept as the one place
/// that would say so, as the DynamoDB adapter's append-only condition does.
fn request_id_free(_st: &State, _event: &AuditEvent) -> bool {
    true
}

/// Drops ciphertexts and digests of keys no longer in the device's metadata.
fn prune(st: &mut State, k: &(TenantId, DeviceId)) {
    let Some(d) = st.devices.get_mut(k) else {
        return;
    };
    let ids: Vec<KeyId> = d.sealed.device.keys.iter().map(|m| m.key_id).collect();
    d.digests.retain(|(id, _)| ids.contains(id));
    d.sealed.sealed.retain(|(id, _)| ids.contains(id));
    if let Some(v) = st.life.superseded.get_mut(k) {
        v.retain(|(id, _)| ids.contains(id));
    }
}

/// `<unix nanoseconds, zero-padded>#<device id>`: sorts as the pages go.
fn rotation_sort_key(since: OffsetDateTime, device: &DeviceId) -> String {
    format!("{:020}#{device}", since.unix_timestamp_nanos().max(0))
}

impl MemoryStore {
    /// Retirement and restoration: the device's state (`retired`, keys)
    /// replaced if still at `expected_version`; in the owner index only
    /// when `listed`.
    fn replace_retired(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
        listed: bool,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut st = self.state();
        let k = device_key(&device.tenant, &device.device_id);
        let version = st.life.versions.get(&k).copied().unwrap_or(0);
        if !st.devices.contains_key(&k) || version != expected_version {
            return Ok(WriteOutcome::Conflict);
        }
        if !request_id_free(&st, event) {
            return Ok(WriteOutcome::RequestIdReused);
        }
        if let Some(d) = st.devices.get_mut(&k) {
            d.sealed.device.retired = device.retired;
            d.sealed.device.keys = device.keys.clone();
        }
        let owner = (device.tenant.clone(), device.owner.clone());
        if listed {
            st.by_owner
                .entry(owner)
                .or_default()
                .insert(device.device_id.clone());
        } else if let Some(set) = st.by_owner.get_mut(&owner) {
            set.remove(&device.device_id);
        }
        prune(&mut st, &k);
        st.life.versions.insert(k, version + 1);
        super::append(&mut st, event);
        Ok(WriteOutcome::Written)
    }
}

#[async_trait]
impl LifecycleStore for MemoryStore {
    async fn device_for_write(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable> {
        let st = self.state();
        let k = device_key(tenant, device);
        let record = st.devices.get(&k).map(|d| DeviceRecord {
            device: d.sealed.device.clone(),
            current: d.sealed.sealed.clone(),
            digests: d.digests.clone(),
            version: st.life.versions.get(&k).copied().unwrap_or(0),
        });
        Ok((record, Self::policy(&st, tenant)))
    }

    async fn commit_escrow(
        &self,
        w: &EscrowWrite,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut st = self.state();
        let k = device_key(&w.device.tenant, &w.device.device_id);
        let version = st.life.versions.get(&k).copied().unwrap_or(0);
        if !st.devices.contains_key(&k) || version != w.expected_version {
            return Ok(WriteOutcome::Conflict);
        }
        if !request_id_free(&st, event) {
            return Ok(WriteOutcome::RequestIdReused);
        }
        super::index_keys(&mut st, &w.device);
        if let Some(d) = st.devices.get_mut(&k) {
            d.sealed.device.keys = w.device.keys.clone();
            d.sealed.sealed = w.current.clone();
            d.digests = w.digests.clone();
        }
        let apart = st.life.superseded.entry(k.clone()).or_default();
        for (meta, sealed) in &w.superseded {
            apart.retain(|(id, _)| *id != meta.key_id);
            apart.push((meta.key_id, sealed.clone()));
        }
        prune(&mut st, &k);
        st.life.versions.insert(k, version + 1);
        super::append(&mut st, event);
        Ok(WriteOutcome::Written)
    }

    async fn commit_upsert(
        &self,
        w: &DeviceUpsert,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut st = self.state();
        let dev = &w.device;
        let k = device_key(&dev.tenant, &dev.device_id);
        let version = st.life.versions.get(&k).copied().unwrap_or(0);
        let exists = st.devices.contains_key(&k);
        match w.expected_version {
            None if exists => return Ok(WriteOutcome::Conflict),
            Some(v) if !exists || v != version => return Ok(WriteOutcome::Conflict),
            _ => {}
        }
        if !request_id_free(&st, event) {
            return Ok(WriteOutcome::RequestIdReused);
        }
        let policy = Self::policy(&st, &dev.tenant);
        let old = st.devices.remove(&k);
        if let Some(old) = &old {
            let o = &old.sealed.device;
            if let Some(set) = st.by_owner.get_mut(&(o.tenant.clone(), o.owner.clone())) {
                set.remove(&o.device_id);
            }
        }
        let entry = match old {
            Some(mut old) => {
                old.sealed.device = dev.clone();
                old
            }
            None => ImportDevice {
                sealed: SealedDevice {
                    device: dev.clone(),
                    policy,
                    sealed: Vec::new(),
                },
                fingerprint: String::new(),
                digests: Vec::new(),
            },
        };
        super::index_keys(&mut st, dev);
        st.devices.insert(k.clone(), entry);
        st.by_owner
            .entry((dev.tenant.clone(), dev.owner.clone()))
            .or_default()
            .insert(dev.device_id.clone());
        prune(&mut st, &k);
        st.life.versions.insert(k, version + 1);
        super::append(&mut st, event);
        Ok(WriteOutcome::Written)
    }

    async fn retire_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        self.replace_retired(device, expected_version, event, false)
    }

    async fn restore_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        self.replace_retired(device, expected_version, event, true)
    }

    async fn superseded_key(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &KeyId,
    ) -> Result<Option<SealedKey>, Unavailable> {
        let st = self.state();
        Ok(st
            .life
            .superseded
            .get(&device_key(tenant, device))
            .and_then(|v| v.iter().find(|(id, _)| id == key))
            .map(|(_, s)| s.clone()))
    }

    async fn rotation_requests(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RotationPage, Unavailable> {
        let st = self.state();
        let mut due: Vec<(String, crate::domain::model::Device)> = st
            .devices
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter(|(_, d)| d.sealed.device.retired.is_none())
            .filter_map(|(_, d)| {
                let dev = &d.sealed.device;
                let since = dev
                    .keys
                    .iter()
                    .filter(|k| k.rotation_due())
                    .filter_map(|k| k.disclosed_at)
                    .min()?;
                Some((rotation_sort_key(since, &dev.device_id), dev.clone()))
            })
            .filter(|(sort, _)| cursor.is_none_or(|c| sort.as_str() > c))
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0));
        let more = due.len() > limit;
        due.truncate(limit);
        let next = if more {
            due.last().map(|(s, _)| s.clone())
        } else {
            None
        };
        Ok(RotationPage {
            devices: due.into_iter().map(|(_, d)| d).collect(),
            next,
        })
    }

    async fn tenant_settings(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), Unavailable> {
        let st = self.state();
        Ok((
            Self::policy(&st, tenant),
            st.life.tenant_versions.get(tenant).copied().unwrap_or(0),
        ))
    }

    async fn commit_settings(
        &self,
        tenant: &TenantId,
        settings: &TenantPolicy,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut st = self.state();
        let version = st.life.tenant_versions.get(tenant).copied().unwrap_or(0);
        if version != expected_version {
            return Ok(WriteOutcome::Conflict);
        }
        if !request_id_free(&st, event) {
            return Ok(WriteOutcome::RequestIdReused);
        }
        st.tenants.insert(tenant.clone(), settings.clone());
        st.life.tenant_versions.insert(tenant.clone(), version + 1);
        super::append(&mut st, event);
        Ok(WriteOutcome::Written)
    }

    async fn commit_incident(
        &self,
        incident: &Incident,
        summary: Option<&OpenIncident>,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut st = self.state();
        let tenant = &incident.tenant;
        let version = st.life.tenant_versions.get(tenant).copied().unwrap_or(0);
        if version != expected_version {
            return Ok(WriteOutcome::Conflict);
        }
        if !request_id_free(&st, event) {
            return Ok(WriteOutcome::RequestIdReused);
        }
        let mut policy = Self::policy(&st, tenant);
        policy.incident = summary.cloned();
        st.tenants.insert(tenant.clone(), policy);
        st.life.tenant_versions.insert(tenant.clone(), version + 1);
        st.life.incidents.insert(
            (tenant.clone(), incident.incident_id.clone()),
            incident.clone(),
        );
        super::append(&mut st, event);
        Ok(WriteOutcome::Written)
    }

    async fn incident(
        &self,
        tenant: &TenantId,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Unavailable> {
        let st = self.state();
        Ok(st
            .life
            .incidents
            .get(&(tenant.clone(), id.clone()))
            .cloned())
    }

    async fn incidents(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<Incident>, Unavailable> {
        let st = self.state();
        let mut all: Vec<Incident> = st
            .life
            .incidents
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, i)| i.clone())
            .collect();
        all.sort_by(|a, b| {
            b.opened_at
                .cmp(&a.opened_at)
                .then(b.incident_id.cmp(&a.incident_id))
        });
        all.truncate(limit);
        Ok(all)
    }

    async fn stored_keys(
        &self,
        tenant: Option<&TenantId>,
        _cursor: Option<&str>,
    ) -> Result<StoredKeyPage, Unavailable> {
        let st = self.state();
        let mut keys = Vec::new();
        for ((t, dev), d) in st.devices.iter() {
            if tenant.is_some_and(|want| want != t) {
                continue;
            }
            let ctx = |key_id| KeyContext {
                tenant: t.clone(),
                device: dev.clone(),
                key_id,
            };
            for (id, sealed) in &d.sealed.sealed {
                keys.push(StoredKey {
                    context: ctx(*id),
                    sealed: sealed.clone(),
                    superseded: false,
                });
            }
            for (id, sealed) in st
                .life
                .superseded
                .get(&(t.clone(), dev.clone()))
                .into_iter()
                .flatten()
            {
                keys.push(StoredKey {
                    context: ctx(*id),
                    sealed: sealed.clone(),
                    superseded: true,
                });
            }
        }
        Ok(StoredKeyPage { keys, next: None })
    }

    async fn sweep_expired(&self, now: OffsetDateTime) -> Result<usize, Unavailable> {
        let mut st = self.state();
        let mut removed = 0;
        // Retired devices past their retention go with every key they hold.
        let gone: Vec<(TenantId, DeviceId)> = st
            .devices
            .iter()
            .filter(|(_, d)| d.sealed.device.is_gone(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(d) = st.devices.remove(&k) {
                removed += d.sealed.device.keys.len();
            }
            st.life.superseded.remove(&k);
            // The version survives: a write that read the retired device
            // must not pass against one enrolled again under its ID.
            *st.life.versions.entry(k).or_default() += 1;
        }
        let touched: Vec<(TenantId, DeviceId)> = st
            .devices
            .iter_mut()
            .filter_map(|(k, d)| {
                let before = d.sealed.device.keys.len();
                d.sealed.device.keys.retain(|m| m.is_live(now));
                let gone = before - d.sealed.device.keys.len();
                removed += gone;
                (gone > 0).then(|| k.clone())
            })
            .collect();
        for k in &touched {
            prune(&mut st, k);
            *st.life.versions.entry(k.clone()).or_default() += 1;
        }
        Ok(removed)
    }
}
