//! Store wrappers that make one caller's retrievals collide between their
//! read (`load_for_disclosure`) and their conditional write
//! (`commit_disclosure`), on any backend: the rate limit's version check
//! and the retry loop in `keys::retrieve` are what keep the limit then.
#![allow(dead_code)]

use async_trait::async_trait;
use recovery_portal::domain::audit::{AuditEvent, AuditPage, AuditQuery, Outcome};
use recovery_portal::domain::error::Unavailable;
use recovery_portal::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use recovery_portal::domain::model::{Device, SealedDevice, TenantPolicy};
use recovery_portal::domain::ports::{Clock, Commit, Denial, KeyLocation, Store};
use recovery_portal::domain::ratelimit::{self, RateUpdate, RateWindow};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Barrier;

/// How the wrapper interferes between a read and its write.
pub enum Interference {
    /// The first `n` reads wait for each other after reading, so `n`
    /// concurrent retrievals all hold the same rate window when they write.
    Barrier(Barrier, AtomicUsize),
    /// After every read, another disclosure by the same caller commits
    /// first (a faster concurrent request): every write of the reader
    /// conflicts.
    Competitor(Arc<dyn Clock>),
}

pub struct RacingStore {
    pub inner: Arc<dyn Store>,
    pub interference: Interference,
    pub loads: AtomicUsize,
    pub commits: AtomicUsize,
    pub conflicts: AtomicUsize,
}

impl RacingStore {
    /// The first `n` reads meet at a barrier before any of them writes.
    pub fn barrier(inner: Arc<dyn Store>, n: usize) -> Self {
        Self::new(
            inner,
            Interference::Barrier(Barrier::new(n), AtomicUsize::new(n)),
        )
    }

    /// Every read is overtaken by a competing disclosure of the same caller.
    pub fn competitor(inner: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self::new(inner, Interference::Competitor(clock))
    }

    fn new(inner: Arc<dyn Store>, interference: Interference) -> Self {
        Self {
            inner,
            interference,
            loads: AtomicUsize::new(0),
            commits: AtomicUsize::new(0),
            conflicts: AtomicUsize::new(0),
        }
    }

    pub fn count(n: &AtomicUsize) -> usize {
        n.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for RacingStore {
    async fn list_devices(
        &self,
        t: &TenantId,
        o: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
        self.inner.list_devices(t, o).await
    }
    async fn find_keys(
        &self,
        t: &TenantId,
        p: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable> {
        self.inner.find_keys(t, p).await
    }
    async fn load_for_disclosure(
        &self,
        t: &TenantId,
        d: &DeviceId,
        a: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
        let read = self.inner.load_for_disclosure(t, d, a).await?;
        let n = self.loads.fetch_add(1, Ordering::SeqCst);
        match &self.interference {
            Interference::Barrier(barrier, left) => {
                let pause = left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                    .is_ok();
                if pause {
                    barrier.wait().await;
                }
            }
            Interference::Competitor(clock) => {
                let now = clock.now();
                let competitor = AuditEvent {
                    event_id: uuid::Uuid::new_v4().to_string(),
                    time: now,
                    tenant_id: t.clone(),
                    actor: a.clone(),
                    device_id: Some(d.clone()),
                    key_id: None,
                    outcome: Outcome::Granted,
                    reason: "owner".into(),
                    justification: None,
                    source_ip: None,
                    user_agent: Some("competitor".into()),
                    request_id: format!("competitor-{n}"),
                    action: recovery_portal::domain::audit::Action::Disclose,
                };
                let update = ratelimit::admit(&read.1, now, 10_000).expect("room for a competitor");
                let done = self.inner.commit_disclosure(&competitor, &update).await?;
                assert_eq!(done, Commit::Written, "the competitor commits first");
            }
        }
        Ok(read)
    }
    async fn commit_disclosure(
        &self,
        e: &AuditEvent,
        r: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        let c = self.inner.commit_disclosure(e, r).await?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        if c == Commit::RateConflict {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        Ok(c)
    }
    async fn load_batch_state(
        &self,
        t: &TenantId,
        a: &UserId,
    ) -> Result<(TenantPolicy, RateWindow), Unavailable> {
        self.inner.load_batch_state(t, a).await
    }
    async fn load_devices(
        &self,
        t: &TenantId,
        d: &[DeviceId],
        p: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable> {
        self.inner.load_devices(t, d, p).await
    }
    async fn commit_batch(&self, e: &[AuditEvent], r: &RateUpdate) -> Result<Commit, Unavailable> {
        let c = self.inner.commit_batch(e, r).await?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        if c == Commit::RateConflict {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        Ok(c)
    }
    async fn append_audit(&self, e: &AuditEvent) -> Result<(), Unavailable> {
        self.inner.append_audit(e).await
    }
    async fn append_denied(&self, e: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        self.inner.append_denied(e, cap).await
    }
    async fn append_cap_marker(&self, e: &AuditEvent) -> Result<bool, Unavailable> {
        self.inner.append_cap_marker(e).await
    }
    async fn audit_events(&self, t: &TenantId, q: &AuditQuery) -> Result<AuditPage, Unavailable> {
        self.inner.audit_events(t, q).await
    }
}
