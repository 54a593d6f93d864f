//! AWS's own error answers under load, not network faults: throttling
//! (`ThrottlingException`, `ProvisionedThroughputExceededException`,
//! `RequestLimitExceeded`; KMS `ThrottlingException`), cancelled
//! transactions (`TransactionConflict`, `ThrottlingError`) and
//! `BatchGetItem`'s `UnprocessedKeys`, injected on the wire by a proxy in
//! front of moto (tests/support/fault_proxy.rs). The clients under test use
//! the production retry policy and timeouts.
//!
//! On the single and batch key routes and the listing route, the same
//! properties as under network faults: every 200 (and every batch item 200)
//! has a durable granted audit event, and nothing is decrypted without one;
//! never a 500; every 503 carries `Retry-After` (a batch item
//! `retry_after`); throttles within the SDK's budget end in 200; unprocessed
//! keys are sent again, never read as "not found"; the same request succeeds
//! once the faults are off.
//!
//! Needs `PORTAL_TEST_MOTO_URL` (see scripts/moto.sh); fails without it.

use crate::support::aws::{MotoEnv, call, device, key, moto_env, moto_url, password, portal};
use crate::support::fault_proxy::{
    BATCH_GET_ITEM, DECRYPT, Fault, FaultProxy, GET_ITEM, QUERY, TRANSACT_WRITE_ITEMS, Unprocessed,
    When, proxied_config,
};
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher, MAX_ATTEMPTS};
use recovery_portal::domain::audit::{AuditEvent, AuditQuery, Outcome};
use recovery_portal::domain::ids::{TenantId, UserId};
use recovery_portal::domain::ports::{Portal, Store};
use serde_json::json;
use std::sync::Arc;

/// Devices `PC-<i>` of owner `u<i>`, one key each.
const DEVICES: u32 = 4;
const AGENT: &str = "agent";

fn key_id(i: u32) -> String {
    format!("{:04X}{i:04X}-5B6A-4798-8A9B-0C1D2E3F4A{i:02X}", 0xA000 + i)
}

/// Fresh tables and key on moto, seeded directly; the portal under test
/// reaches DynamoDB and KMS through the fault proxy.
struct Rig {
    env: MotoEnv,
    proxy: FaultProxy,
    portal: Portal,
}

async fn rig() -> Rig {
    let env = moto_env().await;
    let devices = (0..DEVICES)
        .map(|i| {
            device(
                "t1",
                &format!("PC-{i}"),
                &format!("u{i}"),
                vec![key(
                    &key_id(i),
                    "operating_system",
                    i,
                    "2024-05-15T09:30:00Z",
                )],
            )
        })
        .collect();
    let seed =
        recovery_portal::tools::seed::parse(&crate::support::aws::seed_json(devices)).unwrap();
    recovery_portal::tools::import::import(
        &seed,
        env.cipher.as_ref(),
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(&moto_url()).await;
    let sdk = proxied_config(&proxy.url).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &env.prefix,
    ));
    let cipher = Arc::new(KmsCipher::new(
        aws_sdk_kms::Client::new(&sdk),
        Some(env.kms_key_id.clone()),
    ));
    let portal = portal(store, cipher);
    Rig { env, proxy, portal }
}

