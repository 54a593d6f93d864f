//! A verified-token cache: a `TokenVerifier` wrapper that remembers the
//! callers of tokens its inner verifier accepted, so a token presented again
//! (a user listing devices then retrieving a key, a helpdesk agent's
//! lookups) skips the signature check.
//!
//! What it keeps safe:
//! - keyed by the SHA-256 of the whole token: a token differing in any byte
//!   (claims, header, signature) is a different entry, and no bearer token
//!   is held in memory;
//! - only successes are cached: every rejected token goes to the inner
//!   verifier again, and garbage cannot fill the cache (an entry needs a
//!   token the issuer signed);
//! - an entry is served only while `now < exp` of its token (no leeway),
//!   for at most `max_age` after it was verified (both on the injected
//!   clock), and only while the inner verifier's keys are those it was
//!   verified with (`TokenVerifier::key_generation`): when the JWKS is due
//!   for a refresh nothing is served from the cache, and once a refresh
//!   withdraws a key every entry verified before is verified again, so a
//!   withdrawn key stops working here when it stops working there;
//! - one cache per inner verifier: a token accepted for one issuer or
//!   audience is never served to a verifier with other settings;
//! - bounded: at most `capacity` entries; when full, expired entries go
//!   first, then the oldest (down to 90 %, so eviction costs O(1) amortised).

use crate::domain::caller::Caller;
use crate::domain::error::AuthFailure;
use crate::domain::ports::{Clock, TokenVerifier};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// Default bound on entries (a few hundred bytes each).
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Default longest time an entry is served after its verification.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

type Key = [u8; 32];

struct Entry {
    caller: Caller,
    verified_at: OffsetDateTime,
    /// The inner verifier's key generation it was verified under.
    generation: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    /// The keys of `map`, oldest first, for eviction.
    order: VecDeque<Key>,
}

pub struct CachingVerifier {
    inner: Arc<dyn TokenVerifier>,
    clock: Arc<dyn Clock>,
    capacity: usize,
    max_age: Duration,
    entries: Mutex<Entries>,
}

impl CachingVerifier {
    /// Wraps `inner`; `clock` decides token expiry (give it the inner
    /// verifier's clock).
    pub fn new(inner: Arc<dyn TokenVerifier>, clock: Arc<dyn Clock>) -> Self {
        Self::with_limits(inner, clock, DEFAULT_CAPACITY, DEFAULT_MAX_AGE)
    }

