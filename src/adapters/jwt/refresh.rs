//! When the keys are fetched again: on max age, on an unknown `kid`, with
//! one fetch in flight and back-off after failures.

use super::fetch::{FetchError, check_fetch_url, discovery_url, get, jwks_http_client};
use super::keys::KeySet;
use super::{JwksSource, JwtVerifier, unavailable};
use crate::domain::error::AuthFailure;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use time::OffsetDateTime;

/// After a successful fetch, an unknown `kid` triggers another at most once
/// per this interval (anyone can send tokens with made-up `kid`s).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The wait after a failed fetch; it doubles with each further failure, up
/// to `REFRESH_INTERVAL`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The keys in use.
pub(super) struct Keys {
    pub(super) set: Arc<KeySet>,
    /// When `set` was fetched; `None` for configured keys (inline or
    /// fixed), which never expire.
    pub(super) fetched_at: Option<OffsetDateTime>,
    /// Changes whenever a refresh withdraws or replaces a key: a cache of
    /// verified tokens drops what it verified before.
    pub(super) generation: u64,
}

/// The fetch schedule, under the lock that keeps one fetch in flight.
#[derive(Default)]
pub(super) struct FetchState {
    /// No fetch before this (the back-off after a failure, or
    /// `REFRESH_INTERVAL` after a success).
    not_before: Option<OffsetDateTime>,
    failures: u32,
    /// The last failure was the configuration's, not the network's.
    misconfigured: bool,
    /// The misconfiguration already logged as an error: logged once, not
    /// at every retry.
    reported: Option<String>,
}

/// What the last fetch came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refresh {
    /// It succeeded: the keys are the issuer's current ones.
    Current,
    /// It failed; the next attempt is allowed in this many seconds.
    /// `misconfigured`: the issuer answered, but contradicts the
    /// configuration (retrying will not help until someone fixes it).
    Failed {
        retry_after_secs: u64,
        misconfigured: bool,
    },
    /// Fixed keys: nothing to fetch.
    Fixed,
}
impl JwtVerifier {
    pub(super) fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn current_keys(&self) -> Arc<KeySet> {
        self.read_keys().set.clone()
    }

    /// The keys, unless they are due for a refresh (or none were fetched
    /// yet from a remote source).
    fn fresh_keys(&self) -> Option<Arc<KeySet>> {
        let k = self.read_keys();
        let fresh = match k.fetched_at {
            None => !k.set.is_empty() || self.source == JwksSource::Fixed,
            Some(t) => self.clock.now() < t + self.max_age,
        };
        fresh.then(|| k.set.clone())
    }

    /// Keys to check a token with: fresh ones, refreshed ones, or, while
    /// the issuer cannot be reached, the old ones for one more max age.
    pub(super) async fn usable_keys(&self) -> Result<Arc<KeySet>, AuthFailure> {
        if let Some(set) = self.fresh_keys() {
            return Ok(set);
        }
        let outcome = self.refresh().await;
        if let Some(set) = self.fresh_keys() {
            return Ok(set);
        }
        let k = self.read_keys();
        match outcome {
            Refresh::Failed {
                retry_after_secs,
                misconfigured,
            } => match k.fetched_at {
                Some(t) if self.clock.now() < t + self.max_age * 2 && !k.set.is_empty() => {
                    Ok(k.set.clone())
                }
                _ => Err(unavailable(retry_after_secs, misconfigured)),
            },
            Refresh::Current | Refresh::Fixed => Ok(k.set.clone()),
        }
    }

