//! Per-caller disclosure limit over a rolling hour.
//!
//! The store keeps, per caller, the disclosures of the last hour as
//! [`Slot`]s (a time and a count) and a version. Disclosures in the same
//! clock minute ([`MERGE_SECS`]) as the newest slot join it and move its
//! time forward to theirs, so a window holds at most 61 slots whatever the
//! limit (a helpdesk agent in an incident may have thousands of disclosures
//! an hour, and the record must stay a small DynamoDB item). Moving the time
//! forward errs on the safe side: a merged disclosure frees its slot less
//! than a minute late, never early; and since a slot never spans two clock
//! minutes, a steady stream of disclosures ages out minute by minute. A disclosure is allowed when fewer than `limit` fall in the
//! last hour; the new window is written with a condition on the version
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

/// Disclosures in the same span of this many seconds (a clock minute) as
/// the newest slot join it.
pub const MERGE_SECS: i64 = 60;

/// `count` disclosures, the newest at `at` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at: i64,
    pub count: u32,
}

impl Slot {
    pub fn one(at: i64) -> Self {
        Self { at, count: 1 }
    }
}

/// A caller's recent disclosures as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// Oldest first.
    pub recent: Vec<Slot>,
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

impl RateWindow {
    /// Disclosures counted against the limit at `now`.
    pub fn used(&self, now: OffsetDateTime) -> u32 {
        let since = now.unix_timestamp() - WINDOW_SECS;
        self.recent
            .iter()
            .filter(|s| s.at > since)
            .fold(0u32, |n, s| n.saturating_add(s.count))
    }

    /// How many more disclosures `limit` allows at `now`.
    pub fn free(&self, now: OffsetDateTime, limit: u32) -> u32 {
        limit.saturating_sub(self.used(now))
    }
}

/// Either the update to write, or how many seconds until a slot frees up.
pub fn admit(window: &RateWindow, now: OffsetDateTime, limit: u32) -> Result<RateUpdate, u64> {
    admit_n(window, now, limit, 1)
}

/// The update recording `n` (≥ 1) disclosures at once (a batch), or how many
/// seconds until `n` slots are free (`WINDOW_SECS` when `n` exceeds the
/// limit itself).
pub fn admit_n(
    window: &RateWindow,
    now: OffsetDateTime,
    limit: u32,
    n: u32,
) -> Result<RateUpdate, u64> {
    let now_s = now.unix_timestamp();
    if limit == 0 || n > limit {
        return Err(WINDOW_SECS as u64);
    }
    let mut recent: Vec<Slot> = window
        .recent
        .iter()
        .copied()
        .filter(|s| s.at > now_s - WINDOW_SECS && s.count > 0)
        .collect();
    recent.sort_by_key(|s| s.at);
    let used = recent.iter().fold(0u32, |a, s| a.saturating_add(s.count));
    if used.saturating_add(n) > limit {
        // The oldest slots must age out until `n` fit.
        let mut excess = used.saturating_add(n) - limit;
        for s in &recent {
            if s.count >= excess {
                return Err((s.at + WINDOW_SECS - now_s).max(1) as u64);
            }
            excess -= s.count;
        }
        return Err(WINDOW_SECS as u64);
    }
    match recent.last_mut() {
        Some(last) if last.at.div_euclid(MERGE_SECS) == now_s.div_euclid(MERGE_SECS) => {
            last.at = last.at.max(now_s);
            last.count += n;
        }
        _ => recent.push(Slot {
            at: now_s,
            count: n,
        }),
    }
    // Grants out of the replay window are dropped; the caller records the
    // new one (`RateUpdate::record`).
    let grants = window
        .grants
        .iter()
        .filter(|g| g.at > now_s - REPLAY_WINDOW_SECS)
        .cloned()
        .collect();
    Ok(RateUpdate {
        expected_version: window.version,
        window: RateWindow {
            recent,
            version: window.version + 1,
            grants,
        },
        expires_at: now_s + WINDOW_SECS,
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
        assert_eq!(
            u.window.recent,
            vec![Slot::one(1_100), Slot::one(1_200), Slot::one(4_600)]
        );
        assert_eq!(u.window.version, 4);
    }

    #[test]
    fn a_lowered_limit_applies_to_existing_windows() {
        let w = RateWindow {
            recent: vec![Slot::one(10), Slot::one(100), Slot::one(200)],
            version: 3,
            grants: vec![],
        };
        assert!(admit(&w, at(300), 2).is_err());
    }

    #[test]
    fn disclosures_within_a_clock_minute_share_a_slot_that_frees_late_never_early() {
        let mut w = RateWindow::default();
        // 1_020..1_079 is one clock minute.
        for t in [1_020, 1_030, 1_079] {
            w = admit(&w, at(t), 5).unwrap().window;
        }
        assert_eq!(
            w.recent,
            vec![Slot {
                at: 1_079,
                count: 3
            }]
        );
        // The next minute: a new slot.
        w = admit(&w, at(1_080), 5).unwrap().window;
        assert_eq!(w.recent.len(), 2);
        assert_eq!(w.used(at(1_080)), 4);
        // Full at 5; the merged three free together, an hour after 1_079
        // (the first of them really was at 1_020: late, never early).
        w = admit(&w, at(1_081), 5).unwrap().window;
        assert_eq!(admit(&w, at(1_200), 5), Err(1_079 + 3_600 - 1_200));
        assert!(admit(&w, at(4_678), 5).is_err());
        let u = admit(&w, at(4_679), 5).unwrap();
        assert_eq!(u.window.used(at(4_679)), 3);
    }

    #[test]
    fn a_steady_stream_ages_out_minute_by_minute() {
        // One disclosure every 50 s (each within a minute of the last)
        // under a limit of 80: a rolling hour holds 72 of them, so the
        // stream is never refused, for hours.
        let mut w = RateWindow::default();
        for i in 0..500 {
            let t = 10_000 + i * 50;
            w = admit(&w, at(t), 80)
                .unwrap_or_else(|r| panic!("refused at {t} (retry after {r})"))
                .window;
            assert!(w.used(at(t)) <= 74, "{} at {t}", w.used(at(t)));
        }
    }

    #[test]
    fn a_window_stays_small_whatever_the_limit() {
        let mut w = RateWindow::default();
        // 100 000 disclosures spread over an hour: at most 61 slots.
        for i in 0..100_000i64 {
            w = admit(&w, at(10_000 + i * 3_599 / 100_000), 100_000)
                .unwrap()
                .window;
        }
        assert!(w.recent.len() <= 61, "{} slots", w.recent.len());
        assert_eq!(w.used(at(13_599)), 100_000);
        assert!(admit(&w, at(13_599), 100_000).is_err());
    }

    #[test]
    fn a_batch_takes_n_slots_or_none_and_says_when_they_free() {
        let mut w = RateWindow::default();
        w = admit_n(&w, at(1_000), 10, 4).unwrap().window;
        w = admit_n(&w, at(2_000), 10, 4).unwrap().window;
        assert_eq!(w.free(at(2_000), 10), 2);
        // Three more need the first four to age out.
        assert_eq!(admit_n(&w, at(2_000), 10, 3), Err(1_000 + 3_600 - 2_000));
        assert_eq!(admit_n(&w, at(2_000), 10, 11), Err(3_600));
        let u = admit_n(&w, at(2_000), 10, 2).unwrap();
        assert_eq!(u.window.used(at(2_000)), 10);
        assert_eq!(u.expected_version, w.version);
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
