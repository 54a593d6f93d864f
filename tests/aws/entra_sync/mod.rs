//! `portal sync entra` against a fake Graph, on both stores (embedded and
//! DynamoDB + KMS on moto): every key copied with its device and owner,
//! readable by the owner's token and by the helpdesk by key ID; a second
//! run reads no key again; a 429 is retried after its `Retry-After`; a key
//! the store already holds is never read; keys Entra drops are kept and
//! reported; no password in any summary. Plus the CLI on moto.

pub mod fake_graph;

use crate::support::aws::{call, moto_env, password, portal};
use fake_graph::{Device, Key, Shared};
use recovery_portal::domain::ports::{KeyCipher, LifecycleStore, Portal, Store};
use recovery_portal::tools::sync::{
    GraphClient, GraphConfig, SyncOptions, SyncSummary, sync_entra,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const CAROL: &str = "ca201000-0000-4000-8000-000000000003";
const D1: &str = "1ab40ab2-32a8-4b00-b6b5-ba724e407de9";
const D2: &str = "2ef04ef1-23b0-2e00-a3a5-ab345e567ab6";
const D3: &str = "3c3c3c3c-0000-4000-8000-000000000003";
const D5: &str = "5e5e5e5e-0000-4000-8000-000000000005";
const K1: &str = "b465e4e8-e4e8-b465-e8e4-65b4e8e465b4";
const K2: &str = "6a30ed7b-247b-4d26-86b5-2f405e55ea42";
const K3: &str = "33333333-3333-4333-8333-333333333333";
const K4: &str = "44444444-4444-4444-8444-444444444444";
const K5: &str = "55555555-5555-4555-8555-555555555555";
const K6: &str = "66666666-6666-4666-8666-666666666666";

fn key(
    id: &'static str,
    device_id: &'static str,
    volume_type: Value,
    created: &'static str,
    pw: u32,
) -> Key {
    Key {
        id,
        device_id,
        volume_type,
        created,
        password: password(pw),
    }
}

/// Entra: alice's D1 (an OS and a data key, on two pages), bob's D2 (its
/// key already in the store), D3 without an owner, a key of a device
/// Entra does not list.
pub fn entra() -> fake_graph::Graph {
    let mut g = fake_graph::Graph {
        keys: vec![
            key(K1, D1, json!("1"), "2024-01-15T09:30:00.0000000Z", 1),
            key(K2, D1, json!("fixedDataVolume"), "2024-02-15T09:30:00Z", 2),
            key(K3, D2, json!(1), "2024-03-15T09:30:00Z", 3),
            key(
                K4,
                D3,
                json!("operatingSystemVolume"),
                "2024-04-15T09:30:00Z",
                4,
            ),
            key(K5, D5, json!(1), "2024-05-15T09:30:00Z", 5),
        ],
        devices: vec![
            Device {
                device_id: D1,
                name: "DESKTOP-ALICE",
                owner: Some(ALICE),
            },
            Device {
                device_id: D2,
                name: "LAPTOP-BOB",
                owner: Some(BOB),
            },
            Device {
                device_id: D3,
                name: "KIOSK-3",
                owner: None,
            },
        ],
        ..Default::default()
    };
    g.wrapped.insert(K2);
    g
}

/// The tenant (self-service on) and bob's device with K3, as `portal
/// import` loads them before the first sync.
fn seed() -> recovery_portal::tools::seed::Seed {
    let doc = json!({
        "tenants": [{"tenant_id": "contoso", "self_service": true}],
        "devices": [{"tenant_id": "contoso", "device_id": D2, "owner": BOB, "display_name": "LAPTOP-BOB",
            "os": "Windows 10.0.22631.4317", "managed_by": "organization",
            "recovery_keys": [{"key_id": K3, "volume_type": "operating_system",
                "recovery_password": password(3), "created_at": "2024-03-15T09:30:00Z"}]}]});
    recovery_portal::tools::seed::parse(&doc.to_string()).unwrap()
}

fn client(base: &str) -> GraphClient {
    client_with(base, ("PORTAL_ENTRA_CLIENT_SECRET", fake_graph::SECRET))
}

/// A client authenticating with `credential` (variable, value).
fn client_with(base: &str, credential: (&str, &str)) -> GraphClient {
    let config = GraphConfig::from_lookup(|k| {
        Some(match k {
            "PORTAL_ENTRA_TENANT_ID" => fake_graph::ENTRA_TENANT.into(),
            "PORTAL_ENTRA_CLIENT_ID" => fake_graph::CLIENT_ID.into(),
            "PORTAL_GRAPH_URL" | "PORTAL_ENTRA_LOGIN_URL" => base.into(),
            k if k == credential.0 => credential.1.into(),
            _ => return None,
        })
    })
    .unwrap();
    GraphClient::with_http(config, reqwest::Client::new())
}

/// An application certificate (self-signed RSA, as `New-SelfSignedCertificate`
/// makes one) as the PEM file the sync reads, and as Entra registers it.
pub fn certificate(key: &rcgen::KeyPair, name: &str) -> (String, fake_graph::Registered) {
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(key)
        .unwrap();
    let pem = format!("{}{}", key.serialize_pem(), cert.pem());
    let registered = fake_graph::Registered {
        der: cert.der().to_vec(),
        public_key: key.public_key_raw().to_vec(),
    };
    (pem, registered)
}

pub fn rsa_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
}

