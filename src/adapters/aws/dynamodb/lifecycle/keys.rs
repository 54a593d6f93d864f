//! Superseded keys, rotation requests and the maintenance scan of keys.

use super::*;

pub(super) async fn superseded_key(
    store: &DynamoStore,
    tenant: &TenantId,
    device: &DeviceId,
    key: &KeyId,
) -> Result<Option<SealedKey>, Unavailable> {
    let resp = store
        .client
        .get_item()
        .table_name(&store.devices)
        .key("pk", s(items::device_pk(tenant, device)))
        .key("sk", s(items::key_sk(key)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| unavailable("GetItem key", &e))?;
    match resp.item {
        Some(item) => Ok(items::parse_pointer_ciphertext(&item)?),
        None => Ok(None),
    }
}

pub(super) async fn rotation_requests(
    store: &DynamoStore,
    tenant: &TenantId,
    cursor: Option<&str>,
    limit: usize,
) -> Result<RotationPage, Unavailable> {
    let mut q = store
        .client
        .query()
        .table_name(&store.devices)
        .index_name(BY_ROTATION.name)
        .key_condition_expression("#h = :h")
        .expression_attribute_names("#h", BY_ROTATION.hash)
        .expression_attribute_values(":h", s(tenant.as_str()))
        .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX));
    if let Some(c) = cursor {
        // `<time>#<device>`: the sort key of the last device of the page.
        let device = c
            .split_once('#')
            .and_then(|(_, d)| DeviceId::parse(d).ok())
            .ok_or_else(|| Unavailable::new(SERVICE, "malformed rotation cursor"))?;
        q = q.set_exclusive_start_key(Some(HashMap::from([
            (BY_ROTATION.hash.to_owned(), s(tenant.as_str())),
            (
                BY_ROTATION.range.unwrap_or("rotation_since").to_owned(),
                s(c),
            ),
            ("pk".to_owned(), s(items::device_pk(tenant, &device))),
            ("sk".to_owned(), s(items::DEVICE_SK)),
        ])));
    }
    let resp = q
        .send()
        .await
        .map_err(|e| unavailable("Query by_rotation", &e))?;
    let mut devices = Vec::new();
    let mut last = None;
    for item in resp.items() {
        last = attr_s(item, "rotation_since").map(str::to_owned);
        let d = items::parse_device(item)?;
        if d.tenant == *tenant {
            devices.push(d);
        }
    }
    let more = resp.last_evaluated_key().is_some_and(|k| !k.is_empty());
    Ok(RotationPage {
        devices,
        next: if more { last } else { None },
    })
}

pub(super) async fn stored_keys(
    store: &DynamoStore,
    tenant: Option<&TenantId>,
    cursor: Option<&str>,
) -> Result<StoredKeyPage, Unavailable> {
    let mut scan = store
        .client
        .scan()
        .table_name(&store.devices)
        .consistent_read(true)
        .projection_expression("#pk, #sk, #t, #d, #s, #kid")
        .expression_attribute_names("#pk", "pk")
        .expression_attribute_names("#sk", "sk")
        .expression_attribute_names("#t", "tenant_id")
        .expression_attribute_names("#d", "device_id")
        .expression_attribute_names("#s", "sealed")
        .expression_attribute_names("#kid", "key_id");
    scan = match tenant {
        Some(t) => scan
            .filter_expression("attribute_exists(#s) AND #t = :t")
            .expression_attribute_values(":t", s(t.as_str())),
        None => scan.filter_expression("attribute_exists(#s)"),
    };
    if let Some(c) = cursor {
        let (pk, sk) = c
            .split_once(CURSOR_SEP)
            .ok_or_else(|| Unavailable::new(SERVICE, "malformed scan cursor"))?;
        scan = scan.set_exclusive_start_key(Some(HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(sk)),
        ])));
    }
    let resp = scan.send().await.map_err(|e| unavailable("Scan", &e))?;
    let mut keys = Vec::new();
    for item in resp.items() {
        let tenant_id = attr_s(item, "tenant_id").and_then(|v| TenantId::parse(v).ok());
        let device_id = attr_s(item, "device_id").and_then(|v| DeviceId::parse(v).ok());
        let (Some(tenant_id), Some(device_id)) = (tenant_id, device_id) else {
            return Err(items::ItemError {
                kind: "device",
                attr: "device_id",
            }
            .into());
        };
        let ctx = |key_id| KeyContext {
            tenant: tenant_id.clone(),
            device: device_id.clone(),
            key_id,
        };
        if attr_s(item, "sk") == Some(items::DEVICE_SK) {
            for (key_id, sealed) in items::parse_sealed_only(item)? {
                keys.push(StoredKey {
                    context: ctx(key_id),
                    sealed,
                    superseded: false,
                });
            }
        } else if let Some(sealed) = items::parse_pointer_ciphertext(item)? {
            let key_id = attr_s(item, "key_id")
                .and_then(|v| KeyId::parse(v).ok())
                .ok_or(items::ItemError {
                    kind: "key pointer",
                    attr: "key_id",
                })?;
            keys.push(StoredKey {
                context: ctx(key_id),
                sealed,
                superseded: true,
            });
        }
    }
    let next = resp.last_evaluated_key().and_then(|k| {
        let pk = attr_s(k, "pk")?;
        let sk = attr_s(k, "sk")?;
        Some(format!("{pk}{CURSOR_SEP}{sk}"))
    });
    Ok(StoredKeyPage { keys, next })
}

pub(super) async fn sweep_expired(
    _store: &DynamoStore,
    _now: OffsetDateTime,
) -> Result<usize, Unavailable> {
    // DynamoDB deletes expired key pointers itself (TTL on expires_at).
    Ok(0)
}
