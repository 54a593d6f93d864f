//! Shared test harness: a portal on the embedded backends with a settable
//! clock, a cipher that counts its calls, a store whose audit writes (or
//! reads) can be made to fail, and the local server on a real socket, whose
//! every answer is checked against the OpenAPI document (`openapi`).
#![allow(dead_code)]

pub mod openapi;

use async_trait::async_trait;
use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::domain::audit::{AuditEvent, AuditPage, AuditQuery};
use recovery_portal::domain::error::{Cause, Unavailable};
use recovery_portal::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use recovery_portal::domain::model::{
    Device, KeyContext, RecoveryPassword, SealedDevice, SealedKey, TenantPolicy,
};
use recovery_portal::domain::ports::Portal;
use recovery_portal::domain::ports::{
    CipherError, Clock, Commit, Denial, KeyCipher, KeyLocation, Store,
};
use recovery_portal::domain::ratelimit::{RateUpdate, RateWindow};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use time::OffsetDateTime;

pub const ISSUER: &str = "https://login.example.test/tenant/v2.0";
pub const AUDIENCE: &str = "api://recovery-portal-test";

pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn at(unix: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(unix)))
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.unix()).unwrap()
    }
}

/// Counts `open` calls: the decision-order tests assert it stays at zero.
pub struct CountingCipher {
    pub inner: LocalCipher,
    pub opens: AtomicUsize,
}

#[async_trait]
impl KeyCipher for CountingCipher {
    async fn seal(
        &self,
        ctx: &KeyContext,
        pw: &RecoveryPassword,
    ) -> Result<SealedKey, CipherError> {
        self.inner.seal(ctx, pw).await
    }
    async fn open(
        &self,
        ctx: &KeyContext,
        sealed: &SealedKey,
    ) -> Result<RecoveryPassword, CipherError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.inner.open(ctx, sealed).await
    }
}

/// The embedded store, with switchable audit-write and read failures.
pub struct FlakyStore {
    pub inner: Arc<MemoryStore>,
    pub fail_audit: AtomicBool,
    /// Makes `load_for_disclosure` fail (a store outage before any write).
    pub fail_load: AtomicBool,
    /// Makes every read fail (a store outage on any route).
    pub fail_reads: AtomicBool,
}

impl FlakyStore {
    fn read(&self) -> Result<(), Unavailable> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Store, "injected failure"));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn list_devices(
        &self,
        t: &TenantId,
        o: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
        self.read()?;
        self.inner.list_devices(t, o).await
    }
    async fn find_keys(
        &self,
        t: &TenantId,
        p: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable> {
        self.read()?;
        self.inner.find_keys(t, p).await
    }
    async fn load_for_disclosure(
        &self,
        t: &TenantId,
        d: &DeviceId,
        a: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
        self.read()?;
        if self.fail_load.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Store, "injected read failure"));
        }
        self.inner.load_for_disclosure(t, d, a).await
    }
    async fn commit_disclosure(
        &self,
        e: &AuditEvent,
        r: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        if self.fail_audit.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Audit, "injected failure"));
        }
        self.inner.commit_disclosure(e, r).await
    }
    async fn load_batch_state(
        &self,
        t: &TenantId,
        a: &UserId,
    ) -> Result<(TenantPolicy, RateWindow), Unavailable> {
        self.read()?;
        if self.fail_load.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Store, "injected read failure"));
        }
        self.inner.load_batch_state(t, a).await
    }
    async fn load_devices(
        &self,
        t: &TenantId,
        d: &[DeviceId],
        p: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable> {
        self.read()?;
        self.inner.load_devices(t, d, p).await
    }
    async fn commit_batch(&self, e: &[AuditEvent], r: &RateUpdate) -> Result<Commit, Unavailable> {
        if self.fail_audit.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Audit, "injected failure"));
        }
        self.inner.commit_batch(e, r).await
    }
    async fn append_audit(&self, e: &AuditEvent) -> Result<(), Unavailable> {
        if self.fail_audit.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Audit, "injected failure"));
        }
        self.inner.append_audit(e).await
    }
    async fn append_denied(&self, e: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        if self.fail_audit.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Audit, "injected failure"));
        }
        self.inner.append_denied(e, cap).await
    }
    async fn append_cap_marker(&self, e: &AuditEvent) -> Result<bool, Unavailable> {
        if self.fail_audit.load(Ordering::SeqCst) {
            return Err(Unavailable::new(Cause::Audit, "injected failure"));
        }
        self.inner.append_cap_marker(e).await
    }
    async fn audit_events(&self, t: &TenantId, q: &AuditQuery) -> Result<AuditPage, Unavailable> {
        self.read()?;
        self.inner.audit_events(t, q).await
    }
}

