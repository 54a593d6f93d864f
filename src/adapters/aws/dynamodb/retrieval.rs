//! One disclosure: the consistent read before it, and the transaction that
//! audits it, counts it against the rate window and marks the key.

use super::*;

pub(super) async fn load_for_disclosure(
    store: &DynamoStore,
    tenant: &TenantId,
    device: &DeviceId,
    actor: &UserId,
) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
    let device_pk = items::device_pk(tenant, device);
    let tenant_pk = items::tenant_pk(tenant);
    let (device_items, window) = store
        .read_with_rate_window(
            &[
                (&device_pk, items::DEVICE_SK),
                (&tenant_pk, items::TENANT_SK),
            ],
            tenant,
            actor,
        )
        .await?;
    let (mut device_item, mut tenant_item) = (None, None);
    for item in device_items {
        match attr_s(&item, "pk") {
            Some(pk) if pk == device_pk => device_item = Some(item),
            Some(pk) if pk == tenant_pk => tenant_item = Some(item),
            _ => {}
        }
    }
    let policy = match tenant_item {
        Some(item) => items::parse_policy(&item, "tenant")?,
        None => TenantPolicy::default(),
    };
    let sealed = match device_item {
        Some(item) => {
            let d = items::parse_sealed_device(&item, policy)?;
            // The key already names the tenant and device; check anyway.
            (d.device.tenant == *tenant && d.device.device_id == *device).then_some(d)
        }
        None => None,
    };
    Ok((sealed, window))
}

pub(super) async fn commit_disclosure(
    store: &DynamoStore,
    event: &AuditEvent,
    rate: &RateUpdate,
) -> Result<Commit, Unavailable> {
    store.commit_disclosure_marked(event, rate, true).await
}

impl DynamoStore {
    /// The device-item update that marks a granted disclosure: the key's
    /// first `disclosed_at`, the device's rotation request (`by_rotation`)
    /// and a new record version, so an escrow that read the device before
    /// this disclosure cannot overwrite the mark. Only for a current key in
    /// a device item with a `keys` map; otherwise the condition fails.
    pub(super) fn disclosure_mark(
        &self,
        event: &AuditEvent,
    ) -> Result<Option<Update>, Unavailable> {
        let (Some(device), Some(key_id)) = (&event.device_id, event.key_id) else {
            return Ok(None);
        };
        let since = items::rotation_since(event.time, device);
        Update::builder()
            .table_name(&self.devices)
            .key("pk", s(items::device_pk(&event.tenant_id, device)))
            .key("sk", s(items::DEVICE_SK))
            .update_expression(
                "SET #k.#id.#da = if_not_exists(#k.#id.#da, :now), \
                 #v = if_not_exists(#v, :zero) + :one, #rt = :tenant, \
                 #rs = if_not_exists(#rs, :since)",
            )
            // A retired device asks for no rotation: it is out of service.
            .condition_expression(
                "attribute_exists(#k.#id) AND attribute_not_exists(#k.#id.#sa) \
                 AND attribute_not_exists(#ra)",
            )
            .expression_attribute_names("#ra", items::RETIRED_AT)
            .expression_attribute_names("#k", "keys")
            .expression_attribute_names("#id", key_id.to_string())
            .expression_attribute_names("#da", "disclosed_at")
            .expression_attribute_names("#sa", "superseded_at")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#rt", "rotation_tenant")
            .expression_attribute_names("#rs", "rotation_since")
            .expression_attribute_values(":now", s(items::ts(event.time)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":tenant", s(event.tenant_id.as_str()))
            .expression_attribute_values(":since", s(since))
            .build()
            .map(Some)
            .map_err(build_error)
    }

    /// These items of the devices table (`(pk, sk)`) and the caller's rate
    /// window, in one consistent `BatchGetItem`.
    pub(super) async fn read_with_rate_window(
        &self,
        keys: &[(&str, &str)],
        tenant: &TenantId,
        actor: &UserId,
    ) -> Result<(Vec<Item>, RateWindow), Unavailable> {
        let mut devices = KeysAndAttributes::builder().consistent_read(true);
        for (pk, sk) in keys {
            devices = devices.keys(HashMap::from([
                ("pk".to_owned(), s(*pk)),
                ("sk".to_owned(), s(*sk)),
            ]));
        }
        let rate_key = KeysAndAttributes::builder()
            .keys(HashMap::from([(
                "pk".to_owned(),
                s(items::rate_pk(tenant, actor)),
            )]))
            .consistent_read(true)
            .build()
            .map_err(build_error)?;
        let mut got = self
            .batch_get(
                HashMap::from([
                    (self.devices.clone(), devices.build().map_err(build_error)?),
                    (self.rate_limits.clone(), rate_key),
                ]),
                REQUEST_BACKOFF,
                "BatchGetItem",
            )
            .await?;
        let window = match got
            .remove(&self.rate_limits)
            .and_then(|v| v.into_iter().next())
        {
            Some(item) => items::parse_rate_window(&item)?,
            None => RateWindow::default(),
        };
        Ok((got.remove(&self.devices).unwrap_or_default(), window))
    }

    /// The conditional write of the caller's rate window.
    pub(super) fn rate_update(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
    ) -> Result<Update, Unavailable> {
        let (times, counts) = items::slots_values(&rate.window.recent);
        let mut update = Update::builder()
            .table_name(&self.rate_limits)
            .key("pk", s(items::rate_pk(&event.tenant_id, &event.actor)))
            .update_expression("SET #r = :r, #c = :c, #v = :v, #e = :e, #g = :g")
            .expression_attribute_names("#r", "recent")
            .expression_attribute_names("#c", "counts")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_names("#g", "grants")
            .expression_attribute_values(":r", times)
            .expression_attribute_values(":c", counts)
            .expression_attribute_values(":v", n(rate.window.version))
            .expression_attribute_values(":e", n(rate.expires_at))
            .expression_attribute_values(":g", items::grants_value(&rate.window.grants));
        update = if rate.expected_version == 0 {
            update.condition_expression("attribute_not_exists(pk)")
        } else {
            update
                .condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(rate.expected_version))
        };
        update.build().map_err(build_error)
    }

    /// The granted event, the rate window and (with `mark`) the key's
    /// `disclosed_at` with its rotation request, in one transaction.
    pub(super) async fn commit_disclosure_marked(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
        mark: bool,
    ) -> Result<Commit, Unavailable> {
        let put = self.audit_put(event)?;
        let update = self.rate_update(event, rate)?;
        let disclosed = if mark {
            self.disclosure_mark(event)?
        } else {
            None
        };
        let has_mark = disclosed.is_some();
        let mut writes = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(update).build(),
        ];
        writes.extend(disclosed.map(|u| TransactWriteItem::builder().update(u).build()));
        match self.transact(writes, "TransactWriteItems").await? {
            Ok(()) => Ok(Commit::Written),
            // The window changed since it was read: read again and retry.
            Err(c) if c.failed_condition(1) => Ok(Commit::RateConflict),
            // The key is superseded (or the device item predates the keys
            // map, or was retired meanwhile): no rotation to request. The
            // disclosure itself is recorded without the mark.
            Err(c) if has_mark && c.failed_condition(2) => {
                Box::pin(self.commit_disclosure_marked(event, rate, false)).await
            }
            // Another transaction touched one of the items at the same
            // moment: nothing was written; reading again is safe.
            Err(c) if c.conflict() => Ok(Commit::RateConflict),
            Err(c) => Err(c.error("TransactWriteItems")),
        }
    }
}
