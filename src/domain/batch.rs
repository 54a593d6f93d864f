//! Batch retrieval for the helpdesk during an incident:
//! `POST /v1/recovery-keys/batch` with up to [`MAX_KEYS`] key IDs (full, or
//! at least 8 hex digits as read from recovery screens).
//!
//! The order of checks is a single retrieval's, per item where it can be:
//! authenticate (the caller of `retrieve`) → permission (`RecoveryKey.Read.All`)
//! → an open incident in the caller's tenant (one read, with the rate
//! window) → each key resolved in the caller's tenant only (the same uniform
//! 404 for missing, foreign and unreadable keys) → the device policy → the
//! agent's limit (the incident's) → **every disclosed key's own granted
//! audit event, durable before anything is decrypted** → decrypt.
//!
//! Audit events, rate slots and `disclosed_at` marks are written together,
//! up to `BATCH_COMMIT_MAX` keys per atomic write, so 100 keys cost three
//! writes; a failed write withholds exactly its keys (503 per item: fail
//! closed) and the ones after it. Decrypts then run concurrently, at most
//! [`DECRYPT_CONCURRENCY`] at a time, so 100 keys take about as long as a
//! few. Items refused for a reason of their own (404, 409, 429) are listed
//! in one denied event for the batch (`batch_items_denied`), which takes one
//! slot of the caller's hourly cap of denied events like any denial.
//!
//! The incident is checked once, when the request starts: closing it stops
//! the requests after, not one already admitted.

use crate::domain::audit::{Audit, Outcome};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId, KeyIdPrefix, KeySelector};
use crate::domain::keys::{self, Disclosure, RequestMeta, RetrievalPorts};
use crate::domain::metrics::{Cause, Metric};
use crate::domain::model::{KeyMeta, SealedDevice, SealedKey, TenantPolicy};
use crate::domain::policy::{self, Access, Permitted, grant};
use crate::domain::ports::{BATCH_COMMIT_MAX, Commit, KeyLocation, Store};
use crate::domain::ratelimit::{self, RateUpdate, RateWindow};
use futures_util::{StreamExt, stream};
use std::collections::{HashMap, HashSet, VecDeque};
use time::OffsetDateTime;

/// Keys one request may ask for.
pub const MAX_KEYS: usize = 100;
/// Decrypts (and key lookups) in flight for one batch.
pub const DECRYPT_CONCURRENCY: usize = 16;

/// One requested key: the selector and the text the caller sent for it.
pub struct BatchKey {
    pub requested: String,
    pub selector: KeySelector,
}

/// What became of one requested key.
pub enum ItemOutcome {
    Disclosed(Disclosure),
    /// No key of the tenant matches, or the key cannot be read (uniform).
    NotFound,
    Ambiguous(Vec<KeyId>),
    RateLimited {
        retry_after_secs: u64,
    },
    /// Could not be completed safely (store, audit or KMS): nothing disclosed.
    Unavailable,
    /// The stored ciphertext is broken (never caused by the request).
    Internal,
}

impl ItemOutcome {
    /// The same answer for a repeated item (no new disclosure: the key is
    /// in the same answer already, under its first item's event).
    fn again(&self) -> Self {
        match self {
            Self::Disclosed(d) => Self::Disclosed(Disclosure {
                device_id: d.device_id.clone(),
                key_id: d.key_id,
                volume_type: d.volume_type,
                created_at: d.created_at,
                password: d.password.clone(),
            }),
            Self::NotFound => Self::NotFound,
            Self::Ambiguous(c) => Self::Ambiguous(c.clone()),
            Self::RateLimited { retry_after_secs } => Self::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            Self::Unavailable => Self::Unavailable,
            Self::Internal => Self::Internal,
        }
    }
}

pub struct BatchItem {
    pub requested: String,
    pub outcome: ItemOutcome,
}

/// A key ready to disclose once its audit event is durable.
struct Ready {
    index: usize,
    device: SealedDevice,
    key: KeyMeta,
    sealed: SealedKey,
    access: Access,
}

