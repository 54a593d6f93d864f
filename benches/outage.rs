//! Outage simulation: every user of a 10,000-user tenant lists their devices
//! then retrieves a recovery key, at once, against `portal serve` on the
//! embedded backends. Run by `scripts/bench.sh`; not part of CI.
//!
//! ```text
//! cargo build --release --bench outage   # scripts/bench.sh outage builds and runs it
//! target/release/deps/outage-<hash> --portal target/release/portal \
//!     [--users 10000] [--connections 64] [--repeat 3] [--alg rs256|es256] [--seed-out FILE]
//!     [--modes same,distinct,incident] [--agents 200] [--batch 100]
//! ```
//!
//! - writes a synthetic seed (one tenant, one or two devices per user, keys
//!   on every device) and starts `portal serve --seed` on a loopback port;
//! - `rs256` (default): the server verifies RS256 tokens of an issuer given
//!   inline (`PORTAL_ISSUER`, `PORTAL_AUDIENCE`, `PORTAL_JWKS`), as with
//!   Entra ID; `es256`: the server is its own development identity provider
//!   and shares its key with this generator through `PORTAL_DEV_KEY_FILE`;
//! - mints every token in advance, then runs the load over `--connections`
//!   keep-alive HTTP/1.1 connections (a minimal client on one thread, so the
//!   server keeps as much of the two cores as possible);
//! - checks every answer (200, the expected password), then reads
//!   `GET /v1/audit-events?actor=<user>` for every user with an auditor token:
//!   exactly one event, granted, for the disclosed device and key;
//! - measures the raw verification rate of the same tokens on two threads,
//!   and reports the server's throughput as a fraction of it; since this
//!   generator and other work share the two cores, also the CPU-time view:
//!   server CPU per request against CPU per verification.
//!
//! Mode `incident` (`--modes incident`, `scripts/bench.sh incident`): a mass
//! outage with the helpdesk working an incident. An incident lead opens an
//! incident over the API (`POST /v1/incidents`, with a helpdesk limit above
//! each agent's share); then, while every user lists and retrieves the key
//! of their first device (one token per user, as in `same`), `--agents`
//! helpdesk agents (`RecoveryKey.Read.All`) retrieve the keys of every
//! second device, both volumes, in `POST /v1/recovery-keys/batch` requests
//! of `--batch` key IDs, each agent sequentially on its own connection. So
//! every key disclosed is expected exactly once: afterwards the whole
//! tenant's audit log is read with an auditor token (`GET /v1/audit-events`,
//! paged by `cursor`) and reconciled: exactly one granted event per
//! disclosed key, by the user or agent who was given it, and no other.
//! Latencies are reported separately for user requests and batch requests.

#[path = "support/stats.rs"]
mod stats;
#[path = "support/synthetic.rs"]
mod synthetic;
use stats::percentile;

use recovery_portal::domain::ports::{SystemClock, TokenVerifier};
use recovery_portal::tools::devidp::{DEV_AUDIENCE, DevAlg, DevIdentityProvider};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ISSUER: &str = "https://login.example.test/outage/v2.0";
const AUDITOR: &str = "auditor";
const LEAD: &str = "incident-lead";