    /// Fetches the keys unless a fetch is not due yet (back-off, or a
    /// recent success); concurrent callers wait for one fetch and share its
    /// result.
    pub(super) async fn refresh(&self) -> Refresh {
        if self.source == JwksSource::Fixed {
            return Refresh::Fixed;
        }
        let seen = self.fetches_done.load(Ordering::SeqCst);
        let mut st = self.fetch.lock().await;
        let now = self.clock.now();
        let finished_meanwhile = self.fetches_done.load(Ordering::SeqCst) != seen;
        if !finished_meanwhile && st.not_before.is_none_or(|t| now >= t) {
            let result = self.fetch_keys().await;
            let now = self.clock.now();
            match result {
                Ok(set) => {
                    tracing::info!(keys = set.len(), "fetched the issuer's signing keys");
                    let mut k = self.keys.write().unwrap_or_else(|e| e.into_inner());
                    if set.withdraws_any_of(&k.set) {
                        k.generation += 1;
                    }
                    k.set = Arc::new(set);
                    k.fetched_at = Some(now);
                    st.failures = 0;
                    st.misconfigured = false;
                    st.reported = None;
                    st.not_before = Some(now + REFRESH_INTERVAL);
                }
                Err(e) => {
                    st.failures = st.failures.saturating_add(1);
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1 << st.failures.min(16).saturating_sub(1))
                        .min(REFRESH_INTERVAL);
                    st.not_before = Some(now + backoff);
                    let retry_in_secs = backoff.as_secs();
                    st.misconfigured = matches!(e, FetchError::Misconfigured(_));
                    match e {
                        FetchError::Unreachable(e) => tracing::warn!(
                            error = %e, failures = st.failures, retry_in_secs,
                            "cannot fetch the issuer's signing keys; keeping the current ones"
                        ),
                        // Once as an error (an operator must act), then quietly.
                        FetchError::Misconfigured(e) if st.reported.as_ref() != Some(&e) => {
                            tracing::error!(
                                error = %e, failures = st.failures, retry_in_secs,
                                "the issuer's documents do not match the configuration: no token can be checked until it is fixed"
                            );
                            st.reported = Some(e);
                        }
                        FetchError::Misconfigured(e) => tracing::debug!(
                            error = %e, failures = st.failures, "the issuer is still misconfigured"
                        ),
                    }
                }
            }
            self.fetches_done.fetch_add(1, Ordering::SeqCst);
        }
        if st.failures == 0 {
            return Refresh::Current;
        }
        let wait = st.not_before.map_or(0, |t| {
            let secs = (t - self.clock.now()).as_seconds_f64().ceil();
            if secs > 0.0 { secs as u64 } else { 0 }
        });
        Refresh::Failed {
            retry_after_secs: wait.clamp(1, REFRESH_INTERVAL.as_secs()),
            misconfigured: st.misconfigured,
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, FetchError> {
        use FetchError::{Misconfigured, Unreachable};
        let http = self
            .http
            .get_or_init(jwks_http_client)
            .as_ref()
            .map_err(|e| Misconfigured(e.clone()))?;
        let url = match &self.source {
            JwksSource::Url(u) => u.clone(),
            JwksSource::Discovery(issuer) => {
                #[derive(Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                }
                let d = discovery_url(issuer);
                check_fetch_url(&d).map_err(|e| Misconfigured(format!("issuer {issuer:?} {e}")))?;
                let doc: Discovery = serde_json::from_slice(&get(http, &d).await?)
                    .map_err(|e| Unreachable(format!("{d}: not a discovery document: {e}")))?;
                // OpenID Connect Discovery §4.3: the document must be the
                // configured issuer's own.
                if doc.issuer != *issuer {
                    return Err(Misconfigured(format!(
                        "{d} names issuer {:?}, not PORTAL_ISSUER {issuer:?}",
                        doc.issuer
                    )));
                }
                doc.jwks_uri
            }
            JwksSource::Fixed => return Err(Misconfigured("no JWKS source".into())),
        };
        check_fetch_url(&url).map_err(|e| Misconfigured(format!("JWKS URL {url:?} {e}")))?;
        let body = get(http, &url).await?;
        let set = std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(KeySet::from_jwks_json)
            .map_err(|e| Unreachable(format!("{url}: {e}")))?;
        if set.is_empty() {
            return Err(Unreachable(format!(
                "{url}: no RSA, P-256 or P-384 signing key with a kid"
            )));
        }
        Ok(set)
    }
}
