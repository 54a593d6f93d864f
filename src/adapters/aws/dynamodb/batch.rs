//! Helpdesk batches: reading many devices at once and committing their
//! disclosures together.

use super::*;

pub(super) async fn load_batch_state(
    store: &DynamoStore,
    tenant: &TenantId,
    actor: &UserId,
) -> Result<(TenantPolicy, RateWindow), Unavailable> {
    let tenant_pk = items::tenant_pk(tenant);
    let (tenant_items, window) = store
        .read_with_rate_window(&[(&tenant_pk, items::TENANT_SK)], tenant, actor)
        .await?;
    let policy = match tenant_items.into_iter().next() {
        Some(item) => items::parse_policy(&item, "tenant")?,
        None => TenantPolicy::default(),
    };
    Ok((policy, window))
}

pub(super) async fn load_devices(
    store: &DynamoStore,
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
        let mut got = store
            .batch_get(
                HashMap::from([(store.devices.clone(), keys.build().map_err(build_error)?)]),
                REQUEST_BACKOFF,
                "BatchGetItem devices",
            )
            .await?;
        for item in got.remove(&store.devices).unwrap_or_default() {
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

pub(super) async fn commit_batch(
    store: &DynamoStore,
    events: &[AuditEvent],
    rate: &RateUpdate,
) -> Result<Commit, Unavailable> {
    let marks: Vec<bool> = vec![true; events.len()];
    store.commit_batch_marked(events, rate, marks).await
}

impl DynamoStore {
    /// The rate window, then per event its audit item and (where `marks`
    /// says so) its key's `disclosed_at`, in one transaction. A mark whose
    /// condition fails (a superseded key) is dropped and the rest written.
    pub(super) async fn commit_batch_marked(
        &self,
        events: &[AuditEvent],
        rate: &RateUpdate,
        marks: Vec<bool>,
    ) -> Result<Commit, Unavailable> {
        let Some(first) = events.first() else {
            return Ok(Commit::Written);
        };
        if events.len() > crate::domain::ports::BATCH_COMMIT_MAX {
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
        let mut event_at = Vec::new();
        for (e, &mark) in events.iter().zip(&marks) {
            event_at.push(writes.len());
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
            // One of these events exists: event IDs are new per chunk and
            // written only with it, so an earlier send of this transaction
            // was applied and its answer lost (an attempt timeout), and
            // the SDK's resend was refused on its conditions. DynamoDB
            // answers such a resend by its ClientRequestToken; moto does
            // not. Either way: written once, never again with new events.
            Err(c) if event_at.iter().any(|&i| c.failed_condition(i)) => Ok(Commit::Written),
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
}