struct Args {
    portal: PathBuf,
    users: usize,
    connections: usize,
    repeat: usize,
    es256: bool,
    seed_out: Option<PathBuf>,
    /// Helpdesk agents and key IDs per batch request (mode `incident`).
    agents: usize,
    batch: usize,
    /// Token use per run: `same` (one token per user for both requests) and/or
    /// `distinct` (a second token for the retrieval: no verified-token cache
    /// hit, as when the two requests reach different Lambda functions);
    /// `incident` (`same`, plus helpdesk agents' batches during an incident).
    modes: Vec<String>,
    /// Serve from the persistent store: each server start gets a fresh
    /// directory under this one (`portal serve --data-dir`).
    data_dir: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: outage --portal PATH [--users N] [--connections N] [--repeat N] [--alg rs256|es256] [--modes same,distinct,incident] [--agents N] [--batch N] [--seed-out FILE] [--data-dir DIR]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        portal: PathBuf::from("target/release/portal"),
        users: 10_000,
        connections: 64,
        repeat: 3,
        es256: false,
        seed_out: None,
        agents: 200,
        batch: 100,
        modes: vec!["same".into(), "distinct".into()],
        data_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--portal" => a.portal = v().into(),
            "--users" => a.users = v().parse().unwrap_or_else(|_| usage()),
            "--connections" => a.connections = v().parse().unwrap_or_else(|_| usage()),
            "--repeat" => a.repeat = v().parse().unwrap_or_else(|_| usage()),
            "--alg" => a.es256 = v() == "es256",
            "--seed-out" => a.seed_out = Some(v().into()),
            "--data-dir" => a.data_dir = Some(v().into()),
            "--agents" => a.agents = v().parse().unwrap_or_else(|_| usage()),
            "--batch" => {
                a.batch = v()
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .unwrap_or_else(|| usage())
            }
            "--modes" => {
                a.modes = v().split(',').map(str::to_owned).collect();
                if a.modes
                    .iter()
                    .any(|m| !matches!(m.as_str(), "same" | "distinct" | "incident"))
                {
                    usage()
                }
            }
            _ => usage(),
        }
    }
    a
}

/// A keep-alive HTTP/1.1 connection with just enough of a client.
struct Conn {
    addr: SocketAddr,
    io: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, io: None }
    }

    async fn send(&mut self, req: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let r = self.try_send(req).await;
        if r.is_err() {
            self.io = None;
        }
        r
    }

    async fn try_send(&mut self, req: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        if self.io.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.io = Some(BufReader::new(s));
        }
        let io = self.io.as_mut().unwrap();
        io.get_mut().write_all(req).await?;
        let mut line = String::new();
        io.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut len = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(std::io::Error::other)?;
                } else if k.eq_ignore_ascii_case("connection") && v.trim() == "close" {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await?;
        if close {
            self.io = None;
        }
        Ok((status, body))
    }
}

fn get(path: &str, token: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: portal\r\nauthorization: Bearer {token}\r\nuser-agent: outage/1\r\naccept: application/json\r\n\r\n"
    )
    .into_bytes()
}

fn post(path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: portal\r\nauthorization: Bearer {token}\r\nuser-agent: outage/1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Verifications per second of `tokens` on two threads (the server's
/// cores), and CPU µs per verification.
fn verify_rate(idp: &DevIdentityProvider, tokens: &[String]) -> (f64, f64) {
    let verifier = Arc::new(idp.verifier(Arc::new(SystemClock)));
    let cpu0 = cpu_secs("self");
    let start = Instant::now();
    std::thread::scope(|s| {
        for chunk in tokens.chunks(tokens.len().div_ceil(2)) {
            let v = verifier.clone();
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                for t in chunk {
                    rt.block_on(v.verify(t)).expect("token verifies");
                }
            });
        }
    });
    let rate = tokens.len() as f64 / start.elapsed().as_secs_f64();
    let cpu_us = (cpu_secs("self") - cpu0) * 1e6 / tokens.len() as f64;
    (rate, cpu_us)
}

