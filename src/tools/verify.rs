//! `portal keys verify`: opens every stored ciphertext under its own
//! context and checks it holds a well-formed recovery password, so a bad
//! escrow is found before an outage rather than during one. Nothing it
//! opens is printed, logged or kept: each password is dropped (and wiped)
//! as soon as it has parsed.

use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::ports::{CipherError, KeyCipher, LifecycleStore, Store, StoredKey};
use futures_util::{StreamExt, stream};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Concurrent `open` calls (KMS `Decrypt` on AWS).
const OPEN_CONCURRENCY: usize = 16;
/// Broken keys named in one audit event (the rest are counted).
const NAMED_IN_EVENT: usize = 20;

/// A key that does not open, or does not hold a recovery password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenKey {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub key_id: KeyId,
    pub superseded: bool,
    /// Why, from the cipher (never key material).
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Keys checked per tenant.
    pub checked: BTreeMap<TenantId, usize>,
    pub broken: Vec<BrokenKey>,
}

impl VerifyReport {
    pub fn total(&self) -> usize {
        self.checked.values().sum()
    }
}

async fn check(cipher: &dyn KeyCipher, key: StoredKey) -> Result<Option<BrokenKey>, Unavailable> {
    match cipher.open(&key.context, &key.sealed).await {
        // Parsed as a recovery password (or open would have refused it);
        // dropped and wiped here.
        Ok(_password) => Ok(None),
        Err(CipherError::Rejected(why)) => Ok(Some(BrokenKey {
            tenant: key.context.tenant,
            device: key.context.device,
            key_id: key.context.key_id,
            superseded: key.superseded,
            why,
        })),
        Err(CipherError::Unavailable(e)) => Err(e),
    }
}

/// Checks every stored key (of `tenant`, or of all tenants).
/// `progress(checked)` is called after each page.
pub async fn verify(
    lifecycle: &dyn LifecycleStore,
    cipher: &dyn KeyCipher,
    tenant: Option<&TenantId>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<VerifyReport, Unavailable> {
    let mut report = VerifyReport::default();
    if let Some(t) = tenant {
        report.checked.insert(t.clone(), 0);
    }
    let mut cursor: Option<String> = None;
    loop {
        let page = lifecycle.stored_keys(tenant, cursor.as_deref()).await?;
        for k in &page.keys {
            *report.checked.entry(k.context.tenant.clone()).or_default() += 1;
        }
        let results: Vec<Result<Option<BrokenKey>, Unavailable>> = stream::iter(page.keys)
            .map(|k| check(cipher, k))
            .buffer_unordered(OPEN_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            if let Some(b) = r? {
                report.broken.push(b);
            }
        }
        progress(report.total());
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    report
        .broken
        .sort_by(|a, b| (&a.tenant, &a.device, a.key_id).cmp(&(&b.tenant, &b.device, b.key_id)));
    Ok(report)
}

/// One audit event per tenant checked: who ran it, how many keys, which
/// ones are broken (IDs only).
pub fn audit_events(report: &VerifyReport, actor: &UserId, at: OffsetDateTime) -> Vec<AuditEvent> {
    let run = uuid::Uuid::new_v4().to_string();
    report
        .checked
        .iter()
        .map(|(tenant, checked)| {
            let broken: Vec<&BrokenKey> = report
                .broken
                .iter()
                .filter(|b| &b.tenant == tenant)
                .collect();
            let mut detail = format!("{checked} keys checked, {} broken", broken.len());
            for b in broken.iter().take(NAMED_IN_EVENT) {
                detail.push_str(&format!("; {}/{}", b.device, b.key_id));
            }
            if broken.len() > NAMED_IN_EVENT {
                detail.push_str("; ...");
            }
            AuditEvent {
                action: Action::KeysVerify,
                event_id: uuid::Uuid::new_v4().to_string(),
                time: at,
                tenant_id: tenant.clone(),
                actor: actor.clone(),
                device_id: None,
                key_id: None,
                outcome: if broken.is_empty() {
                    Outcome::Granted
                } else {
                    Outcome::Denied
                },
                reason: if broken.is_empty() {
                    "verified".into()
                } else {
                    "broken_keys".into()
                },
                justification: Some(detail),
                source_ip: None,
                user_agent: Some("portal keys verify".into()),
                request_id: format!("verify-{run}"),
            }
        })
        .collect()
}

/// Records the run in each tenant's audit trail.
pub async fn record(store: &dyn Store, events: &[AuditEvent]) -> Result<(), Unavailable> {
    for e in events {
        store.append_audit(e).await?;
    }
    Ok(())
}
