//! `portal serve --data-dir`: what it is given survives a restart and a
//! SIGKILL under load; keys are sealed at rest (no password in any form in
//! the database files); the master key file is private, checked, and
//! rotated by `portal keys rewrap`.

use crate::support::aws::password;
use crate::support::portal_cli::{portal, temp_dir, token};
use crate::support::serve::{Served, spawn};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEMO_SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tools/demo-seed.json");
/// Demo devices of contoso that the load reads and escrows to.
const DEVICES: [&str; 2] = ["DESKTOP-7Q2M4K1", "DESKTOP-3H8N2P5"];
const ESCROW: &str = "RecoveryKey.Escrow";
const AGENT: &str = "RecoveryKey.Read.All";

struct Node {
    dir: PathBuf,
    key: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Self {
        let dir = temp_dir(tag);
        let key = dir.join("dev-key.p8");
        Self { dir, key }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn serve(&self, seed: bool) -> Served {
        let mut c = portal(&self.key);
        c.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(self.data())
            .env("PORTAL_HELPDESK_RATE_LIMIT", "100000");
        if seed {
            c.args(["--seed", DEMO_SEED]);
        }
        spawn(c)
    }

    fn token(&self, served: &Served, user: &str, scope: &str) -> String {
        token(&self.key, &served.base, "contoso", user, scope)
    }
}

/// What the load saw answered.
#[derive(Default)]
struct Answers {
    /// Request ids of retrievals answered 200, with the password disclosed.
    disclosed: Vec<(String, String)>,
    /// Escrows answered 200 or 201: device, key ID, password.
    escrowed: Vec<(String, String, String)>,
    /// Every retention value a settings change sent, answered or not.
    settings_sent: Vec<u64>,
}

fn key_id(n: u32) -> String {
    format!("{n:08X}-0000-4000-8000-{:012X}", u64::from(n) * 7919)
}

async fn retrieve(
    c: &reqwest::Client,
    base: &str,
    t: &str,
    device: &str,
    key: Option<&str>,
    rid: &str,
) -> Option<(u16, serde_json::Value)> {
    let mut body = serde_json::json!({"reason": "crash test"});
    if let Some(k) = key {
        body["key_id"] = k.into();
    }
    let r = c
        .post(format!("{base}/v1/devices/{device}/recovery-key"))
        .bearer_auth(t)
        .header("x-request-id", rid)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or_default()))
}

/// One worker: retrievals, escrows and settings changes in turn, until the
/// server stops answering or `until`.
async fn worker(
    w: u32,
    base: String,
    tokens: [String; 3],
    until: Instant,
    out: Arc<Mutex<Answers>>,
) {
    let c = reqwest::Client::new();
    let [agent, escrow, admin] = tokens;
    for i in 0..10_000u32 {
        if Instant::now() > until {
            return;
        }
        let device = DEVICES[(i % 2) as usize];
        let rid = format!("crash-{w}-{i}");
        let Some((status, j)) = retrieve(&c, &base, &agent, device, None, &rid).await else {
            return;
        };
        if status == 200 {
            let pw = j["recovery_password"].as_str().unwrap().to_owned();
            out.lock().unwrap().disclosed.push((rid, pw));
        }
        let n = w * 10_000 + i + 1;
        let (kid, pw) = (key_id(n), password(n));
        let r = c
            .put(format!("{base}/v1/devices/{device}/recovery-keys/{kid}"))
            .bearer_auth(&escrow)
            .json(&serde_json::json!({"volume_type": "fixed_data", "recovery_password": pw}))
            .send()
            .await;
        match r {
            Ok(r) if [200, 201].contains(&r.status().as_u16()) => {
                out.lock().unwrap().escrowed.push((device.into(), kid, pw));
            }
            // Contention with concurrent writes to the same device.
            Ok(r) if r.status() == 503 => {}
            Ok(r) => panic!("escrow answered {}", r.status()),
            Err(_) => return,
        }
        let days = u64::from(n % 3000 + 1);
        out.lock().unwrap().settings_sent.push(days);
        let r = c
            .patch(format!("{base}/v1/tenant/settings"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"superseded_key_retention_days": days}))
            .send()
            .await;
        if r.is_err() {
            return;
        }
    }
}

/// Every event of contoso's trail, newest first, through the API.
async fn trail(c: &reqwest::Client, base: &str, auditor: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/audit-events?limit=1000");
        if let Some(cur) = &cursor {
            url.push_str(&format!("&cursor={cur}"));
        }
        let j: serde_json::Value = c
            .get(url)
            .bearer_auth(auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.extend(j["events"].as_array().unwrap().iter().cloned());
        match j["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => return all,
        }
    }
}

