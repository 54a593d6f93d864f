//! The `entra-sync` binary as a real process under the Lambda Runtime API
//! emulator, against the fake Graph of `tests/aws/entra_sync` and moto
//! (DynamoDB, KMS, Secrets Manager): a run with a wrong secret fails the
//! invocation; after the secret is rotated in Secrets Manager (no restart)
//! the next run copies every new key, and a run after that reads no key
//! again. No secret, token or password reaches its output.
//!
//! Also runs `$PORTAL_SMOKE_BOOTSTRAP_DIR/entra-sync/bootstrap` (the
//! cargo-lambda package) when that variable is set.

#[path = "../../../tests/aws/entra_sync/fake_graph.rs"]
#[allow(dead_code)]
mod fake_graph;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use fake_graph::{Device, Graph, Key, Shared};
use lambda_emulator::smoke::{self, TIMEOUT};
use lambda_emulator::{Emulator, EmulatorHandle, FunctionProcess};
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const FUNCTION: &str = "entra-sync";
const OWNER: &str = "a11ce000-0000-4000-8000-000000000001";
const D1: &str = "1ab40ab2-32a8-4b00-b6b5-ba724e407de9";
const D2: &str = "2ef04ef1-23b0-2e00-a3a5-ab345e567ab6";
const K1: &str = "b465e4e8-e4e8-b465-e8e4-65b4e8e465b4";
const K2: &str = "6a30ed7b-247b-4d26-86b5-2f405e55ea42";
const K3: &str = "33333333-3333-4333-8333-333333333333";
const WRONG_SECRET: &str = "an-expired-client-secret-value";

fn binaries() -> Vec<std::path::PathBuf> {
    smoke::binaries(FUNCTION, env!("CARGO_BIN_EXE_entra-sync"))
}

/// A well-formed recovery password (each group a multiple of 11).
fn password(n: u32) -> String {
    (0..8)
        .map(|g| format!("{:06}", ((n * 8 + g) % 65_536) * 11))
        .collect::<Vec<_>>()
        .join("-")
}

fn moto_url() -> String {
    std::env::var("PORTAL_TEST_MOTO_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .expect("moto is not running: PORTAL_TEST_MOTO_URL is not set (scripts/test.sh starts it)")
}

async fn moto() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(moto_url())
        .load()
        .await
}

/// Entra: alice's D1 with two keys (one on the throttled second page), and
/// D2 with K3, which the store already holds.
fn entra() -> Graph {
    let key = |id, device_id, volume_type, pw| Key {
        id,
        device_id,
        volume_type,
        created: "2024-01-15T09:30:00Z",
        password: password(pw),
    };
    Graph {
        keys: vec![
            key(K1, D1, json!("1"), 1),
            key(K2, D1, json!("fixedDataVolume"), 2),
            key(K3, D2, json!(1), 3),
        ],
        devices: vec![
            Device {
                device_id: D1,
                name: "DESKTOP-ALICE",
                owner: Some(OWNER),
            },
            Device {
                device_id: D2,
                name: "LAPTOP-BOB",
                owner: Some(OWNER),
            },
        ],
        ..Default::default()
    }
}

/// Tables, a recovery-key CMK and the secret (holding a wrong value) on
/// moto, and D2 with K3 imported; the function's environment.
struct Aws {
    sdk: SdkConfig,
    secret_arn: String,
    env: Vec<(String, String)>,
}

