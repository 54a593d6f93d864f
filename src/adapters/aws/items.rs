//! How domain records are laid out as DynamoDB items (see `schema.rs` for the
//! tables and indexes). Public so tests and tools can build or inspect raw
//! items; the store is the only writer in production.
//!
//! Timestamps are RFC 3339 strings (full precision, so they read back equal);
//! `ts` in the audit table is UTC with exactly six fractional digits, so it
//! sorts lexicographically in time order.

use crate::domain::audit::{Action, AuditEvent, Outcome, Position};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::{
    Device, Helpdesk, KeyMeta, ManagedBy, RequireReason, Retirement, SealedDevice, SealedKey,
    Tenant, TenantPolicy, VolumeType,
};
use crate::domain::ratelimit::{Grant, RateWindow, Slot};
use crate::ports::{ImportDevice, KeyLocation};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
        Unavailable::new("dynamodb", e)
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn ts(t: OffsetDateTime) -> String {
    // Rfc3339 formatting only fails for years outside 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

/// Typed access to one item's attributes, with errors that name them.
struct Reader<'a> {
    item: &'a Item,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, attr: &'static str) -> ItemError {
        ItemError {
            kind: self.kind,
            attr,
        }
    }
    fn opt_s(&self, attr: &'static str) -> Result<Option<&'a str>, ItemError> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.err(attr)),
        }
    }
    fn s(&self, attr: &'static str) -> Result<&'a str, ItemError> {
        self.opt_s(attr)?.ok_or_else(|| self.err(attr))
    }
    fn parse<T>(
        &self,
        attr: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ItemError> {
        f(self.s(attr)?).ok_or_else(|| self.err(attr))
    }
    fn opt_parse<T>(
        &self,
        attr: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ItemError> {
        self.opt_s(attr)?
            .map(|v| f(v).ok_or_else(|| self.err(attr)))
            .transpose()
    }
    fn opt_time(&self, attr: &'static str) -> Result<Option<OffsetDateTime>, ItemError> {
        self.opt_parse(attr, |v| OffsetDateTime::parse(v, &Rfc3339).ok())
    }
    fn time(&self, attr: &'static str) -> Result<OffsetDateTime, ItemError> {
        self.parse(attr, |v| OffsetDateTime::parse(v, &Rfc3339).ok())
    }
    fn bool_or(&self, attr: &'static str, default: bool) -> Result<bool, ItemError> {
        match self.item.get(attr) {
            None => Ok(default),
            Some(AttributeValue::Bool(b)) => Ok(*b),
            Some(_) => Err(self.err(attr)),
        }
    }
    fn n<T: std::str::FromStr>(&self, attr: &'static str) -> Result<Option<T>, ItemError> {
        match self.item.get(attr) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| self.err(attr)),
            Some(_) => Err(self.err(attr)),
        }
    }
    fn list(&self, attr: &'static str) -> Result<&'a [AttributeValue], ItemError> {
        match self.item.get(attr) {
            None => Ok(&[]),
            Some(AttributeValue::L(v)) => Ok(v),
            Some(_) => Err(self.err(attr)),
        }
    }
    fn opt_map(&self, attr: &'static str) -> Result<Option<&'a Item>, ItemError> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(_) => Err(self.err(attr)),
        }
    }
}

fn helpdesk_value(h: &Helpdesk) -> AttributeValue {
    let mut m = Item::new();
    for (k, v) in [
        ("name", &h.name),
        ("email", &h.email),
        ("phone", &h.phone),
        ("url", &h.url),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), s(v.as_str()));
        }
    }
    AttributeValue::M(m)
}

