//! Per-caller disclosure limit over a rolling hour.
//!
//! The store keeps, per caller, the times of the last `limit` disclosures and
//! a version. A disclosure is allowed when fewer than `limit` of them fall in
//! the last hour; the new window is written with a condition on the version
//! read, so two concurrent disclosures cannot both take the last slot.
//!
//! The same record keeps the caller's granted requests of the last
//! [`REPLAY_WINDOW_SECS`] ([`Grant`]), which is what lets an identical retry
//! of a granted request be served again without a second event (see
//! `keys.rs`): it is read in the same consistent read and written in the same
//! conditional write as the disclosure times, at no extra cost.

use crate::domain::ids::{DeviceId, KeyId};
use time::OffsetDateTime;

pub const WINDOW_SECS: i64 = 3600;

/// How long a granted request id may be replayed: an identical retry within
/// this many seconds is served from the original disclosure's audit event.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Granted requests kept for replay per caller (bounds the record's size; a
/// request beyond it is simply treated as a new one).
pub const MAX_REPLAYABLE: usize = 50;

/// A granted request, as the replay rule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub request_id: String,
    /// Unix seconds of the granted event.
    pub at: i64,
    pub device_id: DeviceId,
    pub key_id: KeyId,
    /// Digest of what else the event recorded about the request
    /// (justification, source IP, user agent): a replay must match it.
    pub digest: String,
}

/// A caller's recent disclosures as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// Unix seconds, oldest first.
    pub recent: Vec<i64>,
    /// 0 when the caller has no record yet.
    pub version: u64,
    /// Granted requests of the replay window, oldest first.
    pub grants: Vec<Grant>,
}

impl RateWindow {
    /// This caller's granted requests with `request_id` that may still be
    /// replayed at `now`.
    pub fn replayable<'a>(
        &'a self,
        request_id: &'a str,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        let since = now.unix_timestamp() - REPLAY_WINDOW_SECS;
        self.grants
            .iter()
            .filter(move |g| g.request_id == request_id && g.at > since)
    }
}

/// The write that records one more disclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateUpdate {
    pub expected_version: u64,
    pub window: RateWindow,
    /// When the record may be dropped (unix seconds): an hour after the newest entry.
    pub expires_at: i64,
}

/// Either the update to write, or how many seconds until a slot frees up.
pub fn admit(window: &RateWindow, now: OffsetDateTime, limit: u32) -> Result<RateUpdate, u64> {
    let now = now.unix_timestamp();
    if limit == 0 {
        return Err(WINDOW_SECS as u64);
    }
    let mut recent: Vec<i64> = window
        .recent
        .iter()
        .copied()
        .filter(|&t| t > now - WINDOW_SECS)
        .collect();
    recent.sort_unstable();
    if recent.len() >= limit as usize {
        let oldest_that_counts = recent[recent.len() - limit as usize];
        return Err((oldest_that_counts + WINDOW_SECS - now).max(1) as u64);
    }
    recent.push(now);
    // Grants out of the replay window are dropped; the caller records the
    // new one (`RateUpdate::record`).
    let grants = window
        .grants
        .iter()
        .filter(|g| g.at > now - REPLAY_WINDOW_SECS)
        .cloned()
        .collect();
    Ok(RateUpdate {
        expected_version: window.version,
        window: RateWindow {
            recent,
            version: window.version + 1,
            grants,
        },
        expires_at: now + WINDOW_SECS,
    })
}

impl RateUpdate {
    /// Keeps `grant` for replay, dropping the oldest beyond [`MAX_REPLAYABLE`].
    pub fn record(&mut self, grant: Grant) {
        let grants = &mut self.window.grants;
        grants.push(grant);
        let excess = grants.len().saturating_sub(MAX_REPLAYABLE);
        grants.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(s).unwrap()
    }

    #[test]
    fn allows_limit_per_rolling_hour_then_frees_the_oldest_slot() {
        let mut w = RateWindow::default();
        for i in 0..3 {
            let u = admit(&w, at(1_000 + i * 100), 3).expect("under the limit");
            assert_eq!(u.expected_version, w.version);
            w = u.window;
        }
        // Fourth within the hour: refused until the first (t=1000) ages out.
        assert_eq!(admit(&w, at(1_300), 3), Err(3_300));
        assert!(admit(&w, at(4_599), 3).is_err());
        let u = admit(&w, at(4_600), 3).expect("oldest slot expired");
        assert_eq!(u.window.recent, vec![1_100, 1_200, 4_600]);
        assert_eq!(u.window.version, 4);
    }

    #[test]
    fn a_lowered_limit_applies_to_existing_windows() {
        let w = RateWindow {
            recent: vec![10, 20, 30],
            version: 3,
            grants: vec![],
        };
        assert!(admit(&w, at(40), 2).is_err());
    }

    fn grant(request_id: &str, at: i64) -> Grant {
        Grant {
            request_id: request_id.into(),
            at,
            device_id: DeviceId::parse("PC-1").unwrap(),
            key_id: KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap(),
            digest: "d".into(),
        }
    }

    #[test]
    fn grants_are_replayable_for_300_seconds_and_at_most_50_are_kept() {
        let mut w = RateWindow::default();
        let mut u = admit(&w, at(1_000), 100).unwrap();
        u.record(grant("r1", 1_000));
        w = u.window;
        assert_eq!(w.replayable("r1", at(1_299)).count(), 1);
        assert_eq!(w.replayable("r1", at(1_300)).count(), 0);
        assert_eq!(w.replayable("r2", at(1_001)).count(), 0);
        // Expired grants are dropped by the next update.
        let u = admit(&w, at(1_300), 100).unwrap();
        assert!(u.window.grants.is_empty());
        // At most 50 kept: the oldest go first.
        let mut u = admit(&w, at(1_001), 100).unwrap();
        for i in 0..60 {
            u.record(grant(&format!("q{i}"), 1_001));
        }
        assert_eq!(u.window.grants.len(), 50);
        assert_eq!(u.window.grants[0].request_id, "q10");
    }
}
