//! Cold-start benchmark of the Lambda function binaries under the Runtime
//! API emulator (run by `scripts/bench.sh`; not part of CI).
//!
//! ```text
//! cargo build --release --bench coldstart   # scripts/bench.sh coldstart builds and runs it
//! target/release/deps/coldstart-<hash> [--runs N] [--warm N] [--netcheck] [--raw FILE] \
//!     LABEL=PATH[@BACKEND][,VAR=VALUE...] ...
//! ```
//!
//! The first variant is the floor the others are compared with (a
//! hello-world `lambda_http` binary). Runs are interleaved: every round runs
//! each variant once, in an order rotated per round. Each run starts a fresh
//! emulator with the first event already queued (as Lambda does on a cold
//! start), spawns the binary, and records:
//!
//! - init: spawn → first `GET /runtime/invocation/next`;
//! - first: spawn → the first invocation's response (init + first invocation);
//! - warm: median push → response of `--warm` more invocations;
//! - CPU time and minor page faults of init + first invocation
//!   (`/proc/<pid>/schedstat`, `/proc/<pid>/stat`): less sensitive than
//!   wall time to other work on the machine;
//! - peak RSS (`VmHWM`) after those.
//!
//! The event is `events/get-recovery-key.json` (`list-devices.json` for a
//! binary named list-devices) with an invalid token: a 401 that touches no
//! AWS service. BACKEND is `embedded` (default) or `aws`; with `aws`,
//! `AWS_ENDPOINT_URL` points at a local listener that counts connections.
//! `,VAR=VALUE` pairs add environment variables for that variant only.
//!
//! `--netcheck` then runs each non-floor variant once under
//! `strace -f -e trace=connect` and reports every connection other than the
//! runtime API's, during init and during the first invocation.

#[path = "support/stats.rs"]
mod stats;
use stats::percentile;

use lambda_emulator::{Emulator, EmulatorHandle, FunctionProcess};
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://login.example.test/bench/v2.0";
const AUDIENCE: &str = "api://recovery-portal-bench";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Variant {
    label: String,
    path: PathBuf,
    function: String,
    backend: Option<String>,
    /// Variables added for this variant only (`,K=V` after the path).
    extra_env: Vec<(String, String)>,
    /// The first and warm invocations' event.
    event: String,
    /// The same event with a token naming an unknown `kid` (netcheck only).
    unknown_kid_event: String,
}

#[derive(Clone, Copy)]
struct Sample {
    init_ms: f64,
    first_ms: f64,
    warm_ms: f64,
    rss_kib: u64,
    /// CPU time (user + system) the process used for init + first invocation.
    cpu_ms: f64,
    /// Minor page faults during init + first invocation.
    minflt: u64,
}

/// (CPU ms from `/proc/<pid>/schedstat`, minor faults from `/proc/<pid>/stat`).
fn cpu_and_faults(pid: u32) -> (f64, u64) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e6);
    let faults = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0);
    (cpu, faults)
}

fn usage() -> ! {
    eprintln!(
        "usage: coldstart [--runs N] [--warm N] [--netcheck] [--raw FILE] LABEL=PATH[@embedded|@aws] ..."
    );
    std::process::exit(2)
}

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn variant(spec: &str, bad_token: &str, unknown_kid_token: &str) -> Variant {
    let (label, rest) = spec.split_once('=').unwrap_or_else(|| usage());
    let mut parts = rest.split(',');
    let rest = parts.next().unwrap_or_default();
    let extra_env = parts
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let (path, backend) = match rest.rsplit_once('@') {
        Some((p, b)) => (p, Some(b.to_owned())),
        None => (rest, None),
    };
    let path = PathBuf::from(path);
    let stem = path
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("function")
        .to_owned();
    // A packaged `bootstrap` takes its function name from the label.
    let function = if stem == "bootstrap" {
        label.split('/').next().unwrap_or(label).to_owned()
    } else {
        stem
    };
    let event_file = if function.contains("list") {
        "list-devices.json"
    } else {
        "get-recovery-key.json"
    };
    let template =
        std::fs::read_to_string(events_dir().join(event_file)).expect("events/ is readable");
    Variant {
        label: label.to_owned(),
        path,
        function,
        backend,
        extra_env,
        event: template.replace("{{TOKEN}}", bad_token),
        unknown_kid_event: template.replace("{{TOKEN}}", unknown_kid_token),
    }
}

