//! Fault injection with aws-smithy-mocks: DynamoDB and KMS failures on the
//! key-retrieval path end in a 503 with Retry-After and disclose nothing.
//! The clients are the real SDK clients with the production retry policy;
//! only the HTTP exchange is replaced. No moto needed.

use crate::support::aws as common_aws;

use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_kms::operation::decrypt::DecryptOutput;
use aws_sdk_kms::primitives::Blob;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use common_aws::{call, device, key, password, portal, seed_json};
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher, items};
use recovery_portal::domain::model::{SealedDevice, SealedKey};
use recovery_portal::domain::ports::ImportDevice;
use std::sync::Arc;
use std::time::Duration;

const PREFIX: &str = "mock";
const KEY_ID: &str = "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B";

fn interceptor(rules: &[&Rule]) -> MockResponseInterceptor {
    rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
        |i, r| i.with_rule(r),
    )
}

/// The production retry policy, with a short first back-off to keep the test fast.
fn retry() -> aws_config::retry::RetryConfig {
    recovery_portal::adapters::aws::retry_config().with_initial_backoff(Duration::from_millis(5))
}

fn dynamodb(rules: &[&Rule]) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "mock",
        ))
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .retry_config(retry())
        .timeout_config(recovery_portal::adapters::aws::timeout_config())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

fn kms(rules: &[&Rule]) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "mock",
        ))
        .http_client(create_mock_http_client())
        .interceptor(interceptor(rules))
        .retry_config(retry())
        .timeout_config(recovery_portal::adapters::aws::timeout_config())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// The stored device item a `BatchGetItem` returns (its ciphertext is a
/// placeholder: these tests mock `Decrypt`).
fn device_item() -> items::Item {
    let seed = recovery_portal::tools::seed::parse(&seed_json(vec![device(
        "t1",
        "PC-1",
        "u1",
        vec![key(KEY_ID, "operating_system", 7, "2024-05-15T09:30:00Z")],
    )]))
    .unwrap();
    let d = &seed.devices[0];
    items::device_item(&ImportDevice {
        sealed: SealedDevice {
            device: d.device.clone(),
            policy: d.policy.clone(),
            sealed: vec![(d.device.keys[0].key_id, SealedKey(b"opaque".to_vec()))],
        },
        fingerprint: "fp".into(),
        digests: vec![],
    })
}

/// The tenant item (self-service on): the policy's one source.
fn tenant_item() -> items::Item {
    let seed = recovery_portal::tools::seed::parse(&seed_json(vec![])).unwrap();
    items::tenant_item(&seed.tenants[0])
}

fn batch_get_ok() -> Rule {
    mock!(aws_sdk_dynamodb::Client::batch_get_item).then_output(|| {
        BatchGetItemOutput::builder()
            .responses(
                format!("{PREFIX}-devices"),
                vec![device_item(), tenant_item()],
            )
            .build()
    })
}

fn transact_ok() -> Rule {
    mock!(aws_sdk_dynamodb::Client::transact_write_items)
        .then_output(|| TransactWriteItemsOutput::builder().build())
}

fn decrypt_ok() -> Rule {
    mock!(aws_sdk_kms::Client::decrypt).then_output(|| {
        DecryptOutput::builder()
            .plaintext(Blob::new(password(7).into_bytes()))
            .build()
    })
}

fn json_error(status: u16, body: &'static str) -> HttpResponse {
    let mut r = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    r.headers_mut()
        .insert("content-type", "application/x-amz-json-1.1");
    r
}

fn portal_on(
    dynamo: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
) -> recovery_portal::domain::ports::Portal {
    portal(
        Arc::new(DynamoStore::new(dynamo, PREFIX)),
        Arc::new(KmsCipher::new(kms, Some("alias/recovery-keys".into()))),
    )
}

async fn retrieve(
    p: &recovery_portal::domain::ports::Portal,
) -> (u16, Option<String>, serde_json::Value) {
    let (resp, body) = call(
        p,
        "POST",
        "/v1/devices/PC-1/recovery-key",
        Some("t1|u1|RecoveryKey.Read"),
        "",
    )
    .await;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry_after, body)
}

