//! Device items, their keys, and the key-pointer items that find them.

use super::*;

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

pub(super) fn parse_retirement(r: &Reader<'_>) -> Result<Option<Retirement>, ItemError> {
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

pub(super) fn parse_key_meta(v: &AttributeValue) -> Result<KeyMeta, ItemError> {
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
pub(super) fn parse_keys(item: &Item) -> Result<Vec<KeyMeta>, ItemError> {
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