struct Server {
    child: Child,
    startup: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(
    a: &Args,
    addr: SocketAddr,
    seed: &std::path::Path,
    env: &[(String, String)],
    log: &std::path::Path,
) -> Server {
    let log = std::fs::File::create(log).expect("server log file");
    let t0 = Instant::now();
    let mut cmd = Command::new(&a.portal);
    if let Some(base) = &a.data_dir {
        // A fresh store per start: runs must not see each other's trail.
        let dir = base.join(format!("run-{}", uuid::Uuid::new_v4().simple()));
        cmd.arg("serve").arg("--data-dir").arg(dir);
    } else {
        cmd.arg("serve");
    }
    let child = cmd
        .args(["--addr", &addr.to_string(), "--seed"])
        .arg(seed)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", a.portal.display()));
    let mut server = Server {
        child,
        startup: Duration::ZERO,
    };
    // Ready when it answers HTTP: the listener is bound before the seed is
    // imported, so a TCP connect alone succeeds too early.
    loop {
        if answers_http(addr) {
            break;
        }
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!("portal serve exited at start: {st}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "portal serve did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.startup = t0.elapsed();
    server
}

/// True once an unauthenticated request gets its 401.
fn answers_http(addr: SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    if s.write_all(b"GET /v1/devices HTTP/1.1\r\nhost: portal\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"401"
}

#[derive(Default)]
struct Load {
    latencies_ms: Vec<f64>,
    errors: Vec<String>,
}

async fn run_load(
    addr: SocketAddr,
    connections: usize,
    tokens: Arc<Vec<String>>,
    key_tokens: Arc<Vec<String>>,
    expected: Arc<Vec<synthetic::Expected>>,
) -> (Load, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, tokens, key_tokens, expected) = (
            next.clone(),
            tokens.clone(),
            key_tokens.clone(),
            expected.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut out = Load::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tokens.len() {
                    break;
                }
                let (t, e) = (&tokens[i], &expected[i]);
                let t0 = Instant::now();
                let listed = conn.send(&get("/v1/devices", t)).await;
                out.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                let device = match listed {
                    Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|j| j["devices"][0]["device_id"].as_str().map(str::to_owned)),
                    Ok((s, body)) => {
                        out.errors.push(format!(
                            "{}: list {s}: {}",
                            e.user,
                            String::from_utf8_lossy(&body)
                        ));
                        continue;
                    }
                    Err(err) => {
                        out.errors.push(format!("{}: list: {err}", e.user));
                        continue;
                    }
                };
                let Some(device) = device else {
                    out.errors.push(format!("{}: no device listed", e.user));
                    continue;
                };
                let path = format!("/v1/devices/{device}/recovery-key");
                let t0 = Instant::now();
                let got = conn
                    .send(&post(&path, &key_tokens[i], r#"{"reason":"outage drill"}"#))
                    .await;
                out.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                match got {
                    Ok((200, body)) => {
                        let j: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        if j["recovery_password"] != e.password.as_str()
                            || j["key_id"] != e.key_id.as_str()
                        {
                            out.errors
                                .push(format!("{}: wrong key disclosed: {j}", e.user));
                        }
                    }
                    Ok((s, body)) => out.errors.push(format!(
                        "{}: key {s}: {}",
                        e.user,
                        String::from_utf8_lossy(&body)
                    )),
                    Err(err) => out.errors.push(format!("{}: key: {err}", e.user)),
                }
            }
            out
        }));
    }
    let mut all = Load::default();
    for t in tasks {
        let l = t.await.expect("load task");
        all.latencies_ms.extend(l.latencies_ms);
        all.errors.extend(l.errors);
    }
    (all, start.elapsed())
}

/// For every user: exactly one audit event, granted, for the disclosed key.
async fn check_audit(
    addr: SocketAddr,
    connections: usize,
    auditor: Arc<String>,
    expected: Arc<Vec<synthetic::Expected>>,
) -> (usize, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, auditor, expected) = (next.clone(), auditor.clone(), expected.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let (mut granted, mut bad) = (0usize, Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= expected.len() {
                    break;
                }
                let e = &expected[i];
                let path = format!("/v1/audit-events?actor={}&limit=1000", e.user);
                match conn.send(&get(&path, &auditor)).await {
                    Ok((200, body)) => {
                        let j: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let events = j["events"].as_array().cloned().unwrap_or_default();
                        let ok = events.len() == 1
                            && events[0]["outcome"] == "granted"
                            && events[0]["key_id"] == e.key_id.as_str()
                            && events[0]["device_id"] == e.device_id.as_str();
                        granted += events
                            .iter()
                            .filter(|ev| ev["outcome"] == "granted")
                            .count();
                        if !ok {
                            bad.push(format!("{}: {}", e.user, j));
                        }
                    }
                    Ok((s, body)) => bad.push(format!(
                        "{}: audit {s}: {}",
                        e.user,
                        String::from_utf8_lossy(&body)
                    )),
                    Err(err) => bad.push(format!("{}: audit: {err}", e.user)),
                }
            }
            (granted, bad)
        }));
    }
    let (mut granted, mut bad) = (0, Vec::new());
    for t in tasks {
        let (g, b) = t.await.expect("audit task");
        granted += g;
        bad.extend(b);
    }
    (granted, bad)
}

