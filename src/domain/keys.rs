//! Key retrieval: the one path that decrypts.
//!
//! Order, each step only if every earlier one passed: authenticate (done by
//! the caller of `retrieve`) → permission → load the device in the caller's
//! tenant → ownership and tenant policy → rate limit → write the audit event
//! durably → decrypt → respond. A failed audit write discloses nothing.
//!
//! Request ids (`X-Request-Id`, else the gateway's id). Every attempt is
//! recorded as an event of its own; a request id only correlates. One
//! exception keeps client retries idempotent: within
//! [`ratelimit::REPLAY_WINDOW_SECS`] (5 minutes) of a granted request, a
//! request by the same caller with the same id is
//! - served again from that grant, with no new event and no rate-limit
//!   slot, when it is identical (device, key, reason, source IP, user agent);
//! - refused with 400 (and a denied event) when it asks for another device
//!   or key;
//! - otherwise (another reason, IP or user agent) a new attempt with its own
//!   event and slot.
//!
//! Denied attempts, failed ones and grants older than the window never bind
//! an id: a retry after a 429 or a 503 is simply a new attempt.

use crate::domain::audit::{Action, AuditEvent, DENIALS_CAPPED, DENIED_EVENTS_PER_HOUR, Outcome};
use crate::domain::caller::Caller;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId, KeySelector};
use crate::domain::metrics::{Cause, Metric};
use crate::domain::model::{
    KeyContext, KeyMeta, ManagedBy, RecoveryPassword, SealedDevice, SealedKey, VolumeType,
};
use crate::domain::policy::{self, Access};
use crate::domain::ratelimit::{self, Grant, RateWindow};
use crate::ports::Portal;
use crate::ports::{CipherError, Commit, Denial};
use aws_lc_rs::digest;
use std::borrow::Cow;
use time::OffsetDateTime;

/// Reason of the one denied event of a batch's refused items.
pub const BATCH_ITEMS_DENIED: &str = "batch_items_denied";

/// How long the portal shows a key (the seed document's five minutes).
pub const DISPLAY_SECONDS: u32 = 300;
/// Attempts when a concurrent disclosure by the same caller changed the
/// rate window between our read and our conditional write.
pub const COMMIT_ATTEMPTS: usize = 3;

/// Facts about the HTTP request that the audit trail records.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: String,
    /// Whether `request_id` is the client's own `X-Request-Id`. Only such an
    /// id can come back in a retry, so only grants under one are kept for
    /// replay (a gateway's id is new on every request: keeping its grants
    /// would only make every rate-window read and write heavier).
    pub client_request_id: bool,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

pub struct RetrievalRequest {
    pub device_id: DeviceId,
    pub key: Option<KeySelector>,
    pub justification: Option<String>,
}

pub struct Disclosure {
    pub device_id: DeviceId,
    pub key_id: KeyId,
    pub volume_type: VolumeType,
    pub created_at: OffsetDateTime,
    pub password: RecoveryPassword,
}

/// One key-retrieval attempt by an authenticated caller: everything its
/// audit event records.
pub struct Attempt<'a> {
    pub portal: &'a Portal,
    pub caller: &'a Caller,
    pub meta: &'a RequestMeta,
    pub device_id: Option<&'a DeviceId>,
    pub justification: Option<&'a str>,
}

