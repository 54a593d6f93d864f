//! The audit trail: appends, denied-event counting with its cap marker,
//! and paged queries by index or by the time shards.

use super::*;

/// Attempts of a denied-event write when concurrent writes of the same
/// caller's counter conflict (`TransactionConflict`).
const DENIAL_ATTEMPTS: usize = 3;
/// Counter attributes of a caller's denied events in one clock hour.
const DENIED: &str = "denied";
const MARKED: &str = "marked";

/// The sort-key range (`ts`) of an audit query: `since` inclusive, `until`
/// and the cursor exclusive. `ts` values are `<time key>#<event id>`, so the
/// bare time keys of `since`/`until` never equal one, and `BETWEEN`
/// (inclusive) bounds them exactly; the cursor's own item, which an
/// inclusive bound returns, is dropped by `AuditQuery::matches`.
pub(super) struct TsRange {
    lo: Option<String>,
    hi: Option<String>,
}

impl TsRange {
    fn of(q: &AuditQuery) -> Self {
        let until = q.until.map(time_key);
        let cursor = q.after.as_ref().map(|c| c.0.key());
        Self {
            lo: q.since.map(time_key),
            hi: match (until, cursor) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn is_empty(&self) -> bool {
        matches!((&self.lo, &self.hi), (Some(lo), Some(hi)) if lo > hi)
    }

    /// Adds the range to a query whose key condition names the hash key as
    /// `#h = :h`.
    fn apply(&self, q: QueryFluentBuilder, range_attr: &str) -> QueryFluentBuilder {
        let cond = match (&self.lo, &self.hi) {
            (Some(_), Some(_)) => "#h = :h AND #t BETWEEN :lo AND :hi",
            (Some(_), None) => "#h = :h AND #t >= :lo",
            (None, Some(_)) => "#h = :h AND #t <= :hi",
            (None, None) => return q.key_condition_expression("#h = :h"),
        };
        let mut q = q
            .key_condition_expression(cond)
            .expression_attribute_names("#t", range_attr);
        if let Some(lo) = &self.lo {
            q = q.expression_attribute_values(":lo", s(lo.as_str()));
        }
        if let Some(hi) = &self.hi {
            q = q.expression_attribute_values(":hi", s(hi.as_str()));
        }
        q
    }
}

impl DynamoStore {
    /// A new audit item; the condition only guards append-only (event ids
    /// are unique, so it never fails in practice).
    pub(super) fn audit_put(&self, event: &AuditEvent) -> Result<Put, Unavailable> {
        Put::builder()
            .table_name(&self.audit)
            .set_item(Some(items::audit_item(event)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)
    }

    /// One audit event on its own (`PutItem`, append-only condition).
    pub(super) async fn put_audit_event(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        self.client
            .put_item()
            .table_name(&self.audit)
            .set_item(Some(items::audit_item(event)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unavailable("PutItem audit", &e))
    }

    pub(super) async fn query_audit_index(
        &self,
        index: &IndexDef,
        hash: String,
        filter_actor: Option<String>,
        range: &TsRange,
        want: usize,
    ) -> Result<Vec<Item>, Unavailable> {
        let q = self
            .client
            .query()
            .table_name(&self.audit)
            .index_name(index.name)
            .expression_attribute_names("#h", index.hash)
            .expression_attribute_values(":h", s(hash))
            .scan_index_forward(false)
            .limit(i32::try_from(want).unwrap_or(i32::MAX));
        let mut q = range.apply(q, index.range.unwrap_or("ts"));
        if let Some(actor_key) = filter_actor {
            q = q
                .filter_expression("#a = :a")
                .expression_attribute_names("#a", "actor_key")
                .expression_attribute_values(":a", s(actor_key));
        }
        self.query_pages(q, Some(want), "Query audit").await
    }
}

pub(super) async fn append_audit(
    store: &DynamoStore,
    event: &AuditEvent,
) -> Result<(), Unavailable> {
    store.put_audit_event(event).await
}

pub(super) async fn append_denied(
    store: &DynamoStore,
    event: &AuditEvent,
    cap: u32,
) -> Result<Denial, Unavailable> {
    if cap == 0 {
        return Ok(Denial::OverCap { marked: false });
    }
    let hour = hour_of(event.time);
    for _ in 0..DENIAL_ATTEMPTS {
        let count = Update::builder()
            .table_name(&store.rate_limits)
            .key(
                "pk",
                s(items::denials_pk(&event.tenant_id, &event.actor, hour)),
            )
            .update_expression("ADD #c :one SET #e = :e")
            .condition_expression("attribute_not_exists(#c) OR #c < :cap")
            .expression_attribute_names("#c", DENIED)
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":cap", n(cap))
            // Kept an hour past its own hour, then expired by TTL.
            .expression_attribute_values(":e", n((hour + 2) * 3600))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let writes = vec![
            TransactWriteItem::builder()
                .put(store.audit_put(event)?)
                .build(),
            TransactWriteItem::builder().update(count).build(),
        ];
        match store.transact(writes, "TransactWriteItems denied").await? {
            Ok(()) => return Ok(Denial::Stored),
            Err(c) if c.failed_condition(1) => {
                // An implementation that omits the old item makes us
                // try the marker, whose own condition keeps it single.
                let marked = c
                    .item(1)
                    .is_some_and(|i| matches!(i.get(MARKED), Some(AttributeValue::Bool(true))));
                return Ok(Denial::OverCap { marked });
            }
            Err(c) if c.conflict() => continue,
            Err(c) => return Err(c.error("TransactWriteItems denied")),
        }
    }
    Err(Unavailable::new(
        SERVICE,
        "TransactWriteItems denied: conflicting writes of this caller's counter",
    ))
}

pub(super) async fn append_cap_marker(
    store: &DynamoStore,
    marker: &AuditEvent,
) -> Result<bool, Unavailable> {
    let hour = hour_of(marker.time);
    for _ in 0..DENIAL_ATTEMPTS {
        let flag = Update::builder()
            .table_name(&store.rate_limits)
            .key(
                "pk",
                s(items::denials_pk(&marker.tenant_id, &marker.actor, hour)),
            )
            .update_expression("SET #m = :t, #e = :e")
            .condition_expression("attribute_not_exists(#m)")
            .expression_attribute_names("#m", MARKED)
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":e", n((hour + 2) * 3600))
            .build()
            .map_err(build_error)?;
        let writes = vec![
            TransactWriteItem::builder()
                .put(store.audit_put(marker)?)
                .build(),
            TransactWriteItem::builder().update(flag).build(),
        ];
        match store
            .transact(writes, "TransactWriteItems cap marker")
            .await?
        {
            Ok(()) => return Ok(true),
            Err(c) if c.failed_condition(1) => return Ok(false),
            Err(c) if c.conflict() => continue,
            Err(c) => return Err(c.error("TransactWriteItems cap marker")),
        }
    }
    Err(Unavailable::new(
        SERVICE,
        "TransactWriteItems cap marker: conflicting writes of this caller's counter",
    ))
}

pub(super) async fn audit_events(
    store: &DynamoStore,
    tenant: &TenantId,
    query: &AuditQuery,
) -> Result<AuditPage, Unavailable> {
    let range = TsRange::of(query);
    if query.limit == 0 || query.is_empty_range() || range.is_empty() {
        return Ok(AuditPage {
            events: Vec::new(),
            next: None,
        });
    }
    // One more than the page, to know whether another page follows, and
    // one for the cursor's own item (the upper bound is inclusive). Every
    // shard's share of the merged page is within its first `want` items.
    let want = query.limit + 2;
    let raw: Vec<Item> = match (&query.device_id, &query.actor) {
        (Some(device), actor) => {
            store
                .query_audit_index(
                    &AUDIT_BY_DEVICE,
                    items::device_key(tenant, device),
                    actor.as_ref().map(|a| items::actor_key(tenant, a)),
                    &range,
                    want,
                )
                .await?
        }
        (None, Some(actor)) => {
            store
                .query_audit_index(
                    &AUDIT_BY_ACTOR,
                    items::actor_key(tenant, actor),
                    None,
                    &range,
                    want,
                )
                .await?
        }
        (None, None) => {
            let shards = (0..AUDIT_TIME_SHARDS).map(|shard| {
                store.query_audit_index(
                    &AUDIT_BY_TIME,
                    items::tshard(tenant, shard),
                    None,
                    &range,
                    want,
                )
            });
            futures_util::future::try_join_all(shards)
                .await?
                .into_iter()
                .flatten()
                .collect()
        }
    };
    let events = raw
        .iter()
        .map(items::parse_audit_event)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::domain::audit::page(events, tenant, query))
}
