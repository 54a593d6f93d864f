//! Listing a caller's devices and finding keys by ID prefix.

use super::*;

impl DynamoStore {
    /// The tenant's policy from its tenant item (consistent: a change takes
    /// effect at once); no item, no self-service.
    pub(super) async fn tenant_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<TenantPolicy, Unavailable> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.devices)
            .key("pk", s(items::tenant_pk(tenant)))
            .key("sk", s(items::TENANT_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem tenant", &e))?;
        Ok(match resp.item {
            Some(item) => items::parse_policy(&item, "tenant")?,
            None => TenantPolicy::default(),
        })
    }
}

pub(super) async fn list_devices(
    store: &DynamoStore,
    tenant: &TenantId,
    owner: &UserId,
) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
    let q = store
        .client
        .query()
        .table_name(&store.devices)
        .index_name(BY_OWNER.name)
        .key_condition_expression("#k = :k")
        .expression_attribute_names("#k", BY_OWNER.hash)
        .expression_attribute_values(":k", s(items::owner_key(tenant, owner)));
    let (found, policy) = futures_util::future::try_join(
        store.query_pages(q, None, "Query by_owner"),
        store.tenant_policy(tenant),
    )
    .await?;
    let devices = found
        .iter()
        .map(items::parse_device)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((devices, policy))
}

pub(super) async fn find_keys(
    store: &DynamoStore,
    tenant: &TenantId,
    prefix: &KeyIdPrefix,
) -> Result<Vec<KeyLocation>, Unavailable> {
    let q = store
        .client
        .query()
        .table_name(&store.devices)
        .index_name(BY_KEY.name)
        .key_condition_expression("#b = :b AND begins_with(#h, :p)")
        .expression_attribute_names("#b", BY_KEY.hash)
        .expression_attribute_names("#h", BY_KEY.range.unwrap_or("key_hex"))
        .expression_attribute_values(":b", s(items::key_bucket(tenant, prefix.as_str())))
        .expression_attribute_values(":p", s(prefix.as_str()));
    let found = store.query_pages(q, None, "Query by_key").await?;
    let mut out = Vec::with_capacity(found.len());
    for item in &found {
        // Defence in depth: the bucket already names the tenant.
        if attr_s(item, "tenant_id") != Some(tenant.as_str()) {
            continue;
        }
        out.push(items::parse_key_location(item)?);
    }
    Ok(out)
}
