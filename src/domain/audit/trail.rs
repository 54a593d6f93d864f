//! The trail's one total order (an event's [`Position`]: its time at
//! microsecond precision, then its event id), the cursors clients page
//! with, and the pages both stores return.

use super::AuditEvent;
use crate::domain::ids::{DeviceId, TenantId, UserId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

/// Microseconds since the Unix epoch: the precision of the trail's order.
pub fn micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos().div_euclid(1000)
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: UTC with exactly six fractional digits,
/// so these strings sort in time order.
pub fn time_key(t: OffsetDateTime) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(micros(t) * 1000).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Where an event sits in the trail's order. Ordered as the trail is, oldest
/// first; pages are read from the greatest position down.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    micros: i128,
    event_id: String,
}

impl Position {
    pub fn of(e: &AuditEvent) -> Self {
        Self {
            micros: micros(e.time),
            event_id: e.event_id.clone(),
        }
    }

    /// `<time_key>#<event id>`: strings that sort as positions do (the
    /// DynamoDB indexes' sort key `ts`).
    pub fn key(&self) -> String {
        let t = OffsetDateTime::from_unix_timestamp_nanos(self.micros * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!("{}#{}", time_key(t), self.event_id)
    }

    /// The inverse of [`Position::key`], for keys this code wrote only.
    pub fn parse_key(key: &str) -> Option<Self> {
        let (t, event_id) = key.split_once('#')?;
        let time = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
        let ok_id = (1..=64).contains(&event_id.len())
            && event_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        (ok_id && time_key(time) == t).then(|| Self {
            micros: micros(time),
            event_id: event_id.to_owned(),
        })
    }
}

/// Where the next page starts: strictly older than this position. Opaque to
/// clients (`a1.` and the base64url of the position key); it only says
/// "older than", so it reaches nothing outside the query it is used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor(pub Position);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a cursor of this API: pass the `next` value of a previous page unchanged")]
pub struct InvalidCursor;

impl AuditCursor {
    const TAG: &'static str = "a1.";

    pub fn encode(&self) -> String {
        format!("{}{}", Self::TAG, URL_SAFE_NO_PAD.encode(self.0.key()))
    }

    pub fn decode(s: &str) -> Result<Self, InvalidCursor> {
        let body = s
            .strip_prefix(Self::TAG)
            .filter(|b| b.len() <= 200)
            .ok_or(InvalidCursor)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| InvalidCursor)?;
        let key = String::from_utf8(raw).map_err(|_| InvalidCursor)?;
        Position::parse_key(&key).map(Self).ok_or(InvalidCursor)
    }
}

/// Filters of `GET /v1/audit-events`, always within one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub device_id: Option<DeviceId>,
    pub actor: Option<UserId>,
    /// Events at or after this time (microsecond precision).
    pub since: Option<OffsetDateTime>,
    /// Events before this time (microsecond precision).
    pub until: Option<OffsetDateTime>,
    /// Events older than this position: the `next` of a previous page.
    pub after: Option<AuditCursor>,
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            device_id: None,
            actor: None,
            since: None,
            until: None,
            after: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    pub fn matches(&self, e: &AuditEvent) -> bool {
        let at = micros(e.time);
        self.device_id
            .as_ref()
            .is_none_or(|d| e.device_id.as_ref() == Some(d))
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.since.is_none_or(|s| at >= micros(s))
            && self.until.is_none_or(|u| at < micros(u))
            && self.after.as_ref().is_none_or(|c| Position::of(e) < c.0)
    }

    /// Whether the time range (and cursor) can hold any event at all.
    pub fn is_empty_range(&self) -> bool {
        match (self.since, self.until) {
            (Some(s), Some(u)) => micros(s) >= micros(u),
            _ => false,
        }
    }
}

/// One page of events, newest first, and where the next page starts
/// (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<AuditCursor>,
}

/// Sort newest first in the trail's order.
pub fn newest_first(events: &mut [AuditEvent]) {
    events.sort_by_cached_key(|e| std::cmp::Reverse(Position::of(e)));
}