/// `text` in a fresh file; its path.
pub fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portal-sync-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn run(portal: &Portal, base: &str, dry_run: bool) -> (SyncSummary, Duration) {
    let opts = SyncOptions {
        tenant: "contoso".parse_tenant(),
        dry_run,
    };
    let started = Instant::now();
    let s = sync_entra(portal, &client(base), &opts, &|_, _| {})
        .await
        .expect("sync");
    let text = serde_json::to_string(&s).unwrap();
    for n in 1..=6 {
        assert!(
            !text.contains(&password(n)),
            "a password in the summary: {text}"
        );
    }
    (s, started.elapsed())
}

trait ParseTenant {
    fn parse_tenant(self) -> recovery_portal::domain::ids::TenantId;
}
impl ParseTenant for &str {
    fn parse_tenant(self) -> recovery_portal::domain::ids::TenantId {
        recovery_portal::domain::ids::TenantId::parse(self).unwrap()
    }
}

fn reads(g: &Shared) -> Vec<String> {
    std::mem::take(&mut g.lock().unwrap().key_reads)
}

/// The key `user` (or the helpdesk, with `key_id`) is given for `device`.
async fn retrieve(
    portal: &Portal,
    user: &str,
    perm: &str,
    device: &str,
    key_id: Option<&str>,
) -> (u16, Value) {
    let body = key_id
        .map(|k| json!({"key_id": k, "reason": "ticket 21"}).to_string())
        .unwrap_or_default();
    let token = format!("contoso|{user}|{perm}");
    let (r, json) = call(
        portal,
        "POST",
        &format!("/v1/devices/{device}/recovery-key"),
        Some(&token),
        &body,
    )
    .await;
    (r.status().as_u16(), json)
}

async fn first_runs(portal: &Portal, graph: &Shared, base: &str) {
    // A dry run reads metadata only and writes nothing; Graph's 429 on the
    // second page is retried after its Retry-After.
    let (dry, took) = run(portal, base, true).await;
    assert!(reads(graph).is_empty(), "a dry run read keys");
    assert!(
        took >= Duration::from_secs(1),
        "the 429 was not waited out: {took:?}"
    );
    assert_eq!(dry.graph.retries, 1, "{dry:?}");
    assert_eq!(
        (dry.keys.listed, dry.keys.new, dry.keys.unchanged),
        (5, 2, 1),
        "{dry:?}"
    );
    assert_eq!(
        (dry.devices.created, dry.devices.unchanged),
        (1, 1),
        "{dry:?}"
    );
    let alice = format!("contoso|{ALICE}|RecoveryKey.Read");
    let (_, listed) = call(portal, "GET", "/v1/devices", Some(&alice), "").await;
    assert_eq!(listed["devices"], json!([]), "a dry run wrote: {listed}");

    // The real run reads exactly the keys the store lacks (K3 is held).
    let (s, _) = run(portal, base, false).await;
    let mut read = reads(graph);
    read.sort();
    assert_eq!(read, [K2, K1], "{s:?}");
    assert_eq!(s.graph.key_reads, 2);
    assert_eq!(
        (s.keys.new, s.keys.unchanged, s.devices.created),
        (2, 1, 1),
        "{s:?}"
    );
    let reasons: Vec<(&str, &str)> = s
        .skipped
        .iter()
        .map(|k| (k.reason, k.device_id.as_ref().unwrap().as_str()))
        .collect();
    assert_eq!(
        reasons,
        [("no_registered_owner", D3), ("device_not_in_entra", D5)],
        "{s:?}"
    );
    assert!(
        graph.lock().unwrap().violations.is_empty(),
        "{:?}",
        graph.lock().unwrap().violations
    );
}

