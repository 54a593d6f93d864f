//! AWS path: both function binaries (release builds) under the Lambda Runtime
//! API emulator with `PORTAL_BACKEND=aws`, against moto, through a proxy that
//! counts the AWS calls each invocation makes. Run by `scripts/bench.sh aws`
//! (which starts moto with `scripts/moto.sh`); not part of CI.
//!
//! ```text
//! cargo build --release --bench awspath   # scripts/bench.sh aws builds and runs it
//! PORTAL_TEST_MOTO_URL=http://127.0.0.1:PORT \
//!   target/release/deps/awspath-<hash> [--invocations N] [--batches N] [--batch N] [--bin-dir target/release]
//! ```
//!
//! Then the incident path: `manage-keys` opens an incident
//! (`POST /v1/incidents`, as the incident lead), and `get-recovery-key` serves
//! `--batches` helpdesk batch retrievals (`POST /v1/recovery-keys/batch`) of
//! `--batch` key IDs each (keys of the seed's second devices, both volumes),
//! so the AWS calls per disclosed key of a single retrieval and of a batch
//! can be compared.
//!
//! Per route: AWS calls per invocation (by operation, from the
//! `X-Amz-Target` of every request the function sent), wall time from the
//! event's push to the function's response, and the function's own CPU time
//! per invocation (`/proc/<pid>/schedstat`); the difference is time spent
//! waiting on AWS (here moto, a Python server on the same two cores, so its
//! latency says little about DynamoDB's; the call counts and the function's
//! CPU are the figures that carry over).

#[path = "support/stats.rs"]
mod stats;
#[path = "support/synthetic.rs"]
mod synthetic;
use stats::percentile;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use lambda_emulator::{Emulator, FunctionProcess};
use recovery_portal::adapters::aws::{DynamoStore, KmsCipher};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ISSUER: &str = "https://login.example.test/awspath/v2.0";
const AUDIENCE: &str = "api://recovery-portal-awspath";
const REGION: &str = "eu-west-1";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP proxy to moto recording the `X-Amz-Target` of every request.
struct CountingProxy {
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let t = targets.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut tail = String::new();
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // Headers are ASCII; scan this chunk plus the end
                            // of the previous one for `x-amz-target: <op>\r\n`.
                            let text = tail.clone() + &String::from_utf8_lossy(&buf[..n]);
                            let lower = text.to_ascii_lowercase();
                            let mut from = 0;
                            while let Some(p) = lower[from..].find("\nx-amz-target:") {
                                let start = from + p + "\nx-amz-target:".len();
                                match lower[start..].find("\r\n") {
                                    Some(end) => {
                                        t.lock()
                                            .unwrap()
                                            .push(text[start..start + end].trim().to_owned());
                                        from = start + end;
                                    }
                                    None => break,
                                }
                            }
                            let keep = text.len().saturating_sub(from).min(128);
                            let mut cut = text.len() - keep;
                            while !text.is_char_boundary(cut) {
                                cut += 1;
                            }
                            tail = text[cut..].to_owned();
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Self { addr, targets }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.targets.lock().unwrap())
    }
}

fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct RouteResult {
    label: String,
    calls: BTreeMap<String, usize>,
    calls_first: usize,
    invocations: usize,
    wall_ms: Vec<f64>,
    cpu_us: Vec<f64>,
    first_wall_ms: f64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut invocations = 20usize;
    let mut batches = 3usize;
    let mut batch = 100usize;
    let mut bin_dir = PathBuf::from("target/release");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--invocations" => invocations = args.next().and_then(|n| n.parse().ok()).unwrap_or(20),
            "--batches" => batches = args.next().and_then(|n| n.parse().ok()).unwrap_or(3),
            "--batch" => {
                batch = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=100).contains(n))
                    .unwrap_or(100)
            }
            "--bin-dir" => bin_dir = args.next().map(PathBuf::from).unwrap_or(bin_dir),
            _ => {
                eprintln!(
                    "usage: awspath [--invocations N] [--batches N] [--batch N] [--bin-dir DIR]"
                );
                std::process::exit(2);
            }
        }
    }
    let Ok(moto) = std::env::var("PORTAL_TEST_MOTO_URL") else {
        eprintln!("awspath: PORTAL_TEST_MOTO_URL is not set (source scripts/moto.sh start)");
        std::process::exit(1);
    };
    let upstream: SocketAddr = moto
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("PORTAL_TEST_MOTO_URL is http://HOST:PORT");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Tables, a KMS key and the data, created directly on moto.
    let prefix = format!(
        "awspath-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    // Every second user has a second device with two keys: enough of them
    // for the batches.
    let users = (invocations + 1).max(batches * batch + 2);
    let (seed_json, expected, helpdesk_keys) = synthetic::seed_with_helpdesk(users);
    let helpdesk: Vec<Vec<synthetic::HelpdeskKey>> =
        synthetic::helpdesk_batches(&helpdesk_keys, 1, batch)
            .into_iter()
            .flatten()
            .take(batches)
            .collect();
    eprintln!(
        "awspath: importing {users} users ({} keys) into moto",
        seed_json.matches("\"recovery_password\"").count()
    );
    let kms_key_id = rt.block_on(async {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .endpoint_url(moto.trim())
            .load()
            .await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let kms = aws_sdk_kms::Client::new(&sdk);
        recovery_portal::adapters::aws::create_tables(&dynamodb, &prefix)
            .await
            .expect("create tables on moto");
        let key = kms
            .create_key()
            .description("recovery-portal awspath benchmark")
            .send()
            .await
            .expect("create a KMS key on moto")
            .key_metadata
            .expect("key metadata")
            .key_id;
        let store = DynamoStore::new(dynamodb, &prefix);
        let cipher = KmsCipher::new(kms, Some(key.clone()));
        let seed = recovery_portal::tools::seed::parse(&seed_json).unwrap();
        recovery_portal::tools::import::import(&seed, &cipher, &store, &|_, _| {})
            .await
            .expect("import into moto");
        key
    });
    let proxy = rt.block_on(CountingProxy::start(upstream));
    let _guard = rt.enter();

    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let jwks = idp.jwks_json();
    let endpoint = format!("http://{}", proxy.addr);
    let env = [
        ("PORTAL_BACKEND", "aws"),
        ("PORTAL_ISSUER", ISSUER),
        ("PORTAL_AUDIENCE", AUDIENCE),
        ("PORTAL_JWKS", jwks.as_str()),
        ("PORTAL_TABLE_PREFIX", prefix.as_str()),
        ("PORTAL_KMS_KEY_ID", kms_key_id.as_str()),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
    ];
    let template = |name: &str| {
        std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("events")
                .join(name),
        )
        .unwrap()
    };

    let mut results = Vec::new();
    for function in ["list-devices", "get-recovery-key"] {
        let program = bin_dir.join(function);
        let (addr, emu) = Emulator::start().unwrap();
        let mut f = FunctionProcess::spawn(&program, function, addr, &env)
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        assert!(
            emu.wait_next(1, TIMEOUT).is_some(),
            "{function}: no /next:\n{}",
            f.output()
        );
        proxy.take();
        let (route, file) = if function == "list-devices" {
            ("list own devices", "list-devices.json")
        } else {
            ("retrieve key", "get-recovery-key.json")
        };
        // First a 401 (cold: no AWS call may happen), then the route, once
        // per user, each with its own request id.
        let mut events = vec![template(file).replace("{{TOKEN}}", "not.a.token")];
        for (i, e) in expected.iter().take(invocations).enumerate() {
            let token = idp.token(synthetic::TENANT, &e.user, "RecoveryKey.Read", now, 3600);
            events.push(
                template(file)
                    .replace("{{TOKEN}}", &token)
                    .replace("DESKTOP-7Q2M4K1", &e.device_id)
                    .replace("Ab1Cd2Ef3Gh", &format!("awspath-{function}-{i}-")),
            );
        }
        let new_result = |label: String| RouteResult {
            label,
            calls: BTreeMap::new(),
            calls_first: 0,
            invocations: 0,
            wall_ms: Vec::new(),
            cpu_us: Vec::new(),
            first_wall_ms: f64::NAN,
        };
        let mut bad_result =
            new_result(format!("{function}: invalid token (401), first invocation"));
        let mut ok = new_result(format!("{function}: {route}"));
        for (n, event) in events.into_iter().enumerate() {
            let cpu0 = cpu_ns(f.id());
            let t0 = Instant::now();
            emu.push(event);
            let r = emu
                .wait_response(TIMEOUT)
                .unwrap_or_else(|e| panic!("{function}: {e}\n{}", f.output()));
            let wall = (r.at - t0).as_secs_f64() * 1e3;
            // The response is posted before the runtime polls again; wait for
            // that poll so the invocation's CPU work is complete.
            emu.wait_next(n + 2, TIMEOUT);
            let cpu = (cpu_ns(f.id()) - cpu0) as f64 / 1e3;
            let calls = proxy.take();
            let j = r.json().unwrap();
            let (target, want) = if n == 0 {
                (&mut bad_result, 401)
            } else {
                (&mut ok, 200)
            };
            assert_eq!(j["statusCode"], want, "{function}: {j}");
            if target.first_wall_ms.is_nan() {
                // A process's first call also opens the connection.
                target.first_wall_ms = wall;
                target.calls_first = calls.len();
            }
            if n != 1 {
                target.wall_ms.push(wall);
                target.cpu_us.push(cpu);
            }
            target.invocations += 1;
            for c in calls {
                *target.calls.entry(c).or_default() += 1;
            }
        }
        results.push(bad_result);
        results.push(ok);
        f.kill();
    }

    // The incident path: the lead opens an incident (manage-keys), then
    // the helpdesk's batches (get-recovery-key).
    let event = |method: &str, route: &str, path: &str, body: &str, token: &str, id: &str| {
        let mut e: serde_json::Value =
            serde_json::from_str(&template("get-recovery-key.json")).unwrap();
        e["routeKey"] = format!("{method} {route}").into();
        e["requestContext"]["routeKey"] = format!("{method} {route}").into();
        e["rawPath"] = path.into();
        e["requestContext"]["http"]["path"] = path.into();
        e["requestContext"]["http"]["method"] = method.into();
        e["requestContext"]["requestId"] = id.into();
        e["headers"]["authorization"] = format!("Bearer {token}").into();
        e["headers"]["content-length"] = body.len().to_string().into();
        e["body"] = body.into();
        e.as_object_mut().unwrap().remove("pathParameters");
        e.to_string()
    };
    let lead = idp.token(
        synthetic::TENANT,
        "incident-lead",
        "RecoveryKey.Incident",
        now,
        3600,
    );
    let agent = idp.token(
        synthetic::TENANT,
        "agent000",
        "RecoveryKey.Read.All",
        now,
        3600,
    );
    let incident_body = serde_json::json!({
        "reason": "awspath drill",
        "duration_hours": 1,
        "helpdesk_rate_limit": (batches * batch * 2).clamp(1, 100_000),
    })
    .to_string();
    let mut batch_keys = 0usize;
    // (function, label, [(event, expected status)])
    type Plan<'a> = (&'a str, String, Vec<(String, usize)>);
    let plan: [Plan; 2] = [
        (
            "manage-keys",
            "open incident (lead)".to_owned(),
            vec![(
                event(
                    "POST",
                    "/v1/incidents",
                    "/v1/incidents",
                    &incident_body,
                    &lead,
                    "awspath-incident-1",
                ),
                201,
            )],
        ),
        (
            "get-recovery-key",
            format!("helpdesk batch of {batch} keys (incident open)"),
            helpdesk
                .iter()
                .enumerate()
                .map(|(i, keys)| {
                    let body = serde_json::json!({
                        "key_ids": keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
                        "reason": "awspath drill",
                    })
                    .to_string();
                    (
                        event(
                            "POST",
                            "/v1/recovery-keys/batch",
                            "/v1/recovery-keys/batch",
                            &body,
                            &agent,
                            &format!("awspath-batch-{i}"),
                        ),
                        200,
                    )
                })
                .collect(),
        ),
    ];
    let mut batch_result = None;
    for (function, label, events) in plan {
        let program = bin_dir.join(function);
        let (addr, emu) = Emulator::start().unwrap();
        let mut f = FunctionProcess::spawn(&program, function, addr, &env)
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        assert!(
            emu.wait_next(1, TIMEOUT).is_some(),
            "{function}: no /next:\n{}",
            f.output()
        );
        proxy.take();
        let mut r = RouteResult {
            label: format!("{function}: {label}"),
            calls: BTreeMap::new(),
            calls_first: 0,
            invocations: 0,
            wall_ms: Vec::new(),
            cpu_us: Vec::new(),
            first_wall_ms: f64::NAN,
        };
        for (n, (event, want)) in events.into_iter().enumerate() {
            let cpu0 = cpu_ns(f.id());
            let t0 = Instant::now();
            emu.push(event);
            let resp = emu
                .wait_response(TIMEOUT)
                .unwrap_or_else(|e| panic!("{function}: {e}\n{}", f.output()));
            let wall = (resp.at - t0).as_secs_f64() * 1e3;
            emu.wait_next(n + 2, TIMEOUT);
            let cpu = (cpu_ns(f.id()) - cpu0) as f64 / 1e3;
            let calls = proxy.take();
            let j = resp.json().unwrap();
            assert_eq!(j["statusCode"], want, "{function}: {j}\n{}", f.output());
            if function == "get-recovery-key" {
                let body: serde_json::Value =
                    serde_json::from_str(j["body"].as_str().unwrap_or_default()).unwrap();
                let items = body["results"].as_array().cloned().unwrap_or_default();
                assert_eq!(items.len(), helpdesk[n].len(), "{body}");
                for (item, k) in items.iter().zip(&helpdesk[n]) {
                    assert_eq!(item["status"], 200, "{item}");
                    assert_eq!(item["recovery_password"], k.password.as_str(), "{item}");
                }
                batch_keys += items.len();
            }
            if r.first_wall_ms.is_nan() {
                r.first_wall_ms = wall;
                r.calls_first = calls.len();
            }
            // The first invocation also opens the connection (reported apart,
            // unless it is the only one).
            if n != 0 || function == "manage-keys" {
                r.wall_ms.push(wall);
                r.cpu_us.push(cpu);
            }
            r.invocations += 1;
            for c in calls {
                *r.calls.entry(c).or_default() += 1;
            }
        }
        f.kill();
        if function == "get-recovery-key" {
            // Its index in `results`.
            batch_result = Some(results.len());
        }
        results.push(r);
    }

    println!(
        "| invocation | n | AWS calls per invocation | first invocation: calls, wall ms | wall p50 ms | wall p90 ms | function CPU p50 µs | waiting on AWS p50 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &mut results {
        let n = r.invocations.max(1);
        let calls = if r.calls.is_empty() {
            "0".to_owned()
        } else {
            r.calls
                .iter()
                .map(|(op, c)| format!("{op} × {:.2}", *c as f64 / n as f64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (w50, w90, c50) = (
            percentile(&mut r.wall_ms, 50.0),
            percentile(&mut r.wall_ms, 90.0),
            percentile(&mut r.cpu_us, 50.0),
        );
        println!(
            "| {} | {} | {calls} | {}, {:.2} | {w50:.2} | {w90:.2} | {c50:.0} | {:.2} |",
            r.label,
            r.invocations,
            r.calls_first,
            r.first_wall_ms,
            w50 - c50 / 1e3,
        );
    }

    // AWS calls per disclosed key: a single retrieval against a batch.
    let per_key = |r: &RouteResult, keys: usize| {
        let mut all = BTreeMap::new();
        for (op, c) in &r.calls {
            all.insert(op.clone(), *c as f64 / keys.max(1) as f64);
        }
        all
    };
    let single = results
        .iter()
        .find(|r| r.label == "get-recovery-key: retrieve key")
        .map(|r| per_key(r, r.invocations));
    let batched = batch_result.map(|i| per_key(&results[i], batch_keys));
    println!();
    println!(
        "| AWS calls per disclosed key | single retrieval ({} keys) | helpdesk batches of {batch} ({batch_keys} keys) |",
        invocations
    );
    println!("|---|---|---|");
    let mut ops: Vec<String> = single
        .iter()
        .chain(&batched)
        .flat_map(|m| m.keys().cloned())
        .collect();
    ops.sort();
    ops.dedup();
    let cell = |m: &Option<BTreeMap<String, f64>>, op: &str| {
        m.as_ref()
            .and_then(|m| m.get(op))
            .map_or("0".to_owned(), |v| format!("{v:.2}"))
    };
    for op in &ops {
        println!("| {op} | {} | {} |", cell(&single, op), cell(&batched, op));
    }
    let total = |m: &Option<BTreeMap<String, f64>>| m.as_ref().map_or(0.0, |m| m.values().sum());
    println!(
        "| **all** | **{:.2}** | **{:.2}** |",
        total(&single),
        total(&batched)
    );
}
