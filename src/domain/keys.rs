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

use crate::domain::audit::{Audit, AuditPorts, Outcome};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId, KeySelector};
use crate::domain::metrics::{Cause, Metric};
use crate::domain::model::{
    KeyContext, KeyMeta, ManagedBy, RecoveryPassword, SealedDevice, SealedKey, VolumeType,
};
use crate::domain::policy::{self, Access, Permitted, RateLimits, grant};
use crate::domain::ports::{CipherError, Commit, KeyCipher, LifecycleStore, Portal, Store};
use crate::domain::ratelimit::{self, Grant, RateWindow};
use aws_lc_rs::digest;
use std::borrow::Cow;
use time::OffsetDateTime;

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

/// What a retrieval (single or batch) uses of the ports.
#[derive(Clone, Copy)]
pub struct RetrievalPorts<'a> {
    /// Disclosure reads and the granted events with their rate slots.
    pub store: &'a dyn Store,
    /// Superseded keys' ciphertexts, an incident's record.
    pub lifecycle: &'a dyn LifecycleStore,
    pub cipher: &'a dyn KeyCipher,
    pub audit: AuditPorts<'a>,
    pub limits: RateLimits,
    /// `PORTAL_WEB_MAX_AGE` (see `policy::recent_enough`).
    pub max_auth_age: Option<u64>,
}

impl RetrievalPorts<'_> {
    pub fn now(&self) -> OffsetDateTime {
        self.audit.clock.now()
    }
}

impl<'a> From<&'a Portal> for RetrievalPorts<'a> {
    fn from(p: &'a Portal) -> Self {
        Self {
            store: &*p.store,
            lifecycle: &*p.lifecycle,
            cipher: &*p.cipher,
            audit: p.into(),
            limits: p.rate_limits(),
            max_auth_age: p.max_auth_age,
        }
    }
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

