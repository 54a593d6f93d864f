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

use crate::domain::audit::Outcome;
use crate::domain::caller::Caller;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId, KeySelector};
use crate::domain::keys::{self, Attempt, Disclosure, RequestMeta};
use crate::domain::metrics::{Cause, Metric};
use crate::domain::model::{KeyMeta, SealedDevice, SealedKey};
use crate::domain::policy::{self, Access};
use crate::domain::ratelimit::{self, RateWindow};
use crate::ports::{BATCH_COMMIT_MAX, Commit, KeyLocation, Portal};
use futures_util::{StreamExt, stream};
use std::collections::{HashMap, HashSet};

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
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    keys: Vec<BatchKey>,
    reason: &str,
) -> Result<Vec<BatchItem>, ApiError> {
    let attempt = Attempt {
        portal,
        caller,
        meta,
        device_id: None,
        justification: Some(reason),
    };
    let now = portal.clock.now().unix_timestamp();
    if let Err(e) = policy::recent_enough(caller, portal.max_auth_age, now) {
        return Err(attempt.deny(None, "sign_in_too_old", e).await);
    }
    let (policy, window) = match portal
        .store
        .load_batch_state(&caller.tenant, &caller.user)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, request_id = %meta.request_id, "store read failed");
            return Err(attempt.deny(None, "store_unavailable", e.into()).await);
        }
    };
    let now = portal.clock.now();
    let Some(incident) = policy.open_incident(now) else {
        return Err(attempt
            .deny(None, "incident_required", ApiError::IncidentRequired)
            .await);
    };
    if opened_it(portal, caller, incident).await? {
        let e = ApiError::SecondPersonRequired(
            "You opened this incident, so you cannot batch-retrieve keys under it: another helpdesk agent must do it, or retrieve keys one at a time."
                .into(),
        );
        return Err(attempt.deny(None, "incident_opener", e).await);
    }
    portal.count(Metric::BatchSize, keys.len() as u64);

    let mut outcomes: Vec<Option<ItemOutcome>> = (0..keys.len()).map(|_| None).collect();
    // Resolve each key ID in the caller's tenant.
    // Futures built first, then polled: a stream of closures borrowing the
    // request would not be `Send` for axum (a rustc limitation).
    let lookups: Vec<_> = keys
        .iter()
        .map(|k| async move {
            let prefix = match &k.selector {
                KeySelector::Exact(id) => {
                    crate::domain::ids::KeyIdPrefix::parse(&id.hex()).map_err(|_| ())?
                }
                KeySelector::Prefix(p) => p.clone(),
            };
            match portal.store.find_keys(&caller.tenant, &prefix).await {
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
    let found: Vec<Result<Vec<KeyLocation>, ()>> = stream::iter(lookups)
        .buffered(DECRYPT_CONCURRENCY)
        .collect()
        .await;
    let mut wanted: Vec<(usize, DeviceId, KeyId)> = Vec::new();
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    for (i, f) in found.into_iter().enumerate() {
        match f {
            Err(()) => {
                portal.count(Metric::Unavailable(Cause::Store), 1);
                outcomes[i] = Some(ItemOutcome::Unavailable);
            }
            Ok(v) if v.is_empty() => outcomes[i] = Some(ItemOutcome::NotFound),
            Ok(v) if v.len() > 1 => {
                let mut c: Vec<KeyId> = v.iter().map(|l| l.key_id).collect();
                c.sort();
                c.dedup();
                outcomes[i] = Some(ItemOutcome::Ambiguous(c));
            }
            Ok(v) => {
                // The same key asked for twice (say, by prefix and by full
                // ID) is disclosed once: one event, one slot, one decrypt.
                let (d, k) = (v[0].device_id.clone(), v[0].key_id);
                match wanted.iter().find(|(_, wd, wk)| wd == &d && wk == &k) {
                    Some((first, _, _)) => duplicates.push((i, *first)),
                    None => wanted.push((i, d, k)),
                }
            }
        }
    }

    // The devices, in one read, and each key checked as a single retrieval
    // checks it (device policy, then key selection by full key ID).
    let ids: Vec<DeviceId> = wanted.iter().map(|(_, d, _)| d.clone()).collect();
    let devices: HashMap<DeviceId, SealedDevice> = if ids.is_empty() {
        HashMap::new()
    } else {
        match portal
            .store
            .load_devices(&caller.tenant, &ids, &policy)
            .await
        {
            Ok(v) => v
                .into_iter()
                .map(|d| (d.device.device_id.clone(), d))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, request_id = %meta.request_id, "store read failed");
                portal.count(Metric::Unavailable(Cause::Store), 1);
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
        match checked_key(portal, caller, device, key_id, now).await {
            Ok(Some((key, sealed, access))) => ready.push(Ready {
                index: i,
                device: device.clone(),
                key,
                sealed,
                access,
            }),
            Ok(None) => outcomes[i] = Some(ItemOutcome::NotFound),
            Err(()) => {
                portal.count(Metric::Unavailable(Cause::Store), 1);
                outcomes[i] = Some(ItemOutcome::Unavailable);
            }
        }
    }

    // Rate slots and audit events, chunk by chunk; then decrypt.
    let limit = portal.rate_limit(Access::Helpdesk, &policy, now);
    let granted = commit(
        portal,
        caller,
        meta,
        reason,
        window,
        limit,
        ready,
        &mut outcomes,
    )
    .await;
    let decrypts: Vec<_> = granted
        .into_iter()
        .map(|r| async move {
            let outcome =
                match keys::decrypt(portal, caller, meta, &r.device, &r.key, &r.sealed, r.access)
                    .await
                {
                    Ok(d) => ItemOutcome::Disclosed(d),
                    Err(ApiError::Unavailable(_)) => ItemOutcome::Unavailable,
                    Err(_) => ItemOutcome::Internal,
                };
            (r.index, outcome)
        })
        .collect();
    let disclosed: Vec<(usize, ItemOutcome)> = stream::iter(decrypts)
        .buffer_unordered(DECRYPT_CONCURRENCY)
        .collect()
        .await;
    for (i, o) in disclosed {
        outcomes[i] = Some(o);
    }
    for (i, first) in duplicates {
        outcomes[i] = outcomes[first].as_ref().map(ItemOutcome::again);
    }

    // Denied events for the items refused on their own account.
    let denials: Vec<_> = outcomes
        .iter()
        .zip(&keys)
        .filter_map(|(o, k)| {
            let reason = match o {
                Some(ItemOutcome::NotFound) => "key_id_not_found",
                Some(ItemOutcome::Ambiguous(_)) => "ambiguous_key_id",
                Some(ItemOutcome::RateLimited { .. }) => "rate_limited",
                _ => return None,
            };
            Some((k.requested.clone(), reason))
        })
        .collect();
    // One stored event for the whole batch, listing its denied items: one
    // request takes one slot of the caller's hourly cap of denied events,
    // however many of its items were refused.
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

/// Whether `caller` opened `incident` (read from its own record when the
/// tenant's summary predates `opened_by`).
async fn opened_it(
    portal: &Portal,
    caller: &Caller,
    incident: &crate::domain::incidents::OpenIncident,
) -> Result<bool, ApiError> {
    let opener = match &incident.opened_by {
        Some(u) => Some(u.clone()),
        None => portal
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
    portal: &Portal,
    caller: &Caller,
    device: &SealedDevice,
    key_id: KeyId,
    now: time::OffsetDateTime,
) -> Result<Option<(KeyMeta, SealedKey, Access)>, ()> {
    let Ok(access) = policy::device_access(caller, &device.device, &device.policy) else {
        return Ok(None);
    };
    let selector = KeySelector::Exact(key_id);
    let Ok((key, sealed)) = keys::select_key(device, Some(&selector), access, now) else {
        return Ok(None);
    };
    let device_id = &device.device.device_id;
    match keys::ciphertext(portal, &caller.tenant, &key, sealed, device_id).await {
        Ok(s) => Ok(s.map(|s| (key, s.into_owned(), access))),
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            Err(())
        }
    }
}

/// Takes rate slots and writes granted events for `ready`, in request order,
/// in chunks of distinct devices; answers the keys whose events are durable.
#[allow(clippy::too_many_arguments)]
async fn commit(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    reason: &str,
    mut window: RateWindow,
    limit: u32,
    ready: Vec<Ready>,
    outcomes: &mut [Option<ItemOutcome>],
) -> Vec<Ready> {
    let mut granted = Vec::new();
    let mut pending: std::collections::VecDeque<Ready> = ready.into();
    let mut failed = false;
    while !pending.is_empty() {
        // The next chunk: the first keys in request order, at most
        // BATCH_COMMIT_MAX, of distinct devices (one transaction may not
        // touch an item twice); a second key of a device waits its turn.
        let mut chunk: Vec<Ready> = Vec::new();
        let mut seen = HashSet::new();
        let mut later = std::collections::VecDeque::new();
        while let Some(r) = pending.pop_front() {
            if chunk.len() == BATCH_COMMIT_MAX {
                later.push_back(r);
                later.extend(pending.drain(..));
                break;
            }
            if seen.insert(r.device.device.device_id.clone()) {
                chunk.push(r);
            } else {
                later.push_back(r);
            }
        }
        pending = later;
        if failed {
            for r in chunk {
                outcomes[r.index] = Some(ItemOutcome::Unavailable);
            }
            continue;
        }
        let mut written = false;
        for _ in 0..keys::COMMIT_ATTEMPTS {
            let now = portal.clock.now();
            let free = window.free(now, limit) as usize;
            if free < chunk.len() {
                // When the first of the refused keys could go.
                let retry_after_secs = ratelimit::admit_n(&window, now, limit, free as u32 + 1)
                    .err()
                    .unwrap_or(1);
                // Counted as denials (with `RateLimited`) below.
                for r in chunk.drain(free..) {
                    outcomes[r.index] = Some(ItemOutcome::RateLimited { retry_after_secs });
                }
            }
            if chunk.is_empty() {
                written = true;
                break;
            }
            let Ok(update) = ratelimit::admit_n(&window, now, limit, chunk.len() as u32) else {
                continue;
            };
            let events: Vec<_> = chunk
                .iter()
                .map(|r| {
                    Attempt {
                        portal,
                        caller,
                        meta,
                        device_id: Some(&r.device.device.device_id),
                        justification: Some(reason),
                    }
                    .event(
                        Some(r.key.key_id),
                        Outcome::Granted,
                        r.access.as_str(),
                    )
                })
                .collect();
            match portal.store.commit_batch(&events, &update).await {
                Ok(Commit::Written) => {
                    window = update.window;
                    portal.count(Metric::AgentKeysInHour, u64::from(window.used(now)));
                    granted.append(&mut chunk);
                    written = true;
                    break;
                }
                Ok(Commit::RateConflict) => match portal
                    .store
                    .load_batch_state(&caller.tenant, &caller.user)
                    .await
                {
                    Ok((_, w)) => window = w,
                    Err(e) => {
                        tracing::error!(error = %e, request_id = %meta.request_id, "store read failed");
                        break;
                    }
                },
                Err(e) => {
                    // Fail closed: these keys have no durable event.
                    portal.count(Metric::AuditWriteFailures, 1);
                    portal.count(Metric::Unavailable(Cause::Audit), 1);
                    tracing::error!(
                        error = %e,
                        request_id = %meta.request_id,
                        tenant = %caller.tenant,
                        actor = %caller.user,
                        keys = chunk.len(),
                        "batch audit write failed; keys withheld"
                    );
                    break;
                }
            }
        }
        if !written {
            failed = true;
            for r in chunk {
                outcomes[r.index] = Some(ItemOutcome::Unavailable);
            }
        }
    }
    granted
}
