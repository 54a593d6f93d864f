//! `portal sync entra`: the thin I/O shell around the planner. Lists Entra's
//! keys and devices, reads what the store holds for those devices, plans,
//! and (unless a dry run) writes through the key-lifecycle code the escrow
//! API uses: each device enrolled or updated with its audit event, each new
//! key sealed under its tenant/device/key-ID context and escrowed with its
//! audit event, in one store write each, as actor `sync:entra`.
//!
//! Why not `portal import`'s `put_devices`: it replaces a device with its
//! keys, so adding one key would need every password of the device again
//! (each a `$select=key` read, each an Entra audit entry) and would drop
//! keys Entra no longer lists. Escrow adds one key, supersedes older ones
//! of its volume type (the superseded key is kept for its retention) and
//! never deletes.

use super::entra::{self, EntraKey, RawDevice, RawKey};
use super::graph::{GraphClient, GraphError};
use super::plan::{
    self, DeviceChange, DeviceNotInEntra, DevicePlan, Held, NotInEntra, Plan, Skipped,
};
use crate::domain::audit::{Action, AuditQuery, Outcome};
use crate::domain::caller::{Caller, Permissions};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, TenantId, UserId};
use crate::domain::keys::RequestMeta;
use crate::domain::lifecycle::{self, DeviceMetadata, EscrowRequest, Escrowed};
use crate::domain::model::RecoveryPassword;
use crate::domain::policy::{Admitted, Permission};
use crate::domain::ports::Portal;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use time::OffsetDateTime;

/// The audit actor of every write the sync makes.
pub const SOURCE: &str = "entra";
/// Devices synced at once (Graph reads and store writes in flight).
const DEVICE_CONCURRENCY: usize = 4;
/// Store reads at once while planning.
const READ_CONCURRENCY: usize = 16;