/// A key-retrieval attempt's own audit records (see `Audit::disclosure`).
impl Audit<'_> {
    /// Records the items of one batch refused on their own account as one
    /// denied event (`batch_items_denied`) listing each item and its reason
    /// after the request's reason: counted per item, stored once, so one
    /// request takes one slot of the hourly cap.
    pub async fn deny_items(&self, items: &[(String, Denied)]) {
        for (_, reason) in items {
            self.ports.count(Metric::Denials(*reason), 1);
            if *reason == Denied::RateLimited {
                self.ports.count(Metric::RateLimited, 1);
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
        let batch = self.with_detail(Some(&summary));
        // Metrics are counted above: store the one event without recounting.
        batch.store_denied(None, Denied::BatchItemsDenied).await;
    }

    /// A failed store read: logged, and denied as `store_unavailable`.
    pub(crate) async fn store_failed(&self, e: crate::domain::error::Unavailable) -> ApiError {
        tracing::error!(error = %e, request_id = %self.meta.request_id, "store read failed");
        self.deny(None, Denied::StoreUnavailable, e.into()).await
    }

    /// A failed granted-event write. Fail closed: no durable audit, no key.
    /// The trail is what failed, so this attempt's trace is the log line: a
    /// second write would most likely fail too, after as long a wait.
    fn audit_failed(&self, e: crate::domain::error::Unavailable) -> ApiError {
        self.ports.count(Metric::AuditWriteFailures, 1);
        self.ports.count(Metric::Unavailable(Cause::Audit), 1);
        tracing::error!(
            error = %e,
            request_id = %self.meta.request_id,
            tenant = %self.caller.tenant,
            actor = %self.caller.user,
            device = self.device_id.map(|d| d.as_str()),
            "audit write failed; key withheld"
        );
        ApiError::Unavailable(e)
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
#[derive(Debug, PartialEq, Eq)]
enum Replay {
    /// An identical request was granted within the replay window.
    Serve,
    /// The id was granted within the window for another device or key.
    Reused,
    New,
}

fn replay(window: &RateWindow, ask: &GrantAsk, now: OffsetDateTime) -> Replay {
    if !ask.client_request_id {
        return Replay::New;
    }
    let mut seen = false;
    let mut same_target = false;
    for g in window.replayable(ask.request_id, now) {
        seen = true;
        if &g.device_id == ask.device_id && g.key_id == ask.key_id {
            if g.digest == ask.digest {
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

/// A refusal: the answer and the reason its denied event records.
pub(crate) type Refusal = (ApiError, Denied);

/// The key a retrieval would disclose, as read.
pub(crate) struct Selected<'a> {
    pub device: &'a SealedDevice,
    pub access: Access,
    pub key: KeyMeta,
    /// `None`: a superseded key, whose ciphertext is stored apart.
    pub sealed: Option<&'a SealedKey>,
}

/// Pure: the checks of a retrieval once its device is read, in the order of
/// the module docs (the device in the caller's tenant, ownership and tenant
/// policy, a retired device's rules, a required reason, the key).
pub(crate) fn plan_retrieval<'a>(
    caller: &Caller,
    device: Option<&'a SealedDevice>,
    req: &RetrievalRequest,
    now: OffsetDateTime,
) -> Result<Selected<'a>, Refusal> {
    let device = device.ok_or((ApiError::DeviceNotFound, Denied::NotFound))?;
    let access = policy::device_access(caller, &device.device, &device.policy)?;
    retired_rules(device, req, now).map_err(|e| (e, Denied::RetiredDevice))?;
    if policy::reason_required(&device.policy, access) && req.justification.is_none() {
        let e = ApiError::BadRequest(
            "Your organization requires a reason for this recovery-key retrieval: give one in the `reason` field (for example a ticket number), then retry."
                .into(),
        );
        return Err((e, Denied::ReasonRequired));
    }
    let (key, sealed) = select_key(device, req.key.as_ref(), access, now)?;
    Ok(Selected {
        device,
        access,
        key,
        sealed,
    })
}

/// What a grant would be: who asks for which key, under which request id.
pub(crate) struct GrantAsk<'a> {
    pub request_id: &'a str,
    /// Only a client's own request id binds (see `RequestMeta`).
    pub client_request_id: bool,
    pub device_id: &'a DeviceId,
    pub key_id: KeyId,
    /// `Audit::digest` of the request.
    pub digest: &'a str,
}

/// The decision on a selected key, before anything is written.
#[derive(Debug)]
pub(crate) enum GrantPlan {
    /// An identical request was granted within the replay window: serve it
    /// again, with no new event and no slot.
    Replay,
    Refuse(Refusal),
    /// Take this slot and write the granted event.
    Admit(ratelimit::RateUpdate),
}

/// Pure: a replay, a refusal (reused request id, rate limit) or a slot.
pub(crate) fn plan_grant(
    window: &RateWindow,
    ask: &GrantAsk,
    limit: u32,
    now: OffsetDateTime,
) -> GrantPlan {
    match replay(window, ask, now) {
        Replay::Serve => return GrantPlan::Replay,
        Replay::Reused => {
            let e = ApiError::BadRequest(
                "this X-Request-Id was already used for another request; send a new one".into(),
            );
            return GrantPlan::Refuse((e, Denied::RequestIdReused));
        }
        Replay::New => {}
    }
    match ratelimit::admit(window, now, limit) {
        Ok(u) => GrantPlan::Admit(u),
        Err(retry_after_secs) => GrantPlan::Refuse((
            ApiError::RateLimited { retry_after_secs },
            Denied::RateLimited,
        )),
    }
}

pub async fn retrieve(
    ports: RetrievalPorts<'_>,
    who: Permitted<'_, grant::RetrieveKeys>,
    meta: &RequestMeta,
    req: RetrievalRequest,
) -> Result<Disclosure, ApiError> {
    let caller = who.caller();
    let device_id = &req.device_id;
    let attempt = Audit::disclosure(
        ports.audit,
        caller,
        meta,
        Some(device_id),
        req.justification.as_deref(),
    );
    // The permission was checked before the input was read (`who`).
    admitted(&attempt, ports.max_auth_age).await?;
    for _ in 0..COMMIT_ATTEMPTS {
        let (device, window) = match ports
            .store
            .load_for_disclosure(&caller.tenant, device_id, &caller.user)
            .await
        {
            Ok(v) => v,
            Err(e) => return Err(attempt.store_failed(e).await),
        };
        let s = match plan_retrieval(caller, device.as_ref(), &req, ports.now()) {
            Ok(s) => s,
            Err((e, reason)) => return Err(attempt.deny(None, reason, e).await),
        };
        let sealed = held_ciphertext(ports.lifecycle, &attempt, &s).await?;
        let now = ports.now();
        let digest = attempt.digest();
        let ask = GrantAsk {
            request_id: &meta.request_id,
            client_request_id: meta.client_request_id,
            device_id,
            key_id: s.key.key_id,
            digest: &digest,
        };
        let limit = policy::rate_limit(&ports.limits, s.access, &s.device.policy, now);
        let update = match plan_grant(&window, &ask, limit, now) {
            GrantPlan::Replay => {
                // Its granted event is durable (written with the grant this
                // window holds): the same key again, nothing new to record.
                tracing::info!(request_id = %meta.request_id, "identical retry of a granted request: served from its audit event");
                return decrypt(ports, caller, meta, s.device, &s.key, &sealed, s.access).await;
            }
            GrantPlan::Refuse((e, reason)) => {
                return Err(attempt.deny(Some(s.key.key_id), reason, e).await);
            }
            GrantPlan::Admit(u) => u,
        };
        if commit(ports.store, &attempt, &ask, s.access, update, now).await? {
            return decrypt(ports, caller, meta, s.device, &s.key, &sealed, s.access).await;
        }
    }
    let e = crate::domain::error::Unavailable::new(
        Cause::RateLimit,
        "too many concurrent retrievals by this caller",
    );
    Err(attempt
        .deny(None, Denied::ConcurrentRetrievals, e.into())
        .await)
}

/// Writes the granted event with its rate-limit slot (and, under a client's
/// request id, the grant a retry replays). False: a concurrent disclosure
/// by the same caller changed the window; nothing was written.
async fn commit(
    store: &dyn Store,
    attempt: &Audit<'_>,
    ask: &GrantAsk<'_>,
    access: Access,
    mut update: ratelimit::RateUpdate,
    now: OffsetDateTime,
) -> Result<bool, ApiError> {
    let event = attempt.event(Some(ask.key_id), Outcome::Granted, access.as_str());
    if ask.client_request_id {
        update.record(Grant {
            request_id: ask.request_id.to_owned(),
            at: event.time.unix_timestamp(),
            device_id: ask.device_id.clone(),
            key_id: ask.key_id,
            digest: ask.digest.to_owned(),
        });
    }
    match store.commit_disclosure(&event, &update).await {
        Ok(Commit::Written) => {
            if access == Access::Helpdesk {
                attempt
                    .ports
                    .count(Metric::AgentKeysInHour, u64::from(update.window.used(now)));
            }
            Ok(true)
        }
        Ok(Commit::RateConflict) => Ok(false),
        Err(e) => Err(attempt.audit_failed(e)),
    }
}

/// The check before any read, for a single retrieval and a batch alike,
/// after the permission's (the `Permitted` they take): a recent enough
/// sign-in (`max_age`).
pub(crate) async fn admitted(attempt: &Audit<'_>, max_age: Option<u64>) -> Result<(), ApiError> {
    let now = attempt.ports.clock.now().unix_timestamp();
    if let Err(e) = policy::recent_enough(attempt.caller, max_age, now) {
        return Err(attempt.deny(None, Denied::SignInTooOld, e).await);
    }
    Ok(())
}

/// The selected key's ciphertext (see `ciphertext`): a superseded key's
/// may be gone by now, which is the same 404 as no such key.
async fn held_ciphertext<'a>(
    lifecycle: &dyn LifecycleStore,
    attempt: &Audit<'_>,
    s: &Selected<'a>,
) -> Result<Cow<'a, SealedKey>, ApiError> {
    let tenant = &attempt.caller.tenant;
    let device_id = &s.device.device.device_id;
    match ciphertext(lifecycle, tenant, &s.key, s.sealed, device_id).await {
        Ok(Some(sealed)) => Ok(sealed),
        Ok(None) => {
            let e = ApiError::NoKeyHeld {
                helpdesk: s.device.policy.helpdesk.clone(),
            };
            Err(attempt.deny(None, Denied::KeyIdNotFound, e).await)
        }
        Err(e) => Err(attempt.store_failed(e).await),
    }
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
    lifecycle: &dyn LifecycleStore,
    tenant: &crate::domain::ids::TenantId,
    key: &KeyMeta,
    sealed: Option<&'a SealedKey>,
    device_id: &DeviceId,
) -> Result<Option<Cow<'a, SealedKey>>, crate::domain::error::Unavailable> {
    match sealed {
        Some(s) => Ok(Some(Cow::Borrowed(s))),
        None => Ok(lifecycle
            .superseded_key(tenant, device_id, &key.key_id)
            .await?
            .map(Cow::Owned)),
    }
}

