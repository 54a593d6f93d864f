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
//!
//! Files by request path: `listing` (devices, key lookup), `retrieval` (one
//! disclosure), `batch` (helpdesk batches), `audit` (trail and denials),
//! `import` (`ImportStore`), `lifecycle` (`LifecycleStore`); `calls` holds
//! the paged, batched and transactional calls they share.

use super::describe_sdk_error;
use super::items::{self, Item};
use super::schema::IndexDef;
use super::schema::{
    AUDIT, AUDIT_BY_ACTOR, AUDIT_BY_DEVICE, AUDIT_BY_TIME, AUDIT_TIME_SHARDS, BY_KEY, BY_OWNER,
    DEVICES, RATE_LIMITS, table_name,
};
use crate::domain::audit::{AuditEvent, AuditPage, AuditQuery, hour_of, time_key};
use crate::domain::error::{Cause, Unavailable};
use crate::domain::ids::{DeviceId, KeyIdPrefix, TenantId, UserId};
use crate::domain::model::{Device, SealedDevice, Tenant, TenantPolicy};
use crate::domain::ports::{
    Commit, Denial, ImportDevice, ImportStore, KeyLocation, Store, StoredDevice,
};
use crate::domain::ratelimit::{RateUpdate, RateWindow};
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

mod audit;
mod batch;
mod calls;
mod import;
mod lifecycle;
mod listing;
mod retrieval;

use calls::{IMPORT_BACKOFF, REQUEST_BACKOFF};

const SERVICE: Cause = Cause::DynamoDb;
/// BatchGetItem's limit of keys per request.
const BATCH_GET_MAX: usize = 100;
/// Import-side concurrency: batch calls in flight.
const IMPORT_CONCURRENCY: usize = 8;

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
}

#[async_trait]
impl Store for DynamoStore {
    async fn list_devices(
        &self,
        tenant: &TenantId,
        owner: &UserId,
    ) -> Result<(Vec<Device>, TenantPolicy), Unavailable> {
        listing::list_devices(self, tenant, owner).await
    }

    async fn find_keys(
        &self,
        tenant: &TenantId,
        prefix: &KeyIdPrefix,
    ) -> Result<Vec<KeyLocation>, Unavailable> {
        listing::find_keys(self, tenant, prefix).await
    }

    async fn load_for_disclosure(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        actor: &UserId,
    ) -> Result<(Option<SealedDevice>, RateWindow), Unavailable> {
        retrieval::load_for_disclosure(self, tenant, device, actor).await
    }

    async fn commit_disclosure(
        &self,
        event: &AuditEvent,
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        retrieval::commit_disclosure(self, event, rate).await
    }

    async fn load_batch_state(
        &self,
        tenant: &TenantId,
        actor: &UserId,
    ) -> Result<(TenantPolicy, RateWindow), Unavailable> {
        batch::load_batch_state(self, tenant, actor).await
    }

    async fn load_devices(
        &self,
        tenant: &TenantId,
        devices: &[DeviceId],
        policy: &TenantPolicy,
    ) -> Result<Vec<SealedDevice>, Unavailable> {
        batch::load_devices(self, tenant, devices, policy).await
    }

    async fn commit_batch(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
    ) -> Result<Commit, Unavailable> {
        batch::commit_batch(self, events, rate).await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<(), Unavailable> {
        audit::append_audit(self, event).await
    }

    async fn append_denied(&self, event: &AuditEvent, cap: u32) -> Result<Denial, Unavailable> {
        audit::append_denied(self, event, cap).await
    }

    async fn append_cap_marker(&self, marker: &AuditEvent) -> Result<bool, Unavailable> {
        audit::append_cap_marker(self, marker).await
    }

    async fn audit_events(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<AuditPage, Unavailable> {
        audit::audit_events(self, tenant, query).await
    }
}