async fn aws(graph_base: &str) -> Aws {
    let sdk = moto().await;
    let prefix = format!("rp-fn-{}", uuid_like());
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    recovery_portal::adapters::aws::create_tables(&dynamodb, &prefix)
        .await
        .unwrap();
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = kms.create_key().send().await.unwrap();
    let key_id = key.key_metadata.unwrap().arn.unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = secrets
        .create_secret()
        .name(format!("{prefix}-entra-client-secret"))
        .secret_string(WRONG_SECRET)
        .send()
        .await
        .unwrap();
    let secret_arn = secret.arn.unwrap();
    let seed = json!({
        "tenants": [{"tenant_id": "contoso", "self_service": true}],
        "devices": [{"tenant_id": "contoso", "device_id": D2, "owner": OWNER, "display_name": "LAPTOP-BOB",
            "os": "Windows 10.0.22631.4317", "managed_by": "organization",
            "recovery_keys": [{"key_id": K3, "volume_type": "operating_system",
                "recovery_password": password(3), "created_at": "2024-01-15T09:30:00Z"}]}]});
    let seed = recovery_portal::tools::seed::parse(&seed.to_string()).unwrap();
    let store = DynamoStore::new(dynamodb, &prefix);
    let cipher = KmsCipher::new(kms, Some(key_id.clone()));
    recovery_portal::tools::import::import(&seed, &cipher, &store, &|_, _| {})
        .await
        .unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", moto_url()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("PORTAL_BACKEND", "aws".into()),
        ("PORTAL_TABLE_PREFIX", prefix.clone()),
        ("PORTAL_KMS_KEY_ID", key_id),
        ("PORTAL_METRICS_NAMESPACE", "RecoveryPortal".into()),
        ("PORTAL_SYNC_TENANT", "contoso".into()),
        ("PORTAL_ENTRA_TENANT_ID", fake_graph::ENTRA_TENANT.into()),
        ("PORTAL_ENTRA_CLIENT_ID", fake_graph::CLIENT_ID.into()),
        ("PORTAL_ENTRA_CLIENT_SECRET_ARN", secret_arn.clone()),
        ("PORTAL_GRAPH_URL", graph_base.into()),
        ("PORTAL_ENTRA_LOGIN_URL", graph_base.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Aws {
        sdk,
        secret_arn,
        env,
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

fn start(program: &std::path::Path, env: &[(String, String)]) -> (EmulatorHandle, FunctionProcess) {
    let (addr, emu) = Emulator::start().unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let f = FunctionProcess::spawn(program, FUNCTION, addr, &env).unwrap();
    (emu, f)
}

/// EventBridge Scheduler's invocation: the schedule's input, `{}`.
fn invoke(emu: &EmulatorHandle, f: &FunctionProcess) -> Result<Value, String> {
    emu.push("{}");
    match emu.wait_response(TIMEOUT) {
        Ok(reply) => Ok(reply.json().expect("the summary is JSON")),
        Err(e) => Err(format!("{e}\n{}", f.output())),
    }
}

fn reads(g: &Shared) -> Vec<String> {
    let mut r = std::mem::take(&mut g.lock().unwrap().key_reads);
    r.sort();
    r
}

#[test]
fn syncs_on_schedule_reads_its_secret_per_run_and_fails_a_failed_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for program in binaries() {
        let graph: Shared = Arc::new(Mutex::new(entra()));
        let base = rt.block_on(fake_graph::spawn(graph.clone()));
        let aws = rt.block_on(aws(&base));
        let (emu, mut f) = start(&program, &aws.env);
        assert!(
            emu.wait_next(1, TIMEOUT).is_some(),
            "no /next; output:\n{}",
            f.output()
        );

        // Entra refuses the secret: the invocation fails, nothing is read.
        let e = invoke(&emu, &f).expect_err("a failed run fails the invocation");
        assert!(e.contains("invalid_client") || e.contains("401"), "{e}");
        assert!(reads(&graph).is_empty());
        assert!(f.is_running(), "the function keeps serving");

        // Rotated in Secrets Manager: the next run uses it, no restart.
        rt.block_on(
            aws_sdk_secretsmanager::Client::new(&aws.sdk)
                .put_secret_value()
                .secret_id(&aws.secret_arn)
                .secret_string(fake_graph::SECRET)
                .send(),
        )
        .unwrap();
        let s = invoke(&emu, &f).unwrap();
        assert_eq!(reads(&graph), [K2, K1], "{s}");
        assert_eq!(
            (
                &s["keys"]["new"],
                &s["keys"]["unchanged"],
                &s["devices"]["created"]
            ),
            (&json!(2), &json!(1), &json!(1)),
            "{s}"
        );
        assert_eq!(s["actor"], "sync:entra", "{s}");
        assert_eq!(s["graph"]["retries"], 1, "the 429 was retried: {s}");

        // Everything held: no key is read again.
        let s = invoke(&emu, &f).unwrap();
        assert!(reads(&graph).is_empty(), "{s}");
        assert_eq!(
            (&s["keys"]["new"], &s["keys"]["unchanged"]),
            (&json!(0), &json!(3)),
            "{s}"
        );
        assert!(graph.lock().unwrap().violations.is_empty());

        // The function's stdout is read by a thread of the emulator: under
        // load the last lines can arrive after the invocation's response.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut log = f.output();
        while log.matches("\"EntraSyncSucceeded\":1").count() < 2
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
            log = f.output();
        }
        assert_eq!(log.matches("\"EntraSyncSucceeded\":1").count(), 2, "{log}");
        assert!(log.contains("\"EntraSyncKeysCopied\":2"), "{log}");
        assert!(log.contains("entra sync failed"), "{log}");
        for secret in [
            password(1),
            password(2),
            password(3),
            fake_graph::SECRET.into(),
            WRONG_SECRET.into(),
            fake_graph::TOKEN.into(),
        ] {
            assert!(!log.contains(&secret), "a secret reached the logs:\n{log}");
        }
    }
}

/// The settings the function needs, without AWS or Graph behind them.
fn offline_env() -> Vec<(&'static str, &'static str)> {
    let mut env = smoke::AWS_BACKEND.to_vec();
    env.extend([
        ("PORTAL_SYNC_TENANT", "contoso"),
        ("PORTAL_ENTRA_TENANT_ID", fake_graph::ENTRA_TENANT),
        ("PORTAL_ENTRA_CLIENT_ID", fake_graph::CLIENT_ID),
        (
            "PORTAL_ENTRA_CLIENT_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rp-entra-client-secret-AbCdEf",
        ),
    ]);
    env
}

#[test]
fn a_bad_configuration_stops_the_function_at_init() {
    for program in binaries() {
        for (drop, add, named) in [
            ("PORTAL_SYNC_TENANT", None, "PORTAL_SYNC_TENANT"),
            (
                "",
                Some(("PORTAL_ENTRA_CLIENT_SECRET", "s3cr3t-in-env")),
                "PORTAL_ENTRA_CLIENT_SECRET",
            ),
            ("PORTAL_KMS_KEY_ID", None, "PORTAL_KMS_KEY_ID"),
        ] {
            let mut env: Vec<_> = offline_env()
                .into_iter()
                .filter(|(k, _)| *k != drop)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            env.extend(add.map(|(k, v)| (k.to_owned(), v.to_owned())));
            let (emu, mut f) = start(&program, &env);
            let status = f.wait_exit(TIMEOUT).expect("the function exits at init");
            assert!(!status.success(), "{status:?}");
            let out = f.output();
            assert!(out.contains(named), "{named}: {out}");
            assert!(!out.contains("s3cr3t-in-env"), "{out}");
            assert!(emu.first_next_at().is_none());
        }
    }
}

/// Init reads no CA file and connects only to the runtime API (no AWS,
/// no Secrets Manager, no Graph); the guard is not blind.
#[test]
fn init_reads_no_trust_store_and_connects_only_to_the_runtime_api() {
    for program in binaries() {
        let t = smoke::trace_init(&program, FUNCTION, &offline_env());
        assert!(t.trust_store_opens.is_empty(), "{:?}", t.trust_store_opens);
        assert!(t.foreign_connects.is_empty(), "{:?}", t.foreign_connects);
        let mut env = offline_env();
        env.push(("PORTAL_TLS_ROOTS", "system"));
        let t = smoke::trace_init(&program, FUNCTION, &env);
        assert!(
            !t.trust_store_opens.is_empty(),
            "with PORTAL_TLS_ROOTS=system the trace must see the trust store"
        );
    }
}