fn put_policy(item: &mut Item, policy: &TenantPolicy) {
    item.insert(
        "self_service".into(),
        AttributeValue::Bool(policy.self_service),
    );
    if let Some(h) = &policy.helpdesk {
        item.insert("helpdesk".into(), helpdesk_value(h));
    }
    item.insert("require_reason".into(), s(policy.require_reason.as_str()));
    item.insert(
        "superseded_key_retention_days".into(),
        AttributeValue::N(policy.superseded_key_retention_days.to_string()),
    );
    item.insert(
        RETIRED_RETENTION.into(),
        AttributeValue::N(policy.retired_device_retention_days.to_string()),
    );
    for (name, limit) in [
        (SELF_SERVICE_RATE_LIMIT, policy.self_service_rate_limit),
        (HELPDESK_RATE_LIMIT, policy.helpdesk_rate_limit),
    ] {
        if let Some(l) = limit {
            item.insert(name.into(), AttributeValue::N(l.to_string()));
        }
    }
}

/// How long a retired device stays restorable (absent: the default).
pub const RETIRED_RETENTION: &str = "retired_device_retention_days";
/// Optional settings: a settings write removes them when unset.
pub const SELF_SERVICE_RATE_LIMIT: &str = "self_service_rate_limit";
pub const HELPDESK_RATE_LIMIT: &str = "helpdesk_rate_limit";
/// The tenant item's summary of its latest incident (a map); written only
/// with the incident's own record.
pub const INCIDENT: &str = "incident";

/// The `incident` map of a tenant item.
pub fn open_incident_value(i: &OpenIncident) -> AttributeValue {
    let mut m = Item::from([
        ("id".to_owned(), s(i.incident_id.as_str())),
        ("expires_at".to_owned(), s(ts(i.expires_at))),
        (
            "helpdesk_rate_limit".to_owned(),
            AttributeValue::N(i.helpdesk_rate_limit.to_string()),
        ),
    ]);
    if let Some(by) = &i.opened_by {
        m.insert("opened_by".to_owned(), s(by.as_str()));
    }
    AttributeValue::M(m)
}

fn parse_open_incident(m: &Item) -> Result<OpenIncident, ItemError> {
    let r = Reader {
        item: m,
        kind: "tenant incident",
    };
    let bad = |attr| ItemError {
        kind: "tenant incident",
        attr,
    };
    Ok(OpenIncident {
        incident_id: IncidentId::parse(r.s("id")?).map_err(|_| bad("id"))?,
        expires_at: r.time("expires_at")?,
        helpdesk_rate_limit: r
            .n::<u32>("helpdesk_rate_limit")?
            .ok_or(bad("helpdesk_rate_limit"))?,
        opened_by: r
            .opt_s("opened_by")?
            .map(|u| UserId::parse_actor(u).map_err(|_| bad("opened_by")))
            .transpose()?,
    })
}

/// `pk = T#<tenant>`, `sk = INCIDENT#<id>`.
pub fn incident_sk(id: &IncidentId) -> String {
    format!("{INCIDENT_SK_PREFIX}{id}")
}

pub const INCIDENT_SK_PREFIX: &str = "INCIDENT#";

/// An incident's own record.
pub fn incident_item(i: &Incident) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(tenant_pk(&i.tenant))),
        ("sk".to_owned(), s(incident_sk(&i.incident_id))),
        ("incident_id".to_owned(), s(i.incident_id.as_str())),
        ("tenant_id".to_owned(), s(i.tenant.as_str())),
        ("opened_by".to_owned(), s(i.opened_by.as_str())),
        ("opened_at".to_owned(), s(ts(i.opened_at))),
        ("expires_at".to_owned(), s(ts(i.expires_at))),
        ("reason".to_owned(), s(i.reason.as_str())),
        (
            "helpdesk_rate_limit".to_owned(),
            AttributeValue::N(i.helpdesk_rate_limit.to_string()),
        ),
    ]);
    if let Some(c) = i.closed_at {
        item.insert("closed_at".to_owned(), s(ts(c)));
    }
    item
}

