//! The DynamoDB store: `Store` and `ImportStore` over the tables in
//! `schema.rs`, with the same semantics as `embedded::MemoryStore`.
//!
//! Calls per request path (when nothing is throttled):
//! - `list_devices`: one `Query` on `by_owner` and, in parallel, one
//!   `GetItem` of the tenant item (its settings);
//! - `find_keys`: one `Query` on `by_key`;
//! - `load_for_disclosure`: one `BatchGetItem` (device + tenant item + rate
//!   window);
//! - `commit_disclosure`: one `TransactWriteItems` (audit put, rate update
//!   and the key's `disclosed_at` on the device item; a second one without
//!   the mark only for a superseded key or a device item from before escrow);
//! - `append_audit`: one `PutItem`;
//! - `audit_events`: one `Query` per page, on one index, or on each of the
//!   `AUDIT_TIME_SHARDS` shards of `by_time` concurrently. Never a `Scan`.

use super::describe_sdk_error;
use super::items::{self, Item};
use super::schema::{
    AUDIT, AUDIT_BY_ACTOR, AUDIT_BY_DEVICE, AUDIT_BY_TIME, AUDIT_TIME_SHARDS, BY_KEY, BY_OWNER,
    DEVICES, RATE_LIMITS, table_name,
};
use crate::domain::audit::{AuditEvent, AuditQuery, newest_first};
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{Device, SealedDevice, Tenant, TenantPolicy};
use crate::domain::ratelimit::{RateUpdate, RateWindow};
use crate::ports::{Commit, ImportDevice, ImportStore, KeyLocation, Store};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, Put, PutRequest,
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

    /// The stored audit item of a request (consistent read).
    async fn audit_item(&self, pk: &str) -> Result<Option<Item>, Unavailable> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.audit)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem audit", &e))?;
        Ok(resp.item)
    }

    async fn query_audit_index(
        &self,
        index: &'static str,
        hash_attr: &'static str,
        hash: String,
        filter_actor: Option<String>,
        limit: usize,
    ) -> Result<Vec<Item>, Unavailable> {
        let mut q = self
            .client
            .query()
            .table_name(&self.audit)
            .index_name(index)
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", hash_attr)
            .expression_attribute_values(":h", s(hash))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(actor_key) = filter_actor {
            q = q
                .filter_expression("#a = :a")
                .expression_attribute_names("#a", "actor_key")
                .expression_attribute_values(":a", s(actor_key));
        }
        self.query_pages(q, Some(limit), "Query audit").await
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
        // The tenant item is read alongside: settings changed through the
        // API live there (the copies on device items are the import's).
        let tenant_item = self
            .client
            .get_item()
            .table_name(&self.devices)
            .key("pk", s(items::tenant_pk(tenant)))
            .key("sk", s(items::TENANT_SK))
            .send();
        let (found, tenant_item) =
            futures_util::future::try_join(self.query_pages(q, None, "Query by_owner"), async {
                tenant_item
                    .await
                    .map_err(|e| unavailable("GetItem tenant", &e))
            })
            .await?;
        let policy = match (tenant_item.item, found.first()) {
            (Some(item), _) => items::parse_policy(&item, "tenant")?,
            (None, Some(first)) => items::parse_policy(first, "device")?,
            (None, None) => TenantPolicy::default(),
        };
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
        let device_key = KeysAndAttributes::builder()
            .keys(HashMap::from([
                ("pk".to_owned(), s(items::device_pk(tenant, device))),
                ("sk".to_owned(), s(items::DEVICE_SK)),
            ]))
            // The tenant's settings, in the same call.
            .keys(HashMap::from([
                ("pk".to_owned(), s(items::tenant_pk(tenant))),
                ("sk".to_owned(), s(items::TENANT_SK)),
            ]))
            .consistent_read(true)
            .build()
            .map_err(build_error)?;
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
                    (self.devices.clone(), device_key),
                    (self.rate_limits.clone(), rate_key),
                ]),
                REQUEST_BACKOFF,
                "BatchGetItem",
            )
            .await?;
        let found = got.remove(&self.devices).unwrap_or_default();
        let sk_is = |item: &Item, sk: &str| attr_s(item, "sk") == Some(sk);
        let sealed = match found.iter().find(|i| sk_is(i, items::DEVICE_SK)) {
            Some(item) => {
                let mut d = items::parse_sealed_device(item)?;
                if let Some(t) = found.iter().find(|i| sk_is(i, items::TENANT_SK)) {
                    d.policy = items::parse_policy(t, "tenant")?;
                }
                // The key already names the tenant and device; check anyway.
                (d.device.tenant == *tenant && d.device.device_id == *device).then_some(d)
            }
            None => None,
        };
        let window = match got
            .remove(&self.rate_limits)
            .and_then(|v| v.into_iter().next())
        {
            Some(item) => items::parse_rate_window(&item)?,
            None => RateWindow::default(),
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

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        let result = self
            .client
            .put_item()
            .table_name(&self.audit)
            .set_item(Some(items::audit_item(event)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already recorded for this (tenant, actor, request id): a retry.
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable("PutItem audit", &e)),
        }
    }

    async fn audit_events(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, Unavailable> {
        let limit = query.limit;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<Item> = match (&query.device_id, &query.actor) {
            (Some(device), actor) => {
                self.query_audit_index(
                    AUDIT_BY_DEVICE.name,
                    AUDIT_BY_DEVICE.hash,
                    items::device_key(tenant, device),
                    actor.as_ref().map(|a| items::actor_key(tenant, a)),
                    limit,
                )
                .await?
            }
            (None, Some(actor)) => {
                self.query_audit_index(
                    AUDIT_BY_ACTOR.name,
                    AUDIT_BY_ACTOR.hash,
                    items::actor_key(tenant, actor),
                    None,
                    limit,
                )
                .await?
            }
            (None, None) => {
                let shards = (0..AUDIT_TIME_SHARDS).map(|shard| {
                    self.query_audit_index(
                        AUDIT_BY_TIME.name,
                        AUDIT_BY_TIME.hash,
                        items::tshard(tenant, shard),
                        None,
                        limit,
                    )
                });
                futures_util::future::try_join_all(shards)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            }
        };
        let mut events = Vec::with_capacity(raw.len());
        for item in &raw {
            let e = items::parse_audit_event(item)?;
            if e.tenant_id == *tenant && query.matches(&e) {
                events.push(e);
            }
        }
        newest_first(&mut events);
        events.truncate(limit);
        Ok(events)
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
            .condition_expression("attribute_exists(#k.#id) AND attribute_not_exists(#k.#id.#sa)")
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

    /// The granted event, the rate window and (with `mark`) the key's
    /// `disclosed_at` with its rotation request, in one transaction.
    async fn commit_disclosure_marked(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
        mark: bool,
    ) -> Result<Commit, Unavailable> {
        let audit_item = items::audit_item(event);
        let audit_pk = items::audit_pk(&event.tenant_id, &event.actor, &event.request_id);
        let put = Put::builder()
            .table_name(&self.audit)
            .set_item(Some(audit_item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let mut update = Update::builder()
            .table_name(&self.rate_limits)
            .key("pk", s(items::rate_pk(&event.tenant_id, &event.actor)))
            .update_expression("SET #r = :r, #v = :v, #e = :e")
            .expression_attribute_names("#r", "recent")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(
                ":r",
                AttributeValue::L(rate.window.recent.iter().map(n).collect()),
            )
            .expression_attribute_values(":v", n(rate.window.version))
            .expression_attribute_values(":e", n(rate.expires_at));
        update = if rate.expected_version == 0 {
            update.condition_expression("attribute_not_exists(pk)")
        } else {
            update
                .condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(rate.expected_version))
        };
        let update = update.build().map_err(build_error)?;
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
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Commit::Written),
            Err(e) => e,
        };
        let reasons = match &err {
            SdkError::ServiceError(se) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(tc) => {
                    tc.cancellation_reasons().to_vec()
                }
                _ => return Err(unavailable("TransactWriteItems", &err)),
            },
            _ => return Err(unavailable("TransactWriteItems", &err)),
        };
        let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
        if code(0) == "ConditionalCheckFailed" {
            // This caller already used this request id: a retry of the same
            // disclosure, or a reuse for something else.
            let old = match reasons[0].item() {
                Some(item) if !item.is_empty() => Some(item.clone()),
                // Some DynamoDB implementations omit the old item.
                _ => self.audit_item(&audit_pk).await?,
            };
            let Some(old) = old else {
                return Err(Unavailable::new(
                    SERVICE,
                    "TransactWriteItems: audit condition failed but the event is not readable",
                ));
            };
            let same = attr_s(&old, "outcome") == Some("granted")
                && attr_s(&old, "device_id") == event.device_id.as_ref().map(|d| d.as_str())
                && attr_s(&old, "key_id").map(str::to_owned) == event.key_id.map(|k| k.to_string());
            return Ok(if same {
                Commit::Duplicate
            } else {
                Commit::RequestIdReused
            });
        }
        if code(1) == "ConditionalCheckFailed" {
            return Ok(Commit::RateConflict);
        }
        if has_mark && code(2) == "ConditionalCheckFailed" {
            // The key is superseded (or the device item predates the keys
            // map, or was retired meanwhile): no rotation to request. The
            // disclosure itself is recorded without the mark.
            return Box::pin(self.commit_disclosure_marked(event, rate, false)).await;
        }
        // Another transaction touched one of the items at the same moment:
        // nothing was written; reading again and retrying is safe.
        if reasons
            .iter()
            .any(|r| r.code() == Some("TransactionConflict"))
        {
            return Ok(Commit::RateConflict);
        }
        Err(Unavailable::new(
            SERVICE,
            format!(
                "TransactWriteItems cancelled: audit {}, rate limit {}",
                code(0),
                code(1)
            ),
        ))
    }
}

#[async_trait]
impl ImportStore for DynamoStore {
    async fn fingerprints(
        &self,
        devices: &[(TenantId, DeviceId)],
    ) -> Result<HashMap<(TenantId, DeviceId), String>, Unavailable> {
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
                .projection_expression("#pk, #fp")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#fp", "fingerprint")
                .build()
                .map_err(build_error)?;
            requests.push(HashMap::from([(self.devices.clone(), ka)]));
        }
        let pages: Vec<HashMap<String, Vec<Item>>> = stream::iter(requests)
            .map(|r| self.batch_get(r, IMPORT_BACKOFF, "BatchGetItem fingerprints"))
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
            if let Some(fp) = items::parse_fingerprint(&item)? {
                out.insert(id.clone(), fp);
            }
        }
        Ok(out)
    }

    async fn put_tenants(&self, tenants: &[Tenant]) -> Result<(), Unavailable> {
        for t in tenants {
            self.client
                .put_item()
                .table_name(&self.devices)
                .set_item(Some(items::tenant_item(t)))
                .send()
                .await
                .map_err(|e| unavailable("PutItem tenant", &e))?;
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