/// Counts TCP connections to a local address standing in for AWS.
struct FakeAws {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl FakeAws {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                c.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Self { addr, connections }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

struct Env {
    jwks: String,
    aws_endpoint: String,
}

impl Env {
    fn pairs<'a>(&'a self, v: &'a Variant) -> Vec<(&'a str, &'a str)> {
        let backend = v.backend.as_deref();
        let mut out = vec![
            ("PORTAL_ISSUER", ISSUER),
            ("PORTAL_AUDIENCE", AUDIENCE),
            ("PORTAL_JWKS", self.jwks.as_str()),
            ("PORTAL_BACKEND", backend.unwrap_or("embedded")),
        ];
        if backend == Some("aws") {
            out.extend([
                ("PORTAL_TABLE_PREFIX", "recovery-portal-bench"),
                ("PORTAL_KMS_KEY_ID", "alias/recovery-portal-bench"),
                ("AWS_ENDPOINT_URL", self.aws_endpoint.as_str()),
                ("AWS_ACCESS_KEY_ID", "AKIDBENCHMARK"),
                ("AWS_SECRET_ACCESS_KEY", "benchmark-secret"),
                ("AWS_SESSION_TOKEN", "benchmark-session"),
            ]);
        }
        out.extend(v.extra_env.iter().map(|(k, x)| (k.as_str(), x.as_str())));
        out
    }
}

fn expect_answer(v: &Variant, body: &[u8]) -> Result<(), String> {
    let j: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let want = if v.function.starts_with("hello") {
        200
    } else {
        401
    };
    if j["statusCode"] == want {
        Ok(())
    } else {
        Err(format!("expected status {want}, got {j}"))
    }
}

fn run_once(v: &Variant, env: &Env, warm: usize) -> Result<Sample, String> {
    let (addr, emu) = Emulator::start().map_err(|e| e.to_string())?;
    emu.push(v.event.clone());
    let mut f = FunctionProcess::spawn(&v.path, &v.function, addr, &env.pairs(v))
        .map_err(|e| format!("{}: {e}", v.path.display()))?;
    let fail = |f: &mut FunctionProcess, what: String| {
        f.kill();
        format!("{}: {what}; output:\n{}", v.label, f.output())
    };
    let Some(init_at) = wait_init(&emu, &mut f) else {
        return Err(fail(&mut f, "no /next".into()));
    };
    let first = match emu.wait_response(TIMEOUT) {
        Ok(r) => r,
        Err(e) => return Err(fail(&mut f, e.to_string())),
    };
    if let Err(e) = expect_answer(v, &first.body) {
        return Err(fail(&mut f, e));
    }
    // The process is now blocked in its next poll: its counters are those of
    // init + first invocation.
    let (cpu_ms, minflt) = cpu_and_faults(f.id());
    let mut warm_ms = Vec::new();
    for _ in 0..warm {
        let t0 = Instant::now();
        emu.push(v.event.clone());
        match emu.wait_response(TIMEOUT) {
            Ok(r) => warm_ms.push(ms(r.at - t0)),
            Err(e) => return Err(fail(&mut f, e.to_string())),
        }
    }
    let rss_kib = f.peak_rss_kib().unwrap_or(0);
    f.kill();
    Ok(Sample {
        init_ms: ms(init_at - f.spawned_at),
        first_ms: ms(first.at - f.spawned_at),
        warm_ms: median(&mut warm_ms),
        rss_kib,
        cpu_ms,
        minflt,
    })
}

/// The first line of an error and the last line the function printed.
fn summary(e: &str) -> String {
    let first = e.lines().next().unwrap_or("");
    match e.lines().skip(1).filter(|l| !l.trim().is_empty()).last() {
        Some(last) => format!("{first} {last}"),
        None => first.to_owned(),
    }
}

/// The first `/next`, or None if the process exits (or hangs) first.
fn wait_init(emu: &EmulatorHandle, f: &mut FunctionProcess) -> Option<Instant> {
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end {
        if let Some(t) = emu.wait_next(1, Duration::from_millis(20)) {
            return Some(t);
        }
        if !f.is_running() {
            return emu.first_next_at();
        }
    }
    None
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// What `netcheck` saw: connections other than the runtime API's.
struct NetReport {
    during_init: usize,
    /// During the first invocation (the bench's bad-signature token).
    first_invocation: usize,
    /// Then during an invocation with a token naming an unknown `kid`.
    unknown_kid: usize,
    unknown_kid_ms: f64,
    fake_aws: usize,
    lines: Vec<String>,
}

/// Runs `v` once under `strace -f -e trace=connect` and counts connections
/// other than the runtime API's.
fn netcheck(v: &Variant, env: &Env, aws: &FakeAws) -> Result<NetReport, String> {
    let (addr, emu) = Emulator::start().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("coldstart-strace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let trace = dir.join(format!("{}.trace", v.label.replace('/', "_")));
    let _ = std::fs::remove_file(&trace);
    let aws_before = aws.count();
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=connect", "-o"])
        .arg(&trace)
        .arg(&v.path);
    FunctionProcess::prepare(&mut cmd, &v.function, addr, &env.pairs(v));
    let mut f = FunctionProcess::from_command(cmd).map_err(|e| format!("strace: {e}"))?;
    let done = |f: &mut FunctionProcess| {
        // Kill the traced function first: strace detaches from, not kills, it.
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children", pid = f.id()))
        {
            for pid in children.split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
        }
        f.kill();
    };
    if wait_init(&emu, &mut f).is_none() {
        done(&mut f);
        return Err(format!(
            "{}: no /next under strace:\n{}",
            v.label,
            f.output()
        ));
    }
    let runtime = format!("htons({})", addr.port());
    let foreign = || -> Vec<String> {
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("connect(") && !l.contains(&runtime))
            .map(str::to_owned)
            .collect()
    };
    // Give background tasks spawned at init a moment to connect anywhere.
    std::thread::sleep(Duration::from_millis(300));
    let init = foreign().len();
    let step = |event: &str| {
        let t0 = Instant::now();
        emu.push(event.to_owned());
        let r = emu.wait_response(TIMEOUT);
        let took = ms(t0.elapsed());
        std::thread::sleep(Duration::from_millis(300));
        r.map(|_| took).map_err(|e| e.to_string())
    };
    let first = step(&v.event);
    let after_first = foreign().len();
    let unknown = first.and_then(|_| step(&v.unknown_kid_event));
    done(&mut f);
    let unknown_kid_ms = unknown?;
    let lines = foreign();
    Ok(NetReport {
        during_init: init,
        first_invocation: after_first - init,
        unknown_kid: lines.len() - after_first,
        unknown_kid_ms,
        fake_aws: aws.count() - aws_before,
        lines,
    })
}

fn main() {
    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Invalid: the right `kid`, signed by another key. Verification runs the
    // RSA check and fails: a 401 that touches no AWS service or network.
    let forger = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let claims = serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now,
        "exp": now + 3600, "tid": "contoso", "oid": "alice", "scp": "RecoveryKey.Read"});
    let bad_token = forger.sign_raw(
        &serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": idp.kid}),
        &claims,
    );
    let unknown_kid_token = forger.sign(&claims);
    let mut args = std::env::args().skip(1);
    let mut runs = 30;
    let mut warm = 5;
    let mut check = false;
    let mut raw: Option<PathBuf> = None;
    let mut variants = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--warm" => {
                warm = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--netcheck" => check = true,
            "--raw" => raw = Some(args.next().unwrap_or_else(|| usage()).into()),
            s if s.contains('=') => variants.push(variant(s, &bad_token, &unknown_kid_token)),
            _ => usage(),
        }
    }
    if variants.is_empty() {
        usage();
    }
    for v in &variants {
        if !Path::new(&v.path).is_file() {
            eprintln!("coldstart: {} does not exist", v.path.display());
            std::process::exit(1);
        }
    }
    let aws = FakeAws::start();
    let env = Env {
        jwks: idp.jwks_json(),
        aws_endpoint: format!("http://{}", aws.addr),
    };

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    let mut failed: Vec<Option<String>> = vec![None; variants.len()];
    // One untimed warm-up of each binary (page cache).
    for (i, v) in variants.iter().enumerate() {
        if let Err(e) = run_once(v, &env, 0) {
            eprintln!("coldstart: {} skipped: {e}", v.label);
            failed[i] = Some(summary(&e));
        }
    }
    let aws_before = aws.count();
    for round in 0..runs {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            if failed[i].is_some() {
                continue;
            }
            match run_once(&variants[i], &env, warm) {
                Ok(s) => samples[i].push(s),
                Err(e) => {
                    eprintln!("coldstart: {} failed: {e}", variants[i].label);
                    failed[i] = Some(summary(&e));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprint!("\rcoldstart: round {}/{runs}", round + 1);
    }
    eprintln!();
    let aws_during_runs = aws.count() - aws_before;

    let stats = |i: usize, f: fn(&Sample) -> f64, p: f64| {
        let mut v: Vec<f64> = samples[i].iter().map(f).collect();
        percentile(&mut v, p)
    };
    let init = |s: &Sample| s.init_ms;
    let first = |s: &Sample| s.first_ms;
    let warm_f = |s: &Sample| s.warm_ms;
    let rss = |s: &Sample| s.rss_kib as f64;
    let cpu = |s: &Sample| s.cpu_ms;
    let faults = |s: &Sample| s.minflt as f64;
    println!(
        "| variant | runs | init p50 ms | init p90 | init / floor | init+first p50 ms | p90 | init+first / floor | CPU ms init+first p50 | CPU / floor | minor faults p50 | warm invoke p50 ms | peak RSS p50 MiB | binary MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, v) in variants.iter().enumerate() {
        let size = std::fs::metadata(&v.path)
            .map(|m| m.len() as f64 / 1048576.0)
            .unwrap_or(f64::NAN);
        if let Some(e) = &failed[i]
            && samples[i].is_empty()
        {
            println!(
                "| {} | 0 | skipped: {} ||||||||||| {size:.2} |",
                v.label,
                e.replace('|', "/")
            );
            continue;
        }
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2}x | {:.0} | {:.3} | {:.1} | {size:.2} |",
            v.label,
            samples[i].len(),
            stats(i, init, 50.0),
            stats(i, init, 90.0),
            stats(i, init, 50.0) / stats(0, init, 50.0),
            stats(i, first, 50.0),
            stats(i, first, 90.0),
            stats(i, first, 50.0) / stats(0, first, 50.0),
            stats(i, cpu, 50.0),
            stats(i, cpu, 50.0) / stats(0, cpu, 50.0),
            stats(i, faults, 50.0),
            stats(i, warm_f, 50.0),
            stats(i, rss, 50.0) / 1024.0,
        );
    }
    println!();
    println!("Connections to the fake AWS endpoint during the timed runs: {aws_during_runs}");
    if let Some(path) = raw {
        let mut out = std::fs::File::create(&path).expect("raw file");
        writeln!(
            out,
            "variant,run,init_ms,first_ms,warm_ms,peak_rss_kib,cpu_ms,minflt"
        )
        .unwrap();
        for (i, v) in variants.iter().enumerate() {
            for (n, s) in samples[i].iter().enumerate() {
                writeln!(
                    out,
                    "{},{n},{:.3},{:.3},{:.3},{},{:.3},{}",
                    v.label, s.init_ms, s.first_ms, s.warm_ms, s.rss_kib, s.cpu_ms, s.minflt
                )
                .unwrap();
            }
        }
    }
    if check {
        println!();
        println!(
            "| variant | connect() during init, besides the runtime API | during the first invocation (bad signature) | during an invocation with an unknown-kid token | its duration ms | fake AWS endpoint connections |"
        );
        println!("|---|---|---|---|---|---|");
        for v in variants.iter().skip(1) {
            match netcheck(v, &env, &aws) {
                Ok(r) => {
                    println!(
                        "| {} | {} | {} | {} | {:.1} | {} |",
                        v.label,
                        r.during_init,
                        r.first_invocation,
                        r.unknown_kid,
                        r.unknown_kid_ms,
                        r.fake_aws
                    );
                    for l in r.lines {
                        eprintln!("coldstart: {}: {l}", v.label);
                    }
                }
                Err(e) => println!(
                    "| {} | netcheck failed: {} |||||",
                    v.label,
                    e.lines().next().unwrap_or("").replace('|', "/")
                ),
            }
        }
    }
}
