//! A device's record: read for a write, escrow, upsert, retire, restore.

use super::*;

pub(super) async fn device_for_write(
    store: &DynamoStore,
    tenant: &TenantId,
    device: &DeviceId,
) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable> {
    let keys = KeysAndAttributes::builder()
        .keys(DynamoStore::device_key(tenant, device))
        .keys(DynamoStore::tenant_key(tenant))
        .consistent_read(true)
        .build()
        .map_err(build_error)?;
    let mut got = store
        .batch_get(
            HashMap::from([(store.devices.clone(), keys)]),
            REQUEST_BACKOFF,
            "BatchGetItem",
        )
        .await?;
    let found = got.remove(&store.devices).unwrap_or_default();
    let sk_is = |item: &Item, sk: &str| attr_s(item, "sk") == Some(sk);
    let policy = match found.iter().find(|i| sk_is(i, items::TENANT_SK)) {
        Some(t) => items::parse_policy(t, "tenant")?,
        None => TenantPolicy::default(),
    };
    let record = match found.iter().find(|i| sk_is(i, items::DEVICE_SK)) {
        None => None,
        Some(item) => {
            let sealed = items::parse_sealed_device(item, policy.clone())?;
            if sealed.device.tenant != *tenant || sealed.device.device_id != *device {
                None
            } else {
                Some(DeviceRecord {
                    device: sealed.device,
                    current: sealed.sealed,
                    digests: items::parse_digests(item)?,
                    version: items::parse_version(item)?,
                })
            }
        }
    };
    Ok((record, policy))
}

pub(super) async fn commit_escrow(
    store: &DynamoStore,
    w: &EscrowWrite,
    event: &AuditEvent,
) -> Result<WriteOutcome, Unavailable> {
    let dev = &w.device;
    let mut sets = vec![
        ("keys", items::keys_value(&dev.keys)),
        ("sealed", items::sealed_value(&w.current)),
        ("digests", items::digests_value(&w.digests)),
    ];
    let mut removes: Vec<&'static str> = Vec::new();
    match rotation(dev) {
        Some(since) => {
            sets.push(("rotation_tenant", s(dev.tenant.as_str())));
            sets.push(("rotation_since", s(since)));
        }
        None => removes.extend(["rotation_tenant", "rotation_since"]),
    }
    let mut writes = vec![store.device_update(dev, w.expected_version, sets, &removes)?];
    // The new key's pointer, and the superseded keys' pointers with their
    // ciphertexts (these expire by TTL).
    if !w.added.is_superseded() {
        writes.push(put(&store.devices, items::key_pointer_item(dev, &w.added))?);
    }
    for (meta, sealed) in &w.superseded {
        writes.push(put(
            &store.devices,
            items::superseded_pointer_item(dev, meta, sealed),
        )?);
    }
    writes.push(audit_put(&store.audit, event)?);
    let codes = store
        .transact_codes(writes, "TransactWriteItems escrow")
        .await?;
    DynamoStore::outcome(codes, "TransactWriteItems escrow")
}

pub(super) async fn commit_upsert(
    store: &DynamoStore,
    w: &DeviceUpsert,
    event: &AuditEvent,
) -> Result<WriteOutcome, Unavailable> {
    let dev = &w.device;
    let mut writes = Vec::new();
    match w.expected_version {
        None => {
            let p = Put::builder()
                .table_name(&store.devices)
                .set_item(Some(items::enrolled_device_item(dev)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error)?;
            writes.push(TransactWriteItem::builder().put(p).build());
        }
        Some(v) => {
            let mut sets: Vec<(&'static str, AttributeValue)> = Vec::new();
            for name in [
                "owner",
                "owner_key",
                "display_name",
                "os",
                "managed_by",
                items::OWNER_SINCE,
            ] {
                if let Some(value) = items::device_metadata(dev).remove(name) {
                    sets.push((name, value));
                }
            }
            sets.push(("keys", items::keys_value(&dev.keys)));
            writes.push(store.device_update(dev, v, sets, &[])?);
            // The key pointers repeat owner and display name for the
            // helpdesk lookup.
            for k in &dev.keys {
                let u = Update::builder()
                    .table_name(&store.devices)
                    .key("pk", s(items::device_pk(&dev.tenant, &dev.device_id)))
                    .key("sk", s(items::key_sk(&k.key_id)))
                    .update_expression("SET #o = :o, #n = :n")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_names("#o", "owner")
                    .expression_attribute_names("#n", "display_name")
                    .expression_attribute_values(":o", s(dev.owner.as_str()))
                    .expression_attribute_values(":n", s(dev.display_name.as_str()))
                    .build()
                    .map_err(build_error)?;
                writes.push(TransactWriteItem::builder().update(u).build());
            }
        }
    }
    writes.push(audit_put(&store.audit, event)?);
    let codes = store
        .transact_codes(writes, "TransactWriteItems device")
        .await?;
    // A key pointer that vanished (its retention ended): read again.
    if let Some(c) = &codes
        && c.len() > 2
        && c[1..c.len() - 1].iter().any(|x| x == CCF)
    {
        return Ok(WriteOutcome::Conflict);
    }
    DynamoStore::outcome(codes, "TransactWriteItems device")
}

pub(super) async fn retire_device(
    store: &DynamoStore,
    device: &Device,
    expected_version: u64,
    event: &AuditEvent,
) -> Result<WriteOutcome, Unavailable> {
    let Some(r) = device.retired else {
        return Ok(WriteOutcome::Conflict);
    };
    // Out of the owner index and the rotation requests; the item and
    // every key pointer expire by TTL when the retention ends.
    let sets = vec![
        (items::RETIRED_AT, s(items::ts(r.at))),
        (items::EXPIRES_AT, items::ttl_value(r.expires_at)),
    ];
    let removes = ["owner_key", "rotation_tenant", "rotation_since"];
    let head = store.device_update(device, expected_version, sets, &removes)?;
    let pointers = device
        .keys
        .iter()
        .map(|k| {
            // A superseded key keeps an earlier expiry of its own.
            store.pointer_update(
                device,
                &k.key_id,
                "SET #e = if_not_exists(#e, :e)",
                Some(items::ttl_value(r.expires_at)),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    store
        .commit_with_pointers(head, pointers, event, "retire")
        .await
}

pub(super) async fn restore_device(
    store: &DynamoStore,
    device: &Device,
    expected_version: u64,
    event: &AuditEvent,
) -> Result<WriteOutcome, Unavailable> {
    let mut sets = vec![(
        "owner_key",
        s(items::owner_key(&device.tenant, &device.owner)),
    )];
    if let Some(since) = rotation(device) {
        sets.push(("rotation_tenant", s(device.tenant.as_str())));
        sets.push(("rotation_since", s(since)));
    }
    let removes = [items::RETIRED_AT, items::EXPIRES_AT];
    let head = store.device_update(device, expected_version, sets, &removes)?;
    // Current keys' pointers expire no more; superseded ones keep their
    // own expiry, which the retirement did not touch when earlier.
    let pointers = device
        .keys
        .iter()
        .map(|k| match k.expires_at {
            None => store.pointer_update(device, &k.key_id, "REMOVE #e", None),
            Some(t) => {
                store.pointer_update(device, &k.key_id, "SET #e = :e", Some(items::ttl_value(t)))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    store
        .commit_with_pointers(head, pointers, event, "restore")
        .await
}