impl Attempt<'_> {
    /// The audit event for this attempt: an event of its own (a fresh event
    /// id), carrying the request id for correlation.
    pub fn event(&self, key_id: Option<KeyId>, outcome: Outcome, reason: &str) -> AuditEvent {
        AuditEvent {
            action: Action::Disclose,
            event_id: uuid::Uuid::new_v4().to_string(),
            time: self.portal.clock.now(),
            tenant_id: self.caller.tenant.clone(),
            actor: self.caller.user.clone(),
            device_id: self.device_id.cloned(),
            key_id,
            outcome,
            reason: reason.to_owned(),
            justification: self.justification.map(str::to_owned),
            source_ip: self.meta.source_ip.clone(),
            user_agent: self.meta.user_agent.clone(),
            request_id: self.meta.request_id.clone(),
        }
    }

    /// Records a denied attempt. Best effort: a denial discloses nothing, so
    /// a failed write must not turn a 4xx into a 5xx; it is logged instead.
    /// Beyond [`DENIED_EVENTS_PER_HOUR`] for this caller in this clock hour
    /// the attempt is logged, not stored, and one marker event says so.
    pub async fn deny(
        &self,
        key_id: Option<KeyId>,
        reason: &'static str,
        error: ApiError,
    ) -> ApiError {
        self.portal.count(Metric::Denials(reason), 1);
        match &error {
            ApiError::RateLimited { .. } => self.portal.count(Metric::RateLimited, 1),
            ApiError::Unavailable(_) if reason == "store_unavailable" => {
                self.portal.count(Metric::Unavailable(Cause::Store), 1)
            }
            _ => {}
        }
        self.store_denied(key_id, reason).await;
        error
    }

    /// Stores a denied event within the caller's hourly cap (see `deny`).
    async fn store_denied(&self, key_id: Option<KeyId>, reason: &'static str) {
        let store = &self.portal.store;
        let event = self.event(key_id, Outcome::Denied, reason);
        match store.append_denied(&event, DENIED_EVENTS_PER_HOUR).await {
            Ok(Denial::Stored) => {}
            Ok(Denial::OverCap { marked }) => {
                tracing::warn!(
                    request_id = %self.meta.request_id,
                    tenant = %event.tenant_id,
                    actor = %event.actor,
                    device = event.device_id.as_ref().map(|d| d.as_str()),
                    source_ip = event.source_ip.as_deref(),
                    reason,
                    cap = DENIED_EVENTS_PER_HOUR,
                    "denied attempt logged, not stored: this caller reached the hourly cap of denied audit events"
                );
                if !marked {
                    let mut marker = self.event(None, Outcome::Denied, DENIALS_CAPPED);
                    marker.device_id = None;
                    marker.time = event.time;
                    marker.justification = Some(format!(
                        "{DENIED_EVENTS_PER_HOUR} denied attempts stored this hour; further denials of this caller until the hour ends are logged only"
                    ));
                    if let Err(e) = store.append_cap_marker(&marker).await {
                        tracing::error!(error = %e, request_id = %self.meta.request_id, "could not store the denial-cap marker");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, request_id = %self.meta.request_id, reason, "could not audit a denied attempt");
            }
        }
    }

    /// Records the items of one batch refused on their own account as one
    /// denied event (`batch_items_denied`) listing each item and its reason
    /// after the request's reason: counted per item, stored once, so one
    /// request takes one slot of the hourly cap.
    pub async fn deny_items(&self, items: &[(String, &'static str)]) {
        for (_, reason) in items {
            self.portal.count(Metric::Denials(reason), 1);
            if *reason == "rate_limited" {
                self.portal.count(Metric::RateLimited, 1);
            }
        }
        let listed: Vec<String> = items.iter().map(|(k, r)| format!("{k} {r}")).collect();
        let summary = format!(
            "{}{}denied items ({}): {}",
            self.justification.unwrap_or(""),
            if self.justification.is_some() {
                "; "
            } else {
                ""
            },
            items.len(),
            listed.join(", ")
        );
        let batch = Attempt {
            justification: Some(&summary),
            ..*self
        };
        // Metrics are counted above: store the one event without recounting.
        batch.store_denied(None, BATCH_ITEMS_DENIED).await;
    }

    /// Digest of what the audit event records about the request besides
    /// device and key: a replay must match it exactly.
    fn digest(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in [
            self.justification,
            self.meta.source_ip.as_deref(),
            self.meta.user_agent.as_deref(),
        ] {
            // Presence, length and bytes: unambiguous for any contents.
            match part {
                None => ctx.update(b"-"),
                Some(v) => {
                    ctx.update(format!("+{}:", v.len()).as_bytes());
                    ctx.update(v.as_bytes());
                }
            }
        }
        ctx.finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What a request id means for this attempt (see the module docs).
enum Replay {
    /// An identical request was granted within the replay window.
    Serve,
    /// The id was granted within the window for another device or key.
    Reused,
    New,
}

fn replay(
    window: &RateWindow,
    request_id: &str,
    device: &DeviceId,
    key: KeyId,
    digest: &str,
    now: OffsetDateTime,
) -> Replay {
    let mut seen = false;
    let mut same_target = false;
    for g in window.replayable(request_id, now) {
        seen = true;
        if &g.device_id == device && g.key_id == key {
            if g.digest == digest {
                return Replay::Serve;
            }
            same_target = true;
        }
    }
    match (seen, same_target) {
        (true, false) => Replay::Reused,
        _ => Replay::New,
    }
}

pub async fn retrieve(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    req: RetrievalRequest,
) -> Result<Disclosure, ApiError> {
    let device_id = &req.device_id;
    let attempt = Attempt {
        portal,
        caller,
        meta,
        device_id: Some(device_id),
        justification: req.justification.as_deref(),
    };
    let now = portal.clock.now().unix_timestamp();
    if let Err(e) = policy::recent_enough(caller, portal.max_auth_age, now) {
        return Err(attempt.deny(None, "sign_in_too_old", e).await);
    }
    for _ in 0..COMMIT_ATTEMPTS {
        let (device, window) = match portal
            .store
            .load_for_disclosure(&caller.tenant, device_id, &caller.user)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, request_id = %meta.request_id, "store read failed");
                return Err(attempt.deny(None, "store_unavailable", e.into()).await);
            }
        };
        let Some(device) = device else {
            return Err(attempt
                .deny(None, "not_found", ApiError::DeviceNotFound)
                .await);
        };
        let access = match policy::device_access(caller, &device.device, &device.policy) {
            Ok(a) => a,
            Err((e, reason)) => return Err(attempt.deny(None, reason, e).await),
        };
        if let Err(e) = retired_rules(&device, &req, portal.clock.now()) {
            return Err(attempt.deny(None, "retired_device", e).await);
        }
        if policy::reason_required(&device.policy, access) && req.justification.is_none() {
            let e = ApiError::BadRequest(
                "Your organization requires a reason for this recovery-key retrieval: give one in the `reason` field (for example a ticket number), then retry."
                    .into(),
            );
            return Err(attempt.deny(None, "reason_required", e).await);
        }
        let (meta_key, sealed) =
            match select_key(&device, req.key.as_ref(), access, portal.clock.now()) {
                Ok(v) => v,
                Err((e, reason)) => return Err(attempt.deny(None, reason, e).await),
            };
        let sealed = match ciphertext(portal, &caller.tenant, &meta_key, sealed, device_id).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let e = ApiError::NoKeyHeld {
                    helpdesk: device.policy.helpdesk.clone(),
                };
                return Err(attempt.deny(None, "key_id_not_found", e).await);
            }
            Err(e) => {
                tracing::error!(error = %e, request_id = %meta.request_id, "store read failed");
                return Err(attempt.deny(None, "store_unavailable", e.into()).await);
            }
        };
        let now = portal.clock.now();
        let digest = attempt.digest();
        let replayed = if meta.client_request_id {
            replay(
                &window,
                &meta.request_id,
                device_id,
                meta_key.key_id,
                &digest,
                now,
            )
        } else {
            Replay::New
        };
        match replayed {
            Replay::Serve => {
                // Its granted event is durable (written with the grant this
                // window holds): the same key again, nothing new to record.
                tracing::info!(request_id = %meta.request_id, "identical retry of a granted request: served from its audit event");
                return decrypt(portal, caller, meta, &device, &meta_key, &sealed, access).await;
            }
            Replay::Reused => {
                let e = ApiError::BadRequest(
                    "this X-Request-Id was already used for another request; send a new one".into(),
                );
                return Err(attempt
                    .deny(Some(meta_key.key_id), "request_id_reused", e)
                    .await);
            }
            Replay::New => {}
        }
        let limit = portal.rate_limit(access, &device.policy, now);
        let mut update = match ratelimit::admit(&window, now, limit) {
            Ok(u) => u,
            Err(retry_after_secs) => {
                let e = ApiError::RateLimited { retry_after_secs };
                return Err(attempt.deny(Some(meta_key.key_id), "rate_limited", e).await);
            }
        };
        let event = attempt.event(Some(meta_key.key_id), Outcome::Granted, access.as_str());
        if meta.client_request_id {
            update.record(Grant {
                request_id: meta.request_id.clone(),
                at: event.time.unix_timestamp(),
                device_id: device_id.clone(),
                key_id: meta_key.key_id,
                digest,
            });
        }
        match portal.store.commit_disclosure(&event, &update).await {
            Ok(Commit::Written) => {
                if access == Access::Helpdesk {
                    portal.count(Metric::AgentKeysInHour, u64::from(update.window.used(now)));
                }
            }
            Ok(Commit::RateConflict) => continue,
            Err(e) => {
                // Fail closed: no durable audit, no key. The trail is what
                // failed, so this attempt's trace is the log line: a second
                // write would most likely fail too, after as long a wait.
                portal.count(Metric::AuditWriteFailures, 1);
                portal.count(Metric::Unavailable(Cause::Audit), 1);
                tracing::error!(
                    error = %e,
                    request_id = %meta.request_id,
                    tenant = %caller.tenant,
                    actor = %caller.user,
                    device = %device_id,
                    "audit write failed; key withheld"
                );
                return Err(ApiError::Unavailable(e));
            }
        }
        return decrypt(portal, caller, meta, &device, &meta_key, &sealed, access).await;
    }
    let e = crate::domain::error::Unavailable::new(
        "rate limit",
        "too many concurrent retrievals by this caller",
    );
    Err(attempt.deny(None, "concurrent_retrievals", e.into()).await)
}

