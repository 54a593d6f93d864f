//! IAM on AWS's terms: every AWS call each route (and each CLI flow) makes
//! against moto is recorded at the SDK, mapped to the (action, resource,
//! condition context) AWS authorizes it by, and evaluated against the
//! policies `infra/` gives the function that serves the route (route →
//! integration → function → role → statements), plus the recovery-key
//! CMK's key policy for KMS calls. moto enforces no IAM; this does.
//!
//! Three properties:
//! - every recorded call is allowed;
//! - every grant a call uses is needed: deleting it (one action on one
//!   resource of one statement) denies at least one recorded call;
//! - every grant no call uses is listed in `UNUSED_GRANTS` with its reason,
//!   and nothing else is.

mod calls;
mod policy;
mod terraform;
#[path = "../../support/tfedit.rs"]
mod tfedit;

use crate::support::aws::{call, moto_config, portal};
use crate::support::common::{password, test_seed};
use calls::{Recorded, Recorder, requests};
use policy::{Request, Statement, allows, applies};
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher};
use recovery_portal::domain::ports::Portal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use terraform::{ACCOUNT, ACCOUNT_ROOT, Infra, REGION};
use tfedit::Edit::{self, Drop, RemoveItem, Set, SetEntry};

/// Grants no recorded call uses, each with why it stays: a whole statement
/// as `policy/sid`, or one grant as `policy/sid action resource`.
const UNUSED_GRANTS: &[(&str, &str)] = &[
    // The Lambda service writes the functions' logs with their roles; no
    // SDK call of ours does.
    (
        r#"function["list-devices"]/WriteOwnLogs"#,
        "Lambda writes the function's logs with its role",
    ),
    (
        r#"function["get-recovery-key"]/WriteOwnLogs"#,
        "Lambda writes the function's logs with its role",
    ),
    (
        r#"function["manage-keys"]/WriteOwnLogs"#,
        "Lambda writes the function's logs with its role",
    ),
    (
        "entra_sync_function/WriteOwnLogs",
        "Lambda writes the function's logs with its role",
    ),
    // Key administration by the account (rotation, policy, deletion): no
    // function or CLI flow does it; without it the key would be unmanageable.
    (
        "key/AccountAdministration",
        "key administration by the account, never by the code",
    ),
];

struct Env {
    rec: Recorder,
    portal: Portal,
    store: Arc<DynamoStore>,
    cipher: Arc<KmsCipher>,
    driven: BTreeSet<String>,
}

impl Env {
    /// `route` is the route key as infra/ names it; `path` the concrete path.
    async fn send(
        &mut self,
        route: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = route.split_once(' ').unwrap().0;
        self.rec.label(route);
        self.driven.insert(route.to_owned());
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let (resp, json) = call(&self.portal, method, path, Some(token), &text).await;
        (resp.status().as_u16(), json)
    }

    async fn expect(
        &mut self,
        status: u16,
        route: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let (s, json) = self.send(route, path, token, body).await;
        assert_eq!(s, status, "{route} {path}: {json}");
        json
    }
}

fn tok(user: &str, perms: &str) -> String {
    format!("contoso|{user}|{perms}")
}

/// Every route, granted and refused, and both CLI flows.
async fn drive() -> (Recorder, BTreeSet<String>, String) {
    let sdk = moto_config().await;
    let prefix = crate::support::aws::fresh_prefix();
    let rec = Recorder::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(rec.clone())
            .build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .interceptor(rec.clone())
            .build(),
    );
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .interceptor(rec.clone())
            .build(),
    );
    rec.label("setup");
    recovery_portal::adapters::aws::create_tables(&dynamodb, &prefix)
        .await
        .unwrap();
    let secret_arn = secrets
        .create_secret()
        .name(format!("{prefix}-entra-client-secret"))
        .secret_string(crate::entra_sync::fake_graph::SECRET)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let store = Arc::new(DynamoStore::new(dynamodb, &prefix));
    let cipher = Arc::new(KmsCipher::new(kms, Some(key)));
    let mut env = Env {
        rec: rec.clone(),
        portal: portal(store.clone(), cipher.clone()),
        store,
        cipher,
        driven: BTreeSet::new(),
    };
    import(&env).await;
    sync_entra(&env).await;
    scheduled_sync(&env, secrets, secret_arn).await;
    routes(&mut env).await;
    incidents(&mut env).await;
    lifecycle(&mut env).await;
    verify(&env).await;
    (rec, env.driven, prefix)
}

