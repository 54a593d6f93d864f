//! `ImportStore`: the bulk, patient side used by `portal import`.

use super::*;

/// Import-side concurrency: key-pointer queries in flight (one per device
/// written; small and cheap, so more of them).
const POINTER_QUERY_CONCURRENCY: usize = 32;

impl DynamoStore {
    /// Sort keys of the key-pointer items stored in a device's partition
    /// (import path only).
    pub(super) async fn key_pointer_sks(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<HashSet<String>, Unavailable> {
        let q = self
            .client
            .query()
            .table_name(&self.devices)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :kp)")
            .projection_expression("#sk")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":pk", s(items::device_pk(tenant, device)))
            .expression_attribute_values(":kp", s(items::KEY_SK_PREFIX));
        let found = self.query_pages(q, None, "Query key pointers").await?;
        Ok(found
            .iter()
            .filter_map(|i| attr_s(i, "sk").map(str::to_owned))
            .collect())
    }
}

#[async_trait]
impl ImportStore for DynamoStore {
    async fn stored_devices(
        &self,
        devices: &[(TenantId, DeviceId)],
    ) -> Result<HashMap<(TenantId, DeviceId), StoredDevice>, Unavailable> {
        let wanted: HashMap<String, (TenantId, DeviceId)> = devices
            .iter()
            .map(|(t, d)| (items::device_pk(t, d), (t.clone(), d.clone())))
            .collect();
        let pks: Vec<&String> = wanted.keys().collect();
        let mut requests = Vec::new();
        for chunk in pks.chunks(BATCH_GET_MAX) {
            let keys = chunk
                .iter()
                .map(|pk| {
                    HashMap::from([
                        ("pk".to_owned(), s(pk.as_str())),
                        ("sk".to_owned(), s(items::DEVICE_SK)),
                    ])
                })
                .collect();
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression("#pk, #fp, #o")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#fp", "fingerprint")
                .expression_attribute_names("#o", "owner")
                .build()
                .map_err(build_error)?;
            requests.push(HashMap::from([(self.devices.clone(), ka)]));
        }
        let pages: Vec<HashMap<String, Vec<Item>>> = stream::iter(requests)
            .map(|r| self.batch_get(r, IMPORT_BACKOFF, "BatchGetItem stored devices"))
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = HashMap::new();
        for item in pages
            .into_iter()
            .flat_map(|mut p| p.remove(&self.devices).unwrap_or_default())
        {
            let Some(id) = attr_s(&item, "pk").and_then(|pk| wanted.get(pk)) else {
                continue;
            };
            let owner = attr_s(&item, "owner")
                .and_then(|o| UserId::parse(o).ok())
                .ok_or(items::ItemError {
                    kind: "device",
                    attr: "owner",
                })?;
            out.insert(
                id.clone(),
                StoredDevice {
                    fingerprint: items::parse_fingerprint(&item)?,
                    owner,
                },
            );
        }
        Ok(out)
    }

    async fn append_import_events(&self, events: &[AuditEvent]) -> Result<(), Unavailable> {
        // PutItem, conditioned: the audit table is append-only (the import
        // policy has no BatchWriteItem on it).
        let puts: Vec<_> = events.iter().map(|e| self.put_audit_event(e)).collect();
        stream::iter(puts)
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn stored_tenants(
        &self,
        tenants: &[TenantId],
    ) -> Result<HashMap<TenantId, TenantPolicy>, Unavailable> {
        // Tenants are few: one consistent GetItem each.
        let mut out = HashMap::new();
        for t in tenants {
            let resp = self
                .client
                .get_item()
                .table_name(&self.devices)
                .key("pk", s(items::tenant_pk(t)))
                .key("sk", s(items::TENANT_SK))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| unavailable("GetItem tenant", &e))?;
            if let Some(item) = resp.item {
                out.insert(t.clone(), items::parse_policy(&item, "tenant")?);
            }
        }
        Ok(out)
    }