/// Serves one batch; `Err` only for refusals of the whole request.
pub async fn retrieve(
    ports: RetrievalPorts<'_>,
    who: Permitted<'_, grant::RetrieveBatch>,
    meta: &RequestMeta,
    keys: Vec<BatchKey>,
    reason: &str,
) -> Result<Vec<BatchItem>, ApiError> {
    let caller = who.caller();
    let attempt = Audit::disclosure(ports.audit, caller, meta, None, Some(reason));
    let (policy, window, now) = admit(ports, &attempt).await?;
    ports.audit.count(Metric::BatchSize, keys.len() as u64);

    let lookups = classify(lookup(ports.store, caller, meta, &keys).await);
    for _ in lookups.iter().filter(|l| **l == Lookup::Failed) {
        ports.audit.count(Metric::Unavailable(Cause::Store), 1);
    }
    let (mut outcomes, wanted, duplicates) = sort_out(lookups);
    let ready = check(ports, &attempt, &policy, wanted, now, &mut outcomes).await;

    // Rate slots and audit events, chunk by chunk; then decrypt.
    let limit = policy::rate_limit(&ports.limits, Access::Helpdesk, &policy, now);
    let granted = commit(ports.store, &attempt, window, limit, ready, &mut outcomes).await;
    for (i, o) in decrypt_all(ports, caller, meta, granted).await {
        outcomes[i] = Some(o);
    }
    for (i, first) in duplicates {
        outcomes[i] = outcomes[first].as_ref().map(ItemOutcome::again);
    }
    // One stored event for the whole batch, listing its denied items: one
    // request takes one slot of the caller's hourly cap of denied events,
    // however many of its items were refused.
    let denials = denied_items(&keys, &outcomes);
    if !denials.is_empty() {
        attempt.deny_items(&denials).await;
    }
    Ok(keys
        .into_iter()
        .zip(outcomes)
        .map(|(k, o)| BatchItem {
            requested: k.requested,
            outcome: o.unwrap_or(ItemOutcome::Unavailable),
        })
        .collect())
}

/// The checks of the whole request: permission, sign-in age, an open
/// incident (read with the caller's rate window), and a second person.
async fn admit(
    ports: RetrievalPorts<'_>,
    attempt: &Audit<'_>,
) -> Result<(TenantPolicy, RateWindow, OffsetDateTime), ApiError> {
    let caller = attempt.caller;
    // The permission was checked before the input was read (`retrieve`'s
    // `who`).
    keys::admitted(attempt, ports.max_auth_age).await?;
    let (policy, window) = match ports
        .store
        .load_batch_state(&caller.tenant, &caller.user)
        .await
    {
        Ok(v) => v,
        Err(e) => return Err(attempt.store_failed(e).await),
    };
    let now = ports.now();
    let Some(incident) = policy.open_incident(now) else {
        let e = ApiError::IncidentRequired;
        return Err(attempt.deny(None, Denied::IncidentRequired, e).await);
    };
    if opened_it(ports, caller, incident).await? {
        let e = ApiError::SecondPersonRequired(
            "You opened this incident, so you cannot batch-retrieve keys under it: another helpdesk agent must do it, or retrieve keys one at a time."
                .into(),
        );
        return Err(attempt.deny(None, Denied::IncidentOpener, e).await);
    }
    Ok((policy, window, now))
}

/// Each key ID resolved in the caller's tenant (`Err`: the store failed).
async fn lookup(
    store: &dyn Store,
    caller: &Caller,
    meta: &RequestMeta,
    keys: &[BatchKey],
) -> Vec<Result<Vec<KeyLocation>, ()>> {
    // Futures built first, then polled: a stream of closures borrowing the
    // request would not be `Send` for axum (a rustc limitation).
    let lookups: Vec<_> = keys
        .iter()
        .map(|k| async move {
            let prefix = match &k.selector {
                KeySelector::Exact(id) => KeyIdPrefix::parse(&id.hex()).map_err(|_| ())?,
                KeySelector::Prefix(p) => p.clone(),
            };
            match store.find_keys(&caller.tenant, &prefix).await {
                Ok(mut v) => {
                    v.retain(|l| k.selector.matches(&l.key_id));
                    Ok(v)
                }
                Err(e) => {
                    tracing::error!(error = %e, request_id = %meta.request_id, "key lookup failed");
                    Err(())
                }
            }
        })
        .collect();
    stream::iter(lookups)
        .buffered(DECRYPT_CONCURRENCY)
        .collect()
        .await
}

/// What a requested key ID resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// The store failed: nothing disclosed (503 for the item).
    Failed,
    /// No key of the tenant matches (the uniform 404).
    Missing,
    /// Several keys match: their IDs, sorted.
    Ambiguous(Vec<KeyId>),
    /// Exactly one key: checked and disclosed like a single retrieval's.
    Wanted(DeviceId, KeyId),
    /// The key of an earlier item (say, asked for by prefix and by full
    /// ID): disclosed once, answered again under that item's index.
    Again(usize),
}