async fn import(env: &Env) {
    use recovery_portal::tools::{import, seed};
    env.rec.label("cli:import");
    // A device with more key pointers than one transaction holds: its
    // retirement sets the rest's TTL in a transaction of their own.
    let mut with_many: Value = serde_json::from_str(&test_seed()).unwrap();
    let keys: Vec<Value> = (0..100u32)
        .map(|i| json!({"key_id": format!("C0{i:06X}-0000-4000-8000-{i:012X}"), "volume_type": "fixed_data",
                        "recovery_password": password(100 + i), "created_at": "2024-01-01T00:00:00Z"}))
        .collect();
    with_many["devices"].as_array_mut().unwrap().push(json!({
        "tenant_id": "contoso", "device_id": "PC-MANY", "owner": "bob", "display_name": "Many volumes",
        "os": "Windows Server 2022", "managed_by": "organization", "recovery_keys": keys}));
    let first = seed::parse(&with_many.to_string()).unwrap();
    import::import(&first, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
    // Again with an owner and a tenant's settings changed: both audited.
    let mut changed = with_many.clone();
    changed["devices"][4]["owner"] = json!("bobby");
    changed["tenants"][1]["self_service"] = json!(true);
    let second = seed::parse(&changed.to_string()).unwrap();
    let actor = recovery_portal::domain::ids::UserId::importer("iam-test").unwrap();
    let summary = import::import_as(
        &second,
        env.cipher.as_ref(),
        env.store.as_ref(),
        &actor,
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(
        format!("{summary:?}").contains("settings_changes: 1"),
        "{summary:?}"
    );
    // Put the owner back (the routes below expect bob).
    import::import(&first, env.cipher.as_ref(), env.store.as_ref(), &|_, _| {})
        .await
        .unwrap();
}

/// `portal sync entra` against the fake Graph: devices created, keys
/// escrowed; then an owner change, a newer key superseding one, a key
/// Entra dropped.
async fn sync_entra(env: &Env) {
    use crate::entra_sync::fake_graph;
    env.rec.label("cli:sync-entra");
    let graph: fake_graph::Shared = Arc::new(std::sync::Mutex::new(crate::entra_sync::entra()));
    let base = fake_graph::spawn(graph.clone()).await;
    let portal = recovery_portal::tools::sync::run::portal(env.store.clone(), env.cipher.clone());
    for _ in 0..2 {
        let s = crate::entra_sync::run_once(&portal, &base).await;
        assert!(s.skipped.len() >= 2, "{s:?}");
        crate::entra_sync::drift(&graph);
    }
}

/// The portal tenant the scheduled sync is deployed for (its tfvars).
const SCHEDULED_TENANT: &str = "fabrikam";

/// The test's tfvars, as far as the policies read them: the scheduled
/// sync's role is pinned to the tenant it syncs into.
const TFVARS: &[(&str, &str)] = &[("entra_sync.tenant_id", SCHEDULED_TENANT)];

/// The scheduled function's runs (functions/entra-sync), as its role: the
/// same sync as the CLI's plus the client secret read on every run, into
/// the other tenant (the CLI flow above holds these keys in contoso).
async fn scheduled_sync(env: &Env, secrets: aws_sdk_secretsmanager::Client, secret_arn: String) {
    use crate::entra_sync::fake_graph;
    use recovery_portal::tools::sync::scheduled::{ScheduledSync, Settings};
    env.rec.label("fn:entra-sync");
    let graph: fake_graph::Shared = Arc::new(std::sync::Mutex::new(crate::entra_sync::entra()));
    let base = fake_graph::spawn(graph.clone()).await;
    let lookup = move |k: &str| {
        Some(match k {
            "PORTAL_SYNC_TENANT" => SCHEDULED_TENANT.to_owned(),
            "PORTAL_ENTRA_CLIENT_SECRET_ARN" => secret_arn.clone(),
            "PORTAL_ENTRA_TENANT_ID" => fake_graph::ENTRA_TENANT.into(),
            "PORTAL_ENTRA_CLIENT_ID" => fake_graph::CLIENT_ID.into(),
            "PORTAL_GRAPH_URL" | "PORTAL_ENTRA_LOGIN_URL" => base.clone(),
            _ => return None,
        })
    };
    let job = ScheduledSync {
        portal: recovery_portal::tools::sync::run::portal(env.store.clone(), env.cipher.clone()),
        http: reqwest::Client::new(),
        secrets: Arc::new(
            recovery_portal::adapters::aws::secrets::SecretsManager::from_client(secrets),
        ),
        settings: Settings::from_lookup(&lookup).unwrap(),
        lookup: Arc::new(lookup),
        metrics: Arc::new(recovery_portal::domain::ports::NoMetrics),
    };
    for _ in 0..2 {
        let s = job.run(false).await.unwrap();
        assert!(s.skipped.len() >= 2, "{s:?}");
        crate::entra_sync::drift(&graph);
    }
    assert!(graph.lock().unwrap().key_reads.len() >= 3);
}

async fn routes(env: &mut Env) {
    let alice = tok("alice", "RecoveryKey.Read");
    let agent = tok("agent", "RecoveryKey.Read.All");
    let auditor = tok("auditor", "AuditLog.Read.All");
    let list = "GET /v1/devices";
    env.expect(200, list, "/v1/devices", &alice, None).await;
    env.expect(200, list, "/v1/devices?owner=bob", &agent, None)
        .await;
    let find = "GET /v1/recovery-keys";
    env.expect(
        200,
        find,
        "/v1/recovery-keys?key_id_prefix=44444444",
        &agent,
        None,
    )
    .await;
    let get = "POST /v1/devices/{device_id}/recovery-key";
    env.expect(200, get, "/v1/devices/PC-ALICE/recovery-key", &alice, None)
        .await;
    // Refused attempts are audited too (denied event, denial counter).
    env.expect(404, get, "/v1/devices/PC-BOB/recovery-key", &alice, None)
        .await;
    let body = json!({"key_id": "44444444", "reason": "ticket 4711"});
    env.expect(
        200,
        get,
        "/v1/devices/PC-BOB/recovery-key",
        &agent,
        Some(body),
    )
    .await;
    let audit = "GET /v1/audit-events";
    for q in [
        "",
        "?device_id=PC-ALICE",
        "?actor=alice",
        "?since=2020-01-01T00:00:00Z&limit=2",
    ] {
        env.expect(200, audit, &format!("/v1/audit-events{q}"), &auditor, None)
            .await;
    }
}

async fn incidents(env: &mut Env) {
    let lead = tok("lead", "RecoveryKey.Incident");
    let agent = tok("agent", "RecoveryKey.Read.All");
    let batch = "POST /v1/recovery-keys/batch";
    let ids = json!({"key_ids": ["44444444-dddd-4ddd-8ddd-000000000005", "11111111-aaaa-4aaa-8aaa-000000000002", "99999999"], "reason": "INC-1"});
    // Without an incident: refused (and audited).
    env.expect(
        403,
        batch,
        "/v1/recovery-keys/batch",
        &agent,
        Some(ids.clone()),
    )
    .await;
    let open = json!({"reason": "faulty update", "duration_hours": 2});
    let inc = env
        .expect(
            201,
            "POST /v1/incidents",
            "/v1/incidents",
            &lead,
            Some(open),
        )
        .await;
    let id = inc["incident_id"].as_str().unwrap().to_owned();
    env.expect(200, "GET /v1/incidents", "/v1/incidents", &agent, None)
        .await;
    let r = env
        .expect(200, batch, "/v1/recovery-keys/batch", &agent, Some(ids))
        .await;
    let statuses: Vec<u64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 404], "{r}");
    let close = "DELETE /v1/incidents/{incident_id}";
    env.expect(200, close, &format!("/v1/incidents/{id}"), &lead, None)
        .await;
}