pub(crate) async fn decrypt(
    ports: RetrievalPorts<'_>,
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
    match ports.cipher.open(&ctx, sealed).await {
        Ok(password) => {
            ports.audit.count(Metric::KeysDisclosed, 1);
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
            ports.audit.count(Metric::Unavailable(Cause::Kms), 1);
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
) -> Result<(KeyMeta, Option<&'a SealedKey>), Refusal> {
    let no_key = |reason| {
        (
            ApiError::NoKeyHeld {
                helpdesk: device.policy.helpdesk.clone(),
            },
            reason,
        )
    };
    if device.device.managed_by == ManagedBy::User {
        return Err(no_key(Denied::PersonallyEncrypted));
    }
    let held = held_keys(device, selector.is_some(), now);
    if held.is_empty() {
        return Err(no_key(Denied::NoKey));
    }
    // Ownership is not a key permission: an owner reads only keys created
    // since the device became theirs; older ones take the helpdesk path.
    let wanted = |k: &KeyMeta| selector.is_none_or(|s| s.matches(&k.key_id));
    let (held, older): (Vec<&KeyMeta>, Vec<&KeyMeta>) = held
        .into_iter()
        .partition(|k| access == Access::Helpdesk || device.device.owner_may_read(k));
    if older.iter().any(|k| wanted(k)) && !held.iter().any(|k| wanted(k)) {
        return Err(no_key(Denied::KeyPredatesOwner));
    }
    if held.is_empty() {
        return Err(no_key(Denied::NoKey));
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
            .ok_or_else(|| no_key(Denied::NoOsKey))?,
        Some(sel) => {
            let mut m: Vec<&KeyMeta> = held
                .into_iter()
                .filter(|k| sel.matches(&k.key_id))
                .collect();
            match m.len() {
                0 => return Err(no_key(Denied::KeyIdNotFound)),
                1 => m.remove(0),
                _ => {
                    let mut candidates: Vec<KeyId> = m.iter().map(|k| k.key_id).collect();
                    candidates.sort();
                    return Err((
                        ApiError::AmbiguousKey { candidates },
                        Denied::AmbiguousKeyId,
                    ));
                }
            }
        }
    };
    let sealed = sealed_of(device, &chosen.key_id);
    if sealed.is_none() && !chosen.is_superseded() {
        return Err(no_key(Denied::NoKey));
    }
    Ok((chosen.clone(), sealed))
}

/// The ciphertext of a current key, as the device record holds it.
fn sealed_of<'a>(device: &'a SealedDevice, id: &KeyId) -> Option<&'a SealedKey> {
    device.sealed.iter().find(|(k, _)| k == id).map(|(_, s)| s)
}

/// The keys a retrieval may choose from: live ones, current with their
/// ciphertext, and superseded ones when asked for `by_key_id` only: the ID
/// on the recovery screen is what proves which key the PC needs, so a
/// planted "newer" key can never hide the real one from its owner.
fn held_keys(device: &SealedDevice, by_key_id: bool, now: OffsetDateTime) -> Vec<&KeyMeta> {
    device
        .device
        .keys
        .iter()
        .filter(|k| k.is_live(now))
        .filter(|k| {
            if k.is_superseded() {
                by_key_id
            } else {
                sealed_of(device, &k.key_id).is_some()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