/// A retired device's keys are read by the helpdesk only (the policy saw
/// to that), by key ID and with a reason: the retirement said the device is
/// gone, so each read must say which key and why.
fn retired_rules(
    device: &SealedDevice,
    req: &RetrievalRequest,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    if device.device.is_gone(now) {
        return Err(ApiError::DeviceNotFound);
    }
    if device.device.retired.is_some() && (req.key.is_none() || req.justification.is_none()) {
        return Err(ApiError::BadRequest(
            "This device is retired: give the key ID shown on the recovery screen in `key_id` and a reason (for example a ticket number) in `reason`, then retry."
                .into(),
        ));
    }
    Ok(())
}

/// The ciphertext of a key `select_key` chose: the device record's, or, for
/// a superseded key (whose ciphertext is kept apart so it can expire on its
/// own), the one stored apart, read only now that the helpdesk asked for it
/// by key ID (`None` once its retention ended).
pub(crate) async fn ciphertext<'a>(
    portal: &Portal,
    tenant: &crate::domain::ids::TenantId,
    key: &KeyMeta,
    sealed: Option<&'a SealedKey>,
    device_id: &DeviceId,
) -> Result<Option<Cow<'a, SealedKey>>, crate::domain::error::Unavailable> {
    match sealed {
        Some(s) => Ok(Some(Cow::Borrowed(s))),
        None => Ok(portal
            .lifecycle
            .superseded_key(tenant, device_id, &key.key_id)
            .await?
            .map(Cow::Owned)),
    }
}

