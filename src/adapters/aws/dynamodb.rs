//! The DynamoDB store: `Store` and `ImportStore` over the tables in
//! `schema.rs`, with the same semantics as `embedded::MemoryStore`.
//!
//! Calls per request path (when nothing is throttled):
//! - `list_devices`: one `Query` on `by_owner` and, concurrently, one
//!   consistent `GetItem` of the tenant item (the tenant's policy has one
//!   source: the tenant item);
//! - `find_keys`: one `Query` on `by_key`;
//! - `load_for_disclosure`: one consistent `BatchGetItem` (device item,
//!   tenant item, rate window);
//! - `commit_disclosure`: one `TransactWriteItems` (audit put, rate update
//!   and the key's `disclosed_at` on the device item; a second one without
//!   the mark only for a superseded key or a device item from before escrow);
//! - `append_denied`: one `TransactWriteItems` (audit put + the caller's
//!   denied-event counter for the hour); `append_cap_marker` one more, once
//!   per caller and hour;
//! - `audit_events`: one `Query` per page (more only when a filter drops
//!   items), on one index, or on each of the `AUDIT_TIME_SHARDS` (8) shards
//!   of `by_time` concurrently, merged by position. Never a `Scan`.

use super::describe_sdk_error;
use super::items::{self, Item};
use super::schema::IndexDef;
use super::schema::{
    AUDIT, AUDIT_BY_ACTOR, AUDIT_BY_DEVICE, AUDIT_BY_TIME, AUDIT_TIME_SHARDS, BY_KEY, BY_OWNER,
    DEVICES, RATE_LIMITS, table_name,
};
use crate::domain::audit::{AuditEvent, AuditPage, AuditQuery, hour_of, time_key};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{Device, SealedDevice, Tenant, TenantPolicy};
use crate::domain::ratelimit::{RateUpdate, RateWindow};
use crate::ports::{Commit, Denial, ImportDevice, ImportStore, KeyLocation, Store, StoredDevice};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, DeleteRequest, KeysAndAttributes, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

mod lifecycle;

const SERVICE: &str = "dynamodb";
/// BatchGetItem's limit of keys per request.
const BATCH_GET_MAX: usize = 100;
/// BatchWriteItem's limit of requests per call.
const BATCH_WRITE_MAX: usize = 25;
/// Import-side concurrency: batch calls in flight.
const IMPORT_CONCURRENCY: usize = 8;
/// Import-side concurrency: key-pointer queries in flight (one per device
/// written; small and cheap, so more of them).
const POINTER_QUERY_CONCURRENCY: usize = 32;
/// Attempts of a denied-event write when concurrent writes of the same
/// caller's counter conflict (`TransactionConflict`).
const DENIAL_ATTEMPTS: usize = 3;
/// Counter attributes of a caller's denied events in one clock hour.
const DENIED: &str = "denied";
const MARKED: &str = "marked";

/// How often unprocessed keys or items are sent again, and the back-off.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    rounds: u32,
    base: Duration,
    cap: Duration,
}

/// The request path: a throttled batch is retried briefly, then 503.
const REQUEST_BACKOFF: Backoff = Backoff {
    rounds: 3,
    base: Duration::from_millis(25),
    cap: Duration::from_millis(200),
};
/// The import path: patient exponential back-off (about 40 s in total).
const IMPORT_BACKOFF: Backoff = Backoff {
    rounds: 10,
    base: Duration::from_millis(50),
    cap: Duration::from_secs(8),
};

