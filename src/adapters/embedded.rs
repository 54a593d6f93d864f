//! Embedded adapters: an in-process store and an AES-256-GCM key cipher.
//! They back `portal serve`, the tests and the benchmarks, with the same
//! semantics the DynamoDB and KMS adapters have.

use crate::domain::audit::{AuditEvent, AuditPage, AuditQuery, hour_of};
use crate::domain::error::{Cause, Unavailable};
use crate::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{
    Device, KeyContext, RecoveryPassword, SealedDevice, SealedKey, Tenant, TenantPolicy,
};
use crate::domain::ports::{
    CipherError, Commit, Denial, ImportDevice, ImportStore, KeyCipher, KeyLocation, Store,
    StoredDevice,
};
use crate::domain::ratelimit::{RateUpdate, RateWindow};
use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

mod lifecycle;

#[derive(Default)]
struct State {
    tenants: HashMap<TenantId, TenantPolicy>,
    devices: BTreeMap<(TenantId, DeviceId), ImportDevice>,
    /// Owner index, as the DynamoDB `by_owner` index.
    by_owner: HashMap<(TenantId, UserId), BTreeSet<DeviceId>>,
    /// Append-only; every event is a record of its own.
    audit: Vec<AuditEvent>,
    /// Denied events stored per (tenant, actor, clock hour), and whether
    /// that hour's cap marker is stored.
    denials: HashMap<(TenantId, UserId, i64), (u32, bool)>,
    rate: HashMap<(TenantId, UserId), RateWindow>,
    /// Key-ID index, as DynamoDB's `by_key`: (tenant, first 8 hex digits)
    /// → devices that hold or held such a key. A superset (a removed key's
    /// entry stays; `find_keys` checks the device), so only writes that add
    /// keys maintain it (`index_keys`).
    by_key: HashMap<(TenantId, String), BTreeSet<DeviceId>>,
    /// The key lifecycle (see `lifecycle` below): record versions, escrow
    /// digests, superseded ciphertexts and settings versions.
    life: lifecycle::LifeState,
}

/// Everything in one mutex: operations are short and never await inside it.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of audit events held (tests and benchmarks).
    pub fn audit_len(&self) -> usize {
        self.state().audit.len()
    }

    /// All audit events in insertion order (tests and benchmarks).
    pub fn audit_log(&self) -> Vec<AuditEvent> {
        self.state().audit.clone()
    }

    /// The tenant record's policy; no record: `TenantPolicy::default()`
    /// (no self-service).
    fn policy(st: &State, tenant: &TenantId) -> TenantPolicy {
        st.tenants.get(tenant).cloned().unwrap_or_default()
    }
}

fn denial_key(event: &AuditEvent) -> (TenantId, UserId, i64) {
    (
        event.tenant_id.clone(),
        event.actor.clone(),
        hour_of(event.time),
    )
}

/// Adds `dev`'s keys to the key-ID index.
fn index_keys(st: &mut State, dev: &Device) {
    for k in &dev.keys {
        let bucket = k.key_id.hex()[..8].to_owned();
        st.by_key
            .entry((dev.tenant.clone(), bucket))
            .or_default()
            .insert(dev.device_id.clone());
    }
}

/// Appends one event to the trail (every event is a record of its own).
fn append(st: &mut State, event: &AuditEvent) {
    st.audit.push(event.clone());
}

#[async_trait]
impl Store for MemoryStore {
    async fn list_devices(
        &self,
        tenant: &TenantId,
        owner: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
        let st = self.state();
        let devices = st
            .by_owner
            .get(&(tenant.clone(), owner.clone()))
            .into_iter()
            .flatten()
            .filter_map(|id| st.devices.get(&(tenant.clone(), id.clone())))
            .map(|d| d.sealed.device.clone())
            .collect();
        Ok((devices, Self::policy(&st, tenant)))
    }