/// What the helpdesk agents' batch requests measured.
#[derive(Default)]
struct Batches {
    latencies_ms: Vec<f64>,
    /// Per request (not 200) or per item (not 200, or the wrong key).
    errors: Vec<String>,
    item_errors: usize,
    disclosed: usize,
}

/// Each agent sends its batches in turn on a connection of its own.
async fn run_agents(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    batches: Arc<Vec<Vec<Vec<synthetic::HelpdeskKey>>>>,
) -> (Batches, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for agent in 0..batches.len() {
        let (tokens, batches) = (tokens.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut out = Batches::default();
            for keys in &batches[agent] {
                let body = serde_json::json!({
                    "key_ids": keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
                    "reason": "incident drill: faulty agent update",
                })
                .to_string();
                let t0 = Instant::now();
                let got = conn
                    .send(&post("/v1/recovery-keys/batch", &tokens[agent], &body))
                    .await;
                out.latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                let body = match got {
                    Ok((200, body)) => body,
                    Ok((s, body)) => {
                        out.item_errors += keys.len();
                        out.errors.push(format!(
                            "{}: batch {s}: {}",
                            agent_name(agent),
                            String::from_utf8_lossy(&body)
                        ));
                        continue;
                    }
                    Err(err) => {
                        out.item_errors += keys.len();
                        out.errors
                            .push(format!("{}: batch: {err}", agent_name(agent)));
                        continue;
                    }
                };
                let j: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let results = j["results"].as_array().cloned().unwrap_or_default();
                if results.len() != keys.len() {
                    out.item_errors += keys.len();
                    out.errors.push(format!(
                        "{}: {} results for {} keys",
                        agent_name(agent),
                        results.len(),
                        keys.len()
                    ));
                    continue;
                }
                for (r, k) in results.iter().zip(keys) {
                    let ok = r["status"] == 200
                        && r["key_id_prefix"] == k.key_id.as_str()
                        && r["key_id"]
                            .as_str()
                            .is_some_and(|id| id.eq_ignore_ascii_case(&k.key_id))
                        && r["device_id"] == k.device_id.as_str()
                        && r["recovery_password"] == k.password.as_str();
                    if ok {
                        out.disclosed += 1;
                    } else {
                        out.item_errors += 1;
                        if out.errors.len() < 20 {
                            out.errors.push(format!(
                                "{}: item {}: {r}",
                                agent_name(agent),
                                k.key_id
                            ));
                        }
                    }
                }
            }
            out
        }));
    }
    let mut all = Batches::default();
    for t in tasks {
        let b = t.await.expect("agent task");
        all.latencies_ms.extend(b.latencies_ms);
        all.errors.extend(b.errors);
        all.item_errors += b.item_errors;
        all.disclosed += b.disclosed;
    }
    (all, start.elapsed())
}

fn agent_name(a: usize) -> String {
    format!("agent{a:03}")
}

/// The incident lead opens an incident over the API; answers its status line.
async fn open_incident(addr: SocketAddr, lead: &str, limit: u32) -> Result<(), String> {
    let body = serde_json::json!({
        "reason": "outage drill: faulty agent update",
        "duration_hours": 4,
        "helpdesk_rate_limit": limit,
    })
    .to_string();
    match Conn::new(addr)
        .send(&post("/v1/incidents", lead, &body))
        .await
    {
        Ok((201, _)) => Ok(()),
        Ok((s, b)) => Err(format!(
            "POST /v1/incidents: {s}: {}",
            String::from_utf8_lossy(&b)
        )),
        Err(e) => Err(format!("POST /v1/incidents: {e}")),
    }
}

