//! How domain records are laid out as DynamoDB items (see `schema.rs` for the
//! tables and indexes). Public so tests and tools can build or inspect raw
//! items; the store is the only writer in production.
//!
//! Timestamps are RFC 3339 strings (full precision, so they read back equal);
//! `ts` in the audit table is UTC with exactly six fractional digits, so it
//! sorts lexicographically in time order.
//!
//! Files by record: `tenant` (policy, settings, incidents), `device`
//! (device items and key pointers), `audit` (audit events), `rate` (rate
//! windows); this file holds the key layout and the typed attribute reader.

use crate::domain::audit::{Action, AuditEvent, Outcome, Position};
use crate::domain::error::{Cause, Unavailable};
use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::{
    Device, Helpdesk, KeyMeta, ManagedBy, RequireReason, Retirement, SealedDevice, SealedKey,
    Tenant, TenantPolicy, VolumeType,
};
use crate::domain::ports::{ImportDevice, KeyLocation};
use crate::domain::ratelimit::{Grant, RateWindow, Slot};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod audit;
mod device;
mod rate;
mod tenant;

pub use audit::*;
pub use device::*;
pub use rate::*;
pub use tenant::*;

pub type Item = HashMap<String, AttributeValue>;

pub const TENANT_SK: &str = "TENANT";
pub const DEVICE_SK: &str = "DEVICE";
pub const KEY_SK_PREFIX: &str = "KEY#";

/// `T#<tenant>`
pub fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

/// `D#<tenant>#<device>`
pub fn device_pk(tenant: &TenantId, device: &DeviceId) -> String {
    format!("D#{tenant}#{device}")
}

/// `KEY#<key id in canonical form>`
pub fn key_sk(key: &KeyId) -> String {
    format!("{KEY_SK_PREFIX}{key}")
}

/// `<tenant>#<owner>`
pub fn owner_key(tenant: &TenantId, owner: &UserId) -> String {
    format!("{tenant}#{owner}")
}

/// `<tenant>#<first 8 hex digits>`; `hex` is a lower-case key-ID prefix of at
/// least 8 digits.
pub fn key_bucket(tenant: &TenantId, hex: &str) -> String {
    format!("{tenant}#{}", &hex[..8])
}

/// `<tenant>#<actor>`: the caller's rate-limit item.
pub fn rate_pk(tenant: &TenantId, actor: &UserId) -> String {
    format!("{tenant}#{actor}")
}

/// `<tenant>#<actor>#<request id>#<event id>`: every event, every attempt
/// of a request included, is an item of its own.
pub fn audit_pk(tenant: &TenantId, actor: &UserId, request_id: &str, event_id: &str) -> String {
    format!("{tenant}#{actor}#{request_id}#{event_id}")
}

/// `<tenant>#<actor>#denied#<unix hour>`: the caller's denied-event counter
/// for one clock hour, in the rate-limits table (`#` cannot occur in an id,
/// so it never meets a rate-window key).
pub fn denials_pk(tenant: &TenantId, actor: &UserId, hour: i64) -> String {
    format!("{tenant}#{actor}#denied#{hour}")
}

/// `<tenant>#<device>`
pub fn device_key(tenant: &TenantId, device: &DeviceId) -> String {
    format!("{tenant}#{device}")
}

/// `<tenant>#<actor>`
pub fn actor_key(tenant: &TenantId, actor: &UserId) -> String {
    format!("{tenant}#{actor}")
}

/// The `by_time` shard of an audit item: FNV-1a of its `pk`, so it is stable
/// across builds and platforms.
pub fn audit_shard(pk: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pk.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(super::schema::AUDIT_TIME_SHARDS)) as u32
}

/// `<tenant>#<shard>`
pub fn tshard(tenant: &TenantId, shard: u32) -> String {
    format!("{tenant}#{shard}")
}

/// `<RFC 3339 UTC with microseconds>#<event id>`: sorts in time order
/// (the event's `audit::Position`).
pub fn audit_ts(time: OffsetDateTime, event_id: &str) -> String {
    format!("{}#{event_id}", crate::domain::audit::time_key(time))
}

/// A stored item that does not have the shape this code writes. The message
/// names the item kind and the attribute, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} item: attribute {attr} is missing or invalid")]
pub struct ItemError {
    pub kind: &'static str,
    pub attr: &'static str,
}