impl Backoff {
    /// Delay before retry `round` (1-based): exponential with "equal jitter".
    fn delay(&self, round: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << round.min(16))
            .min(self.cap);
        let half = exp / 2;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter_range = half.as_nanos().max(1) as u64;
        half + Duration::from_nanos(u64::from(nanos) % jitter_range)
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable<E>(op: &'static str, e: &SdkError<E>) -> Unavailable
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    Unavailable::new(SERVICE, format!("{op}: {}", describe_sdk_error(e)))
}

fn build_error(e: BuildError) -> Unavailable {
    Unavailable::new(SERVICE, format!("invalid request: {e}"))
}

fn attr_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

/// Why a transaction was cancelled, one reason per item, in order.
struct Cancelled(Vec<CancellationReason>);

impl Cancelled {
    fn code(&self, i: usize) -> &str {
        self.0.get(i).and_then(|r| r.code()).unwrap_or("None")
    }
    fn failed_condition(&self, i: usize) -> bool {
        self.code(i) == "ConditionalCheckFailed"
    }
    /// Another transaction touched one of the items at the same moment:
    /// nothing was written; trying again is safe.
    fn conflict(&self) -> bool {
        self.0
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"))
    }
    fn item(&self, i: usize) -> Option<&Item> {
        self.0.get(i).and_then(|r| r.item())
    }
    fn error(&self, op: &str) -> Unavailable {
        let codes: Vec<&str> = (0..self.0.len()).map(|i| self.code(i)).collect();
        Unavailable::new(SERVICE, format!("{op} cancelled: {}", codes.join(", ")))
    }
}

/// The sort-key range (`ts`) of an audit query: `since` inclusive, `until`
/// and the cursor exclusive. `ts` values are `<time key>#<event id>`, so the
/// bare time keys of `since`/`until` never equal one, and `BETWEEN`
/// (inclusive) bounds them exactly; the cursor's own item, which an
/// inclusive bound returns, is dropped by `AuditQuery::matches`.
struct TsRange {
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

/// DynamoDB-backed `Store` and `ImportStore`. Cheap to share: one client
/// (connection pool) and the three table names.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    devices: String,
    audit: String,
    rate_limits: String,
}

impl DynamoStore {
    /// Tables `<prefix>-devices`, `<prefix>-audit`, `<prefix>-rate_limits`.
    pub fn new(client: Client, table_prefix: &str) -> Self {
        Self {
            client,
            devices: table_name(table_prefix, &DEVICES),
            audit: table_name(table_prefix, &AUDIT),
            rate_limits: table_name(table_prefix, &RATE_LIMITS),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn devices_table(&self) -> &str {
        &self.devices
    }

    pub fn audit_table(&self) -> &str {
        &self.audit
    }

    pub fn rate_limits_table(&self) -> &str {
        &self.rate_limits
    }

    /// All pages of a query, or stop once `want` items were collected.
    async fn query_pages(
        &self,
        query: QueryFluentBuilder,
        want: Option<usize>,
        op: &'static str,
    ) -> Result<Vec<Item>, Unavailable> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let resp = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(op, &e))?;
            out.extend(resp.items.unwrap_or_default());
            if want.is_some_and(|w| out.len() >= w) {
                break;
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A `BatchGetItem`, sending unprocessed keys again with back-off.
    async fn batch_get(
        &self,
        mut request: HashMap<String, KeysAndAttributes>,
        backoff: Backoff,
        op: &'static str,
    ) -> Result<HashMap<String, Vec<Item>>, Unavailable> {
        let mut out: HashMap<String, Vec<Item>> = HashMap::new();
        for round in 0..backoff.rounds {
            if round > 0 {
                tokio::time::sleep(backoff.delay(round)).await;
            }
            let resp = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| unavailable(op, &e))?;
            for (table, items) in resp.responses.unwrap_or_default() {
                out.entry(table).or_default().extend(items);
            }
            match resp.unprocessed_keys {
                Some(u) if !u.is_empty() => request = u,
                _ => return Ok(out),
            }
        }
        Err(Unavailable::new(
            SERVICE,
            format!(
                "{op}: keys still unprocessed after {} attempts (throttled)",
                backoff.rounds
            ),
        ))
    }

    /// One `BatchWriteItem` of at most 25 requests, sending unprocessed
    /// items again with back-off.
    async fn batch_write_chunk(&self, mut requests: Vec<WriteRequest>) -> Result<(), Unavailable> {
        let backoff = IMPORT_BACKOFF;
        for round in 0..backoff.rounds {
            if round > 0 {
                tokio::time::sleep(backoff.delay(round)).await;
            }
            let resp = self
                .client
                .batch_write_item()
                .request_items(self.devices.clone(), requests)
                .send()
                .await
                .map_err(|e| unavailable("BatchWriteItem", &e))?;
            match resp
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.devices))
            {
                Some(left) if !left.is_empty() => requests = left,
                _ => return Ok(()),
            }
        }
        Err(Unavailable::new(
            SERVICE,
            format!(
                "BatchWriteItem: items still unprocessed after {} attempts (throttled)",
                backoff.rounds
            ),
        ))
    }