pub fn parse_incident(item: &Item) -> Result<Incident, ItemError> {
    let kind = "incident";
    let r = Reader { item, kind };
    let bad = |attr| ItemError { kind, attr };
    Ok(Incident {
        incident_id: IncidentId::parse(r.s("incident_id")?).map_err(|_| bad("incident_id"))?,
        tenant: TenantId::parse(r.s("tenant_id")?).map_err(|_| bad("tenant_id"))?,
        opened_by: UserId::parse_actor(r.s("opened_by")?).map_err(|_| bad("opened_by"))?,
        opened_at: r.time("opened_at")?,
        expires_at: r.time("expires_at")?,
        closed_at: r.opt_time("closed_at")?,
        reason: r.s("reason")?.to_owned(),
        helpdesk_rate_limit: r
            .n::<u32>("helpdesk_rate_limit")?
            .ok_or(bad("helpdesk_rate_limit"))?,
    })
}

/// The tenant policy of a tenant item (no `self_service`: off).
pub fn parse_policy(item: &Item, kind: &'static str) -> Result<TenantPolicy, ItemError> {
    let r = Reader { item, kind };
    let helpdesk = match r.opt_map("helpdesk")? {
        None => None,
        Some(m) => {
            let h = Reader {
                item: m,
                kind: "helpdesk",
            };
            Some(Helpdesk {
                name: h.opt_s("name")?.map(str::to_owned),
                email: h.opt_s("email")?.map(str::to_owned),
                phone: h.opt_s("phone")?.map(str::to_owned),
                url: h.opt_s("url")?.map(str::to_owned),
            })
        }
    };
    let defaults = TenantPolicy::default();
    Ok(TenantPolicy {
        self_service: r.bool_or("self_service", defaults.self_service)?,
        helpdesk,
        require_reason: r
            .opt_parse("require_reason", RequireReason::parse)?
            .unwrap_or(defaults.require_reason),
        superseded_key_retention_days: r
            .n::<u16>("superseded_key_retention_days")?
            .filter(|d| TenantPolicy::RETENTION_DAYS.contains(d))
            .unwrap_or(defaults.superseded_key_retention_days),
        retired_device_retention_days: r
            .n::<u16>(RETIRED_RETENTION)?
            .filter(|d| TenantPolicy::RETENTION_DAYS.contains(d))
            .unwrap_or(defaults.retired_device_retention_days),
        self_service_rate_limit: r
            .n::<u32>(SELF_SERVICE_RATE_LIMIT)?
            .filter(|l| TenantPolicy::RATE_LIMITS.contains(l)),
        helpdesk_rate_limit: r
            .n::<u32>(HELPDESK_RATE_LIMIT)?
            .filter(|l| TenantPolicy::RATE_LIMITS.contains(l)),
        incident: r.opt_map(INCIDENT)?.map(parse_open_incident).transpose()?,
    })
}

/// `pk = T#<tenant>`, `sk = TENANT`, the policy.
pub fn tenant_item(t: &Tenant) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(tenant_pk(&t.id))),
        ("sk".to_owned(), s(TENANT_SK)),
        ("tenant_id".to_owned(), s(t.id.as_str())),
    ]);
    put_policy(&mut item, &t.policy);
    item
}

/// One entry of a device item's `keys` map (metadata only).
pub fn key_meta_value(k: &KeyMeta) -> AttributeValue {
    let mut m = Item::from([
        ("key_id".to_owned(), s(k.key_id.to_string())),
        ("volume_type".to_owned(), s(k.volume_type.as_str())),
        ("created_at".to_owned(), s(ts(k.created_at))),
    ]);
    for (name, t) in [
        ("disclosed_at", k.disclosed_at),
        ("superseded_at", k.superseded_at),
        ("expires_at", k.expires_at),
    ] {
        if let Some(t) = t {
            m.insert(name.to_owned(), s(ts(t)));
        }
    }
    AttributeValue::M(m)
}