/// Runs the load on a fresh server with 4 workers and SIGKILLs the server
/// once it has answered `enough` of each kind of write.
async fn load_then_kill(node: &Node, enough: usize) -> Answers {
    let served = node.serve(true);
    let tokens = [
        node.token(&served, "agent", AGENT),
        node.token(&served, "mdm-sync", ESCROW),
        node.token(&served, "admin", "Tenant.Settings.ReadWrite"),
    ];
    let out = Arc::new(Mutex::new(Answers::default()));
    let until = Instant::now() + Duration::from_secs(60);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(worker(
                w,
                served.base.clone(),
                tokens.clone(),
                until,
                out.clone(),
            ))
        })
        .collect();
    while Instant::now() < until {
        let done = {
            let o = out.lock().unwrap();
            o.disclosed.len() >= enough && o.escrowed.len() >= enough
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL (Child::kill), mid-flight: requests are in progress as the
    // process dies, and nothing of it gets to shut down.
    let log = served.finish();
    for w in workers {
        w.await.unwrap();
    }
    assert!(!log.contains("panicked"), "{log}");
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_load_loses_no_answered_write() {
    let node = Node::new("crash");
    let seen = load_then_kill(&node, 100).await;
    assert!(seen.disclosed.len() >= 100 && seen.escrowed.len() >= 100);

    // The server starts cleanly on what the killed one left.
    let served = node.serve(false);
    let c = reqwest::Client::new();
    let auditor = node.token(&served, "auditor", "AuditLog.Read.All");
    let events = trail(&c, &served.base, &auditor).await;

    // Every 200 that disclosed a key has its granted event.
    let granted: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e["action"] == "disclose" && e["outcome"] == "granted")
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    for (rid, _) in &seen.disclosed {
        assert!(granted.contains(rid.as_str()), "no granted event for {rid}");
    }

    // Every 201 or 200 escrow is readable, with the password it was given.
    let agent = node.token(&served, "agent", AGENT);
    for (device, kid, pw) in &seen.escrowed {
        let (status, j) = retrieve(&c, &served.base, &agent, device, Some(kid), "check")
            .await
            .unwrap();
        assert_eq!(status, 200, "{device} {kid}: {j}");
        assert_eq!(j["recovery_password"], pw.as_str());
    }

    check_nothing_half_written(&node.data(), &events, &seen);
    drop(served);
}

/// The database is consistent, and every write is whole: each key the
/// load escrowed is stored with its ciphertext, its metadata and its
/// escrow event, or not at all; the tenant's settings are a value that was
/// sent, and no audit event is torn.
fn check_nothing_half_written(data: &Path, events: &[serde_json::Value], seen: &Answers) {
    let db = rusqlite::Connection::open(data.join("portal.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let ours = |k: &str| k.contains("-0000-4000-8000-");
    let mut sealed: Vec<String> = db
        .prepare("SELECT key_id FROM sealed_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|k: &String| ours(k))
        .collect();
    let mut indexed: Vec<String> = Vec::new();
    for d in DEVICES {
        let record: String = db
            .query_row(
                "SELECT record FROM devices WHERE tenant = 'contoso' AND device = ?1",
                [d],
                |r| r.get(0),
            )
            .unwrap();
        let record: serde_json::Value = serde_json::from_str(&record).unwrap();
        for k in record["keys"].as_array().unwrap() {
            indexed.push(k["key_id"].as_str().unwrap().to_owned());
        }
    }
    indexed.retain(|k| ours(k));
    let mut escrow_events: Vec<String> = events
        .iter()
        .filter(|e| e["action"] == "escrow" && e["outcome"] != "denied")
        .map(|e| e["key_id"].as_str().unwrap().to_owned())
        .collect();
    for v in [&mut sealed, &mut indexed, &mut escrow_events] {
        v.sort();
    }
    assert_eq!(
        sealed, indexed,
        "every ciphertext has its metadata and back"
    );
    assert_eq!(
        sealed, escrow_events,
        "every stored key has its escrow event and back"
    );
    assert!(sealed.len() >= seen.escrowed.len());
    let policy: String = db
        .query_row(
            "SELECT policy FROM tenants WHERE tenant = 'contoso'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    let days = policy["superseded_key_retention_days"].as_u64().unwrap();
    assert!(seen.settings_sent.contains(&days), "{days} was never sent");
}

/// The forms a recovery password could take in a file: as typed, digits
/// only, base64 of either, and BitLocker's 16-byte binary key (each group
/// divided by 11, little-endian).
fn forms(pw: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let digits: String = pw.chars().filter(char::is_ascii_digit).collect();
    let binary: Vec<u8> = pw
        .split('-')
        .flat_map(|g| ((g.parse::<u32>().unwrap() / 11) as u16).to_le_bytes())
        .collect();
    let b64 = |s: &[u8]| {
        base64::engine::general_purpose::STANDARD
            .encode(s)
            .into_bytes()
    };
    vec![
        pw.as_bytes().to_vec(),
        digits.clone().into_bytes(),
        b64(pw.as_bytes()),
        b64(digits.as_bytes()),
        binary,
    ]
}

fn demo_passwords() -> Vec<String> {
    let seed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DEMO_SEED).unwrap()).unwrap();
    seed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["recovery_keys"].as_array().unwrap().iter())
        .map(|k| k["recovery_password"].as_str().unwrap().to_owned())
        .collect()
}

fn run_portal(node: &Node, args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let mut c = portal(&node.key);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_sealed_at_rest_under_a_checked_master_key_and_rewrap_rotates_it() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new("sealed");
    let served = node.serve(true);
    let c = reqwest::Client::new();
    let escrow = node.token(&served, "mdm-sync", ESCROW);
    let (kid, pw) = (key_id(777), password(777));
    let r = c
        .put(format!(
            "{}/v1/devices/{}/recovery-keys/{kid}",
            served.base, DEVICES[0]
        ))
        .bearer_auth(&escrow)
        .json(&serde_json::json!({"volume_type": "fixed_data", "recovery_password": pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let agent = node.token(&served, "agent", AGENT);
    let (status, _) = retrieve(&c, &served.base, &agent, DEVICES[0], None, "sealed-1")
        .await
        .unwrap();
    assert_eq!(status, 200);
    // SIGKILL: the WAL is left as it is, not checkpointed into the file.
    drop(served);

    // No password in any form in the database, its WAL or shared memory.
    let mut passwords = demo_passwords();
    passwords.push(pw.clone());
    let files: Vec<PathBuf> = std::fs::read_dir(node.data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("portal.db")
        })
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("portal.db-wal")),
        "{files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for p in &passwords {
            for form in forms(p) {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                    "{}: holds a password ({})",
                    f.display(),
                    String::from_utf8_lossy(&form)
                );
            }
        }
    }

    // The key file: created private; refused once others may read it.
    let key_file = node.data().join("master.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let data = node.data();
    let data = data.to_str().unwrap();
    let serve = ["serve", "--addr", "127.0.0.1:0", "--data-dir", data];
    let (ok, err) = run_portal(&node, &serve, &[]);
    assert!(
        !ok && err.contains("readable or writable by group or others"),
        "{err}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another key file does not open this database: the start stops.
    let other = node.dir.join("other.key");
    let (ok, err) = run_portal(&node, &serve, &[("PORTAL_MASTER_KEY_FILE", &other)]);
    assert!(!ok && err.contains("does not open this database"), "{err}");

    // Rewrap: refused under a running server, then every key moves.
    let new_key = node.dir.join("new.key");
    let rewrap = [
        "keys",
        "rewrap",
        "--data-dir",
        data,
        "--new-key-file",
        new_key.to_str().unwrap(),
    ];
    let served = node.serve(false);
    let (ok, err) = run_portal(&node, &rewrap, &[]);
    assert!(!ok && err.contains("in use"), "{err}");
    drop(served);
    let (ok, out) = run_portal(&node, &rewrap, &[]);
    assert!(ok, "{out}");
    assert!(out.contains(" keys re-sealed"), "{out}");
    let (ok, err) = run_portal(&node, &serve, &[]);
    assert!(
        !ok && err.contains("does not open this database"),
        "the old key: {err}"
    );
    let mut c2 = portal(&node.key);
    c2.args(serve).env("PORTAL_MASTER_KEY_FILE", &new_key);
    let served = spawn(c2);
    let agent = node.token(&served, "agent", AGENT);
    let (status, j) = retrieve(
        &c,
        &served.base,
        &agent,
        DEVICES[0],
        Some(&kid),
        "after-rewrap",
    )
    .await
    .unwrap();
    assert_eq!(
        (status, j["recovery_password"].as_str()),
        (200, Some(pw.as_str()))
    );
}

/// With a real identity provider, `portal serve` still refuses a
/// non-loopback address on the in-memory store (it would lose what it is
/// given), and takes one with `--data-dir`.
#[test]
fn a_non_loopback_address_needs_a_data_dir() {
    let node = Node::new("non-loopback");
    let issuer = [
        ("PORTAL_ISSUER", "https://login.example.com/contoso/v2.0"),
        ("PORTAL_AUDIENCE", "api://recovery-portal"),
        (
            "PORTAL_JWKS",
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#,
        ),
    ];
    let mut c = portal(&node.key);
    c.args(["serve", "--addr", "0.0.0.0:0"]).envs(issuer);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("in-memory store") && err.contains("--data-dir"),
        "{err}"
    );
    let mut c = portal(&node.key);
    c.args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(node.data())
        .envs(issuer);
    let served = spawn(c);
    assert!(served.banner.contains("Data:"), "{}", served.banner);
}