/// The page a store returns from candidates that include at least the
/// `limit + 1` newest matching events: filtered, sorted, cut to `limit`,
/// with `next` set exactly when more matching events exist.
pub fn page(mut candidates: Vec<AuditEvent>, tenant: &TenantId, query: &AuditQuery) -> AuditPage {
    candidates.retain(|e| &e.tenant_id == tenant && query.matches(e));
    newest_first(&mut candidates);
    let next = (candidates.len() > query.limit && query.limit > 0)
        .then(|| AuditCursor(Position::of(&candidates[query.limit - 1])));
    candidates.truncate(query.limit);
    AuditPage {
        events: candidates,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Action, Outcome};

    fn at(nanos: i128, id: &str) -> AuditEvent {
        AuditEvent {
            event_id: id.into(),
            time: OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap(),
            tenant_id: TenantId::parse("t").unwrap(),
            actor: UserId::parse("u").unwrap(),
            device_id: None,
            key_id: None,
            outcome: Outcome::Denied,
            reason: "x".into(),
            justification: None,
            source_ip: None,
            user_agent: None,
            request_id: "r".into(),
            action: Action::Disclose,
        }
    }

    #[test]
    fn position_keys_sort_as_positions_and_round_trip() {
        let a = at(1_700_000_000_123_456_789, "b");
        let b = at(1_700_000_000_123_456_001, "c"); // same microsecond
        let c = at(1_700_000_000_123_457_000, "a");
        assert_eq!(
            Position::of(&a).key(),
            "2023-11-14T22:13:20.123456Z#b",
            "microseconds, UTC"
        );
        let mut ps = [Position::of(&c), Position::of(&b), Position::of(&a)];
        let mut keys: Vec<String> = ps.iter().map(Position::key).collect();
        ps.sort();
        keys.sort();
        assert_eq!(ps.iter().map(Position::key).collect::<Vec<_>>(), keys);
        for p in &ps {
            assert_eq!(Position::parse_key(&p.key()).as_ref(), Some(p));
        }
        let cursor = AuditCursor(Position::of(&a));
        assert_eq!(AuditCursor::decode(&cursor.encode()), Ok(cursor.clone()));
        for bad in [
            "",
            "a1.",
            "a1.!!",
            "b1.MjAyMw",
            &format!("a1.{}", URL_SAFE_NO_PAD.encode("2023-11-14T22:13:20Z#b")),
            &format!(
                "a1.{}",
                URL_SAFE_NO_PAD.encode("2023-11-14T22:13:20.123456Z#")
            ),
            &format!(
                "a1.{}",
                URL_SAFE_NO_PAD.encode("2023-11-14T22:13:20.123456Z#a b")
            ),
        ] {
            assert_eq!(AuditCursor::decode(bad), Err(InvalidCursor), "{bad}");
        }
    }

    #[test]
    fn pages_follow_the_order_and_say_when_more_exist() {
        let t = TenantId::parse("t").unwrap();
        let events: Vec<AuditEvent> = (0..5)
            .map(|i| at(1_000_000_000 * i, &format!("e{i}")))
            .collect();
        let q = AuditQuery {
            limit: 2,
            ..Default::default()
        };
        let p1 = page(events.clone(), &t, &q);
        assert_eq!(
            p1.events
                .iter()
                .map(|e| e.event_id.as_str())
                .collect::<Vec<_>>(),
            ["e4", "e3"]
        );
        let q2 = AuditQuery {
            after: p1.next.clone(),
            ..q.clone()
        };
        let p2 = page(events.clone(), &t, &q2);
        assert_eq!(p2.events[0].event_id, "e2");
        let q3 = AuditQuery {
            after: p2.next.clone(),
            ..q.clone()
        };
        let p3 = page(events.clone(), &t, &q3);
        assert_eq!(p3.events.len(), 1);
        assert_eq!(p3.next, None, "no empty last page");
        let exact = AuditQuery {
            limit: 5,
            ..Default::default()
        };
        assert_eq!(page(events, &t, &exact).next, None);
    }
}