/// A device item's `keys`: a map keyed by the canonical key ID, so a
/// disclosure can mark its key (`keys.<id>.disclosed_at`) without reading
/// the item first; `pos` keeps the order the keys were written in. Items
/// written before this read as a list (`parse_device` takes both).
pub fn keys_value(keys: &[KeyMeta]) -> AttributeValue {
    AttributeValue::M(
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let mut v = key_meta_value(k);
                if let AttributeValue::M(m) = &mut v {
                    m.insert("pos".into(), AttributeValue::N(i.to_string()));
                }
                (k.key_id.to_string(), v)
            })
            .collect(),
    )
}

/// Key ID -> escrow digest (`domain::lifecycle::key_digest`); no index
/// projects it.
pub fn digests_value(digests: &[(KeyId, String)]) -> AttributeValue {
    AttributeValue::M(
        digests
            .iter()
            .map(|(id, d)| (id.to_string(), s(d.as_str())))
            .collect(),
    )
}

/// Key ID -> ciphertext: a device item's `sealed` map.
pub fn sealed_value(sealed: &[(KeyId, SealedKey)]) -> AttributeValue {
    AttributeValue::M(
        sealed
            .iter()
            .map(|(id, blob)| (id.to_string(), AttributeValue::B(Blob::new(blob.0.clone()))))
            .collect(),
    )
}

/// The device item: metadata, the key metadata list, the import fingerprint,
/// and the `sealed` map (key ID → ciphertext) that no index projects. The
/// tenant's policy is not copied here: the tenant item is its one source.
pub fn device_item(d: &ImportDevice) -> Item {
    let dev = &d.sealed.device;
    Item::from([
        ("pk".to_owned(), s(device_pk(&dev.tenant, &dev.device_id))),
        ("sk".to_owned(), s(DEVICE_SK)),
        ("tenant_id".to_owned(), s(dev.tenant.as_str())),
        ("device_id".to_owned(), s(dev.device_id.as_str())),
        ("owner".to_owned(), s(dev.owner.as_str())),
        (
            "owner_key".to_owned(),
            s(owner_key(&dev.tenant, &dev.owner)),
        ),
        ("display_name".to_owned(), s(dev.display_name.as_str())),
        ("os".to_owned(), s(dev.os.as_str())),
        ("managed_by".to_owned(), s(dev.managed_by.as_str())),
        ("keys".to_owned(), keys_value(&dev.keys)),
        ("sealed".to_owned(), sealed_value(&d.sealed.sealed)),
        ("digests".to_owned(), digests_value(&d.digests)),
        ("fingerprint".to_owned(), s(d.fingerprint.as_str())),
    ])
}

/// A device enrolled through the API: metadata, no keys yet, version 1.
/// (No policy copy: the tenant item holds the settings.)
pub fn enrolled_device_item(dev: &Device) -> Item {
    let mut item = device_metadata(dev);
    item.extend([
        ("pk".to_owned(), s(device_pk(&dev.tenant, &dev.device_id))),
        ("sk".to_owned(), s(DEVICE_SK)),
        ("tenant_id".to_owned(), s(dev.tenant.as_str())),
        ("device_id".to_owned(), s(dev.device_id.as_str())),
        ("keys".to_owned(), keys_value(&dev.keys)),
        ("sealed".to_owned(), AttributeValue::M(Item::new())),
        ("digests".to_owned(), AttributeValue::M(Item::new())),
        ("version".to_owned(), AttributeValue::N("1".into())),
    ]);
    item
}

/// The attributes `PUT /v1/devices/{id}` sets on a device item.
pub fn device_metadata(dev: &Device) -> Item {
    let mut item = Item::from([
        ("owner".to_owned(), s(dev.owner.as_str())),
        (
            "owner_key".to_owned(),
            s(owner_key(&dev.tenant, &dev.owner)),
        ),
        ("display_name".to_owned(), s(dev.display_name.as_str())),
        ("os".to_owned(), s(dev.os.as_str())),
        ("managed_by".to_owned(), s(dev.managed_by.as_str())),
    ]);
    if let Some(t) = dev.owner_since {
        item.insert(OWNER_SINCE.to_owned(), s(ts(t)));
    }
    item
}

