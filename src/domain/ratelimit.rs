//! Per-caller disclosure limit over a rolling hour.
//!
//! The store keeps, per caller, the times of the last `limit` disclosures and
//! a version. A disclosure is allowed when fewer than `limit` of them fall in
//! the last hour; the new window is written with a condition on the version
//! read, so two concurrent disclosures cannot both take the last slot.

use time::OffsetDateTime;

pub const WINDOW_SECS: i64 = 3600;

/// A caller's recent disclosures as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// Unix seconds, oldest first.
    pub recent: Vec<i64>,
    /// 0 when the caller has no record yet.
    pub version: u64,
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
    Ok(RateUpdate {
        expected_version: window.version,
        window: RateWindow {
            recent,
            version: window.version + 1,
        },
        expires_at: now + WINDOW_SECS,
    })
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
        };
        assert!(admit(&w, at(40), 2).is_err());
    }
}