/// The reconciliation of the whole tenant's audit log against what was
/// disclosed.
#[derive(Default)]
struct Reconciled {
    pages: usize,
    events: usize,
    granted: usize,
    denied: usize,
    /// Disclosed keys with exactly one granted event, by the expected actor.
    exact: usize,
    expected: usize,
    /// Granted events for keys nobody was given (must be 0).
    unexpected_granted: usize,
    problems: Vec<String>,
    wall: Duration,
}

/// Reads every audit event of the tenant (`GET /v1/audit-events`, paged by
/// `cursor`) and checks: every key disclosed to a user or an agent has
/// exactly one granted event, by that user or agent, on its device.
async fn reconcile_audit(
    addr: SocketAddr,
    auditor: &str,
    expected: &[synthetic::Expected],
    batches: &[Vec<Vec<synthetic::HelpdeskKey>>],
) -> Reconciled {
    use std::collections::HashMap;
    let t0 = Instant::now();
    let mut r = Reconciled::default();
    // key ID (upper case) → (actor, device) it was disclosed to.
    let mut want: HashMap<String, (String, String)> = HashMap::new();
    for e in expected {
        want.insert(
            e.key_id.to_ascii_uppercase(),
            (e.user.clone(), e.device_id.clone()),
        );
    }
    for (a, agent) in batches.iter().enumerate() {
        for k in agent.iter().flatten() {
            want.insert(
                k.key_id.to_ascii_uppercase(),
                (agent_name(a), k.device_id.clone()),
            );
        }
    }
    r.expected = want.len();
    // key ID → granted events (actor, device).
    let mut seen: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut conn = Conn::new(addr);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit-events?limit=1000&cursor={c}"),
            None => "/v1/audit-events?limit=1000".to_owned(),
        };
        let j: serde_json::Value = match conn.send(&get(&path, auditor)).await {
            Ok((200, body)) => serde_json::from_slice(&body).unwrap_or_default(),
            Ok((s, body)) => {
                r.problems.push(format!(
                    "audit page {}: {s}: {}",
                    r.pages,
                    String::from_utf8_lossy(&body)
                ));
                break;
            }
            Err(e) => {
                r.problems.push(format!("audit page {}: {e}", r.pages));
                break;
            }
        };
        r.pages += 1;
        for ev in j["events"].as_array().into_iter().flatten() {
            r.events += 1;
            match ev["outcome"].as_str() {
                Some("granted") => {}
                Some("denied") => {
                    r.denied += 1;
                    continue;
                }
                _ => continue,
            }
            let Some(key) = ev["key_id"].as_str() else {
                continue;
            };
            r.granted += 1;
            seen.entry(key.to_ascii_uppercase()).or_default().push((
                ev["actor"].as_str().unwrap_or_default().to_owned(),
                ev["device_id"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match j["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for (key, who) in &want {
        match seen.get(key).map(Vec::as_slice) {
            Some([one]) if one == who => r.exact += 1,
            got => {
                if r.problems.len() < 20 {
                    r.problems
                        .push(format!("key {key} for {who:?}: granted events {got:?}"));
                }
            }
        }
    }
    for (key, events) in &seen {
        if !want.contains_key(key) {
            r.unexpected_granted += events.len();
            if r.problems.len() < 20 {
                r.problems.push(format!(
                    "granted events for undisclosed key {key}: {events:?}"
                ));
            }
        }
    }
    r.wall = t0.elapsed();
    r
}

fn main() {
    let a = args();
    assert!(
        a.portal.is_file(),
        "{} does not exist (cargo build --release --bin portal)",
        a.portal.display()
    );
    let dir = std::env::temp_dir().join(format!("outage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    let (seed_json, expected, helpdesk_keys) = synthetic::seed_with_helpdesk(a.users);
    let incident = a.modes.iter().any(|m| m == "incident");
    let seed_path = a.seed_out.clone().unwrap_or_else(|| dir.join("seed.json"));
    std::fs::write(&seed_path, &seed_json).unwrap();
    let devices = seed_json.matches("\"device_id\"").count();
    let keys = seed_json.matches("\"recovery_password\"").count();
    eprintln!(
        "outage: seed {} ({} users, {devices} devices, {keys} keys, {:.1} MB) in {:.1?}",
        seed_path.display(),
        a.users,
        seed_json.len() as f64 / 1e6,
        t0.elapsed()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (idp, env) = if a.es256 {
        let key = dir.join("dev-signing-key.p8");
        let idp =
            DevIdentityProvider::load_or_create(&key, &format!("http://{addr}"), DEV_AUDIENCE)
                .unwrap();
        (
            idp,
            vec![("PORTAL_DEV_KEY_FILE".to_owned(), key.display().to_string())],
        )
    } else {
        let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, DEV_AUDIENCE);
        let env = vec![
            ("PORTAL_ISSUER".to_owned(), ISSUER.to_owned()),
            ("PORTAL_AUDIENCE".to_owned(), DEV_AUDIENCE.to_owned()),
            ("PORTAL_JWKS".to_owned(), idp.jwks_json()),
        ];
        (idp, env)
    };

    // Every token in advance, on both cores; the second set (for `distinct`)
    // differs from the first in `iat` only.
    let t0 = Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mint = |iat: i64| {
        let mut tokens = vec![String::new(); a.users];
        std::thread::scope(|s| {
            let per = a.users.div_ceil(2).max(1);
            for (n, chunk) in tokens.chunks_mut(per).enumerate() {
                let (idp, expected) = (&idp, &expected);
                s.spawn(move || {
                    for (j, t) in chunk.iter_mut().enumerate() {
                        *t = idp.token(
                            synthetic::TENANT,
                            &expected[n * per + j].user,
                            "RecoveryKey.Read",
                            iat,
                            4 * 3600,
                        );
                    }
                });
            }
        });
        tokens
    };
    let tokens = Arc::new(mint(now));
    let second = if a.modes.iter().any(|m| m == "distinct") {
        Arc::new(mint(now - 1))
    } else {
        tokens.clone()
    };
    let auditor = Arc::new(idp.token(
        synthetic::TENANT,
        AUDITOR,
        "AuditLog.Read.All",
        now,
        4 * 3600,
    ));
    eprintln!(
        "outage: minted {} tokens in {:.1?}",
        tokens.len() + usize::from(!Arc::ptr_eq(&tokens, &second)) * second.len() + 1,
        t0.elapsed()
    );
    // Mode `incident`: the helpdesk's share and tokens, the lead's token.
    let batches = Arc::new(if incident {
        synthetic::helpdesk_batches(&helpdesk_keys, a.agents, a.batch)
    } else {
        Vec::new()
    });
    drop(helpdesk_keys);
    let agent_tokens = Arc::new(
        (0..batches.len())
            .map(|n| {
                idp.token(
                    synthetic::TENANT,
                    &agent_name(n),
                    "RecoveryKey.Read.All",
                    now,
                    4 * 3600,
                )
            })
            .collect::<Vec<_>>(),
    );
    let lead = idp.token(
        synthetic::TENANT,
        LEAD,
        "RecoveryKey.Incident",
        now,
        4 * 3600,
    );
    // Above any agent's share: the limit must not be what is measured.
    let per_agent = batches
        .iter()
        .map(|b| b.iter().map(Vec::len).sum::<usize>())
        .max()
        .unwrap_or(0);
    let helpdesk_limit = (per_agent * 2).clamp(1, 100_000) as u32;
    if incident {
        eprintln!(
            "outage: incident mode: {} agents, {} batch requests of up to {} keys, {} keys ({} per agent at most); helpdesk limit {helpdesk_limit}",
            batches.len(),
            batches.iter().map(Vec::len).sum::<usize>(),
            a.batch,
            batches.iter().flatten().map(Vec::len).sum::<usize>(),
            per_agent
        );
    }
    let expected = Arc::new(expected);
    let alg = if a.es256 { "ES256" } else { "RS256" };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut classic_header, mut incident_header) = (false, false);
    let runs: Vec<(usize, &str)> = (1..=a.repeat)
        .flat_map(|r| a.modes.iter().map(move |m| (r, m.as_str())))
        .collect();
    for (run, mode) in runs {
        if mode == "incident" {
            if !incident_header {
                incident_header = true;
                println!(
                    "| run | users | agents | batch size | user requests | batch requests | keys disclosed (users + batches) | wall s | keys disclosed/s | requests/s | user p50 ms | user p99 ms | user max ms | batch p50 ms | batch p99 ms | batch max ms | errors (user requests + batch items) | server CPU s | client CPU s | server peak RSS MiB | audit: disclosed keys with exactly one granted event, by the right actor | granted events | granted events for other keys | denied events | raw {alg} verifications/s (2 threads) | keys disclosed/s / raw verification | requests/s / raw verification | server CPU µs per disclosed key |"
                );
                println!(
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                );
            }
            let rate_before = verify_rate(&idp, &tokens);
            let server = start_server(
                &a,
                addr,
                &seed_path,
                &env,
                &dir.join(format!("server-{run}-{mode}.log")),
            );
            let pid = server.child.id();
            if let Err(e) = rt.block_on(open_incident(addr, &lead, helpdesk_limit)) {
                panic!("outage: {e}");
            }
            let (cpu_server0, cpu_client0) = (cpu_secs(&pid.to_string()), cpu_secs("self"));
            let t0 = Instant::now();
            let ((users, user_wall), (helpdesk, batch_wall)) = rt.block_on(async {
                tokio::join!(
                    run_load(
                        addr,
                        a.connections,
                        tokens.clone(),
                        tokens.clone(),
                        expected.clone(),
                    ),
                    run_agents(addr, agent_tokens.clone(), batches.clone()),
                )
            });
            let wall = t0.elapsed();
            let (cpu_server, cpu_client) = (
                cpu_secs(&pid.to_string()) - cpu_server0,
                cpu_secs("self") - cpu_client0,
            );
            let peak = status_kib(pid, "VmHWM:");
            let rec = rt.block_on(reconcile_audit(addr, &auditor, &expected, &batches));
            drop(server);
            let rate_after = verify_rate(&idp, &tokens);
            let rate = (rate_before.0 + rate_after.0) / 2.0;
            for e in users
                .errors
                .iter()
                .chain(&helpdesk.errors)
                .chain(&rec.problems)
                .take(10)
            {
                eprintln!("outage: {e}");
            }
            let user_requests = users.latencies_ms.len();
            let batch_requests = helpdesk.latencies_ms.len();
            // At most one error per user, and none for a user whose key was
            // disclosed as expected.
            let user_disclosed = a.users.saturating_sub(users.errors.len());
            let disclosed = user_disclosed + helpdesk.disclosed;
            eprintln!(
                "outage: run {run} (incident): users done in {:.2?}, agents in {:.2?}; audit read in {} pages, {} events, in {:.2?}; raw verification {:.0}/s before, {:.0}/s after",
                user_wall, batch_wall, rec.pages, rec.events, rec.wall, rate_before.0, rate_after.0
            );
            let (mut ul, mut bl) = (users.latencies_ms, helpdesk.latencies_ms);
            let keys_per_s = disclosed as f64 / wall.as_secs_f64();
            let rps = (user_requests + batch_requests) as f64 / wall.as_secs_f64();
            println!(
                "| {run} | {} | {} | {} | {user_requests} | {batch_requests} | {disclosed} ({user_disclosed} + {}) | {:.2} | {keys_per_s:.0} | {rps:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} + {} | {cpu_server:.2} | {cpu_client:.2} | {:.1} | {} / {} | {} | {} | {} | {rate:.0} | {:.2} | {:.2} | {:.1} |",
                a.users,
                batches.len(),
                a.batch,
                helpdesk.disclosed,
                wall.as_secs_f64(),
                percentile(&mut ul, 50.0),
                percentile(&mut ul, 99.0),
                percentile(&mut ul, 100.0),
                percentile(&mut bl, 50.0),
                percentile(&mut bl, 99.0),
                percentile(&mut bl, 100.0),
                users.errors.len(),
                helpdesk.item_errors,
                peak as f64 / 1024.0,
                rec.exact,
                rec.expected,
                rec.granted,
                rec.unexpected_granted,
                rec.denied,
                keys_per_s / rate,
                rps / rate,
                cpu_server * 1e6 / disclosed.max(1) as f64,
            );
            let _ = std::io::stdout().flush();
            continue;
        }
        if !classic_header {
            classic_header = true;
            println!(
                "| run | tokens | users | requests | connections | wall s | requests/s | p50 ms | p99 ms | max ms | errors | server CPU s | client CPU s | server peak RSS MiB | audit: users with exactly one granted event for the disclosed key | granted events | raw {alg} verifications/s (2 threads) | throughput / raw verification | server CPU µs per request | CPU µs per verification | verification CPU / request CPU |"
            );
            println!(
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
        }
        let key_tokens = if mode == "distinct" {
            second.clone()
        } else {
            tokens.clone()
        };
        let rate_before = verify_rate(&idp, &tokens);
        let server = start_server(
            &a,
            addr,
            &seed_path,
            &env,
            &dir.join(format!("server-{run}-{mode}.log")),
        );
        let pid = server.child.id();
        let rss_idle = status_kib(pid, "VmRSS:");
        let (cpu_server0, cpu_client0) = (cpu_secs(&pid.to_string()), cpu_secs("self"));
        let (load, wall) = rt.block_on(run_load(
            addr,
            a.connections,
            tokens.clone(),
            key_tokens,
            expected.clone(),
        ));
        let (cpu_server, cpu_client) = (
            cpu_secs(&pid.to_string()) - cpu_server0,
            cpu_secs("self") - cpu_client0,
        );
        let peak = status_kib(pid, "VmHWM:");
        let (granted, bad) = rt.block_on(check_audit(
            addr,
            a.connections,
            auditor.clone(),
            expected.clone(),
        ));
        let startup = server.startup;
        drop(server);
        let rate_after = verify_rate(&idp, &tokens);
        let rate = (rate_before.0 + rate_after.0) / 2.0;
        let verify_cpu_us = (rate_before.1 + rate_after.1) / 2.0;
        let mut lat = load.latencies_ms;
        let n = lat.len();
        let rps = n as f64 / wall.as_secs_f64();
        for e in load.errors.iter().chain(&bad).take(5) {
            eprintln!("outage: {e}");
        }
        eprintln!(
            "outage: run {run} ({mode}): server started in {:.2?} (RSS {:.1} MiB after import); raw verification {:.0}/s before, {:.0}/s after",
            startup,
            rss_idle as f64 / 1024.0,
            rate_before.0,
            rate_after.0
        );
        println!(
            "| {run} | {mode} | {} | {n} | {} | {:.2} | {rps:.0} | {:.2} | {:.2} | {:.2} | {} | {cpu_server:.2} | {cpu_client:.2} | {:.1} | {} / {} | {granted} | {rate:.0} | {:.2} | {:.1} | {verify_cpu_us:.1} | {:.2} |",
            a.users,
            a.connections,
            wall.as_secs_f64(),
            percentile(&mut lat, 50.0),
            percentile(&mut lat, 99.0),
            percentile(&mut lat, 100.0),
            load.errors.len(),
            peak as f64 / 1024.0,
            a.users - bad.len(),
            a.users,
            rps / rate,
            cpu_server * 1e6 / n as f64,
            verify_cpu_us / (cpu_server * 1e6 / n as f64),
        );
        let _ = std::io::stdout().flush();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