/// When the API last gave the device to its owner (absent: enrolled or
/// imported with that owner).
pub const OWNER_SINCE: &str = "owner_since";
/// A retired device item: when it was retired; its top-level `expires_at`
/// (unix seconds, the table's TTL attribute) is the end of its retention.
pub const RETIRED_AT: &str = "retired_at";
/// The table's TTL attribute (unix seconds).
pub const EXPIRES_AT: &str = "expires_at";

/// `expires_at` as the table's TTL reads it.
pub fn ttl_value(t: OffsetDateTime) -> AttributeValue {
    AttributeValue::N(t.unix_timestamp().to_string())
}

fn parse_retirement(r: &Reader<'_>) -> Result<Option<Retirement>, ItemError> {
    let Some(at) = r.opt_time(RETIRED_AT)? else {
        return Ok(None);
    };
    let expires_at = r
        .n::<i64>(EXPIRES_AT)?
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| r.err(EXPIRES_AT))?;
    Ok(Some(Retirement { at, expires_at }))
}

/// One key-pointer item for the `by_key` index: metadata only, no ciphertext.
pub fn key_pointer_item(dev: &Device, k: &KeyMeta) -> Item {
    let hex = k.key_id.hex();
    Item::from([
        ("pk".to_owned(), s(device_pk(&dev.tenant, &dev.device_id))),
        ("sk".to_owned(), s(key_sk(&k.key_id))),
        ("key_bucket".to_owned(), s(key_bucket(&dev.tenant, &hex))),
        ("key_hex".to_owned(), s(hex)),
        ("tenant_id".to_owned(), s(dev.tenant.as_str())),
        ("key_id".to_owned(), s(k.key_id.to_string())),
        ("device_id".to_owned(), s(dev.device_id.as_str())),
        ("display_name".to_owned(), s(dev.display_name.as_str())),
        ("owner".to_owned(), s(dev.owner.as_str())),
        ("volume_type".to_owned(), s(k.volume_type.as_str())),
        ("created_at".to_owned(), s(ts(k.created_at))),
    ])
}

/// The key-pointer item of a superseded key: the pointer plus the key's
/// ciphertext (moved out of the device item) and `expires_at` in unix
/// seconds, the table's TTL attribute, so DynamoDB deletes it when the
/// tenant's retention ends. No index projects `sealed`.
pub fn superseded_pointer_item(dev: &Device, k: &KeyMeta, sealed: &SealedKey) -> Item {
    let mut item = key_pointer_item(dev, k);
    item.insert(
        "sealed".into(),
        AttributeValue::B(Blob::new(sealed.0.clone())),
    );
    if let Some(t) = k.superseded_at {
        item.insert("superseded_at".into(), s(ts(t)));
    }
    if let Some(t) = k.expires_at {
        item.insert(
            "expires_at".into(),
            AttributeValue::N(t.unix_timestamp().to_string()),
        );
    }
    item
}

/// The ciphertext held on a superseded key's pointer item, if any.
pub fn parse_pointer_ciphertext(item: &Item) -> Result<Option<SealedKey>, ItemError> {
    match item.get("sealed") {
        None => Ok(None),
        Some(AttributeValue::B(b)) => Ok(Some(SealedKey(b.as_ref().to_vec()))),
        Some(_) => Err(ItemError {
            kind: "key pointer",
            attr: "sealed",
        }),
    }
}

/// `rotation_since` of a device with keys due for rotation: the oldest such
/// disclosure and the device, `<RFC 3339 UTC, microseconds>#<device>`; the
/// sort key of the `by_rotation` index and the cursor of its pages.
pub fn rotation_since(disclosed_at: OffsetDateTime, device: &DeviceId) -> String {
    audit_ts(disclosed_at, device.as_str())
}