    /// Writes to the devices table in chunks of 25, a few chunks at a time.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), Unavailable> {
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_MAX)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        stream::iter(chunks)
            .map(|c| self.batch_write_chunk(c))
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// Sort keys of the key-pointer items stored in a device's partition
    /// (import path only).
    async fn key_pointer_sks(
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

    /// The tenant's policy from its tenant item (consistent: a change takes
    /// effect at once); no item, no self-service.
    async fn tenant_policy(&self, tenant: &TenantId) -> Result<TenantPolicy, Unavailable> {
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

    /// A new audit item; the condition only guards append-only (event ids
    /// are unique, so it never fails in practice).
    fn audit_put(&self, event: &AuditEvent) -> Result<Put, Unavailable> {
        Put::builder()
            .table_name(&self.audit)
            .set_item(Some(items::audit_item(event)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)
    }

    /// One audit event on its own (`PutItem`, append-only condition).
    async fn put_audit_event(&self, event: &AuditEvent) -> Result<(), Unavailable> {
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

    /// One `TransactWriteItems`: `Ok(Err(_))` when it was cancelled.
    async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
        op: &'static str,
    ) -> Result<Result<(), Cancelled>, Unavailable> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Ok(())),
            Err(e) => e,
        };
        if let SdkError::ServiceError(se) = &err
            && let TransactWriteItemsError::TransactionCanceledException(tc) = se.err()
        {
            return Ok(Err(Cancelled(tc.cancellation_reasons().to_vec())));
        }
        Err(unavailable(op, &err))
    }

    async fn query_audit_index(
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

#[async_trait]
impl Store for DynamoStore {
    async fn list_devices(
        &self,
        tenant: &TenantId,
        owner: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
        let q = self
            .client
            .query()
            .table_name(&self.devices)
            .index_name(BY_OWNER.name)
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", BY_OWNER.hash)
            .expression_attribute_values(":k", s(items::owner_key(tenant, owner)));
        let (found, policy) = futures_util::future::try_join(
            self.query_pages(q, None, "Query by_owner"),
            self.tenant_policy(tenant),
        )
        .await?;
        let devices = found
            .iter()
            .map(items::parse_device)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((devices, policy))
    }

    async fn find_keys(
        &self,
        tenant: &TenantId,
        prefix: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable> {
        let q = self
            .client
            .query()
            .table_name(&self.devices)
            .index_name(BY_KEY.name)
            .key_condition_expression("#b = :b AND begins_with(#h, :p)")
            .expression_attribute_names("#b", BY_KEY.hash)
            .expression_attribute_names("#h", BY_KEY.range.unwrap_or("key_hex"))
            .expression_attribute_values(":b", s(items::key_bucket(tenant, prefix.as_str())))
            .expression_attribute_values(":p", s(prefix.as_str()));
        let found = self.query_pages(q, None, "Query by_key").await?;
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

    async fn load_for_disclosure(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        actor: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
        let device_pk = items::device_pk(tenant, device);
        let tenant_pk = items::tenant_pk(tenant);
        let (device_items, window) = self
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

    async fn commit_disclosure(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        self.commit_disclosure_marked(event, rate, true).await
    }

    async fn load_batch_state(
        &self,
        tenant: &TenantId,
        actor: &UserId,
    ) -> Result<(TenantPolicy, RateWindow), Unavailable> {
        let tenant_pk = items::tenant_pk(tenant);
        let (tenant_items, window) = self
            .read_with_rate_window(&[(&tenant_pk, items::TENANT_SK)], tenant, actor)
            .await?;
        let policy = match tenant_items.into_iter().next() {
            Some(item) => items::parse_policy(&item, "tenant")?,
            None => TenantPolicy::default(),
        };
        Ok((policy, window))
    }

    async fn load_devices(
        &self,
        tenant: &TenantId,
        devices: &[DeviceId],
        policy: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable> {
        let pks: Vec<String> = devices
            .iter()
            .map(|d| items::device_pk(tenant, d))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = Vec::new();
        // BatchGetItem takes 100 keys; a batch names at most 100 devices.
        for chunk in pks.chunks(BATCH_GET_MAX) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for pk in chunk {
                keys = keys.keys(HashMap::from([
                    ("pk".to_owned(), s(pk.as_str())),
                    ("sk".to_owned(), s(items::DEVICE_SK)),
                ]));
            }
            let mut got = self
                .batch_get(
                    HashMap::from([(self.devices.clone(), keys.build().map_err(build_error)?)]),
                    REQUEST_BACKOFF,
                    "BatchGetItem devices",
                )
                .await?;
            for item in got.remove(&self.devices).unwrap_or_default() {
                // One unreadable device must not fail the batch's others:
                // it reads as absent (a 404 for its keys), and is logged.
                match items::parse_sealed_device(&item, policy.clone()) {
                    Ok(d) if d.device.tenant == *tenant => out.push(d),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "unreadable device item skipped"),
                }
            }
        }
        Ok(out)
    }

    async fn commit_batch(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        let marks: Vec<bool> = vec![true; events.len()];
        self.commit_batch_marked(events, rate, marks).await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        self.put_audit_event(event).await
    }

    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        if cap == 0 {
            return Ok(Denial::OverCap { marked: false });
        }
        let hour = hour_of(event.time);
        for _ in 0..DENIAL_ATTEMPTS {
            let count = Update::builder()
                .table_name(&self.rate_limits)
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
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_error)?;
            let writes = vec![
                TransactWriteItem::builder()
                    .put(self.audit_put(event)?)
                    .build(),
                TransactWriteItem::builder().update(count).build(),
            ];
            match self.transact(writes, "TransactWriteItems denied").await? {
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

    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable> {
        let hour = hour_of(marker.time);
        for _ in 0..DENIAL_ATTEMPTS {
            let flag = Update::builder()
                .table_name(&self.rate_limits)
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
                    .put(self.audit_put(marker)?)
                    .build(),
                TransactWriteItem::builder().update(flag).build(),
            ];
            match self
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

    async fn audit_events(
        &self,
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
                self.query_audit_index(
                    &AUDIT_BY_DEVICE,
                    items::device_key(tenant, device),
                    actor.as_ref().map(|a| items::actor_key(tenant, a)),
                    &range,
                    want,
                )
                .await?
            }
            (None, Some(actor)) => {
                self.query_audit_index(
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
                    self.query_audit_index(
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
}

impl DynamoStore {
    /// The device-item update that marks a granted disclosure: the key's
    /// first `disclosed_at`, the device's rotation request (`by_rotation`)
    /// and a new record version, so an escrow that read the device before
    /// this disclosure cannot overwrite the mark. Only for a current key in
    /// a device item with a `keys` map; otherwise the condition fails.
    fn disclosure_mark(&self, event: &AuditEvent) -> Result<Option<Update>, Unavailable> {
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

    /// The rate window, then per event its audit item and (where `marks`
    /// says so) its key's `disclosed_at`, in one transaction. A mark whose
    /// condition fails (a superseded key) is dropped and the rest written.
    async fn commit_batch_marked(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
        marks: Vec<bool>,
    ) -> Result<Commit, Unavailable> {
        let Some(first) = events.first() else {
            return Ok(Commit::Written);
        };
        if events.len() > crate::ports::BATCH_COMMIT_MAX {
            return Err(Unavailable::new(
                SERVICE,
                "TransactWriteItems batch: too many events for one transaction",
            ));
        }
        let mut writes = vec![
            TransactWriteItem::builder()
                .update(self.rate_update(first, rate)?)
                .build(),
        ];
        // Transaction index of each event's mark, to tell which one failed.
        let mut mark_at = Vec::new();
        for (e, &mark) in events.iter().zip(&marks) {
            writes.push(TransactWriteItem::builder().put(self.audit_put(e)?).build());
            match if mark { self.disclosure_mark(e)? } else { None } {
                Some(u) => {
                    mark_at.push(Some(writes.len()));
                    writes.push(TransactWriteItem::builder().update(u).build());
                }
                None => mark_at.push(None),
            }
        }
        match self.transact(writes, "TransactWriteItems batch").await? {
            Ok(()) => Ok(Commit::Written),
            Err(c) if c.failed_condition(0) => Ok(Commit::RateConflict),
            Err(c) => {
                let failed: Vec<bool> = mark_at
                    .iter()
                    .map(|at| at.is_some_and(|i| c.failed_condition(i)))
                    .collect();
                if failed.iter().any(|&f| f) {
                    let marks = marks.iter().zip(&failed).map(|(&m, &f)| m && !f).collect();
                    return Box::pin(self.commit_batch_marked(events, rate, marks)).await;
                }
                if c.conflict() {
                    return Ok(Commit::RateConflict);
                }
                Err(c.error("TransactWriteItems batch"))
            }
        }
    }

    /// These items of the devices table (`(pk, sk)`) and the caller's rate
    /// window, in one consistent `BatchGetItem`.
    async fn read_with_rate_window(
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
    fn rate_update(&self, event: &AuditEvent, rate: &RateUpdate) -> Result<Update, Unavailable> {
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
    async fn commit_disclosure_marked(
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