    pub fn with_limits(
        inner: Arc<dyn TokenVerifier>,
        clock: Arc<dyn Clock>,
        capacity: usize,
        max_age: Duration,
    ) -> Self {
        Self {
            inner,
            clock,
            capacity: capacity.max(1),
            max_age,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Entries held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `e` may be served at `now` under key generation `generation`.
    fn fresh(&self, e: &Entry, now: OffsetDateTime, generation: u64) -> bool {
        e.generation == generation
            && now.unix_timestamp() < e.caller.expires_at
            && now - e.verified_at < self.max_age
    }

    fn insert(&self, key: Key, caller: &Caller, now: OffsetDateTime, generation: u64) {
        let mut st = self.lock();
        if st.map.len() >= self.capacity {
            // Expired entries first, then the oldest, down to 90 % of the
            // capacity: a full sweep frees at least a tenth of the cache, so
            // its O(n) cost is paid at most once per n/10 insertions.
            st.map.retain(|_, e| self.fresh(e, now, generation));
            let Entries { map, order } = &mut *st;
            order.retain(|k| map.contains_key(k));
            let low = self.capacity - (self.capacity / 10).max(1);
            while map.len() > low {
                match order.pop_front() {
                    Some(k) => {
                        map.remove(&k);
                    }
                    None => break,
                }
            }
        }
        let entry = Entry {
            caller: caller.clone(),
            verified_at: now,
            generation,
        };
        if st.map.insert(key, entry).is_none() {
            st.order.push_back(key);
        }
    }
}

fn key_of(token: &str) -> Key {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

#[async_trait]
impl TokenVerifier for CachingVerifier {
    async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let key = key_of(token);
        let now = self.clock.now();
        let generation = self.inner.key_generation();
        if let Some(g) = generation
            && let Some(e) = self.lock().map.get(&key)
            && self.fresh(e, now, g)
        {
            return Ok(e.caller.clone());
        }
        // A stale entry stays until it is overwritten or evicted, so the
        // eviction order always lists exactly the entries held.
        let caller = self.inner.verify(token).await?;
        // Cached only if the keys did not change during the verification:
        // the entry must not outlive the key that signed it.
        if let Some(g) = generation
            && self.inner.key_generation() == Some(g)
            && now.unix_timestamp() < caller.expires_at
        {
            self.insert(key, &caller, now, g);
        }
        Ok(caller)
    }
}

#[cfg(all(test, feature = "dev-idp"))]
mod tests {
    use super::*;
    use crate::tools::devidp::{DevAlg, DevIdentityProvider};
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use time::OffsetDateTime;

    const NOW: i64 = 1_767_225_600;

    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst)).unwrap()
        }
    }

    /// Counts the calls that reach the real verifier.
    struct Counting {
        inner: crate::adapters::jwt::JwtVerifier,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl TokenVerifier for Counting {
        async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.verify(token).await
        }
    }

    struct Setup {
        idp: DevIdentityProvider,
        clock: Arc<TestClock>,
        counting: Arc<Counting>,
        cache: CachingVerifier,
    }

    fn setup(audience: &str, capacity: usize, max_age: Duration) -> Setup {
        let idp = DevIdentityProvider::generate(DevAlg::Es256, "https://issuer.test", audience);
        let clock = Arc::new(TestClock(AtomicI64::new(NOW)));
        let counting = Arc::new(Counting {
            inner: idp.verifier(clock.clone()),
            calls: AtomicUsize::new(0),
        });
        let cache =
            CachingVerifier::with_limits(counting.clone(), clock.clone(), capacity, max_age);
        Setup {
            idp,
            clock,
            counting,
            cache,
        }
    }

    impl Setup {
        fn calls(&self) -> usize {
            self.counting.calls.load(Ordering::SeqCst)
        }
        fn token(&self, user: &str, ttl: i64) -> String {
            self.idp
                .token("contoso", user, "RecoveryKey.Read", NOW, ttl)
        }
    }

    #[tokio::test]
    async fn a_repeated_token_is_verified_once_and_gets_the_same_caller() {
        let s = setup("api://a", 100, DEFAULT_MAX_AGE);
        let t = s.token("alice", 600);
        let first = s.cache.verify(&t).await.unwrap();
        let second = s.cache.verify(&t).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.user.as_str(), "alice");
        assert_eq!(s.calls(), 1);
        assert_eq!(s.cache.len(), 1);
    }

    #[tokio::test]
    async fn entries_expire_at_the_tokens_exp_without_leeway() {
        let s = setup("api://a", 100, DEFAULT_MAX_AGE);
        let t = s.token("alice", 100);
        s.cache.verify(&t).await.unwrap();
        s.clock.0.store(NOW + 99, Ordering::SeqCst);
        s.cache.verify(&t).await.unwrap();
        assert_eq!(s.calls(), 1, "served from the cache before exp");
        // At exp the entry is no longer served: the verifier decides (it
        // still allows its leeway)...
        s.clock.0.store(NOW + 100, Ordering::SeqCst);
        s.cache.verify(&t).await.unwrap();
        assert_eq!(s.calls(), 2);
        s.cache.verify(&t).await.unwrap();
        assert_eq!(s.calls(), 3, "within the leeway nothing is cached");
        // ...and past the leeway the token is refused, cache or not.
        s.clock.0.store(
            NOW + 100 + crate::adapters::jwt::LEEWAY_SECS + 1,
            Ordering::SeqCst,
        );
        assert_eq!(s.cache.verify(&t).await, Err(AuthFailure::Expired));
        assert_eq!(s.cache.verify(&t).await, Err(AuthFailure::Expired));
        assert_eq!(s.calls(), 5);
    }

    #[tokio::test]
    async fn entries_are_served_for_at_most_max_age() {
        let s = setup("api://a", 100, Duration::from_secs(50));
        let t = s.token("alice", 3600);
        s.cache.verify(&t).await.unwrap();
        s.clock.0.store(NOW + 49, Ordering::SeqCst);
        s.cache.verify(&t).await.unwrap();
        assert_eq!(s.calls(), 1);
        s.clock.0.store(NOW + 50, Ordering::SeqCst);
        s.cache.verify(&t).await.unwrap();
        assert_eq!(s.calls(), 2);
    }

    /// A verifier whose key generation the test sets.
    struct Rotating {
        inner: crate::adapters::jwt::JwtVerifier,
        generation: std::sync::Mutex<Option<u64>>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl TokenVerifier for Rotating {
        async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.verify(token).await
        }
        fn key_generation(&self) -> Option<u64> {
            *self.generation.lock().unwrap()
        }
    }

    #[tokio::test]
    async fn entries_are_served_only_under_the_keys_they_were_verified_with() {
        let idp = DevIdentityProvider::generate(DevAlg::Es256, "https://issuer.test", "api://a");
        let clock = Arc::new(TestClock(AtomicI64::new(NOW)));
        let inner = Arc::new(Rotating {
            inner: idp.verifier(clock.clone()),
            generation: std::sync::Mutex::new(Some(7)),
            calls: AtomicUsize::new(0),
        });
        let cache = CachingVerifier::new(inner.clone(), clock.clone());
        let calls = || inner.calls.load(Ordering::SeqCst);
        let t = idp.token("contoso", "alice", "RecoveryKey.Read", NOW, 3600);
        cache.verify(&t).await.unwrap();
        cache.verify(&t).await.unwrap();
        assert_eq!(calls(), 1);
        // Keys due for a refresh: nothing is served, nothing is stored.
        *inner.generation.lock().unwrap() = None;
        cache.verify(&t).await.unwrap();
        cache.verify(&t).await.unwrap();
        assert_eq!(calls(), 3);
        // Refreshed without a withdrawal: the entry is good again.
        *inner.generation.lock().unwrap() = Some(7);
        cache.verify(&t).await.unwrap();
        assert_eq!(calls(), 3);
        // A key was withdrawn: verified again, then cached under the new keys.
        *inner.generation.lock().unwrap() = Some(8);
        cache.verify(&t).await.unwrap();
        cache.verify(&t).await.unwrap();
        assert_eq!(calls(), 4);
    }

    #[tokio::test]
    async fn failures_are_never_cached() {
        let s = setup("api://a", 100, DEFAULT_MAX_AGE);
        let t = s.token("alice", 600);
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        for _ in 0..3 {
            assert!(s.cache.verify(&forged).await.is_err());
            assert_eq!(
                s.cache.verify("not.a.token").await,
                Err(AuthFailure::Malformed)
            );
        }
        assert_eq!(s.calls(), 6);
        assert!(s.cache.is_empty());
        // A cached token does not vouch for a token differing in one byte.
        s.cache.verify(&t).await.unwrap();
        assert!(s.cache.verify(&forged).await.is_err());
    }

    #[tokio::test]
    async fn a_token_cached_for_one_audience_is_refused_for_another() {
        let a = setup("api://a", 100, DEFAULT_MAX_AGE);
        // Same issuer key, another audience.
        let clock = a.clock.clone();
        let b_inner = {
            let keys = crate::adapters::jwt::KeySet::from_jwks_json(&a.idp.jwks_json()).unwrap();
            crate::adapters::jwt::JwtVerifier::new(
                crate::adapters::jwt::JwtSettings {
                    issuer: "https://issuer.test".into(),
                    audience: "api://b".into(),
                    default_tenant: None,
                    ..Default::default()
                },
                keys,
                crate::adapters::jwt::JwksSource::Fixed,
                clock.clone(),
            )
        };
        let b = CachingVerifier::new(Arc::new(b_inner), clock);
        let t = a.token("alice", 600);
        a.cache.verify(&t).await.unwrap();
        assert_eq!(b.verify(&t).await, Err(AuthFailure::Audience));
        assert_eq!(b.verify(&t).await, Err(AuthFailure::Audience));
        assert!(b.is_empty());
        // A token for api://b (same user, same times) is not a's entry.
        let tb = a.idp.sign(&serde_json::json!({
            "iss": "https://issuer.test", "aud": "api://b", "iat": NOW, "nbf": NOW,
            "exp": NOW + 600, "tid": "contoso", "oid": "alice", "scp": "RecoveryKey.Read"}));
        assert_eq!(a.cache.verify(&tb).await, Err(AuthFailure::Audience));
        assert!(b.verify(&tb).await.is_ok());
    }

    #[tokio::test]
    async fn a_full_cache_of_live_entries_keeps_working_without_a_sweep_per_insert() {
        let s = setup("api://a", 20, DEFAULT_MAX_AGE);
        let tokens: Vec<String> = (0..100).map(|i| s.token(&format!("u{i}"), 3600)).collect();
        let mut sizes = Vec::new();
        for t in &tokens {
            s.cache.verify(t).await.unwrap();
            sizes.push(s.cache.len());
        }
        assert!(sizes.iter().all(|&n| n <= 20));
        // Each eviction frees two slots (10 %, at least one): the size saws
        // between 19 and 20 instead of sweeping at every insertion.
        assert_eq!(sizes[19], 20);
        assert_eq!(sizes[20], 19);
        assert_eq!(sizes[21], 20);
        // The newest entries are the ones kept.
        let calls = s.calls();
        s.cache.verify(&tokens[99]).await.unwrap();
        s.cache.verify(&tokens[0]).await.unwrap();
        assert_eq!(s.calls(), calls + 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_evicts_expired_entries_first() {
        let s = setup("api://a", 3, DEFAULT_MAX_AGE);
        let short = s.token("short", 10);
        s.cache.verify(&short).await.unwrap();
        let long: Vec<String> = (0..2).map(|i| s.token(&format!("u{i}"), 3600)).collect();
        for t in &long {
            s.cache.verify(t).await.unwrap();
        }
        assert_eq!(s.cache.len(), 3);
        s.clock.0.store(NOW + 20, Ordering::SeqCst);
        // Full: the expired entry goes, the older live ones stay.
        let newer = s.token("u2", 3600);
        s.cache.verify(&newer).await.unwrap();
        assert_eq!(s.cache.len(), 3);
        let calls = s.calls();
        for t in &long {
            s.cache.verify(t).await.unwrap();
        }
        assert_eq!(s.calls(), calls, "live entries were kept");
        // Full of live entries: the oldest goes.
        for i in 3..50 {
            s.cache
                .verify(&s.token(&format!("u{i}"), 3600))
                .await
                .unwrap();
            assert!(s.cache.len() <= 3);
        }
        let calls = s.calls();
        s.cache.verify(&long[0]).await.unwrap();
        assert_eq!(s.calls(), calls + 1, "the oldest entry was evicted");
        let held = s.cache.len();
        assert_eq!(s.cache.lock().order.len(), held);
    }
}