pub struct Harness {
    pub portal: Portal,
    pub idp: DevIdentityProvider,
    pub clock: Arc<TestClock>,
    pub cipher: Arc<CountingCipher>,
    pub store: Arc<FlakyStore>,
    pub memory: Arc<MemoryStore>,
    pub metrics: Arc<recovery_portal::adapters::emf::MemoryMetrics>,
}

pub const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

impl Harness {
    pub async fn new(seed_json: &str, rate_limit: u32) -> Self {
        Self::with_alg(seed_json, rate_limit, DevAlg::Es256).await
    }

    pub async fn with_alg(seed_json: &str, rate_limit: u32, alg: DevAlg) -> Self {
        let clock = TestClock::at(NOW);
        let idp = DevIdentityProvider::generate(alg, ISSUER, AUDIENCE);
        let memory = Arc::new(MemoryStore::new());
        let cipher = Arc::new(CountingCipher {
            inner: LocalCipher::random(),
            opens: AtomicUsize::new(0),
        });
        let seed = recovery_portal::tools::seed::parse(seed_json).expect("test seed is valid");
        recovery_portal::tools::import::import(&seed, cipher.as_ref(), memory.as_ref(), &|_, _| {})
            .await
            .unwrap();
        let store = Arc::new(FlakyStore {
            inner: memory.clone(),
            fail_audit: AtomicBool::new(false),
            fail_load: AtomicBool::new(false),
            fail_reads: AtomicBool::new(false),
        });
        let metrics = Arc::new(recovery_portal::adapters::emf::MemoryMetrics::default());
        let portal = Portal {
            store: store.clone(),
            lifecycle: memory.clone(),
            cipher: cipher.clone(),
            clock: clock.clone(),
            verifier: Arc::new(idp.verifier(clock.clone())),
            key_rate_limit: rate_limit,
            // The same limit for agents, unless a test sets another.
            helpdesk_rate_limit: rate_limit,
            incident_max_rate_limit: recovery_portal::config::DEFAULT_INCIDENT_MAX_RATE_LIMIT,
            metrics: metrics.clone(),
            max_auth_age: None,
        };
        Self {
            portal,
            idp,
            clock,
            cipher,
            store,
            memory,
            metrics,
        }
    }

    pub fn token(&self, tenant: &str, user: &str, scopes: &str) -> String {
        self.idp
            .token(tenant, user, scopes, self.clock.unix(), 3600)
    }

    pub fn opens(&self) -> usize {
        self.cipher.opens.load(Ordering::SeqCst)
    }

    /// Starts the local server on an ephemeral port.
    pub async fn serve(&self) -> Server {
        serve_portal(self.portal.clone()).await
    }
}

/// Starts the local server for `portal` on an ephemeral port.
pub async fn serve_portal(portal: Portal) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        recovery_portal::frontends::server::serve(listener, portal, None, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server {
        addr,
        client: reqwest::Client::builder()
            .user_agent("portal-tests/1")
            .build()
            .unwrap(),
        _stop: tx,
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Every error answer is a problem document with the request id.
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.header("x-content-type-options"), Some("nosniff"));
        let j = self.json();
        assert_eq!(j["status"], status);
        for f in ["type", "title", "detail", "request_id"] {
            assert!(j[f].is_string(), "problem lacks {f}: {j}");
        }
        assert!(!self.text.contains("recovery_password"));
        j
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> Reply {
        let mut rb = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some((ct, b)) = body {
            rb = rb.header("content-type", ct).body(b.to_owned());
        }
        let r = rb.send().await.expect("request");
        let reply = Reply {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            text: r.text().await.unwrap(),
        };
        // Every answer the tests see is one the OpenAPI document describes.
        if let Err(e) = openapi::check(method, path, reply.status, &reply.headers, &reply.text) {
            panic!("{method} {path}: {e}\nanswer: {}", reply.text);
        }
        reply
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, Some(token), None).await
    }

    pub async fn post_key(&self, device: &str, token: &str, body: Option<&str>) -> Reply {
        let path = format!("/v1/devices/{device}/recovery-key");
        self.send(
            "POST",
            &path,
            Some(token),
            body.map(|b| ("application/json", b)),
        )
        .await
    }
}