fn parse_key_meta(v: &AttributeValue) -> Result<KeyMeta, ItemError> {
    let AttributeValue::M(m) = v else {
        return Err(ItemError {
            kind: "device",
            attr: "keys",
        });
    };
    let r = Reader {
        item: m,
        kind: "device key",
    };
    let opt_time = |attr| r.opt_parse(attr, |v| OffsetDateTime::parse(v, &Rfc3339).ok());
    Ok(KeyMeta {
        key_id: r.parse("key_id", |v| KeyId::parse(v).ok())?,
        volume_type: r.parse("volume_type", VolumeType::parse)?,
        created_at: r.time("created_at")?,
        disclosed_at: opt_time("disclosed_at")?,
        superseded_at: opt_time("superseded_at")?,
        expires_at: opt_time("expires_at")?,
    })
}

/// A device item's `keys`: a map (written since escrow exists) or a list
/// (written before), in the order they were written either way.
fn parse_keys(item: &Item) -> Result<Vec<KeyMeta>, ItemError> {
    let err = ItemError {
        kind: "device",
        attr: "keys",
    };
    match item.get("keys") {
        None => Ok(Vec::new()),
        Some(AttributeValue::L(v)) => v.iter().map(parse_key_meta).collect(),
        Some(AttributeValue::M(m)) => {
            let mut out = Vec::with_capacity(m.len());
            for (id, v) in m {
                let k = parse_key_meta(v)?;
                if KeyId::parse(id) != Ok(k.key_id) {
                    return Err(err);
                }
                let pos = match v {
                    AttributeValue::M(e) => Reader {
                        item: e,
                        kind: "device key",
                    }
                    .n::<u64>("pos")?
                    .unwrap_or(u64::MAX),
                    _ => u64::MAX,
                };
                out.push((pos, k));
            }
            out.sort_by_key(|(pos, k)| (*pos, k.key_id));
            Ok(out.into_iter().map(|(_, k)| k).collect())
        }
        Some(_) => Err(err),
    }
}

/// The stored escrow digests of a device item (none before escrow existed).
pub fn parse_digests(item: &Item) -> Result<Vec<(KeyId, String)>, ItemError> {
    let r = Reader {
        item,
        kind: "device",
    };
    let err = || ItemError {
        kind: "device",
        attr: "digests",
    };
    let mut out = Vec::new();
    if let Some(m) = r.opt_map("digests")? {
        for (k, v) in m {
            let id = KeyId::parse(k).map_err(|_| err())?;
            let AttributeValue::S(d) = v else {
                return Err(err());
            };
            out.push((id, d.clone()));
        }
    }
    out.sort();
    Ok(out)
}

/// A device item's record version (0 before versions existed).
pub fn parse_version(item: &Item) -> Result<u64, ItemError> {
    Reader {
        item,
        kind: "device",
    }
    .n("version")
    .map(Option::unwrap_or_default)
}

/// Device metadata from a device item or its `by_owner` projection.
pub fn parse_device(item: &Item) -> Result<Device, ItemError> {
    let r = Reader {
        item,
        kind: "device",
    };
    Ok(Device {
        tenant: r.parse("tenant_id", |v| TenantId::parse(v).ok())?,
        device_id: r.parse("device_id", |v| DeviceId::parse(v).ok())?,
        owner: r.parse("owner", |v| UserId::parse(v).ok())?,
        display_name: r.s("display_name")?.to_owned(),
        os: r.s("os")?.to_owned(),
        managed_by: r.parse("managed_by", ManagedBy::parse)?,
        keys: parse_keys(item)?,
        owner_since: r.opt_time(OWNER_SINCE)?,
        retired: parse_retirement(&r)?,
    })
}

/// A full device item (metadata and sealed keys), with its tenant's policy
/// as read from the tenant item. Policy attributes an older version copied
/// onto device items are ignored.
pub fn parse_sealed_device(item: &Item, policy: TenantPolicy) -> Result<SealedDevice, ItemError> {
    Ok(SealedDevice {
        device: parse_device(item)?,
        policy,
        sealed: parse_sealed_only(item)?,
    })
}

