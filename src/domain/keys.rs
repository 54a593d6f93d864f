//! Key retrieval: the one path that decrypts.
//!
//! Order, each step only if every earlier one passed: authenticate (done by
//! the caller of `retrieve`) → permission → load the device in the caller's
//! tenant → ownership and tenant policy → rate limit → write the audit event
//! durably → decrypt → respond. A failed audit write discloses nothing.

use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::caller::Caller;
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, KeyId, KeySelector};
use crate::domain::model::{
    KeyContext, KeyMeta, ManagedBy, RecoveryPassword, SealedDevice, SealedKey, VolumeType,
};
use crate::domain::policy::{self, Access};
use crate::domain::ratelimit;
use crate::ports::Portal;
use crate::ports::{CipherError, Commit};
use std::borrow::Cow;
use time::OffsetDateTime;

/// How long the portal shows a key (the seed document's five minutes).
pub const DISPLAY_SECONDS: u32 = 300;
/// Attempts when a concurrent disclosure by the same caller changed the
/// rate window between our read and our conditional write.
const COMMIT_ATTEMPTS: usize = 3;

/// Facts about the HTTP request that the audit trail records.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: String,
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
    /// The audit event for this attempt; every event of one request shares
    /// its request id, so a retried request cannot add a second one.
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
    pub async fn deny(&self, key_id: Option<KeyId>, reason: &str, error: ApiError) -> ApiError {
        let event = self.event(key_id, Outcome::Denied, reason);
        if let Err(e) = self.portal.store.append_audit(&event).await {
            tracing::error!(error = %e, request_id = %self.meta.request_id, reason, "could not audit a denied attempt");
        }
        error
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
    if let Err(e) = policy::may_retrieve_keys(caller) {
        return Err(attempt.deny(None, "insufficient_scope", e).await);
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
        // A superseded key's ciphertext is kept apart from the device's
        // current ones (so it can expire on its own): read it only now that
        // the helpdesk asked for it by key ID.
        let sealed = match sealed {
            Some(s) => Cow::Borrowed(s),
            None => match portal
                .lifecycle
                .superseded_key(&caller.tenant, device_id, &meta_key.key_id)
                .await
            {
                Ok(Some(s)) => Cow::Owned(s),
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
            },
        };
        let update = match ratelimit::admit(&window, portal.clock.now(), portal.key_rate_limit) {
            Ok(u) => u,
            Err(retry_after_secs) => {
                let e = ApiError::RateLimited { retry_after_secs };
                return Err(attempt.deny(Some(meta_key.key_id), "rate_limited", e).await);
            }
        };
        let event = attempt.event(Some(meta_key.key_id), Outcome::Granted, access.as_str());
        match portal.store.commit_disclosure(&event, &update).await {
            Ok(Commit::Written | Commit::Duplicate) => {}
            Ok(Commit::RateConflict) => continue,
            Ok(Commit::RequestIdReused) => {
                return Err(ApiError::BadRequest(
                    "this X-Request-Id was already used for another request; send a new one".into(),
                ));
            }
            Err(e) => {
                // Fail closed: no durable audit, no key.
                tracing::error!(error = %e, request_id = %meta.request_id, "audit write failed; key withheld");
                return Err(ApiError::Unavailable(e));
            }
        }
        return decrypt(portal, caller, meta, &device, &meta_key, &sealed, access).await;
    }
    Err(ApiError::Unavailable(
        crate::domain::error::Unavailable::new(
            "rate limit",
            "too many concurrent retrievals by this caller",
        ),
    ))
}

async fn decrypt(
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
fn select_key<'a>(
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
    let superseded_readable = access == Access::Helpdesk && selector.is_some();
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