/// Control: with every call succeeding, the mocks produce a disclosure, so
/// the failures below are failures of one call only.
#[tokio::test]
async fn control_all_calls_succeed() {
    let (get, put, dec) = (batch_get_ok(), transact_ok(), decrypt_ok());
    let p = portal_on(dynamodb(&[&get, &put]), kms(&[&dec]));
    let (status, _, body) = retrieve(&p).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recovery_password"], password(7));
    assert_eq!(
        (get.num_calls(), put.num_calls(), dec.num_calls()),
        (1, 1, 1)
    );
}

/// The audit write fails (DynamoDB 500 on every attempt): 503 with
/// Retry-After, and the key is never decrypted.
#[tokio::test]
async fn a_failed_audit_write_is_a_503_and_nothing_is_decrypted() {
    let get = batch_get_ok();
    let put = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_http_response(|| {
        json_error(
            500,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#,
        )
    });
    let dec = decrypt_ok();
    let p = portal_on(dynamodb(&[&get, &put]), kms(&[&dec]));
    let (status, retry_after, body) = retrieve(&p).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "503 must carry Retry-After");
    assert!(body.get("recovery_password").is_none(), "{body}");
    assert_eq!(
        put.num_calls(),
        3,
        "the write is retried, boundedly: 3 attempts"
    );
    assert_eq!(
        dec.num_calls(),
        0,
        "no decrypt without a durable audit event"
    );
}

/// A cancelled transaction for another reason than our conditions (here a
/// throughput error on the audit item) is also a 503 without decryption.
#[tokio::test]
async fn a_cancelled_transaction_is_a_503_and_nothing_is_decrypted() {
    let get = batch_get_ok();
    let put = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_http_response(|| {
        json_error(
            400,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{"Code":"ProvisionedThroughputExceeded"},{"Code":"None"}]}"#,
        )
    });
    let dec = decrypt_ok();
    let p = portal_on(dynamodb(&[&get, &put]), kms(&[&dec]));
    let (status, retry_after, body) = retrieve(&p).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert_eq!(dec.num_calls(), 0);
}

/// KMS throttles every attempt: 503 with Retry-After after a bounded number
/// of attempts.
#[tokio::test]
async fn kms_throttling_is_a_503() {
    let (get, put) = (batch_get_ok(), transact_ok());
    let dec = mock!(aws_sdk_kms::Client::decrypt).then_http_response(|| {
        json_error(
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
    });
    let p = portal_on(dynamodb(&[&get, &put]), kms(&[&dec]));
    let (status, retry_after, body) = retrieve(&p).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(body.get("recovery_password").is_none(), "{body}");
    assert_eq!(dec.num_calls(), 3, "3 attempts");
}

/// KMS refusing the ciphertext (wrong context, tampered) is not retried and
/// is a 500, not a 503: retrying cannot help.
#[tokio::test]
async fn a_rejected_ciphertext_is_a_500_without_retries() {
    let (get, put) = (batch_get_ok(), transact_ok());
    let dec = mock!(aws_sdk_kms::Client::decrypt).then_http_response(|| {
        json_error(
            400,
            r#"{"__type":"InvalidCiphertextException","message":""}"#,
        )
    });
    let p = portal_on(dynamodb(&[&get, &put]), kms(&[&dec]));
    let (status, _, body) = retrieve(&p).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.get("recovery_password").is_none(), "{body}");
    assert_eq!(dec.num_calls(), 1);
}

/// The device read fails: 503, no write, no decrypt.
#[tokio::test]
async fn a_failed_read_is_a_503() {
    let get = mock!(aws_sdk_dynamodb::Client::batch_get_item).then_http_response(|| {
        json_error(
            400,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#,
        )
    });
    let (put, dec) = (transact_ok(), decrypt_ok());
    let p = portal_on(dynamodb(&[&get, &put]), kms(&[&dec]));
    let (status, retry_after, body) = retrieve(&p).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    // The SDK's standard retry policy: 3 attempts in all.
    assert_eq!(get.num_calls(), 3);
    // The one write is the denied attempt's audit record; nothing decrypted.
    assert_eq!((put.num_calls(), dec.num_calls()), (1, 0));
}