/// A recovery password that passes validation, distinct per `n`.
pub fn password(n: u32) -> String {
    (0..8)
        .map(|g| format!("{:06}", ((n * 8 + g) % 65_536) * 11))
        .collect::<Vec<_>>()
        .join("-")
}

/// The seed most tests use: two tenants, owners alice/bob/carol.
pub fn test_seed() -> String {
    serde_json::json!({
        "tenants": [
            {"tenant_id": "contoso", "self_service": true,
             "helpdesk": {"name": "Contoso IT", "email": "help@contoso.test", "phone": "+1 555 0100", "url": "https://help.contoso.test"}},
            {"tenant_id": "fabrikam", "self_service": false,
             "helpdesk": {"name": "Fabrikam Desk", "email": "desk@fabrikam.test"}}
        ],
        "devices": [
            {"tenant_id": "contoso", "device_id": "PC-ALICE", "owner": "alice", "display_name": "Zeta laptop", "os": "Windows 11", "managed_by": "organization",
             "recovery_keys": [
                {"key_id": "11111111-aaaa-4aaa-8aaa-000000000001", "volume_type": "operating_system", "recovery_password": password(1), "created_at": "2024-01-01T00:00:00Z"},
                {"key_id": "11111111-aaaa-4aaa-8aaa-000000000002", "volume_type": "operating_system", "recovery_password": password(2), "created_at": "2025-01-01T00:00:00Z"},
                {"key_id": "22222222-bbbb-4bbb-8bbb-000000000003", "volume_type": "fixed_data", "recovery_password": password(3), "created_at": "2025-06-01T00:00:00Z"}]},
            {"tenant_id": "contoso", "device_id": "PC-ALICE-2", "owner": "alice", "display_name": "Alpha desktop", "os": "Windows 10", "managed_by": "organization",
             "recovery_keys": [
                {"key_id": "33333333-cccc-4ccc-8ccc-000000000004", "volume_type": "operating_system", "recovery_password": password(4), "created_at": "2023-01-01T00:00:00Z"}]},
            {"tenant_id": "contoso", "device_id": "PC-ALICE-HOME", "owner": "alice", "display_name": "Home PC", "os": "Windows 11 Pro", "managed_by": "user", "recovery_keys": []},
            {"tenant_id": "contoso", "device_id": "PC-ALICE-NOKEY", "owner": "alice", "display_name": "New laptop", "os": "Windows 11", "managed_by": "organization", "recovery_keys": []},
            {"tenant_id": "contoso", "device_id": "PC-BOB", "owner": "bob", "display_name": "Bob PC", "os": "Windows 11", "managed_by": "organization",
             "recovery_keys": [
                {"key_id": "44444444-dddd-4ddd-8ddd-000000000005", "volume_type": "operating_system", "recovery_password": password(5), "created_at": "2024-02-01T00:00:00Z"}]},
            {"tenant_id": "fabrikam", "device_id": "PC-ALICE", "owner": "alice", "display_name": "Fabrikam PC of another alice", "os": "Windows 11", "managed_by": "organization",
             "recovery_keys": [
                {"key_id": "55555555-eeee-4eee-8eee-000000000006", "volume_type": "operating_system", "recovery_password": password(6), "created_at": "2024-03-01T00:00:00Z"}]},
            {"tenant_id": "fabrikam", "device_id": "PC-CAROL", "owner": "carol", "display_name": "Carol PC", "os": "Windows 11", "managed_by": "organization",
             "recovery_keys": [
                {"key_id": "66666666-ffff-4fff-8fff-000000000007", "volume_type": "operating_system", "recovery_password": password(7), "created_at": "2024-04-01T00:00:00Z"}]}
        ]
    })
    .to_string()
}