    async fn find_keys(
        &self,
        tenant: &TenantId,
        prefix: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable> {
        let st = self.state();
        let mut out = Vec::new();
        let bucket = (tenant.clone(), prefix.as_str()[..8].to_owned());
        let candidates = st.by_key.get(&bucket).into_iter().flatten();
        for d in candidates.filter_map(|id| st.devices.get(&(tenant.clone(), id.clone()))) {
            let dev = &d.sealed.device;
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

    async fn load_for_disclosure(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        actor: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
        let st = self.state();
        let d = st.devices.get(&(tenant.clone(), device.clone())).map(|d| {
            let mut s = d.sealed.clone();
            s.policy = Self::policy(&st, tenant);
            s
        });
        let w = st
            .rate
            .get(&(tenant.clone(), actor.clone()))
            .cloned()
            .unwrap_or_default();
        Ok((d, w))
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
        let st = self.state();
        let w = st
            .rate
            .get(&(tenant.clone(), actor.clone()))
            .cloned()
            .unwrap_or_default();
        Ok((Self::policy(&st, tenant), w))
    }

    async fn load_devices(
        &self,
        tenant: &TenantId,
        devices: &[DeviceId],
        policy: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable> {
        let st = self.state();
        let mut seen = BTreeSet::new();
        Ok(devices
            .iter()
            .filter(|d| seen.insert((*d).clone()))
            .filter_map(|d| st.devices.get(&(tenant.clone(), d.clone())))
            .map(|d| {
                let mut s = d.sealed.clone();
                s.policy = policy.clone();
                s
            })
            .collect())
    }

    async fn commit_batch(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        let Some(first) = events.first() else {
            return Ok(Commit::Written);
        };
        let mut st = self.state();
        let rk = (first.tenant_id.clone(), first.actor.clone());
        let current = st.rate.get(&rk).map(|w| w.version).unwrap_or(0);
        if current != rate.expected_version {
            return Ok(Commit::RateConflict);
        }
        st.rate.insert(rk, rate.window.clone());
        for e in events {
            st.audit.push(e.clone());
            lifecycle::mark_disclosed(&mut st, e);
        }
        Ok(Commit::Written)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        append(&mut self.state(), event);
        Ok(())
    }

    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        let mut st = self.state();
        let (count, marked) = st.denials.entry(denial_key(event)).or_default();
        if *count >= cap {
            return Ok(Denial::OverCap { marked: *marked });
        }
        *count += 1;
        st.audit.push(event.clone());
        Ok(Denial::Stored)
    }

    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable> {
        let mut st = self.state();
        let (_, marked) = st.denials.entry(denial_key(marker)).or_default();
        if *marked {
            return Ok(false);
        }
        *marked = true;
        st.audit.push(marker.clone());
        Ok(true)
    }

    async fn audit_events(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<AuditPage, Unavailable> {
        let st = self.state();
        let candidates = st
            .audit
            .iter()
            .filter(|e| &e.tenant_id == tenant && query.matches(e))
            .cloned()
            .collect();
        Ok(crate::domain::audit::page(candidates, tenant, query))
    }
}

#[async_trait]
impl ImportStore for MemoryStore {
    async fn stored_devices(
        &self,
        devices: &[(TenantId, DeviceId)],
    ) -> Result<HashMap<(TenantId, DeviceId), StoredDevice>, Unavailable> {
        let st = self.state();
        Ok(devices
            .iter()
            .filter_map(|k| {
                st.devices.get(k).map(|d| {
                    (
                        k.clone(),
                        StoredDevice {
                            fingerprint: Some(d.fingerprint.clone()),
                            owner: d.sealed.device.owner.clone(),
                        },
                    )
                })
            })
            .collect())
    }

    async fn append_import_events(&self, events: &[AuditEvent]) -> Result<(), Unavailable> {
        self.state().audit.extend(events.iter().cloned());
        Ok(())
    }

    async fn stored_tenants(
        &self,
        tenants: &[TenantId],
    ) -> Result<HashMap<TenantId, TenantPolicy>, Unavailable> {
        let st = self.state();
        Ok(tenants
            .iter()
            .filter_map(|t| st.tenants.get(t).map(|p| (t.clone(), p.clone())))
            .collect())
    }

    async fn put_tenants(&self, tenants: &[Tenant]) -> Result<(), Unavailable> {
        let mut st = self.state();
        for t in tenants {
            // An import sets the settings; an open incident stays open.
            let mut policy = t.policy.clone();
            policy.incident = st.tenants.get(&t.id).and_then(|p| p.incident.clone());
            st.tenants.insert(t.id.clone(), policy);
            lifecycle::tenant_replaced_by_import(&mut st, &t.id);
        }
        Ok(())
    }

    async fn put_devices(&self, devices: &[ImportDevice]) -> Result<(), Unavailable> {
        let mut st = self.state();
        for d in devices {
            let dev = &d.sealed.device;
            let key = (dev.tenant.clone(), dev.device_id.clone());
            lifecycle::replaced_by_import(&mut st, d);
            index_keys(&mut st, dev);
            if let Some(old) = st.devices.insert(key, d.clone()) {
                let old = old.sealed.device;
                if let Some(set) = st.by_owner.get_mut(&(old.tenant, old.owner)) {
                    set.remove(&old.device_id);
                }
            }
            st.by_owner
                .entry((dev.tenant.clone(), dev.owner.clone()))
                .or_default()
                .insert(dev.device_id.clone());
        }
        Ok(())
    }
}

/// AES-256-GCM with the key context as additional authenticated data, the
/// way KMS binds its encryption context: a ciphertext only opens for the
/// tenant, device and key ID it was sealed for. Output: nonce ‖ ciphertext ‖ tag.
pub struct LocalCipher {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl LocalCipher {
    /// A cipher with a fresh random key (data sealed with it lives only as
    /// long as the process).
    pub fn random() -> Self {
        let rng = SystemRandom::new();
        let mut key = [0u8; 32];
        rng.fill(&mut key).expect("system randomness");
        let cipher = Self::from_key(&key);
        zeroize::Zeroize::zeroize(&mut key);
        cipher
    }

    pub fn from_key(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("32-byte key");
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }
}

fn aad(ctx: &KeyContext) -> Vec<u8> {
    // Ids cannot contain NUL, so the encoding is unambiguous.
    format!(
        "tenant_id={}\0device_id={}\0key_id={}",
        ctx.tenant, ctx.device, ctx.key_id
    )
    .into_bytes()
}

impl LocalCipher {
    /// `KeyCipher::seal` without the async wrapper: the work is CPU-only,
    /// so callers on a blocking thread (the SQLite store's `rewrap`) use it.
    pub fn seal_now(
        &self,
        ctx: &KeyContext,
        password: &RecoveryPassword,
    ) -> Result<SealedKey, CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| Unavailable::new(Cause::Cipher, "no randomness"))?;
        let mut buf = zeroize::Zeroizing::new(password.expose().as_bytes().to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(ctx)),
                &mut *buf,
            )
            .map_err(|_| CipherError::Rejected("seal failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(SealedKey(out))
    }

    /// `KeyCipher::open` without the async wrapper (see `seal_now`).
    pub fn open_now(
        &self,
        ctx: &KeyContext,
        sealed: &SealedKey,
    ) -> Result<RecoveryPassword, CipherError> {
        if sealed.0.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CipherError::Rejected("ciphertext too short".into()));
        }
        let (nonce, ct) = sealed.0.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| CipherError::Rejected("bad nonce".into()))?;
        let mut buf = ct.to_vec();
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(aad(ctx)), &mut buf)
            .map_err(|_| {
                CipherError::Rejected("authentication failed (wrong context or tampered)".into())
            })?
            .len();
        buf.truncate(plain_len);
        RecoveryPassword::from_plaintext(buf)
            .map_err(|_| CipherError::Rejected("plaintext is not a recovery password".into()))
    }
}

#[async_trait]
impl KeyCipher for LocalCipher {
    async fn seal(
        &self,
        ctx: &KeyContext,
        password: &RecoveryPassword,
    ) -> Result<SealedKey, CipherError> {
        self.seal_now(ctx, password)
    }

    async fn open(
        &self,
        ctx: &KeyContext,
        sealed: &SealedKey,
    ) -> Result<RecoveryPassword, CipherError> {
        self.open_now(ctx, sealed)
    }
}
