//! The transaction pieces every lifecycle write shares.

use super::*;

/// `TransactWriteItems` accepts at most this many items.
pub(super) const TRANSACT_MAX: usize = 100;
pub(super) const CCF: &str = "ConditionalCheckFailed";

/// Separates `pk` and `sk` in a scan cursor (neither can contain it).
pub(super) const CURSOR_SEP: char = '\n';

pub(super) fn audit_put(table: &str, event: &AuditEvent) -> Result<TransactWriteItem, Unavailable> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(items::audit_item(event)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(super) fn put(table: &str, item: Item) -> Result<TransactWriteItem, Unavailable> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// The rotation attributes of a device after a write: set while a key is
/// due (the oldest such disclosure first), removed otherwise.
pub(super) fn rotation(device: &Device) -> Option<String> {
    device
        .keys
        .iter()
        .filter(|k| k.rotation_due())
        .filter_map(|k| k.disclosed_at)
        .min()
        .map(|t| items::rotation_since(t, &device.device_id))
}

/// What a cancelled transaction says about the item at `i`.
pub(super) fn code(codes: &[String], i: usize) -> &str {
    codes.get(i).map(String::as_str).unwrap_or("None")
}

impl DynamoStore {
    /// `Ok(None)`: written. `Ok(Some(codes))`: cancelled, with the
    /// cancellation code of each item. Anything else is unavailable.
    pub(super) async fn transact_codes(
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
    pub(super) fn outcome(
        codes: Option<Vec<String>>,
        op: &'static str,
    ) -> Result<WriteOutcome, Unavailable> {
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

    pub(super) fn device_key(
        tenant: &TenantId,
        device: &DeviceId,
    ) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(items::device_pk(tenant, device))),
            ("sk".to_owned(), s(items::DEVICE_SK)),
        ])
    }

    pub(super) fn tenant_key(tenant: &TenantId) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(items::tenant_pk(tenant))),
            ("sk".to_owned(), s(items::TENANT_SK)),
        ])
    }

    /// A versioned update of the device item: `sets` are (attribute, value)
    /// pairs, `removes` attribute names; the version moves on by one.
    pub(super) fn device_update(
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
    pub(super) fn pointer_update(
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
    pub(super) async fn commit_with_pointers(
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