async fn retrievals(portal: &Portal) {
    let alice = format!("contoso|{ALICE}|RecoveryKey.Read");
    let (_, listed) = call(portal, "GET", "/v1/devices", Some(&alice), "").await;
    assert_eq!(listed["devices"][0]["device_id"], D1, "{listed}");
    assert_eq!(
        listed["devices"][0]["display_name"], "DESKTOP-ALICE",
        "{listed}"
    );
    assert_eq!(
        listed["devices"][0]["recovery_keys"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{listed}"
    );
    let (status, got) = retrieve(portal, ALICE, "RecoveryKey.Read", D1, None).await;
    assert_eq!(
        (status, got["recovery_password"].as_str()),
        (200, Some(password(1).as_str())),
        "{got}"
    );
    assert_eq!(got["key_id"], K1.to_uppercase());
    // The helpdesk finds K2 by the first 8 digits on the recovery screen.
    let agent = "contoso|agent|RecoveryKey.Read.All";
    let (_, found) = call(
        portal,
        "GET",
        "/v1/recovery-keys?key_id_prefix=6A30ED7B",
        Some(agent),
        "",
    )
    .await;
    assert_eq!(found["recovery_keys"][0]["device_id"], D1, "{found}");
    assert_eq!(found["recovery_keys"][0]["owner"], ALICE, "{found}");
    assert_eq!(
        found["recovery_keys"][0]["volume_type"], "fixed_data",
        "{found}"
    );
    let (status, got) = retrieve(
        portal,
        "agent",
        "RecoveryKey.Read.All",
        D1,
        Some("6A30ED7B"),
    )
    .await;
    assert_eq!(
        (status, got["recovery_password"].as_str()),
        (200, Some(password(2).as_str())),
        "{got}"
    );
    let (status, got) = retrieve(portal, BOB, "RecoveryKey.Read", D2, None).await;
    assert_eq!(
        (status, got["recovery_password"].as_str()),
        (200, Some(password(3).as_str())),
        "{got}"
    );
}

/// Entra changes: D1 moves to carol, gets a newer OS key (K6), and K2
/// disappears from Entra.
pub fn drift(graph: &Shared) {
    let mut g = graph.lock().unwrap();
    g.devices[0].owner = Some(CAROL);
    g.keys.retain(|k| k.id != K2);
    if !g.keys.iter().any(|k| k.id == K6) {
        g.keys
            .push(key(K6, D1, json!(1), "2025-01-15T09:30:00Z", 6));
    }
}

/// One real run into the tenant `contoso`.
pub async fn run_once(portal: &Portal, base: &str) -> SyncSummary {
    run(portal, base, false).await.0
}

async fn later_run(portal: &Portal, graph: &Shared, base: &str) {
    drift(graph);
    let (s, _) = run(portal, base, false).await;
    assert_eq!(reads(graph), [K6], "only the new key is read: {s:?}");
    assert_eq!(
        (s.keys.new, s.keys.unchanged, s.keys.superseded),
        (1, 2, 1),
        "{s:?}"
    );
    assert_eq!((s.devices.updated, s.owner_changes), (1, 1), "{s:?}");
    assert_eq!(s.not_in_entra.len(), 1, "{s:?}");
    assert_eq!(s.not_in_entra[0].key_id.to_string(), K2.to_uppercase());
    // K2 is kept; carol now gets the new key; K1 is superseded, not lost.
    let (status, got) = retrieve(portal, "agent", "RecoveryKey.Read.All", D1, Some(K2)).await;
    assert_eq!(
        (status, got["recovery_password"].as_str()),
        (200, Some(password(2).as_str())),
        "{got}"
    );
    let (status, got) = retrieve(portal, CAROL, "RecoveryKey.Read", D1, None).await;
    assert_eq!(
        (status, got["recovery_password"].as_str()),
        (200, Some(password(6).as_str())),
        "{got}"
    );
    let (status, _) = retrieve(portal, "agent", "RecoveryKey.Read.All", D1, Some(K1)).await;
    assert_eq!(status, 200);
    // Audited as sync:entra, the owner change named.
    let auditor = "contoso|auditor|AuditLog.Read.All";
    let (_, ev) = call(
        portal,
        "GET",
        "/v1/audit-events?actor=sync:entra",
        Some(auditor),
        "",
    )
    .await;
    let events = ev["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["justification"] == format!("owner {ALICE} -> {CAROL}")),
        "{ev}"
    );
    assert_eq!(
        events.iter().filter(|e| e["action"] == "escrow").count(),
        3,
        "{ev}"
    );
    // And a run with nothing new reads nothing.
    let (s, _) = run(portal, base, false).await;
    assert!(reads(graph).is_empty(), "{s:?}");
    assert_eq!((s.keys.new, s.devices.unchanged), (0, 2), "{s:?}");
    assert!(s.devices_not_in_entra.is_empty(), "{s:?}");
    deleted_from_entra(portal, graph, base).await;
}

/// Entra deletes D1 with its keys: the sync reports the device and every
/// key it holds for it, and deletes nothing (a dry run says the same).
async fn deleted_from_entra(portal: &Portal, graph: &Shared, base: &str) {
    {
        let mut g = graph.lock().unwrap();
        g.devices.retain(|d| d.device_id != D1);
        g.keys.retain(|k| k.device_id != D1);
    }
    for dry_run in [true, false] {
        let (s, _) = run(portal, base, dry_run).await;
        let gone: Vec<(&str, &str, usize)> = s
            .devices_not_in_entra
            .iter()
            .map(|d| (d.device_id.as_str(), d.display_name.as_str(), d.keys))
            .collect();
        assert_eq!(gone, [(D1, "DESKTOP-ALICE", 3)], "{s:?}");
        let mut keys: Vec<String> = s
            .not_in_entra
            .iter()
            .filter(|k| k.device_id.as_str() == D1)
            .map(|k| k.key_id.to_string())
            .collect();
        keys.sort();
        let mut want = [K1, K2, K6].map(str::to_uppercase);
        want.sort();
        assert_eq!(keys, want, "{s:?}");
        assert_eq!((s.keys.new, s.devices.listed), (0, 3), "{s:?}");
    }
    let (status, got) = retrieve(portal, CAROL, "RecoveryKey.Read", D1, None).await;
    assert_eq!(
        (status, got["recovery_password"].as_str()),
        (200, Some(password(6).as_str())),
        "{got}"
    );
}

async fn scenario<
    S: Store + LifecycleStore + recovery_portal::domain::ports::ImportStore + 'static,
>(
    store: Arc<S>,
    cipher: Arc<dyn KeyCipher>,
) {
    recovery_portal::tools::import::import(&seed(), cipher.as_ref(), store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    let portal = portal(store, cipher);
    let graph: Shared = Arc::new(Mutex::new(entra()));
    let base = fake_graph::spawn(graph.clone()).await;
    first_runs(&portal, &graph, &base).await;
    retrievals(&portal).await;
    later_run(&portal, &graph, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_entra_on_the_embedded_store() {
    let store = Arc::new(recovery_portal::adapters::embedded::MemoryStore::new());
    let cipher = Arc::new(recovery_portal::adapters::embedded::LocalCipher::random());
    scenario(store, cipher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_entra_on_dynamodb_and_kms() {
    let env = moto_env().await;
    scenario(env.store.clone(), env.cipher.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_syncs_into_moto_and_logs_no_password() {
    let env = moto_env().await;
    recovery_portal::tools::import::import(
        &seed(),
        env.cipher.as_ref(),
        env.store.as_ref(),
        &|_, _| {},
    )
    .await
    .unwrap();
    let graph: Shared = Arc::new(Mutex::new(entra()));
    let base = fake_graph::spawn(graph.clone()).await;
    let cli = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal"));
        c.args(args)
            .env("RUST_LOG", "trace")
            .env("AWS_ENDPOINT_URL", crate::support::aws::moto_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("PORTAL_TABLE_PREFIX", &env.prefix)
            .env("PORTAL_KMS_KEY_ID", &env.kms_key_id)
            .env("PORTAL_ENTRA_TENANT_ID", fake_graph::ENTRA_TENANT)
            .env("PORTAL_ENTRA_CLIENT_ID", fake_graph::CLIENT_ID)
            .env("PORTAL_ENTRA_CLIENT_SECRET", fake_graph::SECRET)
            .env("PORTAL_GRAPH_URL", &base)
            .env("PORTAL_ENTRA_LOGIN_URL", &base);
        c.output()
    };
    let out = cli(&["sync", "entra", "--tenant", "contoso"])
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["keys"]["new"], 2, "{summary}");
    assert_eq!(summary["actor"], "sync:entra", "{summary}");
    for secret in [
        password(1),
        password(2),
        password(3),
        fake_graph::SECRET.into(),
        fake_graph::TOKEN.into(),
    ] {
        assert!(
            !stdout.contains(&secret) && !stderr.contains(&secret),
            "a secret in the output"
        );
    }
    // The certificate credential from a PEM file: a dry run authenticates,
    // and nothing of the key shows.
    let key = rsa_key();
    let (pem, registered) = certificate(&key, "recovery-portal-sync");
    graph.lock().unwrap().certificate = Some(registered);
    let pem_file = temp_file("app.pem", &pem);
    let out = cli(&["sync", "entra", "--tenant", "contoso", "--dry-run"])
        .await
        .unwrap();
    assert!(!out.status.success(), "the secret still worked");
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal"));
    let out = c
        .args(["sync", "entra", "--tenant", "contoso", "--dry-run"])
        .env("RUST_LOG", "trace")
        .env("AWS_ENDPOINT_URL", crate::support::aws::moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("PORTAL_TABLE_PREFIX", &env.prefix)
        .env("PORTAL_ENTRA_TENANT_ID", fake_graph::ENTRA_TENANT)
        .env("PORTAL_ENTRA_CLIENT_ID", fake_graph::CLIENT_ID)
        .env("PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE", &pem_file)
        .env("PORTAL_GRAPH_URL", &base)
        .env("PORTAL_ENTRA_LOGIN_URL", &base)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let key_body: String = key
        .serialize_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        !text.contains("PRIVATE KEY")
            && !text.contains(&key_body[200..260])
            && !text.contains("eyJ"),
        "key material or an assertion in the output"
    );
    assert_eq!(graph.lock().unwrap().assertions_accepted, 1);

    // A plain-http Graph off loopback is refused before anything is sent.
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal"));
    let out = c
        .args(["sync", "entra", "--tenant", "contoso", "--dry-run"])
        .env("PORTAL_ENTRA_TENANT_ID", "t")
        .env("PORTAL_ENTRA_CLIENT_ID", "c")
        .env("PORTAL_ENTRA_CLIENT_SECRET", "s")
        .env("PORTAL_GRAPH_URL", "http://graph.example.com")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("PORTAL_GRAPH_URL"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_sends_an_assertion_entra_accepts() {
    let store = Arc::new(recovery_portal::adapters::embedded::MemoryStore::new());
    let cipher: Arc<dyn KeyCipher> =
        Arc::new(recovery_portal::adapters::embedded::LocalCipher::random());
    recovery_portal::tools::import::import(&seed(), cipher.as_ref(), store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    let portal = portal(store, cipher);
    let key = rsa_key();
    let (pem, registered) = certificate(&key, "recovery-portal-sync");
    let mut g = entra();
    g.certificate = Some(registered);
    let graph: Shared = Arc::new(Mutex::new(g));
    let base = fake_graph::spawn(graph.clone()).await;
    let opts = SyncOptions {
        tenant: "contoso".parse_tenant(),
        dry_run: false,
    };
    let var = "PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE";
    let good = temp_file("app.pem", &pem);
    let s = sync_entra(
        &portal,
        &client_with(&base, (var, &good)),
        &opts,
        &|_, _| {},
    )
    .await
    .expect("sync with the certificate");
    assert_eq!(s.keys.new, 2, "{s:?}");
    {
        let g = graph.lock().unwrap();
        assert_eq!(
            (g.assertions_accepted, g.assertion_failures.len()),
            (1, 0),
            "{:?}",
            g.assertion_failures
        );
    }
    // Entra refuses: another key; the same key under another certificate
    // (its thumbprint differs); the secret instead of the certificate.
    let (other, _) = certificate(&rsa_key(), "recovery-portal-sync");
    let (renamed, _) = certificate(&key, "another-name");
    for (cred, why) in [
        ((var, temp_file("other.pem", &other)), "bad signature"),
        ((var, temp_file("renamed.pem", &renamed)), "header"),
        (
            ("PORTAL_ENTRA_CLIENT_SECRET", fake_graph::SECRET.to_owned()),
            "no client assertion",
        ),
    ] {
        let e = sync_entra(
            &portal,
            &client_with(&base, (cred.0, &cred.1)),
            &opts,
            &|_, _| {},
        )
        .await
        .expect_err("Entra refuses it");
        let e = e.to_string();
        assert!(
            e.contains("invalid_client, AADSTS700027")
                && !e.contains("PRIVATE")
                && !e.contains(fake_graph::SECRET),
            "{e}"
        );
        let failure = graph.lock().unwrap().assertion_failures.pop().unwrap();
        assert!(failure.starts_with(why), "{failure}");
    }
}