/// A device item's `sealed` map (key ID -> ciphertext), sorted by key ID.
pub fn parse_sealed_only(item: &Item) -> Result<Vec<(KeyId, SealedKey)>, ItemError> {
    let r = Reader {
        item,
        kind: "device",
    };
    let err = || ItemError {
        kind: "device",
        attr: "sealed",
    };
    let mut sealed = Vec::new();
    if let Some(m) = r.opt_map("sealed")? {
        for (k, v) in m {
            let id = KeyId::parse(k).map_err(|_| err())?;
            let AttributeValue::B(b) = v else {
                return Err(err());
            };
            sealed.push((id, SealedKey(b.as_ref().to_vec())));
        }
    }
    sealed.sort_by_key(|(id, _)| *id);
    Ok(sealed)
}

/// The stored import fingerprint of a device item, if any.
pub fn parse_fingerprint(item: &Item) -> Result<Option<String>, ItemError> {
    Reader {
        item,
        kind: "device",
    }
    .opt_s("fingerprint")
    .map(|v| v.map(str::to_owned))
}

/// A row of the `by_key` index.
pub fn parse_key_location(item: &Item) -> Result<KeyLocation, ItemError> {
    let r = Reader {
        item,
        kind: "key pointer",
    };
    Ok(KeyLocation {
        key_id: r.parse("key_id", |v| KeyId::parse(v).ok())?,
        device_id: r.parse("device_id", |v| DeviceId::parse(v).ok())?,
        display_name: r.s("display_name")?.to_owned(),
        owner: r.parse("owner", |v| UserId::parse(v).ok())?,
        volume_type: r.parse("volume_type", VolumeType::parse)?,
        created_at: r.time("created_at")?,
    })
}

/// The audit item: the event's fields plus its key and index attributes.
pub fn audit_item(e: &AuditEvent) -> Item {
    let pk = audit_pk(&e.tenant_id, &e.actor, &e.request_id, &e.event_id);
    let shard = audit_shard(&pk);
    let mut item = Item::from([
        ("tshard".to_owned(), s(tshard(&e.tenant_id, shard))),
        ("ts".to_owned(), s(Position::of(e).key())),
        ("actor_key".to_owned(), s(actor_key(&e.tenant_id, &e.actor))),
        ("event_id".to_owned(), s(e.event_id.as_str())),
        ("time".to_owned(), s(ts(e.time))),
        ("tenant_id".to_owned(), s(e.tenant_id.as_str())),
        ("actor".to_owned(), s(e.actor.as_str())),
        ("action".to_owned(), s(e.action.as_str())),
        ("outcome".to_owned(), s(e.outcome.as_str())),
        ("reason".to_owned(), s(e.reason.as_str())),
        ("request_id".to_owned(), s(e.request_id.as_str())),
        ("pk".to_owned(), s(pk)),
    ]);
    if let Some(d) = &e.device_id {
        item.insert("device_id".into(), s(d.as_str()));
        item.insert("device_key".into(), s(device_key(&e.tenant_id, d)));
    }
    for (k, v) in [
        ("key_id", e.key_id.map(|k| k.to_string())),
        ("justification", e.justification.clone()),
        ("source_ip", e.source_ip.clone()),
        ("user_agent", e.user_agent.clone()),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), s(v));
        }
    }
    item
}

pub fn parse_audit_event(item: &Item) -> Result<AuditEvent, ItemError> {
    let r = Reader {
        item,
        kind: "audit",
    };
    Ok(AuditEvent {
        // Events written before there were other actions are disclosures.
        action: r
            .opt_parse("action", Action::parse)?
            .unwrap_or(Action::Disclose),
        event_id: r.s("event_id")?.to_owned(),
        time: r.time("time")?,
        tenant_id: r.parse("tenant_id", |v| TenantId::parse(v).ok())?,
        actor: r.parse("actor", |v| UserId::parse_actor(v).ok())?,
        device_id: r.opt_parse("device_id", |v| DeviceId::parse(v).ok())?,
        key_id: r.opt_parse("key_id", |v| KeyId::parse(v).ok())?,
        outcome: r.parse("outcome", Outcome::parse)?,
        reason: r.s("reason")?.to_owned(),
        justification: r.opt_s("justification")?.map(str::to_owned),
        source_ip: r.opt_s("source_ip")?.map(str::to_owned),
        user_agent: r.opt_s("user_agent")?.map(str::to_owned),
        request_id: r.s("request_id")?.to_owned(),
    })
}