pub(crate) async fn decrypt(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    device: &SealedDevice,
    key: &KeyMeta,
    sealed: &SealedKey,
    access: Access,
) -> Result<Disclosure, ApiError> {
    let ctx = KeyContext {
        tenant: caller.tenant.clone(),
        device: device.device.device_id.clone(),
        key_id: key.key_id,
    };
    match portal.cipher.open(&ctx, sealed).await {
        Ok(password) => {
            portal.count(Metric::KeysDisclosed, 1);
            tracing::info!(
                request_id = %meta.request_id,
                tenant = %caller.tenant,
                actor = %caller.user,
                device = %ctx.device,
                key_id = %key.key_id,
                access = access.as_str(),
                "recovery key disclosed"
            );
            Ok(Disclosure {
                device_id: ctx.device,
                key_id: key.key_id,
                volume_type: key.volume_type,
                created_at: key.created_at,
                password,
            })
        }
        Err(CipherError::Unavailable(e)) => {
            portal.count(Metric::Unavailable(Cause::Kms), 1);
            tracing::error!(error = %e, request_id = %meta.request_id, "decrypt unavailable");
            Err(ApiError::Unavailable(e))
        }
        Err(CipherError::Rejected(why)) => {
            tracing::error!(request_id = %meta.request_id, key_id = %key.key_id, why, "stored ciphertext rejected");
            Err(ApiError::Internal(
                "the stored key could not be decrypted".into(),
            ))
        }
    }
}