/// Pure: the batch classification of each item's lookup, in request order.
fn classify(found: Vec<Result<Vec<KeyLocation>, ()>>) -> Vec<Lookup> {
    let mut wanted: Vec<(usize, DeviceId, KeyId)> = Vec::new();
    let mut out = Vec::with_capacity(found.len());
    for (i, f) in found.into_iter().enumerate() {
        out.push(match f {
            Err(()) => Lookup::Failed,
            Ok(v) if v.is_empty() => Lookup::Missing,
            Ok(v) if v.len() > 1 => {
                let mut c: Vec<KeyId> = v.iter().map(|l| l.key_id).collect();
                c.sort();
                c.dedup();
                Lookup::Ambiguous(c)
            }
            Ok(v) => {
                let (d, k) = (v[0].device_id.clone(), v[0].key_id);
                match wanted.iter().find(|(_, wd, wk)| wd == &d && wk == &k) {
                    Some((first, _, _)) => Lookup::Again(*first),
                    None => {
                        wanted.push((i, d.clone(), k));
                        Lookup::Wanted(d, k)
                    }
                }
            }
        });
    }
    out
}

/// An item's key to check, by index: (item, device, key).
type Wanted = (usize, DeviceId, KeyId);

/// A repeated item and the first item of its key.
type Duplicate = (usize, usize);

/// The lookups as first outcomes (items settled by their lookup), the keys
/// to check, and the repeated items.
fn sort_out(lookups: Vec<Lookup>) -> (Vec<Option<ItemOutcome>>, Vec<Wanted>, Vec<Duplicate>) {
    let mut wanted = Vec::new();
    let mut duplicates = Vec::new();
    let mut outcomes = Vec::with_capacity(lookups.len());
    for (i, lookup) in lookups.into_iter().enumerate() {
        outcomes.push(match lookup {
            Lookup::Failed => Some(ItemOutcome::Unavailable),
            Lookup::Missing => Some(ItemOutcome::NotFound),
            Lookup::Ambiguous(c) => Some(ItemOutcome::Ambiguous(c)),
            Lookup::Wanted(d, k) => {
                wanted.push((i, d, k));
                None
            }
            Lookup::Again(first) => {
                duplicates.push((i, first));
                None
            }
        });
    }
    (outcomes, wanted, duplicates)
}

/// The devices, in one read, and each key checked as a single retrieval
/// checks it (device policy, then key selection by full key ID).
async fn check(
    ports: RetrievalPorts<'_>,
    attempt: &Audit<'_>,
    policy: &TenantPolicy,
    wanted: Vec<Wanted>,
    now: OffsetDateTime,
    outcomes: &mut [Option<ItemOutcome>],
) -> Vec<Ready> {
    let caller = attempt.caller;
    let ids: Vec<DeviceId> = wanted.iter().map(|(_, d, _)| d.clone()).collect();
    let devices: HashMap<DeviceId, SealedDevice> = if ids.is_empty() {
        HashMap::new()
    } else {
        match ports.store.load_devices(&caller.tenant, &ids, policy).await {
            Ok(v) => v
                .into_iter()
                .map(|d| (d.device.device_id.clone(), d))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, request_id = %attempt.meta.request_id, "store read failed");
                ports.audit.count(Metric::Unavailable(Cause::Store), 1);
                for (i, _, _) in &wanted {
                    outcomes[*i] = Some(ItemOutcome::Unavailable);
                }
                HashMap::new()
            }
        }
    };
    let mut ready: Vec<Ready> = Vec::new();
    for (i, device_id, key_id) in wanted {
        if outcomes[i].is_some() {
            continue;
        }
        let Some(device) = devices.get(&device_id) else {
            outcomes[i] = Some(ItemOutcome::NotFound);
            continue;
        };
        match checked_key(ports, caller, device, key_id, now).await {
            Ok(Some((key, sealed, access))) => ready.push(Ready {
                index: i,
                device: device.clone(),
                key,
                sealed,
                access,
            }),
            Ok(None) => outcomes[i] = Some(ItemOutcome::NotFound),
            Err(()) => {
                ports.audit.count(Metric::Unavailable(Cause::Store), 1);
                outcomes[i] = Some(ItemOutcome::Unavailable);
            }
        }
    }
    ready
}