pub struct SyncOptions {
    /// The portal's tenant the keys go into.
    pub tenant: TenantId,
    /// Metadata only: never `$select=key`, nothing written.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceCounts {
    /// Devices Entra lists keys for.
    pub listed: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyCounts {
    pub listed: usize,
    /// Read from Graph and stored (a dry run: would be).
    pub new: usize,
    /// Already held: not read again.
    pub unchanged: usize,
    /// Stored keys a newer synced key superseded in this run.
    pub superseded: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GraphCounts {
    pub requests: usize,
    pub retries: usize,
    /// `$select=key` reads (each an Entra KeyManagement audit entry).
    pub key_reads: usize,
}

/// The run's JSON summary. Never holds a password.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub tenant: TenantId,
    pub dry_run: bool,
    pub actor: UserId,
    pub devices: DeviceCounts,
    pub keys: KeyCounts,
    /// Devices moved to another owner (each audited).
    pub owner_changes: usize,
    pub skipped: Vec<Skipped>,
    /// Stored keys of synced devices that Entra no longer lists: kept.
    pub not_in_entra: Vec<NotInEntra>,
    /// Devices the sync wrote before that Entra no longer lists (deleted
    /// there): kept, with their keys (also in `not_in_entra`).
    pub devices_not_in_entra: Vec<DeviceNotInEntra>,
    pub graph: GraphCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("Microsoft Graph: {0}")]
    Graph(#[from] GraphError),
    #[error("store: {0}")]
    Store(String),
}

fn store_error(e: ApiError) -> SyncError {
    SyncError::Store(e.to_string())
}

/// What Entra lists: keys grouped by device, devices by `deviceId`, and
/// the keys that cannot be synced at all.
struct Listing {
    keys: std::collections::BTreeMap<DeviceId, Vec<EntraKey>>,
    devices: HashMap<DeviceId, entra::EntraDevice>,
    listed: usize,
    skipped: Vec<Skipped>,
}

async fn list_entra(graph: &GraphClient) -> Result<Listing, GraphError> {
    let (raw_keys, raw_devices) = tokio::try_join!(
        graph.list::<RawKey>(entra::KEYS_PATH),
        graph.list::<RawDevice>(entra::DEVICES_PATH),
    )?;
    let mut skipped = Vec::new();
    let mut keys = Vec::new();
    for raw in &raw_keys {
        match raw.validate() {
            Ok(k) => keys.push(k),
            Err((key_id, reason)) => skipped.push(Skipped {
                device_id: raw
                    .device_id
                    .as_deref()
                    .and_then(|d| DeviceId::parse(d).ok()),
                key_id,
                reason,
            }),
        }
    }
    let devices = raw_devices
        .iter()
        .filter_map(RawDevice::validate)
        .map(|d| (d.device_id.clone(), d))
        .collect();
    Ok(Listing {
        keys: plan::by_device(&keys),
        devices,
        listed: raw_keys.len(),
        skipped,
    })
}

/// Devices the sync has written before (enrolled, updated or escrowed a
/// key to), from its audit trail, which is kept without expiry: so a
/// device synced years ago and unchanged since is still known.
async fn synced_before(portal: &Portal, tenant: &TenantId) -> Result<HashSet<DeviceId>, SyncError> {
    let actor = UserId::syncer(SOURCE).expect("a valid source name");
    let mut out = HashSet::new();
    let mut after = None;
    loop {
        let query = AuditQuery {
            actor: Some(actor.clone()),
            after,
            limit: AuditQuery::MAX_LIMIT,
            ..Default::default()
        };
        let page = portal
            .store
            .audit_events(tenant, &query)
            .await
            .map_err(|e| SyncError::Store(e.to_string()))?;
        out.extend(
            page.events
                .into_iter()
                .filter(|e| matches!(e.action, Action::Escrow | Action::DeviceUpsert))
                .filter(|e| e.outcome != Outcome::Denied)
                .filter_map(|e| e.device_id),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// The stored state of these devices (absent ones left out; retired ones
/// too unless `retired`).
async fn held(
    portal: &Portal,
    tenant: &TenantId,
    ids: Vec<DeviceId>,
    retired: bool,
) -> Result<HashMap<DeviceId, Held>, SyncError> {
    let rows: Vec<Option<(DeviceId, Held)>> = stream::iter(ids)
        .map(|id| async move {
            let (record, _) = portal
                .lifecycle
                .device_for_write(tenant, &id)
                .await
                .map_err(|e| SyncError::Store(e.to_string()))?;
            let record = record.filter(|r| retired || r.device.retired.is_none());
            Ok::<_, SyncError>(record.map(|r| {
                let d = r.device;
                let held = Held {
                    metadata: DeviceMetadata {
                        owner: d.owner,
                        display_name: d.display_name,
                        os: d.os,
                        managed_by: d.managed_by,
                    },
                    keys: d.keys.iter().map(|k| k.key_id).collect(),
                };
                (id, held)
            }))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(rows.into_iter().flatten().collect())
}

/// The identity the sync writes as: no token, only the two write
/// permissions the escrow API would need.
fn sync_caller(tenant: &TenantId) -> Caller {
    Caller {
        tenant: tenant.clone(),
        user: UserId::syncer(SOURCE).expect("a valid source name"),
        permissions: Permissions::from_names([
            Permissions::DEVICES_WRITE_ALL,
            Permissions::KEY_ESCROW,
        ]),
        device: None,
        expires_at: i64::MAX,
        auth_time: None,
    }
}

/// What syncing one device did.
#[derive(Default)]
struct DeviceOutcome {
    change: Option<DeviceChange>,
    owner_changed: bool,
    new_keys: usize,
    unchanged_keys: usize,
    superseded: usize,
    skipped: Vec<Skipped>,
}

/// Reads the passwords of `keys` from Graph: every one before anything of
/// the device is written. A key deleted from Entra meanwhile is skipped.
async fn read_passwords(
    graph: &GraphClient,
    keys: &[EntraKey],
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<(EntraKey, RecoveryPassword)>, SyncError> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let url = graph.url(&entra::key_path(&k.key_id))?;
        graph.stats.key_reads.fetch_add(1, Ordering::Relaxed);
        let what = format!("GET recovery key {}", k.key_id);
        let skip = |reason| Skipped {
            device_id: Some(k.device_id.clone()),
            key_id: Some(k.key_id),
            reason,
        };
        let body = match graph.get(&url, &what).await {
            Ok(b) => b,
            Err(GraphError::NotFound(_)) => {
                skipped.push(skip("key_gone_from_entra"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match entra::password(&k.key_id, &body) {
            Ok(pw) => out.push((k.clone(), pw)),
            Err(e) => {
                tracing::warn!(key_id = %k.key_id, error = %e, "unusable key answer from Graph");
                skipped.push(skip("unusable_key_answer"));
            }
        }
    }
    Ok(out)
}

/// Enrols or updates the device as the plan says (audited by the
/// lifecycle code, an owner change named in the event).
async fn write_device(
    portal: &Portal,
    admitted: &Admitted,
    meta: &RequestMeta,
    p: &DevicePlan,
) -> Result<(), SyncError> {
    if p.change == DeviceChange::Unchanged {
        return Ok(());
    }
    let who = admitted.permitted().map_err(store_error)?;
    lifecycle::upsert_device(portal.into(), who, meta, &p.device_id, p.metadata.clone())
        .await
        .map(drop)
        .map_err(store_error)
}

/// Escrows each key (oldest first); counts what was new.
async fn escrow_keys(
    portal: &Portal,
    admitted: &Admitted,
    meta: &RequestMeta,
    device_id: &DeviceId,
    keys: Vec<(EntraKey, RecoveryPassword)>,
    out: &mut DeviceOutcome,
) -> Result<(), SyncError> {
    for (k, password) in keys {
        let req = EscrowRequest {
            device_id: device_id.clone(),
            key_id: k.key_id,
            volume_type: k.volume_type,
            password,
            created_at: Some(k.created_at),
        };
        let skip = |reason| Skipped {
            device_id: Some(device_id.clone()),
            key_id: Some(k.key_id),
            reason,
        };
        let who = admitted.permitted().map_err(store_error)?;
        match lifecycle::escrow(portal.into(), who, meta, req).await {
            Ok(Escrowed::Created(_)) => out.new_keys += 1,
            Ok(Escrowed::AlreadyHeld(_)) => out.unchanged_keys += 1,
            Err(ApiError::Conflict(_)) => out.skipped.push(skip("key_conflict")),
            Err(ApiError::DeviceNotFound) => out.skipped.push(skip("device_retired_during_sync")),
            Err(ApiError::BadRequest(_)) => out.skipped.push(skip("created_in_the_future")),
            Err(e) => return Err(store_error(e)),
        }
    }
    Ok(())
}

/// Keys of the device superseded since `since` (by this run's escrows).
async fn superseded_since(
    portal: &Portal,
    tenant: &TenantId,
    device: &DeviceId,
    since: OffsetDateTime,
) -> Result<usize, SyncError> {
    let (record, _) = portal
        .lifecycle
        .device_for_write(tenant, device)
        .await
        .map_err(|e| SyncError::Store(e.to_string()))?;
    Ok(record.map_or(0, |r| {
        r.device
            .keys
            .iter()
            .filter(|k| k.superseded_at.is_some_and(|t| t >= since))
            .count()
    }))
}

async fn sync_device(
    portal: &Portal,
    graph: &GraphClient,
    meta: &RequestMeta,
    admitted: &Admitted,
    p: DevicePlan,
) -> Result<DeviceOutcome, SyncError> {
    let caller = admitted.caller();
    let mut out = DeviceOutcome {
        unchanged_keys: p.unchanged_keys,
        ..Default::default()
    };
    let passwords = read_passwords(graph, &p.new_keys, &mut out.skipped).await?;
    if p.change == DeviceChange::Create && passwords.is_empty() {
        // Nothing to hold for it: not enrolled (the next run tries again).
        return Ok(out);
    }
    write_device(portal, admitted, meta, &p).await?;
    out.change = Some(p.change);
    out.owner_changed = p.owner_change.is_some();
    let started = portal.clock.now();
    let wrote_keys = !passwords.is_empty();
    escrow_keys(portal, admitted, meta, &p.device_id, passwords, &mut out).await?;
    if wrote_keys {
        out.superseded = superseded_since(portal, &caller.tenant, &p.device_id, started).await?;
    }
    Ok(out)
}

/// What Entra dropped of the devices the sync wrote before: those it
/// lists no key for now (their stored keys), and those it does not list
/// at all. Retired devices are left out: the portal retired them already.
async fn unlisted(
    portal: &Portal,
    tenant: &TenantId,
    listing: &Listing,
) -> Result<(Vec<NotInEntra>, Vec<DeviceNotInEntra>), SyncError> {
    let ids = synced_before(portal, tenant)
        .await?
        .into_iter()
        .filter(|id| !listing.keys.contains_key(id))
        .collect();
    let stored = held(portal, tenant, ids, false).await?;
    Ok(plan::unlisted(&stored, &listing.devices))
}

fn summary(opts: &SyncOptions, listing: &Listing, plan: &Plan) -> SyncSummary {
    let mut s = SyncSummary {
        tenant: opts.tenant.clone(),
        dry_run: opts.dry_run,
        actor: UserId::syncer(SOURCE).expect("a valid source name"),
        devices: DeviceCounts {
            listed: listing.keys.len(),
            ..Default::default()
        },
        keys: KeyCounts {
            listed: listing.listed,
            ..Default::default()
        },
        owner_changes: 0,
        skipped: listing.skipped.clone(),
        not_in_entra: plan.not_in_entra.clone(),
        devices_not_in_entra: Vec::new(),
        graph: GraphCounts::default(),
    };
    s.skipped.extend(plan.skipped.iter().cloned());
    s
}

fn count(s: &mut SyncSummary, o: DeviceOutcome) {
    match o.change {
        Some(DeviceChange::Create) => s.devices.created += 1,
        Some(DeviceChange::Update) => s.devices.updated += 1,
        Some(DeviceChange::Unchanged) => s.devices.unchanged += 1,
        None => {}
    }
    s.owner_changes += usize::from(o.owner_changed);
    s.keys.new += o.new_keys;
    s.keys.unchanged += o.unchanged_keys;
    s.keys.superseded += o.superseded;
    s.skipped.extend(o.skipped);
}

/// What a dry run would do: the plan's counts, nothing read or written.
fn count_plan(s: &mut SyncSummary, plan: &Plan) {
    for p in &plan.devices {
        count(
            s,
            DeviceOutcome {
                change: Some(p.change),
                owner_changed: p.owner_change.is_some(),
                new_keys: p.new_keys.len(),
                unchanged_keys: p.unchanged_keys,
                ..Default::default()
            },
        );
    }
}

/// One sync run. `progress(done, total)` after each device.
pub async fn sync_entra(
    portal: &Portal,
    graph: &GraphClient,
    opts: &SyncOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SyncSummary, SyncError> {
    let listing = list_entra(graph).await?;
    let ids: Vec<DeviceId> = listing.keys.keys().cloned().collect();
    let held = held(portal, &opts.tenant, ids, true).await?;
    let plan = plan::plan(&listing.keys, &listing.devices, &held);
    let mut s = summary(opts, &listing, &plan);
    let (keys, devices) = unlisted(portal, &opts.tenant, &listing).await?;
    s.not_in_entra.extend(keys);
    s.devices_not_in_entra = devices;
    if opts.dry_run {
        count_plan(&mut s, &plan);
    } else {
        // Checked like any caller's: the services take the proof.
        let admitted = Permission::WriteDevices
            .check(&sync_caller(&opts.tenant))
            .map_err(store_error)?;
        let meta = RequestMeta {
            request_id: format!("sync-{}", uuid::Uuid::new_v4().simple()),
            client_request_id: false,
            source_ip: None,
            user_agent: Some(format!("portal-sync/{}", env!("CARGO_PKG_VERSION"))),
        };
        let total = plan.devices.len();
        let done = AtomicUsize::new(0);
        progress(0, total);
        let outcomes: Vec<DeviceOutcome> = stream::iter(plan.devices.clone())
            .map(|p| sync_device(portal, graph, &meta, &admitted, p))
            .buffer_unordered(DEVICE_CONCURRENCY)
            .inspect(|_| progress(done.fetch_add(1, Ordering::Relaxed) + 1, total))
            .try_collect()
            .await?;
        outcomes.into_iter().for_each(|o| count(&mut s, o));
    }
    s.graph = GraphCounts {
        requests: graph.stats.requests.load(Ordering::Relaxed),
        retries: graph.stats.retries.load(Ordering::Relaxed),
        key_reads: graph.stats.key_reads.load(Ordering::Relaxed),
    };
    Ok(s)
}

/// The sync serves no requests: every token is refused.
struct NoCallers;

#[async_trait::async_trait]
impl crate::domain::ports::TokenVerifier for NoCallers {
    async fn verify(&self, _: &str) -> Result<Caller, crate::domain::error::AuthFailure> {
        Err(crate::domain::error::AuthFailure::Signature)
    }
}

/// A portal for the sync's writes on `store` and `cipher` (it authenticates
/// no one and discloses nothing; rate limits do not apply to its writes).
pub fn portal<S>(
    store: std::sync::Arc<S>,
    cipher: std::sync::Arc<dyn crate::domain::ports::KeyCipher>,
) -> Portal
where
    S: crate::domain::ports::Store + crate::domain::ports::LifecycleStore + 'static,
{
    Portal {
        store: store.clone(),
        lifecycle: store,
        cipher,
        clock: std::sync::Arc::new(crate::domain::ports::SystemClock),
        verifier: std::sync::Arc::new(NoCallers),
        key_rate_limit: 1,
        helpdesk_rate_limit: 1,
        incident_max_rate_limit: 1,
        metrics: std::sync::Arc::new(crate::domain::ports::NoMetrics),
        max_auth_age: None,
    }
}