/// The requested key, or the newest current operating-system key by default,
/// with its ciphertext when the device record holds it (`None`: a superseded
/// key, whose ciphertext is stored apart).
///
/// Superseded keys are never a default and never self-service: only the
/// helpdesk reads one, by key ID, until its retention ends.
pub(crate) fn select_key<'a>(
    device: &'a SealedDevice,
    selector: Option<&KeySelector>,
    access: Access,
    now: OffsetDateTime,
) -> Result<(KeyMeta, Option<&'a SealedKey>), (ApiError, &'static str)> {
    let no_key = |reason| {
        (
            ApiError::NoKeyHeld {
                helpdesk: device.policy.helpdesk.clone(),
            },
            reason,
        )
    };
    if device.device.managed_by == ManagedBy::User {
        return Err(no_key("personally_encrypted"));
    }
    let sealed_of = |id: &KeyId| device.sealed.iter().find(|(k, _)| k == id).map(|(_, s)| s);
    // A superseded key is read by its key ID only: the ID on the recovery
    // screen is what proves which key the PC needs, so a planted "newer"
    // key can never hide the real one from its owner.
    let superseded_readable = selector.is_some();
    let held: Vec<&KeyMeta> = device
        .device
        .keys
        .iter()
        .filter(|k| k.is_live(now))
        .filter(|k| {
            if k.is_superseded() {
                superseded_readable
            } else {
                sealed_of(&k.key_id).is_some()
            }
        })
        .collect();
    if held.is_empty() {
        return Err(no_key("no_key"));
    }
    // Ownership is not a key permission: an owner reads only keys created
    // since the device became theirs; older ones take the helpdesk path.
    let wanted = |k: &KeyMeta| selector.is_none_or(|s| s.matches(&k.key_id));
    let (held, older): (Vec<&KeyMeta>, Vec<&KeyMeta>) = held
        .into_iter()
        .partition(|k| access == Access::Helpdesk || device.device.owner_may_read(k));
    if older.iter().any(|k| wanted(k)) && !held.iter().any(|k| wanted(k)) {
        return Err(no_key("key_predates_owner"));
    }
    if held.is_empty() {
        return Err(no_key("no_key"));
    }
    let chosen = match selector {
        None => held
            .iter()
            .filter(|k| k.volume_type == VolumeType::OperatingSystem && !k.is_superseded())
            .max_by(|a, b| {
                a.created_at
                    .cmp(&b.created_at)
                    .then(b.key_id.cmp(&a.key_id))
            })
            .copied()
            .ok_or_else(|| no_key("no_os_key"))?,
        Some(sel) => {
            let mut m: Vec<&KeyMeta> = held
                .into_iter()
                .filter(|k| sel.matches(&k.key_id))
                .collect();
            match m.len() {
                0 => return Err(no_key("key_id_not_found")),
                1 => m.remove(0),
                _ => {
                    let mut candidates: Vec<KeyId> = m.iter().map(|k| k.key_id).collect();
                    candidates.sort();
                    return Err((ApiError::AmbiguousKey { candidates }, "ambiguous_key_id"));
                }
            }
        }
    };
    let sealed = sealed_of(&chosen.key_id);
    if sealed.is_none() && !chosen.is_superseded() {
        return Err(no_key("no_key"));
    }
    Ok((chosen.clone(), sealed))
}

#[cfg(test)]
mod tests;