/// Whether `caller` opened `incident` (read from its own record when the
/// tenant's summary predates `opened_by`).
async fn opened_it(
    ports: RetrievalPorts<'_>,
    caller: &Caller,
    incident: &crate::domain::incidents::OpenIncident,
) -> Result<bool, ApiError> {
    let opener = match &incident.opened_by {
        Some(u) => Some(u.clone()),
        None => ports
            .lifecycle
            .incident(&caller.tenant, &incident.incident_id)
            .await?
            .map(|i| i.opened_by),
    };
    Ok(opener.as_ref() == Some(&caller.user))
}

/// The key as a single retrieval by full key ID would select it, with its
/// ciphertext (`None`: not readable by this caller, uniformly). `Err`: the
/// store failed.
async fn checked_key(
    ports: RetrievalPorts<'_>,
    caller: &Caller,
    device: &SealedDevice,
    key_id: KeyId,
    now: OffsetDateTime,
) -> Result<Option<(KeyMeta, SealedKey, Access)>, ()> {
    let Ok(access) = policy::device_access(caller, &device.device, &device.policy) else {
        return Ok(None);
    };
    let selector = KeySelector::Exact(key_id);
    let Ok((key, sealed)) = keys::select_key(device, Some(&selector), access, now) else {
        return Ok(None);
    };
    let device_id = &device.device.device_id;
    match keys::ciphertext(ports.lifecycle, &caller.tenant, &key, sealed, device_id).await {
        Ok(s) => Ok(s.map(|s| (key, s.into_owned(), access))),
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            Err(())
        }
    }
}

/// Pure: the next chunk to commit, taken from the front of `pending`: the
/// first keys in request order, at most `max`, of distinct devices (one
/// transaction may not touch an item twice); a second key of a device waits
/// its turn. The rest stay in `pending`, in order.
fn next_chunk<T>(
    pending: &mut VecDeque<T>,
    max: usize,
    device: impl Fn(&T) -> &DeviceId,
) -> Vec<T> {
    let mut chunk = Vec::new();
    let mut seen = HashSet::new();
    let mut later = VecDeque::new();
    for r in pending.drain(..) {
        if chunk.len() < max && seen.insert(device(&r).clone()) {
            chunk.push(r);
        } else {
            later.push_back(r);
        }
    }
    *pending = later;
    chunk
}

/// How a chunk of `n` keys fares against the agent's limit.
#[derive(Debug, PartialEq, Eq)]
struct ChunkPlan {
    /// The first `admitted` keys take a slot; the rest are refused (429).
    admitted: usize,
    /// When the first refused key could go.
    retry_after_secs: u64,
    /// The window after the admitted keys' slots (`None`: none admitted, or
    /// the window cannot take them: read it again).
    update: Option<RateUpdate>,
}

/// Pure: see `ChunkPlan`.
fn plan_chunk(window: &RateWindow, now: OffsetDateTime, limit: u32, n: usize) -> ChunkPlan {
    let admitted = (window.free(now, limit) as usize).min(n);
    let retry_after_secs = if admitted < n {
        ratelimit::admit_n(window, now, limit, admitted as u32 + 1)
            .err()
            .unwrap_or(1)
    } else {
        0
    };
    let update = (admitted > 0)
        .then(|| ratelimit::admit_n(window, now, limit, admitted as u32).ok())
        .flatten();
    ChunkPlan {
        admitted,
        retry_after_secs,
        update,
    }
}

/// Takes rate slots and writes granted events for `ready`, in request order,
/// chunk by chunk (`next_chunk`); answers the keys whose events are durable.
/// After a failed write, every later key is withheld too (fail closed).
async fn commit(
    store: &dyn Store,
    attempt: &Audit<'_>,
    mut window: RateWindow,
    limit: u32,
    ready: Vec<Ready>,
    outcomes: &mut [Option<ItemOutcome>],
) -> Vec<Ready> {
    let mut granted = Vec::new();
    let mut pending: VecDeque<Ready> = ready.into();
    let mut failed = false;
    while !pending.is_empty() {
        let mut chunk = next_chunk(&mut pending, BATCH_COMMIT_MAX, |r| {
            &r.device.device.device_id
        });
        if !failed && commit_chunk(store, attempt, &mut window, limit, &mut chunk, outcomes).await {
            granted.append(&mut chunk);
            continue;
        }
        failed = true;
        for r in chunk {
            outcomes[r.index] = Some(ItemOutcome::Unavailable);
        }
    }
    granted
}

