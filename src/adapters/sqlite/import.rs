//! `ImportStore` on SQLite: `portal serve --data-dir --seed FILE` and the
//! first start's demo data go through `tools::import` like `portal import`
//! does on DynamoDB, so re-importing the same file skips what it wrote.

use super::{SqliteStore, codec, rows};
use crate::domain::audit::AuditEvent;
use crate::domain::error::Unavailable;
use crate::domain::ids::{DeviceId, TenantId};
use crate::domain::model::{Tenant, TenantPolicy};
use crate::domain::ports::{ImportDevice, ImportStore, StoredDevice};
use async_trait::async_trait;
use std::collections::HashMap;

#[async_trait]
impl ImportStore for SqliteStore {
    async fn stored_devices(
        &self,
        devices: &[(TenantId, DeviceId)],
    ) -> Result<HashMap<(TenantId, DeviceId), StoredDevice>, Unavailable> {
        let devices = devices.to_vec();
        self.read(move |tx| {
            let mut out = HashMap::new();
            for (t, d) in devices {
                if let Some(row) = rows::device(tx, &t, &d)? {
                    let stored = StoredDevice {
                        fingerprint: Some(row.fingerprint),
                        owner: row.device.owner,
                    };
                    out.insert((t, d), stored);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn stored_tenants(
        &self,
        tenants: &[TenantId],
    ) -> Result<HashMap<TenantId, TenantPolicy>, Unavailable> {
        let tenants = tenants.to_vec();
        self.read(move |tx| {
            let mut out = HashMap::new();
            for t in tenants {
                let json: Option<Option<String>> =
                    rusqlite::OptionalExtension::optional(tx.query_row(
                        "SELECT policy FROM tenants WHERE tenant = ?1",
                        [t.as_str()],
                        |r| r.get(0),
                    ))?;
                if let Some(j) = json.flatten() {
                    out.insert(t, codec::policy_from_json(&j)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_tenants(&self, tenants: &[Tenant]) -> Result<(), Unavailable> {
        let tenants = tenants.to_vec();
        self.write(move |tx| {
            for t in &tenants {
                // An import sets the settings; an open incident stays open.
                let mut policy = t.policy.clone();
                policy.incident = rows::policy(tx, &t.id)?.incident;
                rows::put_policy(tx, &t.id, &policy)?;
            }
            Ok(())
        })
        .await
    }

    async fn put_devices(&self, devices: &[ImportDevice]) -> Result<(), Unavailable> {
        let devices = devices.to_vec();
        self.write(move |tx| {
            for d in &devices {
                let dev = &d.sealed.device;
                // An import replaces a device wholesale, superseded keys included.
                rows::delete_device(tx, &dev.tenant, &dev.device_id)?;
                rows::put_device(
                    tx,
                    &rows::DeviceRow {
                        device: dev.clone(),
                        digests: d.digests.clone(),
                        fingerprint: d.fingerprint.clone(),
                    },
                )?;
                rows::put_current(tx, &dev.tenant, &dev.device_id, &d.sealed.sealed)?;
                rows::bump_device_version(tx, &dev.tenant, &dev.device_id)?;
            }
            Ok(())
        })
        .await
    }

    async fn append_import_events(&self, events: &[AuditEvent]) -> Result<(), Unavailable> {
        let events = events.to_vec();
        self.write(move |tx| events.iter().try_for_each(|e| rows::append(tx, e)))
            .await
    }
}
