//! A tenant's settings and incident records.

use super::*;

pub(super) async fn tenant_settings(
    store: &DynamoStore,
    tenant: &TenantId,
) -> Result<(TenantPolicy, u64), Unavailable> {
    let resp = store
        .client
        .get_item()
        .table_name(&store.devices)
        .set_key(Some(DynamoStore::tenant_key(tenant)))
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

pub(super) async fn commit_settings(
    store: &DynamoStore,
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
        .table_name(&store.devices)
        .set_key(Some(DynamoStore::tenant_key(tenant)))
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
        audit_put(&store.audit, event)?,
    ];
    let codes = store
        .transact_codes(writes, "TransactWriteItems settings")
        .await?;
    DynamoStore::outcome(codes, "TransactWriteItems settings")
}

pub(super) async fn commit_incident(
    store: &DynamoStore,
    incident: &Incident,
    summary: Option<&OpenIncident>,
    expected_version: u64,
    event: &AuditEvent,
) -> Result<WriteOutcome, Unavailable> {
    let mut u = Update::builder()
        .table_name(&store.devices)
        .set_key(Some(DynamoStore::tenant_key(&incident.tenant)))
        .expression_attribute_names("#v", "settings_version")
        .expression_attribute_names("#i", items::INCIDENT)
        .expression_attribute_names("#t", "tenant_id")
        .expression_attribute_values(":newv", n(expected_version + 1))
        .expression_attribute_values(":t", s(incident.tenant.as_str()));
    // A tenant item created here holds no settings: it reads as the
    // defaults (no store-service), as a missing one does.
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
        .table_name(&store.devices)
        .set_item(Some(items::incident_item(incident)))
        .build()
        .map_err(build_error)?;
    let writes = vec![
        TransactWriteItem::builder()
            .update(u.build().map_err(build_error)?)
            .build(),
        TransactWriteItem::builder().put(record).build(),
        audit_put(&store.audit, event)?,
    ];
    let codes = store
        .transact_codes(writes, "TransactWriteItems incident")
        .await?;
    DynamoStore::outcome(codes, "TransactWriteItems incident")
}

pub(super) async fn incident(
    store: &DynamoStore,
    tenant: &TenantId,
    id: &IncidentId,
) -> Result<Option<Incident>, Unavailable> {
    let resp = store
        .client
        .get_item()
        .table_name(&store.devices)
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

pub(super) async fn incidents(
    store: &DynamoStore,
    tenant: &TenantId,
    limit: usize,
) -> Result<Vec<Incident>, Unavailable> {
    // A tenant has a handful of incidents a year: read them all, newest first.
    let pages: Vec<_> = store
        .client
        .query()
        .table_name(&store.devices)
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