/// Commits one chunk: the keys the limit refuses get their 429, the others
/// their slots and granted events, all at once. False: nothing of what is
/// left in `chunk` is durable.
async fn commit_chunk(
    store: &dyn Store,
    attempt: &Audit<'_>,
    window: &mut RateWindow,
    limit: u32,
    chunk: &mut Vec<Ready>,
    outcomes: &mut [Option<ItemOutcome>],
) -> bool {
    let (caller, meta) = (attempt.caller, attempt.meta);
    // Built once: every send of this chunk carries the same events, so a
    // write that was applied but not acknowledged is found durable (see
    // `Store::commit_batch`), never written again under new event IDs.
    let mut events: Vec<_> = chunk.iter().map(|r| granted_event(attempt, r)).collect();
    for _ in 0..keys::COMMIT_ATTEMPTS {
        let now = attempt.ports.clock.now();
        let plan = plan_chunk(window, now, limit, chunk.len());
        // Counted as denials (with `RateLimited`) by `deny_items`.
        for r in chunk.drain(plan.admitted..) {
            let retry_after_secs = plan.retry_after_secs;
            outcomes[r.index] = Some(ItemOutcome::RateLimited { retry_after_secs });
        }
        events.truncate(chunk.len());
        if chunk.is_empty() {
            return true;
        }
        let Some(update) = plan.update else {
            continue;
        };
        match store.commit_batch(&events, &update).await {
            Ok(Commit::Written) => {
                *window = update.window;
                attempt
                    .ports
                    .count(Metric::AgentKeysInHour, u64::from(window.used(now)));
                return true;
            }
            Ok(Commit::RateConflict) => {
                match store.load_batch_state(&caller.tenant, &caller.user).await {
                    Ok((_, w)) => *window = w,
                    Err(e) => {
                        tracing::error!(error = %e, request_id = %meta.request_id, "store read failed");
                        return false;
                    }
                }
            }
            Err(e) => {
                withheld(attempt, &e, chunk.len());
                return false;
            }
        }
    }
    false
}

fn granted_event(attempt: &Audit<'_>, r: &Ready) -> crate::domain::audit::AuditEvent {
    let device_id = Some(&r.device.device.device_id);
    let event = Audit {
        device_id,
        ..*attempt
    };
    event.event(Some(r.key.key_id), Outcome::Granted, r.access.as_str())
}

/// A failed write of granted events. Fail closed: these keys have no
/// durable event, so none of them is disclosed.
fn withheld(attempt: &Audit<'_>, e: &crate::domain::error::Unavailable, keys: usize) {
    let (ports, caller) = (attempt.ports, attempt.caller);
    ports.count(Metric::AuditWriteFailures, 1);
    ports.count(Metric::Unavailable(Cause::Audit), 1);
    tracing::error!(
        error = %e,
        request_id = %attempt.meta.request_id,
        tenant = %caller.tenant,
        actor = %caller.user,
        keys,
        "batch audit write failed; keys withheld"
    );
}

/// Decrypts the granted keys, at most [`DECRYPT_CONCURRENCY`] at a time.
async fn decrypt_all(
    ports: RetrievalPorts<'_>,
    caller: &Caller,
    meta: &RequestMeta,
    granted: Vec<Ready>,
) -> Vec<(usize, ItemOutcome)> {
    let decrypts: Vec<_> = granted
        .into_iter()
        .map(|r| async move {
            let outcome =
                match keys::decrypt(ports, caller, meta, &r.device, &r.key, &r.sealed, r.access)
                    .await
                {
                    Ok(d) => ItemOutcome::Disclosed(d),
                    Err(ApiError::Unavailable(_)) => ItemOutcome::Unavailable,
                    Err(_) => ItemOutcome::Internal,
                };
            (r.index, outcome)
        })
        .collect();
    stream::iter(decrypts)
        .buffer_unordered(DECRYPT_CONCURRENCY)
        .collect()
        .await
}

/// Pure: the items refused on their own account, with the reasons their
/// batch's denied event lists.
fn denied_items(keys: &[BatchKey], outcomes: &[Option<ItemOutcome>]) -> Vec<(String, Denied)> {
    outcomes
        .iter()
        .zip(keys)
        .filter_map(|(o, k)| {
            let reason = match o {
                Some(ItemOutcome::NotFound) => Denied::KeyIdNotFound,
                Some(ItemOutcome::Ambiguous(_)) => Denied::AmbiguousKeyId,
                Some(ItemOutcome::RateLimited { .. }) => Denied::RateLimited,
                _ => return None,
            };
            Some((k.requested.clone(), reason))
        })
        .collect()
}

#[cfg(test)]
mod tests;