/// The `grants` attribute of a rate-limit item: a list of maps.
pub fn grants_value(grants: &[Grant]) -> AttributeValue {
    AttributeValue::L(
        grants
            .iter()
            .map(|g| {
                AttributeValue::M(Item::from([
                    ("rid".to_owned(), s(g.request_id.as_str())),
                    ("at".to_owned(), AttributeValue::N(g.at.to_string())),
                    ("dev".to_owned(), s(g.device_id.as_str())),
                    ("key".to_owned(), s(g.key_id.to_string())),
                    ("dig".to_owned(), s(g.digest.as_str())),
                ]))
            })
            .collect(),
    )
}

fn parse_grant(v: &AttributeValue) -> Result<Grant, ItemError> {
    let AttributeValue::M(m) = v else {
        return Err(ItemError {
            kind: "rate limit",
            attr: "grants",
        });
    };
    let r = Reader {
        item: m,
        kind: "rate limit grant",
    };
    Ok(Grant {
        request_id: r.s("rid")?.to_owned(),
        at: r.n("at")?.ok_or_else(|| r.err("at"))?,
        device_id: r.parse("dev", |v| DeviceId::parse(v).ok())?,
        key_id: r.parse("key", |v| KeyId::parse(v).ok())?,
        digest: r.s("dig")?.to_owned(),
    })
}

/// The `recent` and `counts` attributes of a rate-limit item: the slots'
/// times and, in the same order, their counts.
pub fn slots_values(slots: &[Slot]) -> (AttributeValue, AttributeValue) {
    (
        AttributeValue::L(
            slots
                .iter()
                .map(|s| AttributeValue::N(s.at.to_string()))
                .collect(),
        ),
        AttributeValue::L(
            slots
                .iter()
                .map(|s| AttributeValue::N(s.count.to_string()))
                .collect(),
        ),
    )
}

/// A rate-limit item (`recent`, `counts`, `version`, `grants`); no item is an
/// empty window. An item without `counts` (written before slots were
/// merged) counts one disclosure per time.
pub fn parse_rate_window(item: &Item) -> Result<RateWindow, ItemError> {
    let r = Reader {
        item,
        kind: "rate limit",
    };
    let numbers = |attr: &'static str| -> Result<Option<Vec<i64>>, ItemError> {
        let err = || ItemError {
            kind: "rate limit",
            attr,
        };
        if !item.contains_key(attr) {
            return Ok(None);
        }
        r.list(attr)?
            .iter()
            .map(|v| match v {
                AttributeValue::N(n) => n.parse::<i64>().map_err(|_| err()),
                _ => Err(err()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    let times = numbers("recent")?.unwrap_or_default();
    // Without `counts`, or with counts that no longer match the times (a
    // function of the previous release rewrote `recent` during a deploy),
    // each time is one disclosure: what that release itself counts.
    let counts = match numbers("counts")? {
        Some(c) if c.len() == times.len() && c.iter().all(|&n| u32::try_from(n).is_ok()) => c,
        _ => vec![1; times.len()],
    };
    let recent = times
        .into_iter()
        .zip(counts)
        .map(|(at, count)| Slot {
            at,
            count: count as u32,
        })
        .collect();
    Ok(RateWindow {
        recent,
        version: r.n("version")?.unwrap_or(0),
        grants: r
            .list("grants")?
            .iter()
            .map(parse_grant)
            .collect::<Result<_, _>>()?,
    })
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
