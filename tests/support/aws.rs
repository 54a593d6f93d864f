//! Shared fixtures of the AWS adapter tests: the moto endpoint, SDK
//! configuration with dummy credentials, fresh tables and KMS keys, a call
//! counter, a test seed and a token-verifier double.
#![allow(dead_code)]

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher};
use recovery_portal::api::{self, ApiRequest, ApiResponse, Routes};
use recovery_portal::domain::caller::{Caller, Permissions};
use recovery_portal::domain::error::AuthFailure;
use recovery_portal::domain::ids::{TenantId, UserId};
use recovery_portal::domain::ports::Portal;
use recovery_portal::domain::ports::{
    KeyCipher, LifecycleStore, Store, SystemClock, TokenVerifier,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MOTO_ENV: &str = "PORTAL_TEST_MOTO_URL";

/// The moto endpoint. Fails the test (never skips it) when moto is not
/// running.
pub fn moto_url() -> String {
    match std::env::var(MOTO_ENV) {
        Ok(u) if !u.trim().is_empty() => u.trim().to_owned(),
        _ => panic!(
            "moto is not running: {MOTO_ENV} is not set. Run scripts/test.sh, or start moto with \
             `source scripts/moto.sh start` (stop it with `scripts/moto.sh stop`) and run the \
             tests again."
        ),
    }
}

/// SDK configuration for moto: dummy credentials and region set on the
/// builder (not in the process environment), the production retry policy,
/// and attempt timeouts generous enough for a loaded 2-core machine.
pub async fn moto_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(moto_url())
        .retry_config(recovery_portal::adapters::aws::retry_config())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

/// A table prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("rp-test-{}", uuid::Uuid::new_v4().simple())
}

/// Records every SDK operation (and every attempt) of the clients it is
/// registered on, as `service.Operation`.
#[derive(Debug, Default, Clone)]
pub struct CallLog {
    ops: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<usize>>,
}

impl CallLog {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }
    pub fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap()
    }
    pub fn reset(&self) {
        self.take();
        *self.attempts.lock().unwrap() = 0;
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // Once per operation, after the operation's own configuration (which
    // holds its name) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        self.ops.lock().unwrap().push(op);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.attempts.lock().unwrap() += 1;
        Ok(())
    }
}

/// Fresh tables and a fresh KMS key on moto, with clients that log their calls.
pub struct MotoEnv {
    pub sdk: SdkConfig,
    pub prefix: String,
    pub kms_key_id: String,
    pub calls: CallLog,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub store: Arc<DynamoStore>,
    pub cipher: Arc<KmsCipher>,
}

pub async fn moto_env() -> MotoEnv {
    let sdk = moto_config().await;
    let prefix = fresh_prefix();
    let calls = CallLog::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .interceptor(calls.clone())
            .build(),
    );
    recovery_portal::adapters::aws::create_tables(&dynamodb, &prefix)
        .await
        .unwrap_or_else(|e| panic!("creating tables on moto at {} failed (is moto running? scripts/moto.sh status): {e}", moto_url()));
    let kms_key_id = kms
        .create_key()
        .description("recovery-portal test key")
        .send()
        .await
        .expect("create a KMS key on moto")
        .key_metadata
        .expect("key metadata")
        .key_id;
    let store = Arc::new(DynamoStore::new(dynamodb.clone(), &prefix));
    let cipher = Arc::new(KmsCipher::new(kms.clone(), Some(kms_key_id.clone())));
    calls.reset();
    MotoEnv {
        sdk,
        prefix,
        kms_key_id,
        calls,
        dynamodb,
        kms,
        store,
        cipher,
    }
}

/// A valid BitLocker recovery password, different for each `n`.
pub fn password(n: u32) -> String {
    (0..8u32)
        .map(|i| format!("{:06}", 11 * ((n * 131 + i * 7919 + 1) % 65536)))
        .collect::<Vec<_>>()
        .join("-")
}

pub fn key(key_id: &str, volume_type: &str, pw: u32, created_at: &str) -> serde_json::Value {
    serde_json::json!({
        "key_id": key_id,
        "volume_type": volume_type,
        "recovery_password": password(pw),
        "created_at": created_at,
    })
}

pub fn device(
    tenant: &str,
    device_id: &str,
    owner: &str,
    keys: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": tenant,
        "device_id": device_id,
        "owner": owner,
        "display_name": format!("{device_id} of {owner}"),
        "os": "Windows 11",
        "managed_by": "organization",
        "recovery_keys": keys,
    })
}

pub fn tenants() -> serde_json::Value {
    serde_json::json!([
        {"tenant_id": "t1", "self_service": true,
         "helpdesk": {"name": "T1 IT", "email": "it@t1.example", "phone": "+1 555 0100"}},
        {"tenant_id": "t2", "self_service": false,
         "helpdesk": {"name": "T2 Service Desk", "url": "https://help.t2.example"}},
    ])
}

pub fn seed_json(devices: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "tenants": tenants(), "devices": devices }).to_string()
}

/// Token-verifier double: a token is `<tenant>|<user>|<perm>,<perm>`;
/// anything else is a bad signature.
pub struct FakeVerifier;

#[async_trait]
impl TokenVerifier for FakeVerifier {
    async fn verify(&self, token: &str) -> Result<Caller, AuthFailure> {
        let parts: Vec<&str> = token.split('|').collect();
        let [tenant, user, perms] = parts.as_slice() else {
            return Err(AuthFailure::Signature);
        };
        Ok(Caller {
            tenant: TenantId::parse(tenant).map_err(|_| AuthFailure::Malformed)?,
            user: UserId::parse(user).map_err(|_| AuthFailure::Malformed)?,
            permissions: Permissions::from_names(perms.split(',')),
            device: None,
            expires_at: i64::MAX,
            auth_time: None,
        })
    }
}

pub fn portal<S: Store + LifecycleStore + 'static>(
    store: Arc<S>,
    cipher: Arc<dyn KeyCipher>,
) -> Portal {
    Portal {
        store: store.clone(),
        lifecycle: store,
        cipher,
        clock: Arc::new(SystemClock),
        verifier: Arc::new(FakeVerifier),
        key_rate_limit: 10,
        helpdesk_rate_limit: 10,
        incident_max_rate_limit: recovery_portal::config::DEFAULT_INCIDENT_MAX_RATE_LIMIT,
        metrics: Arc::new(recovery_portal::domain::ports::NoMetrics),
        max_auth_age: None,
    }
}

/// One request through the real HTTP mapping, all routes served.
pub async fn call(
    portal: &Portal,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: &str,
) -> (ApiResponse, serde_json::Value) {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (path_and_query.to_owned(), None),
    };
    let mut headers = ::http::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            ::http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    if !body.is_empty() {
        headers.insert(
            ::http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
    }
    let req = ApiRequest {
        method: method.parse().unwrap(),
        path,
        query,
        headers,
        body: bytes::Bytes::from(body.to_owned()),
        source_ip: Some("192.0.2.10".into()),
        request_id: format!("req-{}", uuid::Uuid::new_v4().simple()),
    };
    let resp = api::handle(portal, Routes::All, req).await;
    let json = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
    (resp, json)
}