async fn lifecycle(env: &mut Env) {
    let mdm = tok("mdm", "Devices.ReadWrite.All");
    let escrow = tok("mdm", "RecoveryKey.Escrow");
    let admin = tok("admin", "Tenant.Settings.ReadWrite");
    let agent = tok("agent", "RecoveryKey.Read.All");
    let upsert = "PUT /v1/devices/{device_id}";
    let device = json!({"owner": "dana", "display_name": "Dana laptop", "os": "Windows 11", "managed_by": "organization"});
    env.expect(
        201,
        upsert,
        "/v1/devices/PC-DANA",
        &mdm,
        Some(device.clone()),
    )
    .await;
    let mut moved = device.clone();
    moved["owner"] = json!("erin");
    env.expect(200, upsert, "/v1/devices/PC-DANA", &mdm, Some(moved))
        .await;
    let put_key = "PUT /v1/devices/{device_id}/recovery-keys/{key_id}";
    let k1 = "AAAA0001-1111-4111-8111-000000000001";
    let k2 = "AAAA0002-2222-4222-8222-000000000002";
    // Escrowed after the owner change, created "now": erin's keys (an
    // owner reads only keys created since the device became theirs).
    let key = |pw: u32, _: &str| json!({"volume_type": "operating_system", "recovery_password": password(pw)});
    let p1 = format!("/v1/devices/PC-DANA/recovery-keys/{k1}");
    env.expect(
        201,
        put_key,
        &p1,
        &escrow,
        Some(key(11, "2025-01-01T00:00:00Z")),
    )
    .await;
    env.expect(
        200,
        put_key,
        &p1,
        &escrow,
        Some(key(11, "2025-01-01T00:00:00Z")),
    )
    .await;
    env.expect(
        409,
        put_key,
        &p1,
        &escrow,
        Some(key(12, "2025-01-01T00:00:00Z")),
    )
    .await;
    // Disclosed, so a rotation request; a newer key clears it and
    // supersedes k1, which the helpdesk still reads by its key ID.
    let get = "POST /v1/devices/{device_id}/recovery-key";
    let erin = tok("erin", "RecoveryKey.Read");
    env.expect(200, get, "/v1/devices/PC-DANA/recovery-key", &erin, None)
        .await;
    let rot = "GET /v1/rotation-requests";
    let r = env
        .expect(200, rot, "/v1/rotation-requests", &escrow, None)
        .await;
    assert!(
        r["rotation_requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["device_id"] == "PC-DANA"),
        "{r}"
    );
    let p2 = format!("/v1/devices/PC-DANA/recovery-keys/{k2}");
    env.expect(
        201,
        put_key,
        &p2,
        &escrow,
        Some(key(13, "2025-06-01T00:00:00Z")),
    )
    .await;
    let old = json!({"key_id": k1, "reason": "old image"});
    env.expect(
        200,
        get,
        "/v1/devices/PC-DANA/recovery-key",
        &agent,
        Some(old),
    )
    .await;
    let settings = "GET /v1/tenant/settings";
    env.expect(200, settings, "/v1/tenant/settings", &admin, None)
        .await;
    let patch = "PATCH /v1/tenant/settings";
    env.expect(
        200,
        patch,
        "/v1/tenant/settings",
        &admin,
        Some(json!({"require_reason": "helpdesk"})),
    )
    .await;
    // Refused for lack of permission: audited within the caller's hourly
    // cap of denied events (the rate-limits table's counter item).
    env.expect(
        403,
        patch,
        "/v1/tenant/settings",
        &erin,
        Some(json!({"require_reason": "never"})),
    )
    .await;
    let retire = "DELETE /v1/devices/{device_id}";
    env.expect(204, retire, "/v1/devices/PC-DANA", &mdm, None)
        .await;
    let restore = "POST /v1/devices/{device_id}/restore";
    env.expect(200, restore, "/v1/devices/PC-DANA/restore", &mdm, None)
        .await;
    env.expect(
        204,
        retire,
        "/v1/devices/PC-DANA",
        &mdm,
        Some(json!({"reason": "sold"})),
    )
    .await;
    env.expect(204, retire, "/v1/devices/PC-MANY", &mdm, None)
        .await;
}

async fn verify(env: &Env) {
    use recovery_portal::tools::verify;
    env.rec.label("cli:keys-verify");
    let report = verify::verify(env.store.as_ref(), env.cipher.as_ref(), None, &|_| {})
        .await
        .unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    let actor = recovery_portal::domain::ids::UserId::importer("iam-test").unwrap();
    let events = verify::audit_events(&report, &actor, time::OffsetDateTime::now_utc());
    verify::record(env.store.as_ref(), &events).await.unwrap();
}

/// Who a label's calls are made as: its IAM statements and the principal
/// the recovery-key CMK's key policy would see.
struct Principal {
    name: String,
    iam: Vec<(String, Statement)>,
    key_principal: String,
}

fn principals(infra: &Infra) -> BTreeMap<String, Principal> {
    let mut out: BTreeMap<String, Principal> = infra
        .route_roles()
        .into_iter()
        .map(|(route, role)| {
            let p = Principal {
                name: role.clone(),
                iam: infra.role_statements(&role),
                key_principal: format!("role:{role}"),
            };
            (route, p)
        })
        .collect();
    // The scheduled sync's function, as its execution role.
    out.insert(
        "fn:entra-sync".to_owned(),
        Principal {
            name: "entra_sync_function".to_owned(),
            iam: infra.role_statements("entra_sync"),
            key_principal: "role:entra_sync".to_owned(),
        },
    );
    for (label, policy, key_principal) in [
        ("cli:import", "import", ACCOUNT_ROOT.to_owned()),
        ("cli:sync-entra", "entra_sync", ACCOUNT_ROOT.to_owned()),
        (
            "cli:keys-verify",
            "keys_verify",
            "var:keys_verify_principal_arns".to_owned(),
        ),
    ] {
        let p = Principal {
            name: policy.to_owned(),
            iam: infra.managed_policy(policy),
            key_principal,
        };
        out.insert(label.to_owned(), p);
    }
    out
}

/// Allowed as AWS decides, and stricter for KMS: the IAM policy must allow
/// the call *and* the key policy must allow it for the principal (named
/// directly, or the account delegating to IAM). AWS accepts a key policy
/// naming the role alone; here both halves are required by design.
fn allowed(p: &Principal, key_policy: &[Statement], req: &Request) -> bool {
    let iam: Vec<Statement> = p.iam.iter().map(|(_, s)| s.clone()).collect();
    let iam_ok = allows(&iam, req, None);
    if !req.action.starts_with("kms:") {
        return iam_ok;
    }
    iam_ok
        && (allows(key_policy, req, Some(&p.key_principal))
            || allows(key_policy, req, Some(ACCOUNT_ROOT)))
}

/// `statements` without one grant (one action on one resource of the
/// statement at `index`).
fn without(statements: &[Statement], index: usize, action: &str, resource: &str) -> Vec<Statement> {
    let mut out: Vec<Statement> = statements.to_vec();
    let s = out.remove(index);
    let other_actions: Vec<String> = s.actions.iter().filter(|a| *a != action).cloned().collect();
    let other_resources: Vec<String> = s
        .resources
        .iter()
        .filter(|r| *r != resource)
        .cloned()
        .collect();
    if !other_actions.is_empty() {
        out.push(Statement {
            actions: other_actions,
            ..s.clone()
        });
    }
    if !other_resources.is_empty() {
        out.push(Statement {
            actions: vec![action.to_owned()],
            resources: other_resources,
            ..s
        });
    }
    out
}

/// A policy's name, its statements named `policy/sid`, and whether it is
/// the key policy.
type PolicySet = (String, Vec<(String, Statement)>, bool);

/// The IAM policies (one per role or managed policy), then the key policy
/// (`true`), each statement named `policy/sid`.
fn policy_sets(
    principals: &BTreeMap<String, Principal>,
    key_policy: &[Statement],
) -> Vec<PolicySet> {
    let mut sets: BTreeMap<String, Vec<(String, Statement)>> = BTreeMap::new();
    for p in principals.values() {
        sets.insert(p.name.clone(), p.iam.clone());
    }
    let mut out: Vec<_> = sets.into_iter().map(|(k, v)| (k, v, false)).collect();
    let key = key_policy
        .iter()
        .map(|s| (format!("key/{}", s.sid), s.clone()))
        .collect();
    out.push(("key".into(), key, true));
    out
}

/// A resource ARN without the account, region and table prefix.
fn short(resource: &str, prefix: &str) -> String {
    resource
        .replace(
            &format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{prefix}-"),
            "table/",
        )
        .replace(&format!("arn:aws:kms:{REGION}:{ACCOUNT}:"), "")
        .replace(&format!("arn:aws:logs:{REGION}:{ACCOUNT}:"), "")
}

/// What the evaluation of `infra` against the recorded calls finds.
#[derive(Debug, Default)]
struct Findings {
    /// Routes infra/ deploys that the scenario did not drive.
    undriven: Vec<String>,
    /// Calls AWS would refuse.
    denied: Vec<String>,
    /// Grants calls use but whose deletion denies none of them.
    redundant: Vec<String>,
    /// Grants no call uses (whole statements as `policy/sid`).
    unused: BTreeSet<String>,
}

/// The recorded scenario, driven once per test binary.
async fn recorded() -> &'static (Vec<Recorded>, BTreeSet<String>, String) {
    static ONCE: tokio::sync::OnceCell<(Vec<Recorded>, BTreeSet<String>, String)> =
        tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let (rec, driven, prefix) = drive().await;
        (rec.calls(), driven, prefix)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_s_recorded_aws_calls_are_allowed_by_its_role_and_need_every_grant() {
    let (calls, driven, prefix) = recorded().await;
    let f = evaluate(&Infra::load(prefix, TFVARS), calls, driven, prefix);
    assert!(
        f.undriven.is_empty(),
        "routes in infra/ this test does not drive: {:?}",
        f.undriven
    );
    assert!(
        f.denied.is_empty(),
        "AWS would refuse these calls:\n{}",
        f.denied.join("\n")
    );
    assert!(
        f.redundant.is_empty(),
        "grants whose deletion denies no recorded call although calls use them (another statement also grants it): {:?}",
        f.redundant
    );
    let justified: BTreeSet<String> = UNUSED_GRANTS.iter().map(|(g, _)| g.to_string()).collect();
    assert_eq!(
        f.unused, justified,
        "grants no recorded call uses must be exactly those justified in UNUSED_GRANTS"
    );
}

/// Every recorded call as the requests AWS authorizes, under its label.
type Labelled = (String, Request, Recorded);

/// What the code under `principals` calls is evaluated against.
struct Model {
    principals: BTreeMap<String, Principal>,
    key_policy: Vec<Statement>,
}

fn evaluate(
    infra: &Infra,
    calls: &[Recorded],
    driven: &BTreeSet<String>,
    prefix: &str,
) -> Findings {
    let tables = infra.tables();
    let model = Model {
        principals: principals(infra),
        key_policy: infra.key_policy("recovery_keys"),
    };
    // Every route infra/ deploys was driven (a new route needs a scenario).
    let routes: BTreeSet<String> = model
        .principals
        .keys()
        .filter(|k| !k.starts_with("cli:") && !k.starts_with("fn:"))
        .cloned()
        .collect();
    let undriven: Vec<String> = routes.difference(driven).cloned().collect();
    let requests: Vec<Labelled> = calls
        .iter()
        .filter(|c| c.label != "setup")
        .flat_map(|c| {
            requests(c, &tables)
                .into_iter()
                .map(|r| (c.label.clone(), r, c.clone()))
        })
        .collect();
    assert!(
        requests.len() > 50,
        "too few calls recorded: {}",
        requests.len()
    );
    // 1. Everything the code does is allowed.
    let denied = denied(&model, &requests);
    if !denied.is_empty() {
        return Findings {
            undriven,
            denied,
            ..Findings::default()
        };
    }
    // 2. Each used grant is needed; 3. each unused one is justified.
    let (redundant, unused) = grants(&model, &requests, prefix);
    Findings {
        undriven,
        denied,
        redundant,
        unused,
    }
}

fn denied(model: &Model, requests: &[Labelled]) -> Vec<String> {
    requests
        .iter()
        .filter(|(label, req, _)| match model.principals.get(label) {
            Some(p) => !allowed(p, &model.key_policy, req),
            None => true,
        })
        .map(|(label, req, c)| {
            let who = model
                .principals
                .get(label)
                .map_or("no principal: route not in infra/", |p| p.name.as_str());
            format!(
                "{label} ({who}): {} -> {} on {} with {:?}",
                c.target, req.action, req.resource, req.context
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The requests one grant (`single`, a statement cut down to one action on
/// one resource) of policy `owner` serves.
fn users<'a>(
    model: &Model,
    requests: &'a [Labelled],
    owner: &str,
    is_key: bool,
    single: &Statement,
) -> Vec<&'a Labelled> {
    requests
        .iter()
        .filter(|(label, req, _)| {
            let p = &model.principals[label];
            let mine = if is_key {
                req.action.starts_with("kms:")
                    && single
                        .principals
                        .iter()
                        .any(|x| *x == p.key_principal || x == ACCOUNT_ROOT)
            } else {
                p.name == owner
            };
            mine && applies(single, req, None)
        })
        .collect()
}

/// Are all of `users` still allowed with `mutated` in place of the policy
/// (`is_key`: the key policy, else the principal's IAM statements)?
fn still_allowed(model: &Model, users: &[&Labelled], mutated: &[Statement], is_key: bool) -> bool {
    users.iter().all(|(label, req, _)| {
        let p = &model.principals[label];
        if is_key {
            allowed(p, mutated, req)
        } else {
            let q = Principal {
                name: p.name.clone(),
                iam: mutated.iter().map(|s| (String::new(), s.clone())).collect(),
                key_principal: p.key_principal.clone(),
            };
            allowed(&q, &model.key_policy, req)
        }
    })
}

/// Grants that calls use but do not need, and grants no call uses: a
/// statement none of whose grants is used as a whole (`policy/sid`), else
/// its unused grants one by one.
fn grants(model: &Model, requests: &[Labelled], prefix: &str) -> (Vec<String>, BTreeSet<String>) {
    // Per statement: (grants, unused grants); per grant: an entry if unused.
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unused_grants: Vec<(String, String)> = Vec::new();
    let mut redundant = Vec::new();
    for (owner, statements, is_key) in policy_sets(&model.principals, &model.key_policy) {
        let plain: Vec<Statement> = statements.iter().map(|(_, s)| s.clone()).collect();
        for (i, (name, s)) in statements.iter().enumerate() {
            for (action, resource) in s
                .actions
                .iter()
                .flat_map(|a| s.resources.iter().map(move |r| (a, r)))
            {
                let grant = format!("{name} {action} {}", short(resource, prefix));
                let single = Statement {
                    actions: vec![action.clone()],
                    resources: vec![resource.clone()],
                    ..s.clone()
                };
                let users = users(model, requests, &owner, is_key, &single);
                let entry = counts.entry(name.clone()).or_default();
                entry.0 += 1;
                if users.is_empty() {
                    entry.1 += 1;
                    unused_grants.push((name.clone(), grant));
                } else if still_allowed(
                    model,
                    &users,
                    &without(&plain, i, action, resource),
                    is_key,
                ) {
                    redundant.push(grant);
                }
            }
        }
    }
    let unused = unused_grants
        .into_iter()
        .map(|(statement, grant)| {
            let (n, u) = counts[&statement];
            if n == u { statement } else { grant }
        })
        .collect();
    (redundant, unused)
}

/// One deleted grant (or a route sent to another function), as a
/// structural edit of the configuration as written (`tests/support/tfedit.rs`).
const MUTATIONS: &[Edit] = &[
    // The two gaps this test found: the disclosure mark and the key index.
    Set(
        "data.aws_iam_policy_document.get_recovery_key/statement[sid=MarkDisclosedKeys]",
        "actions",
        "[\"dynamodb:GetItem\"]",
    ),
    Set(
        "data.aws_iam_policy_document.get_recovery_key/statement[sid=QueryKeyIndex]",
        "resources",
        "[\"${aws_dynamodb_table.devices.arn}/index/by_owner\"]",
    ),
    // The condition that keeps the mark off tenant items, made too narrow.
    Set(
        "data.aws_iam_policy_document.get_recovery_key/statement[sid=MarkDisclosedKeys]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"D#fabrikam#*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.get_recovery_key/statement[sid=DecryptRecoveryKeysWithContext]",
        "actions",
        "[\"kms:ReEncryptFrom\"]",
    ),
    // keys verify can no longer decrypt.
    Set(
        "data.aws_iam_policy_document.keys_verify/statement[sid=DecryptRecoveryKeysWithContext]",
        "actions",
        "[\"kms:DescribeKey\"]",
    ),
    Set(
        "data.aws_iam_policy_document.get_recovery_key/statement[sid=UpdateRateLimits]",
        "actions",
        "[\"dynamodb:GetItem\"]",
    ),
    RemoveItem(
        "data.aws_iam_policy_document.list_devices/statement[sid=QueryDeviceIndexes]",
        "resources",
        "\"${aws_dynamodb_table.devices.arn}/index/by_owner\"",
    ),
    // Devices and key pointers are written and replaced in batches.
    RemoveItem(
        "data.aws_iam_policy_document.import/statement[sid=WriteDevices]",
        "actions",
        "\"dynamodb:BatchWriteItem\"",
    ),
    Set(
        "data.aws_iam_policy_document.keys_verify/statement[sid=ReadDevices]",
        "actions",
        "[\"dynamodb:Query\"]",
    ),
    // Retirement and restoration set and clear TTLs: UpdateItem.
    RemoveItem(
        "data.aws_iam_policy_document.manage_keys/statement[sid=ReadAndWriteDevices]",
        "actions",
        "\"dynamodb:UpdateItem\"",
    ),
    Set(
        "data.aws_iam_policy_document.manage_keys/statement[sid=QueryRotationRequests]",
        "resources",
        "[\"${aws_dynamodb_table.devices.arn}/index/by_key\"]",
    ),
    // The Entra sync can no longer read the devices it plans against.
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=ReadDevicesAndTenant]",
        "actions",
        "[\"dynamodb:GetItem\"]",
    ),
    // The sync reads the tenant item with its devices: T# must stay readable.
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=ReadDevicesAndTenant]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"D#*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]",
        "actions",
        "[\"dynamodb:PutItem\"]",
    ),
    // The sync's audit events are under its actor, not another's.
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=AppendAuditEvents]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"*#import:*\"]",
    ),
    // The key policy no longer names the key function for Decrypt.
    Set(
        "data.aws_iam_policy_document.recovery_keys_key_policy/statement[sid=KeyFunctionDecryptWithContext]/principals",
        "identifiers",
        "var.keys_verify_principal_arns",
    ),
    // Encrypt no longer delegated to IAM: escrow and import cannot seal.
    Set(
        "data.aws_iam_policy_document.recovery_keys_key_policy/statement[sid=DelegateEncryptWithContextToIam]",
        "resources",
        "[\"none\"]",
    ),
    // The scheduled sync loses a grant only its runs need. (Its other
    // grants are the CLI's, written once in iam.tf: the edits above of
    // data.aws_iam_policy_document.entra_sync reach both.)
    Set(
        "data.aws_iam_policy_document.entra_sync_function/statement[sid=ReadClientSecret]",
        "actions",
        "[\"secretsmanager:DescribeSecret\"]",
    ),
    RemoveItem(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]",
        "actions",
        "\"dynamodb:UpdateItem\"",
    ),
    // Pinned to another tenant than the one it syncs: every pinned grant
    // then refuses the recorded calls (so the pins are really evaluated).
    SetEntry(
        "locals",
        "entra_sync_scopes",
        &["function", "tenant"],
        "\"contoso\"",
    ),
    SetEntry(
        "locals",
        "entra_sync_scopes",
        &["function", "pin"],
        "[\"contoso\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=WriteDevices]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"D#contoso#*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=ReadDevicesAndTenant]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"D#${each.value.tenant}#*\", \"T#contoso\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=AppendAuditEvents]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"contoso#sync:entra#*\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=QueryOwnAuditEvents]/condition[test=ForAllValues:StringLike]",
        "values",
        "[\"contoso#sync:entra\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=SealRecoveryKeysWithContext]/dynamic.condition/content",
        "values",
        "[\"contoso\"]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=AppendAuditEvents]",
        "resources",
        "[aws_dynamodb_table.rate_limits.arn]",
    ),
    Set(
        "data.aws_iam_policy_document.entra_sync/statement[sid=SealRecoveryKeysWithContext]",
        "actions",
        "[\"kms:GenerateDataKey\"]",
    ),
    // The listing route sent to the key function, whose role cannot list.
    SetEntry(
        "locals",
        "routes",
        &["GET /v1/devices"],
        "\"get-recovery-key\"",
    ),
    // A whole statement removed: list-devices can no longer read the trail.
    Drop("data.aws_iam_policy_document.list_devices/statement[sid=QueryAuditIndexes]"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_any_needed_grant_denies_a_recorded_call() {
    let (calls, driven, prefix) = recorded().await;
    let blocks = terraform::parse_blocks(&terraform::sources());
    for edit in MUTATIONS {
        let mut mutated = blocks.clone();
        tfedit::apply(&mut mutated, *edit);
        let f = evaluate(
            &Infra::from_blocks(prefix, TFVARS, &mutated),
            calls,
            driven,
            prefix,
        );
        assert!(!f.denied.is_empty(), "{edit:?} denies no recorded call");
    }
}
