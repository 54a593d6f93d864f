//! Every variable of the configuration table (docs/configuration.md) that applies to
//! `portal serve` changes what `portal serve` does, on the in-memory store
//! and on the persistent one alike: one row per setting, each started as a
//! real process and observed through the API.

use crate::support::portal_cli::{portal, temp_dir, token};
use crate::support::serve::{Served, spawn};
use std::path::{Path, PathBuf};

const DEMO_SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tools/demo-seed.json");

/// Which store a row runs on.
#[derive(Debug, Clone, Copy)]
enum StoreKind {
    Memory,
    Persistent,
}

/// One server under test, its dev signing key and its own directory.
struct Run {
    served: Served,
    key: PathBuf,
}

impl Run {
    fn start(store: StoreKind, dir: &Path, env: &[(&str, String)]) -> Self {
        let key = dir.join("dev-key.p8");
        let mut c = portal(&key);
        c.args(["serve", "--addr", "127.0.0.1:0"]);
        if let StoreKind::Persistent = store {
            // A data directory starts empty: the rows read the demo devices.
            c.arg("--data-dir").arg(dir.join("data"));
            c.args(["--seed", DEMO_SEED]);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        Self {
            served: spawn(c),
            key,
        }
    }

    fn token(&self, user: &str, scope: &str) -> String {
        token(&self.key, &self.served.base, "contoso", user, scope)
    }

    /// Retrieves DESKTOP-7Q2M4K1's key `n` times as `user`; the statuses.
    async fn retrievals(&self, user: &str, scope: &str, n: usize) -> Vec<u16> {
        let t = self.token(user, scope);
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for _ in 0..n {
            let r = client
                .post(format!(
                    "{}/v1/devices/DESKTOP-7Q2M4K1/recovery-key",
                    self.served.base
                ))
                .bearer_auth(&t)
                .json(&serde_json::json!({"reason": "settings test"}))
                .send()
                .await
                .unwrap();
            out.push(r.status().as_u16());
        }
        out
    }
}

async fn helpdesk_rate_limit(store: StoreKind) {
    let dir = temp_dir("helpdesk-limit");
    let run = Run::start(
        store,
        &dir,
        &[("PORTAL_HELPDESK_RATE_LIMIT", "3".to_owned())],
    );
    assert_eq!(
        run.retrievals("agent", "RecoveryKey.Read.All", 4).await,
        [200, 200, 200, 429],
        "{store:?}: the fourth key of an agent's hour is over PORTAL_HELPDESK_RATE_LIMIT=3"
    );
}

async fn key_rate_limit(store: StoreKind) {
    let dir = temp_dir("key-limit");
    let run = Run::start(store, &dir, &[("PORTAL_KEY_RATE_LIMIT", "2".to_owned())]);
    assert_eq!(
        run.retrievals("alice", "RecoveryKey.Read", 3).await,
        [200, 200, 429],
        "{store:?}"
    );
}

/// `PORTAL_INCIDENT_MAX_RATE_LIMIT` caps the limit an incident may give agents.
async fn incident_ceiling(store: StoreKind) {
    let dir = temp_dir("incident-ceiling");
    let run = Run::start(
        store,
        &dir,
        &[("PORTAL_INCIDENT_MAX_RATE_LIMIT", "10".to_owned())],
    );
    let t = run.token("lead", "RecoveryKey.Incident");
    let open = |limit: u32| {
        reqwest::Client::new()
            .post(format!("{}/v1/incidents", run.served.base))
            .bearer_auth(&t)
            .json(&serde_json::json!({"reason": "settings test", "duration_hours": 1, "helpdesk_rate_limit": limit}))
            .send()
    };
    assert_eq!(
        open(11).await.unwrap().status().as_u16(),
        400,
        "{store:?}: above the ceiling"
    );
    assert_eq!(
        open(10).await.unwrap().status().as_u16(),
        201,
        "{store:?}: at the ceiling"
    );
}

/// `PORTAL_WEB_CLIENT_ID` and `PORTAL_WEB_SCOPES` reach the page's `/config.json`.
async fn web_client(store: StoreKind) {
    let dir = temp_dir("web-client");
    let run = Run::start(
        store,
        &dir,
        &[
            ("PORTAL_WEB_CLIENT_ID", "contoso-portal".to_owned()),
            ("PORTAL_WEB_SCOPES", "openid Devices.Read".to_owned()),
        ],
    );
    let j: serde_json::Value = reqwest::get(format!("{}/config.json", run.served.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["client_id"], "contoso-portal", "{store:?}");
    assert_eq!(j["scopes"], "openid Devices.Read", "{store:?}");
}

/// `PORTAL_ISSUER`, `PORTAL_AUDIENCE` and `PORTAL_JWKS`: the server trusts
/// that issuer's keys instead of being its own identity provider.
async fn issuer(store: StoreKind) {
    let dir = temp_dir("issuer");
    let key = dir.join("dev-key.p8");
    const ISSUER: &str = "http://127.0.0.1:9";
    let env = portal(&key)
        .args(["dev-env", "--issuer", ISSUER])
        .output()
        .unwrap();
    let env = String::from_utf8(env.stdout).unwrap();
    let var = |name: &str| {
        let line = env
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap();
        line.trim_matches('\'').replace("'\\''", "'")
    };
    let run = Run::start(
        store,
        &dir,
        &[
            ("PORTAL_ISSUER", ISSUER.to_owned()),
            ("PORTAL_AUDIENCE", var("PORTAL_AUDIENCE")),
            ("PORTAL_JWKS", var("PORTAL_JWKS")),
        ],
    );
    assert!(
        !run.served.banner.contains("LOCAL DEVELOPMENT MODE"),
        "{store:?}"
    );
    let t = token(&run.key, ISSUER, "contoso", "alice", "RecoveryKey.Read");
    let r = reqwest::Client::new()
        .get(format!("{}/v1/devices", run.served.base))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{store:?}");
    // The dev provider's own issuer is not trusted any more.
    let own = run.token("alice", "RecoveryKey.Read");
    let r = reqwest::Client::new()
        .get(format!("{}/v1/devices", run.served.base))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{store:?}");
}

/// `PORTAL_DATA_DIR` is `--data-dir`; `PORTAL_MASTER_KEY_FILE` puts the key
/// elsewhere (created 0600), and the database is made in the directory.
async fn data_dir_and_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("data-dir-env");
    let secret = dir.join("secrets").join("portal.key");
    let run = Run::start(
        StoreKind::Memory,
        &dir,
        &[
            ("PORTAL_DATA_DIR", dir.join("by-env").display().to_string()),
            ("PORTAL_MASTER_KEY_FILE", secret.display().to_string()),
        ],
    );
    assert!(
        !run.served.banner.contains("IN-MEMORY"),
        "{}",
        run.served.banner
    );
    assert!(dir.join("by-env/portal.db").exists());
    assert!(!dir.join("by-env/master.key").exists());
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Where each variable of the configuration table (docs/configuration.md) is shown to
/// change what `portal serve` does: a row here, or another test that runs
/// the same assembly, or why it does not apply to `portal serve`.
const COVERAGE: &[(&str, &str)] = &[
    ("PORTAL_ISSUER", "issuer row"),
    ("PORTAL_AUDIENCE", "issuer row"),
    ("PORTAL_JWKS", "issuer row"),
    (
        "PORTAL_JWKS_URL",
        "tests/auth/jwt.rs: app::jwt_verifier, which serve uses",
    ),
    (
        "PORTAL_JWKS_MAX_AGE",
        "tests/auth/jwt.rs: portal_jwks_max_age_sets_how_long_fetched_keys_are_used",
    ),
    (
        "PORTAL_DEFAULT_TENANT",
        "tests/auth/jwt.rs: tokens without tid",
    ),
    ("PORTAL_KEY_RATE_LIMIT", "key rate limit rows"),
    ("PORTAL_HELPDESK_RATE_LIMIT", "helpdesk rate limit rows"),
    (
        "PORTAL_METRICS_NAMESPACE",
        "not serve: the Lambda functions' EMF lines",
    ),
    (
        "PORTAL_BACKEND",
        "tests/aws/e2e.rs: serve on the aws backend",
    ),
    ("PORTAL_TABLE_PREFIX", "aws backend: tests/aws"),
    ("PORTAL_KMS_KEY_ID", "aws backend: tests/aws"),
    (
        "PORTAL_SEED_FILE",
        "tests/cli/portal.rs: serve_loads_portal_seed_file; persistent rows",
    ),
    (
        "PORTAL_DEV_KEY_FILE",
        "every row: tokens from that key only",
    ),
    ("PORTAL_DATA_DIR", "data dir row"),
    ("PORTAL_MASTER_KEY_FILE", "data dir row"),
    ("RUST_LOG", "tests/api/logs.rs"),
    ("PORTAL_WEB_CLIENT_ID", "web client rows"),
    ("PORTAL_WEB_SCOPES", "web client rows"),
    ("AWS_ENDPOINT_URL", "aws backend: tests/aws on moto"),
    ("AWS_CA_BUNDLE", "aws backend: tests/aws/tls.rs"),
    (
        "PORTAL_TLS_ROOTS",
        "aws backend: tests/aws/tls.rs; tests/auth/jwt.rs",
    ),
    ("PORTAL_INCIDENT_MAX_RATE_LIMIT", "incident ceiling rows"),
    (
        "PORTAL_TENANT_CLAIM",
        "tests/browser/test_provider.py: serve against node-oidc-provider's claims",
    ),
    (
        "PORTAL_USER_CLAIM",
        "tests/browser/test_provider.py: serve against node-oidc-provider's claims",
    ),
    (
        "PORTAL_WEB_AUTH_PARAMS",
        "tests/browser/test_provider.py: resource=... on sign-in",
    ),
    (
        "PORTAL_WEB_MAX_AGE",
        "tests/browser/test_provider.py: max_age sent; tests/api: disclosure refused",
    ),
    (
        "PORTAL_ENTRA_TENANT_ID",
        "not serve: portal sync entra (tests/aws/entra_sync)",
    ),
    (
        "PORTAL_GRAPH_URL",
        "not serve: portal sync entra (tests/aws/entra_sync)",
    ),
];

#[test]
fn every_variable_of_the_configuration_table_is_covered() {
    // The configuration table moved from the README to its own page.
    let doc = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ));
    let table = doc
        .split("| Variable | Meaning |")
        .nth(1)
        .expect("the configuration table of docs/configuration.md");
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = line.split('|').nth(1).unwrap();
        let var = first.split('`').nth(1).unwrap();
        assert!(
            COVERAGE.iter().any(|(v, _)| *v == var),
            "{var} is in docs/configuration.md's table but no test shows it changes portal serve"
        );
    }
}

#[tokio::test]
async fn portal_helpdesk_rate_limit_limits_agents_in_memory() {
    helpdesk_rate_limit(StoreKind::Memory).await;
}

#[tokio::test]
async fn portal_helpdesk_rate_limit_limits_agents_on_disk() {
    helpdesk_rate_limit(StoreKind::Persistent).await;
}

#[tokio::test]
async fn the_other_serve_settings_change_serve_on_either_store() {
    for store in [StoreKind::Memory, StoreKind::Persistent] {
        key_rate_limit(store).await;
        incident_ceiling(store).await;
        web_client(store).await;
        issuer(store).await;
    }
    data_dir_and_key_file().await;
}