impl Rig {
    /// An incident in t1 (faults off), so batches are open.
    async fn open_incident(&self) {
        let (resp, body) = call(
            &self.portal,
            "POST",
            "/v1/incidents",
            Some("t1|lead|RecoveryKey.Incident"),
            &json!({"reason": "outage", "duration_hours": 1, "helpdesk_rate_limit": 150})
                .to_string(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 201, "{body}");
    }

    /// `POST /v1/devices/PC-<i>/recovery-key` by its owner; checks the
    /// properties every answer holds and returns the status.
    async fn retrieve(&self, i: u32) -> u16 {
        let (resp, body) = call(
            &self.portal,
            "POST",
            &format!("/v1/devices/PC-{i}/recovery-key"),
            Some(&format!("t1|u{i}|RecoveryKey.Read")),
            "",
        )
        .await;
        let status = resp.status().as_u16();
        match status {
            200 => assert_eq!(body["recovery_password"], password(i), "{body}"),
            503 => {
                assert!(
                    resp.headers().contains_key("retry-after"),
                    "a 503 without Retry-After: {body}"
                );
                assert!(body.get("recovery_password").is_none(), "{body}");
            }
            other => panic!("PC-{i}: {other} (only 200 or 503 allowed): {body}"),
        }
        status
    }

    /// `POST /v1/recovery-keys/batch` of keys `ids` by the agent; checks
    /// the properties every answer holds. `Err(())`: the whole request was
    /// a 503 (with Retry-After); `Ok`: each item's status, in request order.
    async fn batch(&self, ids: &[u32]) -> Result<Vec<u16>, ()> {
        let keys: Vec<String> = ids.iter().map(|&i| key_id(i)).collect();
        let (resp, body) = call(
            &self.portal,
            "POST",
            "/v1/recovery-keys/batch",
            Some(&format!("t1|{AGENT}|RecoveryKey.Read.All")),
            &json!({"key_ids": keys, "reason": "INC-7"}).to_string(),
        )
        .await;
        match resp.status().as_u16() {
            200 => {}
            503 => {
                assert!(resp.headers().contains_key("retry-after"), "{body}");
                return Err(());
            }
            other => panic!("batch: {other}: {body}"),
        }
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), ids.len(), "{body}");
        Ok(results
            .iter()
            .zip(ids)
            .map(|(item, &i)| {
                let status = item["status"].as_u64().unwrap() as u16;
                match status {
                    200 => assert_eq!(item["recovery_password"], password(i), "{item}"),
                    503 => {
                        assert!(
                            item["retry_after"].as_u64().is_some_and(|s| s > 0),
                            "a batch item 503 without retry_after: {item}"
                        );
                        assert!(item.get("recovery_password").is_none(), "{item}");
                    }
                    other => panic!("key {i}: {other} (only 200 or 503 allowed): {item}"),
                }
                status
            })
            .collect())
    }

    /// The granted events of `actor`, read from moto directly (faults off).
    async fn granted(&self, actor: &str) -> Vec<AuditEvent> {
        self.env
            .store
            .audit_events(
                &TenantId::parse("t1").unwrap(),
                &AuditQuery {
                    actor: Some(UserId::parse(actor).unwrap()),
                    limit: AuditQuery::MAX_LIMIT,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .events
            .into_iter()
            .filter(|e| e.outcome == Outcome::Granted)
            .collect()
    }

    /// Granted events of the agent per key, in key order 0..DEVICES.
    async fn agent_grants_per_key(&self) -> Vec<usize> {
        let events = self.granted(AGENT).await;
        (0..DEVICES)
            .map(|i| {
                events
                    .iter()
                    .filter(|e| {
                        e.key_id
                            .is_some_and(|k| k.to_string().eq_ignore_ascii_case(&key_id(i)))
                    })
                    .count()
            })
            .collect()
    }

    fn decrypts(&self) -> usize {
        self.proxy.count(DECRYPT)
    }
}

fn all_keys() -> Vec<u32> {
    (0..DEVICES).collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

// ---------------------------------------------------------------- single

/// One throttle of each call (two of Decrypt) is absorbed by the SDK's
/// retries: 200, one granted event, one successful Decrypt.
#[tokio::test]
async fn single_throttles_within_the_retry_budget_end_in_200() {
    let rig = rig().await;
    let read = rig
        .proxy
        .add(BATCH_GET_ITEM, When::First(1), Fault::ddb_request_limit());
    let write = rig.proxy.add(
        TRANSACT_WRITE_ITEMS,
        When::First(1),
        Fault::ddb_throttling(),
    );
    let dec = rig
        .proxy
        .add(DECRYPT, When::First(2), Fault::kms_throttling());
    assert_eq!(rig.retrieve(0).await, 200);
    assert_eq!((read.fired(), write.fired(), dec.fired()), (1, 1, 2));
    assert_eq!(
        (
            rig.proxy.count(BATCH_GET_ITEM),
            rig.proxy.count(TRANSACT_WRITE_ITEMS),
            rig.decrypts()
        ),
        (2, 2, 3),
        "each call retried exactly as often as it was throttled"
    );
    rig.proxy.clear();
    assert_eq!(rig.granted("u0").await.len(), 1);
}

/// Throttled on every attempt: a 503 with Retry-After after the SDK's
/// attempts; then, faults off, the same request succeeds. `granted_while`:
/// granted events the failed request leaves (1 when only the decrypt
/// failed: the event is durable before the decrypt).
async fn single_throttled_beyond_the_budget(target: &str, fault: Fault, granted_while: usize) {
    let rig = rig().await;
    let rule = rig.proxy.add(target, When::Always, fault);
    assert_eq!(rig.retrieve(1).await, 503);
    assert_eq!(rule.fired(), MAX_ATTEMPTS as usize, "the SDK's attempts");
    if target != DECRYPT {
        assert_eq!(rig.decrypts(), 0, "nothing decrypted");
    }
    rig.proxy.clear();
    assert_eq!(rig.granted("u1").await.len(), granted_while);
    assert_eq!(rig.retrieve(1).await, 200, "recovered");
    assert_eq!(rig.granted("u1").await.len(), granted_while + 1);
}

#[tokio::test]
async fn single_read_throttled_beyond_the_budget_is_a_503_then_recovers() {
    single_throttled_beyond_the_budget(BATCH_GET_ITEM, Fault::ddb_provisioned_throughput(), 0)
        .await;
}

#[tokio::test]
async fn single_audit_write_throttled_beyond_the_budget_is_a_503_then_recovers() {
    single_throttled_beyond_the_budget(TRANSACT_WRITE_ITEMS, Fault::ddb_throttling(), 0).await;
}

#[tokio::test]
async fn single_decrypt_throttled_beyond_the_budget_is_a_503_then_recovers() {
    single_throttled_beyond_the_budget(DECRYPT, Fault::kms_throttling(), 1).await;
}

/// `UnprocessedKeys` once (all keys, or all but the first of each table)
/// are sent again: the retrieval succeeds.
#[tokio::test]
async fn single_unprocessed_keys_once_are_sent_again() {
    let rig = rig().await;
    for (i, which) in [(0, Unprocessed::All), (1, Unprocessed::AllButFirst)] {
        rig.proxy.clear();
        rig.proxy.reset_counts();
        let rule = rig
            .proxy
            .add(BATCH_GET_ITEM, When::First(1), Fault::Unprocessed(which));
        assert_eq!(rig.retrieve(i).await, 200, "{which:?}");
        assert_eq!(rule.fired(), 1);
        assert_eq!(rig.proxy.count(BATCH_GET_ITEM), 2, "{which:?}");
    }
    rig.proxy.clear();
    assert_eq!(rig.decrypts(), 1);
    assert_eq!(rig.granted("u0").await.len(), 1);
    assert_eq!(rig.granted("u1").await.len(), 1);
}

/// Keys unprocessed on every attempt (all of them, or only the last one,
/// the rate window's): a 503 with Retry-After, never a 404 (an unprocessed
/// device key is not a missing device) and never a default rate window;
/// then it recovers.
#[tokio::test]
async fn single_unprocessed_keys_on_every_attempt_are_a_503_never_a_404() {
    let rig = rig().await;
    for (i, which) in [(2, Unprocessed::All), (3, Unprocessed::Last)] {
        rig.proxy.clear();
        rig.proxy
            .add(BATCH_GET_ITEM, When::Always, Fault::Unprocessed(which));
        assert_eq!(rig.retrieve(i).await, 503, "{which:?}");
    }
    assert_eq!(rig.decrypts(), 0);
    rig.proxy.clear();
    for i in [2, 3] {
        assert_eq!(rig.granted(&format!("u{i}")).await.len(), 0);
        assert_eq!(rig.retrieve(i).await, 200, "recovered");
        assert_eq!(rig.granted(&format!("u{i}")).await.len(), 1);
    }
}

/// A cancelled audit transaction (`TransactionConflict` on the rate window,
/// `ThrottlingError` on the audit item) writes nothing, so nothing is
/// decrypted: a conflict is read again and retried (200), a throttle is a
/// 200 after retry or a 503; conflicts on every attempt are a 503.
#[tokio::test]
async fn single_cancelled_transactions_never_disclose() {
    let rig = rig().await;
    let mut ok = 0;
    rig.proxy
        .add(TRANSACT_WRITE_ITEMS, When::First(1), Fault::conflict(1));
    assert_eq!(rig.retrieve(0).await, 200, "retried after the conflict");
    assert_eq!(rig.proxy.count(TRANSACT_WRITE_ITEMS), 2);
    ok += 1;

    rig.proxy.clear();
    rig.proxy.add(
        TRANSACT_WRITE_ITEMS,
        When::First(1),
        Fault::cancelled_throttling(0),
    );
    let throttled = rig.retrieve(1).await;
    ok += usize::from(throttled == 200);

    rig.proxy.clear();
    rig.proxy
        .add(TRANSACT_WRITE_ITEMS, When::Always, Fault::conflict(1));
    assert_eq!(rig.retrieve(2).await, 503);
    assert_eq!(rig.decrypts(), ok, "one Decrypt per 200, none otherwise");

    rig.proxy.clear();
    assert_eq!(rig.granted("u0").await.len(), 1);
    assert_eq!(rig.granted("u1").await.len(), usize::from(throttled == 200));
    assert_eq!(rig.granted("u2").await.len(), 0);
    for i in [1, 2] {
        assert_eq!(rig.retrieve(i).await, 200, "recovered");
    }
    assert_eq!(rig.granted("u2").await.len(), 1);
}

// ----------------------------------------------------------------- batch

/// Throttles within the budget on every call of a batch (a key lookup, the
/// device read, the audit transaction, a decrypt): every item 200, one
/// granted event per key, one successful decrypt per key.
#[tokio::test]
async fn batch_throttles_within_the_retry_budget_end_in_200() {
    let rig = rig().await;
    rig.open_incident().await;
    let rules = [
        rig.proxy
            .add(QUERY, When::First(1), Fault::ddb_throttling()),
        // The second BatchGetItem: the devices' read (the first is the
        // tenant and rate window).
        rig.proxy.add(
            BATCH_GET_ITEM,
            When::Nth(2),
            Fault::ddb_provisioned_throughput(),
        ),
        rig.proxy.add(
            TRANSACT_WRITE_ITEMS,
            When::First(1),
            Fault::ddb_request_limit(),
        ),
        rig.proxy
            .add(DECRYPT, When::First(1), Fault::kms_throttling()),
    ];
    let statuses = rig.batch(&all_keys()).await.unwrap();
    assert_eq!(statuses, [200; DEVICES as usize]);
    assert!(rules.iter().all(|r| r.fired() == 1));
    assert_eq!(rig.decrypts(), DEVICES as usize + 1);
    rig.proxy.clear();
    assert_eq!(rig.agent_grants_per_key().await, [1; DEVICES as usize]);
}

/// Throttled on every attempt: every item a 503 with `retry_after`, then
/// the same batch succeeds. `granted_while`: events per key the failed
/// batch leaves (1 when only the decrypts failed).
async fn batch_throttled_beyond_the_budget(target: &str, fault: Fault, granted_while: usize) {
    let rig = rig().await;
    rig.open_incident().await;
    let rule = rig.proxy.add(target, When::Always, fault);
    let statuses = rig.batch(&all_keys()).await.unwrap();
    assert_eq!(statuses, [503; DEVICES as usize]);
    assert!(rule.fired() >= MAX_ATTEMPTS as usize);
    if target != DECRYPT {
        assert_eq!(rig.decrypts(), 0, "nothing decrypted");
    }
    rig.proxy.clear();
    assert_eq!(
        rig.agent_grants_per_key().await,
        [granted_while; DEVICES as usize]
    );
    assert_eq!(
        rig.batch(&all_keys()).await.unwrap(),
        [200; DEVICES as usize],
        "recovered"
    );
    assert_eq!(
        rig.agent_grants_per_key().await,
        [granted_while + 1; DEVICES as usize]
    );
}

#[tokio::test]
async fn batch_key_lookups_throttled_beyond_the_budget_are_503_items_then_recover() {
    batch_throttled_beyond_the_budget(QUERY, Fault::ddb_throttling(), 0).await;
}

#[tokio::test]
async fn batch_audit_write_throttled_beyond_the_budget_is_503_items_then_recovers() {
    batch_throttled_beyond_the_budget(TRANSACT_WRITE_ITEMS, Fault::ddb_provisioned_throughput(), 0)
        .await;
}

#[tokio::test]
async fn batch_decrypts_throttled_beyond_the_budget_are_503_items_then_recover() {
    batch_throttled_beyond_the_budget(DECRYPT, Fault::kms_throttling(), 1).await;
}

/// `UnprocessedKeys` in a batch: once (on the tenant/rate-window read, on
/// the devices' read, all or all but one) the keys are sent again and every
/// item is a 200; with a key left unprocessed on every attempt of the
/// devices' read every item is a 503
/// with `retry_after`, never a 404; on every attempt of the first read the
/// whole request is a 503 with Retry-After. Then it recovers.
#[tokio::test]
async fn batch_unprocessed_keys_are_sent_again_never_read_as_missing() {
    let rig = rig().await;
    rig.open_incident().await;
    let keys = all_keys();
    let mut ok = 0;
    for (when, which) in [
        (When::Nth(1), Unprocessed::All),
        (When::Nth(2), Unprocessed::All),
        (When::Nth(2), Unprocessed::AllButFirst),
    ] {
        rig.proxy.clear();
        let rule = rig
            .proxy
            .add(BATCH_GET_ITEM, when, Fault::Unprocessed(which));
        let statuses = rig.batch(&keys).await.unwrap();
        assert_eq!(statuses, [200; DEVICES as usize], "{when:?} {which:?}");
        assert_eq!(rule.fired(), 1);
        ok += DEVICES as usize;
    }

    rig.proxy.clear();
    rig.proxy.add(
        BATCH_GET_ITEM,
        When::After(1),
        Fault::Unprocessed(Unprocessed::Last),
    );
    let statuses = rig.batch(&keys).await.unwrap();
    assert_eq!(statuses, [503; DEVICES as usize], "never a 404");

    rig.proxy.clear();
    rig.proxy.add(
        BATCH_GET_ITEM,
        When::Always,
        Fault::Unprocessed(Unprocessed::All),
    );
    assert_eq!(rig.batch(&keys).await, Err(()), "the whole request: 503");
    assert_eq!(rig.decrypts(), ok, "nothing decrypted for a 503");

    rig.proxy.clear();
    assert_eq!(rig.agent_grants_per_key().await, [3; DEVICES as usize]);
    assert_eq!(rig.batch(&keys).await.unwrap(), [200; DEVICES as usize]);
    assert_eq!(rig.agent_grants_per_key().await, [4; DEVICES as usize]);
}

/// Cancelled batch transactions write nothing and disclose nothing: a
/// `TransactionConflict` is read again and retried (every item 200); a
/// `ThrottlingError` is a 200 after retry or a 503 per item; conflicts on
/// every attempt are 503 items. Then it recovers.
#[tokio::test]
async fn batch_cancelled_transactions_never_disclose() {
    let rig = rig().await;
    rig.open_incident().await;
    let keys = all_keys();
    rig.proxy
        .add(TRANSACT_WRITE_ITEMS, When::First(1), Fault::conflict(0));
    assert_eq!(rig.batch(&keys).await.unwrap(), [200; DEVICES as usize]);
    let mut ok = DEVICES as usize;

    rig.proxy.clear();
    rig.proxy.add(
        TRANSACT_WRITE_ITEMS,
        When::First(1),
        Fault::cancelled_throttling(2),
    );
    let statuses = rig.batch(&keys).await.unwrap();
    ok += count(&statuses, 200);

    rig.proxy.clear();
    rig.proxy
        .add(TRANSACT_WRITE_ITEMS, When::Always, Fault::conflict(0));
    assert_eq!(rig.batch(&keys).await.unwrap(), [503; DEVICES as usize]);
    assert_eq!(
        rig.decrypts(),
        ok,
        "one Decrypt per 200 item, none otherwise"
    );

    rig.proxy.clear();
    let per_key = rig.agent_grants_per_key().await;
    assert_eq!(per_key.iter().sum::<usize>(), ok, "one event per 200 item");
    assert_eq!(rig.batch(&keys).await.unwrap(), [200; DEVICES as usize]);
}

/// A batch commit moto applied whose answer was lost (a retryable error
/// instead, as after an attempt timeout): the SDK sends the same
/// transaction again, which moto (no `ClientRequestToken` support) cancels
/// on its conditions. The chunk is durable already: every item is a 200
/// with exactly one granted event, not a second commit with new events.
#[tokio::test]
async fn batch_commit_applied_but_its_answer_lost_audits_each_key_once() {
    let rig = rig().await;
    rig.open_incident().await;
    let rule = rig.proxy.add(
        TRANSACT_WRITE_ITEMS,
        When::First(1),
        Fault::Applied(Box::new(Fault::ddb_throttling())),
    );
    assert_eq!(
        rig.batch(&all_keys()).await.unwrap(),
        [200; DEVICES as usize]
    );
    assert_eq!(rule.fired(), 1);
    rig.proxy.clear();
    assert_eq!(
        rig.agent_grants_per_key().await,
        [1; DEVICES as usize],
        "one granted event per disclosed key"
    );
    assert_eq!(rig.decrypts(), DEVICES as usize);
}

// --------------------------------------------------------------- listing

/// The listing: one throttle of each call is absorbed; throttled on every
/// attempt it is a 503 with Retry-After; then it recovers.
#[tokio::test]
async fn listing_throttled_within_and_beyond_the_budget() {
    let rig = rig().await;
    let list = || async {
        let (resp, body) = call(
            &rig.portal,
            "GET",
            "/v1/devices",
            Some("t1|u0|Devices.Read"),
            "",
        )
        .await;
        let status = resp.status().as_u16();
        match status {
            200 => assert_eq!(body["devices"][0]["device_id"], "PC-0", "{body}"),
            503 => assert!(resp.headers().contains_key("retry-after"), "{body}"),
            other => panic!("listing: {other}: {body}"),
        }
        status
    };
    let q = rig
        .proxy
        .add(QUERY, When::First(1), Fault::ddb_provisioned_throughput());
    let g = rig
        .proxy
        .add(GET_ITEM, When::First(1), Fault::ddb_throttling());
    assert_eq!(list().await, 200);
    assert_eq!((q.fired(), g.fired()), (1, 1));
    rig.proxy.clear();
    rig.proxy
        .add(QUERY, When::Always, Fault::ddb_request_limit());
    assert_eq!(list().await, 503);
    rig.proxy.clear();
    assert_eq!(list().await, 200, "recovered");
}