impl From<ItemError> for Unavailable {
    fn from(e: ItemError) -> Self {
        Unavailable::new(Cause::DynamoDb, e)
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn ts(t: OffsetDateTime) -> String {
    // Rfc3339 formatting only fails for years outside 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

/// Typed access to one item's attributes, with errors that name them.
pub(super) struct Reader<'a> {
    item: &'a Item,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn err(&self, attr: &'static str) -> ItemError {
        ItemError {
            kind: self.kind,
            attr,
        }
    }
    pub(super) fn opt_s(&self, attr: &'static str) -> Result<Option<&'a str>, ItemError> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.err(attr)),
        }
    }
    pub(super) fn s(&self, attr: &'static str) -> Result<&'a str, ItemError> {
        self.opt_s(attr)?.ok_or_else(|| self.err(attr))
    }
    pub(super) fn parse<T>(
        &self,
        attr: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ItemError> {
        f(self.s(attr)?).ok_or_else(|| self.err(attr))
    }
    pub(super) fn opt_parse<T>(
        &self,
        attr: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ItemError> {
        self.opt_s(attr)?
            .map(|v| f(v).ok_or_else(|| self.err(attr)))
            .transpose()
    }
    pub(super) fn opt_time(&self, attr: &'static str) -> Result<Option<OffsetDateTime>, ItemError> {
        self.opt_parse(attr, |v| OffsetDateTime::parse(v, &Rfc3339).ok())
    }
    pub(super) fn time(&self, attr: &'static str) -> Result<OffsetDateTime, ItemError> {
        self.parse(attr, |v| OffsetDateTime::parse(v, &Rfc3339).ok())
    }
    pub(super) fn bool_or(&self, attr: &'static str, default: bool) -> Result<bool, ItemError> {
        match self.item.get(attr) {
            None => Ok(default),
            Some(AttributeValue::Bool(b)) => Ok(*b),
            Some(_) => Err(self.err(attr)),
        }
    }
    pub(super) fn n<T: std::str::FromStr>(
        &self,
        attr: &'static str,
    ) -> Result<Option<T>, ItemError> {
        match self.item.get(attr) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| self.err(attr)),
            Some(_) => Err(self.err(attr)),
        }
    }
    pub(super) fn list(&self, attr: &'static str) -> Result<&'a [AttributeValue], ItemError> {
        match self.item.get(attr) {
            None => Ok(&[]),
            Some(AttributeValue::L(v)) => Ok(v),
            Some(_) => Err(self.err(attr)),
        }
    }
    pub(super) fn opt_map(&self, attr: &'static str) -> Result<Option<&'a Item>, ItemError> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(_) => Err(self.err(attr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_sorts_in_time_order_and_shards_are_stable() {
        let a = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let b = a + time::Duration::microseconds(1);
        assert_eq!(audit_ts(a, "e"), "2023-11-14T22:13:20.123456Z#e");
        assert!(audit_ts(a, "z") < audit_ts(b, "a"));
        let offset = a.to_offset(time::UtcOffset::from_hms(-5, 0, 0).unwrap());
        assert_eq!(audit_ts(offset, "e"), audit_ts(a, "e"));
        // The README's data model: 8 time shards per tenant.
        assert_eq!(super::super::schema::AUDIT_TIME_SHARDS, 8);
        // FNV-1a is fixed: these must never change, or old events move shards.
        assert_eq!(audit_shard(""), (0xcbf2_9ce4_8422_2325u64 % 8) as u32);
        assert_eq!(audit_shard("t1#u1#req-1#ev1"), 1);
        let shards: std::collections::HashSet<u32> = (0..64)
            .map(|i| audit_shard(&format!("t1#u1#req-{i}")))
            .collect();
        assert!(shards.len() > 4, "{shards:?}");
        assert!(shards.iter().all(|&s| s < 8), "8 shards: {shards:?}");
    }

    #[test]
    fn audit_items_round_trip() {
        let e = AuditEvent {
            action: Action::Disclose,
            event_id: "ev1".into(),
            time: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap(),
            tenant_id: TenantId::parse("t1").unwrap(),
            actor: UserId::parse("u1").unwrap(),
            device_id: Some(DeviceId::parse("PC-1").unwrap()),
            key_id: Some(KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap()),
            outcome: Outcome::Granted,
            reason: "owner".into(),
            justification: None,
            source_ip: Some("192.0.2.1".into()),
            user_agent: None,
            request_id: "req-1".into(),
        };
        let item = audit_item(&e);
        assert_eq!(parse_audit_event(&item).unwrap(), e);
        assert_eq!(item["pk"], s("t1#u1#req-1#ev1"));
        assert_eq!(item["device_key"], s("t1#PC-1"));
        let denied = AuditEvent {
            device_id: None,
            key_id: None,
            outcome: Outcome::Denied,
            ..e.clone()
        };
        let item = audit_item(&denied);
        assert!(!item.contains_key("device_key"));
        assert_eq!(parse_audit_event(&item).unwrap(), denied);
        let moved = AuditEvent {
            actor: UserId::importer("admin").unwrap(),
            outcome: Outcome::Changed,
            ..e
        };
        let item = audit_item(&moved);
        assert_eq!(item["actor_key"], s("t1#import:admin"));
        assert_eq!(parse_audit_event(&item).unwrap(), moved);
        // An item written before actions existed reads as a disclosure.
        let mut old = audit_item(&denied);
        old.remove("action");
        assert_eq!(parse_audit_event(&old).unwrap().action, Action::Disclose);
        let escrow = AuditEvent {
            action: Action::Escrow,
            ..denied
        };
        assert_eq!(parse_audit_event(&audit_item(&escrow)).unwrap(), escrow);
    }

    #[test]
    fn rate_windows_round_trip_with_their_grants() {
        let w = RateWindow {
            recent: vec![Slot::one(1), Slot { at: 2, count: 40 }],
            version: 7,
            grants: vec![Grant {
                request_id: "r-1".into(),
                at: 2,
                device_id: DeviceId::parse("PC-1").unwrap(),
                key_id: KeyId::parse("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b").unwrap(),
                digest: "ab".into(),
            }],
        };
        let item = Item::from([
            (
                "recent".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::N("1".into()),
                    AttributeValue::N("2".into()),
                ]),
            ),
            ("version".to_owned(), AttributeValue::N("7".into())),
            ("grants".to_owned(), grants_value(&w.grants)),
        ]);
        // Written before slots were merged: one disclosure per time.
        let mut old = w.clone();
        old.recent[1].count = 1;
        assert_eq!(parse_rate_window(&item).unwrap(), old);
        let mut item = item;
        let (times, counts) = slots_values(&w.recent);
        item.insert("recent".into(), times);
        item.insert("counts".into(), counts);
        assert_eq!(parse_rate_window(&item).unwrap(), w);
        item.insert(
            "counts".into(),
            AttributeValue::L(vec![AttributeValue::N("1".into())]),
        );
        assert_eq!(
            parse_rate_window(&item).unwrap(),
            old,
            "counts that no longer match the times: one disclosure per time"
        );
    }
}