    async fn put_tenants(&self, tenants: &[Tenant]) -> Result<(), Unavailable> {
        for t in tenants {
            // An update, not a put: the settings are replaced, while an open
            // incident stays, and the settings version moves on (a settings
            // change prepared before the import must read again).
            let mut item = items::tenant_item(t);
            let key = HashMap::from([
                ("pk".to_owned(), item.remove("pk").unwrap_or_else(|| s(""))),
                ("sk".to_owned(), item.remove("sk").unwrap_or_else(|| s(""))),
            ]);
            let mut u = self
                .client
                .update_item()
                .table_name(&self.devices)
                .set_key(Some(key))
                .expression_attribute_names("#v", "settings_version")
                .expression_attribute_values(":one", n(1));
            let mut sets = Vec::new();
            let mut removes = Vec::new();
            for (i, attr) in [
                "helpdesk",
                items::SELF_SERVICE_RATE_LIMIT,
                items::HELPDESK_RATE_LIMIT,
            ]
            .into_iter()
            .enumerate()
            {
                if !item.contains_key(attr) {
                    removes.push(format!("#r{i}"));
                    u = u.expression_attribute_names(format!("#r{i}"), attr);
                }
            }
            for (i, (name, value)) in item.into_iter().enumerate() {
                sets.push(format!("#a{i} = :a{i}"));
                u = u
                    .expression_attribute_names(format!("#a{i}"), name)
                    .expression_attribute_values(format!(":a{i}"), value);
            }
            let mut expr = format!("SET {} ADD #v :one", sets.join(", "));
            if !removes.is_empty() {
                expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
            }
            u.update_expression(expr)
                .send()
                .await
                .map_err(|e| unavailable("UpdateItem tenant", &e))?;
        }
        Ok(())
    }

    async fn put_devices(&self, devices: &[ImportDevice]) -> Result<(), Unavailable> {
        // A batch may not name one item twice: the last version of a device wins.
        let mut by_key: HashMap<(&TenantId, &DeviceId), &ImportDevice> = HashMap::new();
        let mut order = Vec::new();
        for d in devices {
            let dev = &d.sealed.device;
            if by_key.insert((&dev.tenant, &dev.device_id), d).is_none() {
                order.push((&dev.tenant, &dev.device_id));
            }
        }
        let devices: Vec<&ImportDevice> = order.iter().map(|k| by_key[k]).collect();

        // Key pointers already stored, to delete the ones a device no longer has.
        let lookups: Vec<_> = devices
            .iter()
            .map(|d| {
                let dev = &d.sealed.device;
                self.key_pointer_sks(&dev.tenant, &dev.device_id)
            })
            .collect();
        let existing: Vec<HashSet<String>> = stream::iter(lookups)
            .buffered(POINTER_QUERY_CONCURRENCY)
            .try_collect()
            .await?;

        let mut pointers = Vec::new();
        let mut device_items = Vec::with_capacity(devices.len());
        for (d, existing) in devices.iter().zip(existing) {
            let dev = &d.sealed.device;
            let mut keep = HashSet::new();
            for k in &dev.keys {
                keep.insert(items::key_sk(&k.key_id));
                let put = PutRequest::builder()
                    .set_item(Some(items::key_pointer_item(dev, k)))
                    .build()
                    .map_err(build_error)?;
                pointers.push(WriteRequest::builder().put_request(put).build());
            }
            for sk in existing.difference(&keep) {
                let del = DeleteRequest::builder()
                    .key("pk", s(items::device_pk(&dev.tenant, &dev.device_id)))
                    .key("sk", s(sk.as_str()))
                    .build()
                    .map_err(build_error)?;
                pointers.push(WriteRequest::builder().delete_request(del).build());
            }
            let put = PutRequest::builder()
                .set_item(Some(items::device_item(d)))
                .build()
                .map_err(build_error)?;
            device_items.push(WriteRequest::builder().put_request(put).build());
        }
        // Pointers first, device items (with the new fingerprint) last: if the
        // import stops half-way, the next run sees an old fingerprint and
        // rewrites the device, pointers included.
        self.batch_write(pointers).await?;
        self.batch_write(device_items).await
    }
}
