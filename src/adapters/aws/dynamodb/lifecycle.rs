//! `LifecycleStore` on DynamoDB (items in `schema.rs` / `items.rs`).
//!
//! Calls per operation (when nothing is throttled):
//! - `device_for_write`: one `BatchGetItem` (device + tenant item);
//! - `commit_escrow`, `commit_upsert`, `commit_settings`: one
//!   `TransactWriteItems` each (the change, conditional on the version
//!   read, and the audit `Put`);
//! - `retire_device`, `restore_device`: one `TransactWriteItems` (the
//!   device item, its key pointers' TTL, the audit `Put`);
//! - `superseded_key`: one `GetItem`;
//! - `rotation_requests`: one `Query` on `by_rotation`;
//! - `tenant_settings`: one `GetItem`;
//! - `stored_keys` (maintenance only): one `Scan` page.
//!
//! Superseded keys expire by the table's TTL on `expires_at`; reads check
//! `expires_at` themselves, since TTL deletes within days, not at once.

use super::{DynamoStore, REQUEST_BACKOFF, SERVICE, attr_s, build_error, n, s, unavailable};
use crate::adapters::aws::items::{self, Item};
use crate::adapters::aws::schema::BY_ROTATION;
use crate::domain::audit::AuditEvent;
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::{Device, KeyContext, SealedKey, TenantPolicy};
use crate::ports::{
    DeviceRecord, DeviceUpsert, EscrowWrite, LifecycleStore, RotationPage, StoredKey,
    StoredKeyPage, WriteOutcome,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use std::collections::HashMap;
use time::OffsetDateTime;

/// `TransactWriteItems` accepts at most this many items.
const TRANSACT_MAX: usize = 100;
const CCF: &str = "ConditionalCheckFailed";

/// Separates `pk` and `sk` in a scan cursor (neither can contain it).
const CURSOR_SEP: char = '\n';

fn audit_put(table: &str, event: &AuditEvent) -> Result<TransactWriteItem, Unavailable> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(items::audit_item(event)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn put(table: &str, item: Item) -> Result<TransactWriteItem, Unavailable> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// The rotation attributes of a device after a write: set while a key is
/// due (the oldest such disclosure first), removed otherwise.
fn rotation(device: &Device) -> Option<String> {
    device
        .keys
        .iter()
        .filter(|k| k.rotation_due())
        .filter_map(|k| k.disclosed_at)
        .min()
        .map(|t| items::rotation_since(t, &device.device_id))
}

/// What a cancelled transaction says about the item at `i`.
fn code(codes: &[String], i: usize) -> &str {
    codes.get(i).map(String::as_str).unwrap_or("None")
}

impl DynamoStore {
    /// `Ok(None)`: written. `Ok(Some(codes))`: cancelled, with the
    /// cancellation code of each item. Anything else is unavailable.
    async fn transact_codes(
        &self,
        writes: Vec<TransactWriteItem>,
        op: &'static str,
    ) -> Result<Option<Vec<String>>, Unavailable> {
        if writes.len() > TRANSACT_MAX {
            return Err(Unavailable::new(
                SERVICE,
                format!("{op}: {} items exceed one transaction", writes.len()),
            ));
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(tc) = se.err() else {
                    unreachable!()
                };
                Ok(Some(
                    tc.cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_owned())
                        .collect(),
                ))
            }
            Err(e) => Err(unavailable(op, &e)),
        }
    }

    /// The outcome of a versioned write whose first item is the record and
    /// whose last is the audit event.
    fn outcome(codes: Option<Vec<String>>, op: &'static str) -> Result<WriteOutcome, Unavailable> {
        let Some(codes) = codes else {
            return Ok(WriteOutcome::Written);
        };
        if code(&codes, 0) == CCF {
            return Ok(WriteOutcome::Conflict);
        }
        if codes.last().map(String::as_str) == Some(CCF) {
            return Ok(WriteOutcome::RequestIdReused);
        }
        if codes.iter().any(|c| c == "TransactionConflict") {
            return Ok(WriteOutcome::Conflict);
        }
        Err(Unavailable::new(
            SERVICE,
            format!("{op}: transaction cancelled ({})", codes.join(", ")),
        ))
    }

    fn device_key(tenant: &TenantId, device: &DeviceId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(items::device_pk(tenant, device))),
            ("sk".to_owned(), s(items::DEVICE_SK)),
        ])
    }

    fn tenant_key(tenant: &TenantId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(items::tenant_pk(tenant))),
            ("sk".to_owned(), s(items::TENANT_SK)),
        ])
    }

    /// A versioned update of the device item: `sets` are (attribute, value)
    /// pairs, `removes` attribute names; the version moves on by one.
    fn device_update(
        &self,
        device: &Device,
        expected_version: u64,
        sets: Vec<(&'static str, AttributeValue)>,
        removes: &[&'static str],
    ) -> Result<TransactWriteItem, Unavailable> {
        let mut u = Update::builder()
            .table_name(&self.devices)
            .set_key(Some(Self::device_key(&device.tenant, &device.device_id)))
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":newv", n(expected_version + 1));
        let mut set_parts = vec!["#v = :newv".to_owned()];
        for (i, (name, value)) in sets.into_iter().enumerate() {
            set_parts.push(format!("#s{i} = :s{i}"));
            u = u
                .expression_attribute_names(format!("#s{i}"), name)
                .expression_attribute_values(format!(":s{i}"), value);
        }
        let mut expr = format!("SET {}", set_parts.join(", "));
        if !removes.is_empty() {
            let parts: Vec<String> = (0..removes.len()).map(|i| format!("#r{i}")).collect();
            expr.push_str(&format!(" REMOVE {}", parts.join(", ")));
            for (i, name) in removes.iter().enumerate() {
                u = u.expression_attribute_names(format!("#r{i}"), *name);
            }
        }
        u = u.update_expression(expr);
        u = if expected_version == 0 {
            u.condition_expression("attribute_exists(pk) AND attribute_not_exists(#v)")
        } else {
            u.condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        let update = u.build().map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

impl DynamoStore {
    /// An update of one key pointer's TTL (`#e` is `expires_at`), only if
    /// the pointer is still there (a vanished one means: read again).
    fn pointer_update(
        &self,
        device: &Device,
        key: &KeyId,
        expression: &str,
        value: Option<AttributeValue>,
    ) -> Result<TransactWriteItem, Unavailable> {
        let mut u = Update::builder()
            .table_name(&self.devices)
            .key("pk", s(items::device_pk(&device.tenant, &device.device_id)))
            .key("sk", s(items::key_sk(key)))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#e", items::EXPIRES_AT);
        if let Some(v) = value {
            u = u.expression_attribute_values(":e", v);
        }
        Ok(TransactWriteItem::builder()
            .update(u.build().map_err(build_error)?)
            .build())
    }

    /// The device update, its key pointers' updates and the audit event in
    /// one transaction; pointers beyond one transaction (a device with more
    /// than 98 keys) follow in transactions of their own, after the device
    /// changed, so the device never changes unaudited.
    async fn commit_with_pointers(
        &self,
        head: TransactWriteItem,
        mut pointers: Vec<TransactWriteItem>,
        event: &AuditEvent,
        op: &'static str,
    ) -> Result<WriteOutcome, Unavailable> {
        let rest = if pointers.len() > TRANSACT_MAX - 2 {
            pointers.split_off(TRANSACT_MAX - 2)
        } else {
            Vec::new()
        };
        let mut writes = vec![head];
        writes.extend(pointers);
        writes.push(audit_put(&self.audit, event)?);
        let codes = self.transact_codes(writes, op).await?;
        // A key pointer that vanished (its retention ended): read again.
        if let Some(c) = &codes
            && c.len() > 2
            && c[1..c.len() - 1].iter().any(|x| x == CCF)
        {
            return Ok(WriteOutcome::Conflict);
        }
        let outcome = Self::outcome(codes, op)?;
        if outcome == WriteOutcome::Written {
            let mut rest = rest;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(TRANSACT_MAX));
                let chunk = std::mem::replace(&mut rest, tail);
                if let Some(c) = self.transact_codes(chunk, op).await? {
                    return Err(Unavailable::new(
                        SERVICE,
                        format!("{op}: key pointers not updated ({})", c.join(", ")),
                    ));
                }
            }
        }
        Ok(outcome)
    }
}

#[async_trait]
impl LifecycleStore for DynamoStore {
    async fn device_for_write(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable> {
        let keys = KeysAndAttributes::builder()
            .keys(Self::device_key(tenant, device))
            .keys(Self::tenant_key(tenant))
            .consistent_read(true)
            .build()
            .map_err(build_error)?;
        let mut got = self
            .batch_get(
                HashMap::from([(self.devices.clone(), keys)]),
                REQUEST_BACKOFF,
                "BatchGetItem",
            )
            .await?;
        let found = got.remove(&self.devices).unwrap_or_default();
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

    async fn commit_escrow(
        &self,
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
        let mut writes = vec![self.device_update(dev, w.expected_version, sets, &removes)?];
        // The new key's pointer, and the superseded keys' pointers with their
        // ciphertexts (these expire by TTL).
        if !w.added.is_superseded() {
            writes.push(put(&self.devices, items::key_pointer_item(dev, &w.added))?);
        }
        for (meta, sealed) in &w.superseded {
            writes.push(put(
                &self.devices,
                items::superseded_pointer_item(dev, meta, sealed),
            )?);
        }
        writes.push(audit_put(&self.audit, event)?);
        let codes = self
            .transact_codes(writes, "TransactWriteItems escrow")
            .await?;
        Self::outcome(codes, "TransactWriteItems escrow")
    }

    async fn commit_upsert(
        &self,
        w: &DeviceUpsert,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let dev = &w.device;
        let mut writes = Vec::new();
        match w.expected_version {
            None => {
                let p = Put::builder()
                    .table_name(&self.devices)
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
                writes.push(self.device_update(dev, v, sets, &[])?);
                // The key pointers repeat owner and display name for the
                // helpdesk lookup.
                for k in &dev.keys {
                    let u = Update::builder()
                        .table_name(&self.devices)
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
        writes.push(audit_put(&self.audit, event)?);
        let codes = self
            .transact_codes(writes, "TransactWriteItems device")
            .await?;
        // A key pointer that vanished (its retention ended): read again.
        if let Some(c) = &codes
            && c.len() > 2
            && c[1..c.len() - 1].iter().any(|x| x == CCF)
        {
            return Ok(WriteOutcome::Conflict);
        }
        Self::outcome(codes, "TransactWriteItems device")
    }

    async fn retire_device(
        &self,
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
        let head = self.device_update(device, expected_version, sets, &removes)?;
        let pointers = device
            .keys
            .iter()
            .map(|k| {
                // A superseded key keeps an earlier expiry of its own.
                self.pointer_update(
                    device,
                    &k.key_id,
                    "SET #e = if_not_exists(#e, :e)",
                    Some(items::ttl_value(r.expires_at)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.commit_with_pointers(head, pointers, event, "retire")
            .await
    }

    async fn restore_device(
        &self,
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
        let head = self.device_update(device, expected_version, sets, &removes)?;
        // Current keys' pointers expire no more; superseded ones keep their
        // own expiry, which the retirement did not touch when earlier.
        let pointers = device
            .keys
            .iter()
            .map(|k| match k.expires_at {
                None => self.pointer_update(device, &k.key_id, "REMOVE #e", None),
                Some(t) => {
                    self.pointer_update(device, &k.key_id, "SET #e = :e", Some(items::ttl_value(t)))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.commit_with_pointers(head, pointers, event, "restore")
            .await
    }

    async fn superseded_key(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &KeyId,
    ) -> Result<Option<SealedKey>, Unavailable> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.devices)
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

    async fn rotation_requests(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RotationPage, Unavailable> {
        let mut q = self
            .client
            .query()
            .table_name(&self.devices)
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

    async fn tenant_settings(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), Unavailable> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.devices)
            .set_key(Some(Self::tenant_key(tenant)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem tenant", &e))?;
        match resp.item {
            None => Ok((TenantPolicy::default(), 0)),
            Some(item) => {
                let version = match item.get("settings_version") {
                    Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
                    _ => 0,
                };
                Ok((items::parse_policy(&item, "tenant")?, version))
            }
        }
    }

    async fn commit_settings(
        &self,
        tenant: &TenantId,
        settings: &TenantPolicy,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut item = items::tenant_item(&crate::domain::model::Tenant {
            id: tenant.clone(),
            policy: settings.clone(),
        });
        item.remove("pk");
        item.remove("sk");
        let helpdesk = item.remove("helpdesk");
        // Optional settings left unset are removed (back to the defaults).
        let removes: Vec<&str> = [items::SELF_SERVICE_RATE_LIMIT, items::HELPDESK_RATE_LIMIT]
            .into_iter()
            .filter(|a| !item.contains_key(*a))
            .collect();
        let mut u = Update::builder()
            .table_name(&self.devices)
            .set_key(Some(Self::tenant_key(tenant)))
            .expression_attribute_names("#v", "settings_version")
            .expression_attribute_values(":newv", n(expected_version + 1));
        let mut parts = vec!["#v = :newv".to_owned()];
        for (i, (name, value)) in item.into_iter().enumerate() {
            parts.push(format!("#a{i} = :a{i}"));
            u = u
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":a{i}"), value);
        }
        u = u.expression_attribute_names("#h", "helpdesk");
        let mut remove_parts = Vec::new();
        match helpdesk {
            Some(h) => {
                parts.push("#h = :h".to_owned());
                u = u.expression_attribute_values(":h", h);
            }
            None => remove_parts.push("#h".to_owned()),
        }
        for (i, a) in removes.into_iter().enumerate() {
            remove_parts.push(format!("#r{i}"));
            u = u.expression_attribute_names(format!("#r{i}"), a);
        }
        let expr = if remove_parts.is_empty() {
            format!("SET {}", parts.join(", "))
        } else {
            format!(
                "SET {} REMOVE {}",
                parts.join(", "),
                remove_parts.join(", ")
            )
        };
        u = u.update_expression(expr);
        u = if expected_version == 0 {
            u.condition_expression("attribute_not_exists(#v)")
        } else {
            u.condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        let update = u.build().map_err(build_error)?;
        let writes = vec![
            TransactWriteItem::builder().update(update).build(),
            audit_put(&self.audit, event)?,
        ];
        let codes = self
            .transact_codes(writes, "TransactWriteItems settings")
            .await?;
        Self::outcome(codes, "TransactWriteItems settings")
    }

    async fn commit_incident(
        &self,
        incident: &Incident,
        summary: Option<&OpenIncident>,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        let mut u = Update::builder()
            .table_name(&self.devices)
            .set_key(Some(Self::tenant_key(&incident.tenant)))
            .expression_attribute_names("#v", "settings_version")
            .expression_attribute_names("#i", items::INCIDENT)
            .expression_attribute_names("#t", "tenant_id")
            .expression_attribute_values(":newv", n(expected_version + 1))
            .expression_attribute_values(":t", s(incident.tenant.as_str()));
        // A tenant item created here holds no settings: it reads as the
        // defaults (no self-service), as a missing one does.
        u = match summary {
            Some(sum) => u
                .update_expression("SET #v = :newv, #t = :t, #i = :i")
                .expression_attribute_values(":i", items::open_incident_value(sum)),
            None => u.update_expression("SET #v = :newv, #t = :t REMOVE #i"),
        };
        u = if expected_version == 0 {
            u.condition_expression("attribute_not_exists(#v)")
        } else {
            u.condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        let record = Put::builder()
            .table_name(&self.devices)
            .set_item(Some(items::incident_item(incident)))
            .build()
            .map_err(build_error)?;
        let writes = vec![
            TransactWriteItem::builder()
                .update(u.build().map_err(build_error)?)
                .build(),
            TransactWriteItem::builder().put(record).build(),
            audit_put(&self.audit, event)?,
        ];
        let codes = self
            .transact_codes(writes, "TransactWriteItems incident")
            .await?;
        Self::outcome(codes, "TransactWriteItems incident")
    }

    async fn incident(
        &self,
        tenant: &TenantId,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Unavailable> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.devices)
            .key("pk", s(items::tenant_pk(tenant)))
            .key("sk", s(items::incident_sk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem incident", &e))?;
        Ok(resp
            .item
            .map(|i| items::parse_incident(&i))
            .transpose()?
            .filter(|i| &i.tenant == tenant))
    }

    async fn incidents(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<Incident>, Unavailable> {
        // A tenant has a handful of incidents a year: read them all, newest first.
        let pages: Vec<_> = self
            .client
            .query()
            .table_name(&self.devices)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s(items::tenant_pk(tenant)))
            .expression_attribute_values(":p", s(items::INCIDENT_SK_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        let mut all = Vec::new();
        for item in pages {
            let item = item.map_err(|e| unavailable("Query incidents", &e))?;
            all.push(items::parse_incident(&item)?);
        }
        all.sort_by(|a, b| {
            b.opened_at
                .cmp(&a.opened_at)
                .then(b.incident_id.cmp(&a.incident_id))
        });
        all.truncate(limit);
        Ok(all)
    }

    async fn stored_keys(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<&str>,
    ) -> Result<StoredKeyPage, Unavailable> {
        let mut scan = self
            .client
            .scan()
            .table_name(&self.devices)
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

    async fn sweep_expired(&self, _now: OffsetDateTime) -> Result<usize, Unavailable> {
        // DynamoDB deletes expired key pointers itself (TTL on expires_at).
        Ok(0)
    }
}
