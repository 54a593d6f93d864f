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
//!
//! Files: `devices` (escrow, upsert, retire, restore), `keys` (superseded
//! keys, rotation requests, the maintenance scan), `tenant` (settings and
//! incidents); `writes` holds the transaction pieces they share.

use super::{DynamoStore, REQUEST_BACKOFF, SERVICE, attr_s, build_error, n, s, unavailable};
use crate::adapters::aws::items::{self, Item};
use crate::adapters::aws::schema::BY_ROTATION;
use crate::domain::audit::AuditEvent;
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, KeyId, TenantId};
use crate::domain::incidents::{Incident, IncidentId, OpenIncident};
use crate::domain::model::{Device, KeyContext, SealedKey, TenantPolicy};
use crate::domain::ports::{
    DeviceRecord, DeviceUpsert, EscrowWrite, LifecycleStore, RotationPage, StoredKey,
    StoredKeyPage, WriteOutcome,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use std::collections::HashMap;
use time::OffsetDateTime;

mod devices;
mod keys;
mod tenant;
mod writes;

use writes::*;

#[async_trait]
impl LifecycleStore for DynamoStore {
    async fn device_for_write(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable> {
        devices::device_for_write(self, tenant, device).await
    }

    async fn commit_escrow(
        &self,
        w: &EscrowWrite,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        devices::commit_escrow(self, w, event).await
    }

    async fn commit_upsert(
        &self,
        w: &DeviceUpsert,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        devices::commit_upsert(self, w, event).await
    }

    async fn retire_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        devices::retire_device(self, device, expected_version, event).await
    }

    async fn restore_device(
        &self,
        device: &Device,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        devices::restore_device(self, device, expected_version, event).await
    }

    async fn superseded_key(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &KeyId,
    ) -> Result<Option<SealedKey>, Unavailable> {
        keys::superseded_key(self, tenant, device, key).await
    }

    async fn rotation_requests(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RotationPage, Unavailable> {
        keys::rotation_requests(self, tenant, cursor, limit).await
    }

    async fn tenant_settings(&self, tenant: &TenantId) -> Result<(TenantPolicy, u64), Unavailable> {
        tenant::tenant_settings(self, tenant).await
    }

    async fn commit_settings(
        &self,
        tenant: &TenantId,
        settings: &TenantPolicy,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        tenant::commit_settings(self, tenant, settings, expected_version, event).await
    }

    async fn commit_incident(
        &self,
        incident: &Incident,
        summary: Option<&OpenIncident>,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        tenant::commit_incident(self, incident, summary, expected_version, event).await
    }

    async fn incident(
        &self,
        tenant: &TenantId,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Unavailable> {
        tenant::incident(self, tenant, id).await
    }

    async fn incidents(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<Incident>, Unavailable> {
        tenant::incidents(self, tenant, limit).await
    }

    async fn stored_keys(
        &self,
        tenant: Option<&TenantId>,
        cursor: Option<&str>,
    ) -> Result<StoredKeyPage, Unavailable> {
        keys::stored_keys(self, tenant, cursor).await
    }

    async fn sweep_expired(&self, _now: OffsetDateTime) -> Result<usize, Unavailable> {
        keys::sweep_expired(self, _now).await
    }
}
