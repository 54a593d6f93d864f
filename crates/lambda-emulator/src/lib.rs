//! A small emulator of the AWS Lambda Runtime API (`2018-06-01`), for the
//! function binaries' smoke tests and cold-start benchmarks.
//!
//! It runs on its own thread (with its own single-threaded Tokio runtime), so
//! callers can use it from plain tests, from any runtime flavour, and while
//! they block on a child process. It serves:
//!
//! - `GET  /2018-06-01/runtime/invocation/next`: hands out queued events,
//!   long-polling until one is pushed, with the `Lambda-Runtime-*` headers;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../error`;
//! - `POST /2018-06-01/runtime/init/error`.
//!
//! It records when the first `/next` arrives (the end of the function's
//! init) and when each response arrives, as `Instant`s a caller can compare
//! with the moment it spawned the function.
//!
//! ```no_run
//! use lambda_emulator::{Emulator, FunctionProcess};
//! use std::path::Path;
//! use std::time::Duration;
//!
//! let (addr, emu) = Emulator::start().unwrap();
//! let id = emu.push(r#"{"version":"2.0"}"#); // queued before the cold start
//! let f = FunctionProcess::spawn(
//!     Path::new("target/release/list-devices"),
//!     "list-devices",
//!     addr,
//!     &[("PORTAL_BACKEND", "embedded")],
//! )
//! .unwrap();
//! let reply = emu.wait_response(Duration::from_secs(10)).unwrap();
//! assert_eq!(reply.request_id, id);
//! let init = emu.first_next_at().unwrap() - f.spawned_at;
//! let init_and_first = reply.at - f.spawned_at;
//! # let _ = (init, init_and_first);
//! ```

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the function may run per invocation, as announced in
/// `Lambda-Runtime-Deadline-Ms`.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The function ARN announced in `Lambda-Runtime-Invoked-Function-Arn`.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:emulated";

/// What the function answered for one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub body: Bytes,
    /// When the answer reached the emulator.
    pub at: Instant,
}

impl Invocation {
    /// The body as JSON (an API Gateway v2 response object for `lambda_http`).
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmulatorError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invocation {request_id} failed ({error_type}): {}", String::from_utf8_lossy(.body))]
    Invocation {
        request_id: String,
        error_type: String,
        body: Bytes,
        at: Instant,
    },
    #[error("init failed ({error_type}): {}", String::from_utf8_lossy(.body))]
    Init {
        error_type: String,
        body: Bytes,
        at: Instant,
    },
    #[error("the emulator has stopped")]
    Stopped,
}

enum Outcome {
    Response(Invocation),
    Failed(EmulatorError),
}

struct Queued {
    request_id: String,
    body: Bytes,
}

struct Shared {
    /// Events waiting for a `/next` (a `tokio` channel: `/next` awaits it).
    queue: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Queued>>,
    /// Request ids handed out and not yet answered.
    open: Mutex<HashSet<String>>,
    outcomes: Mutex<mpsc::Sender<Outcome>>,
    /// Arrival time of every `/next`, in order.
    nexts: Mutex<Vec<Instant>>,
    next_arrived: Condvar,
}

/// Entry point: `Emulator::start()`.
pub struct Emulator;

impl Emulator {
    /// Starts an emulator on an ephemeral loopback port. Set the function's
    /// `AWS_LAMBDA_RUNTIME_API` to the returned address (`host:port`).
    pub fn start() -> std::io::Result<(SocketAddr, EmulatorHandle)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (event_tx, event_rx) = tokio::sync::mpsc::unbounded_channel();
        let (outcome_tx, outcome_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(event_rx),
            open: Mutex::new(HashSet::new()),
            outcomes: Mutex::new(outcome_tx),
            nexts: Mutex::new(Vec::new()),
            next_arrived: Condvar::new(),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let app = router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("lambda-emulator".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime cancels pending long polls.
            })?;
        Ok((
            addr,
            EmulatorHandle {
                shared,
                events: event_tx,
                outcomes: Mutex::new(outcome_rx),
                seq: AtomicU64::new(0),
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        ))
    }
}

/// Controls a running emulator; dropping it stops the emulator.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    events: tokio::sync::mpsc::UnboundedSender<Queued>,
    outcomes: Mutex<mpsc::Receiver<Outcome>>,
    seq: AtomicU64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// Queues one event (the JSON payload Lambda would deliver) and returns
    /// the request id it will carry.
    pub fn push(&self, event: impl Into<Bytes>) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let request_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            n & 0xffff_ffff_ffff
        );
        self.push_with_id(&request_id, event);
        request_id
    }

    /// Queues one event under a chosen request id.
    pub fn push_with_id(&self, request_id: &str, event: impl Into<Bytes>) {
        let _ = self.events.send(Queued {
            request_id: request_id.to_owned(),
            body: event.into(),
        });
    }

    /// The next answer (response, invocation error or init error), in the
    /// order they arrived.
    pub fn wait_response(&self, timeout: Duration) -> Result<Invocation, EmulatorError> {
        let rx = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(Outcome::Response(inv)) => Ok(inv),
            Ok(Outcome::Failed(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(EmulatorError::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(EmulatorError::Stopped),
        }
    }

    /// When the first `GET /next` arrived: the end of the function's init.
    pub fn first_next_at(&self) -> Option<Instant> {
        self.nexts().first().copied()
    }

    /// Arrival times of every `GET /next` so far.
    pub fn nexts(&self) -> Vec<Instant> {
        self.shared
            .nexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `n` `GET /next` calls have arrived; returns the
    /// arrival time of the `n`-th.
    pub fn wait_next(&self, n: usize, timeout: Duration) -> Option<Instant> {
        let guard = self.shared.nexts.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .shared
            .next_arrived
            .wait_timeout_while(guard, timeout, |v| v.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        guard.get(n.checked_sub(1)?).copied()
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The environment Lambda gives every function, pointed at `runtime_api`.
pub fn lambda_env(function_name: &str, runtime_api: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function_name}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_DEFAULT_REGION", "eu-west-1".to_owned()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A function binary running as a child process under the emulator, with
/// its stdout and stderr captured. Killed when dropped.
pub struct FunctionProcess {
    child: std::process::Child,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Just before the process was spawned.
    pub spawned_at: Instant,
}

impl FunctionProcess {
    /// Spawns `program` with a clean environment: `lambda_env(name, runtime_api)`
    /// plus `env` (which may override it).
    pub fn spawn(
        program: &std::path::Path,
        function_name: &str,
        runtime_api: SocketAddr,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut cmd = std::process::Command::new(program);
        Self::prepare(&mut cmd, function_name, runtime_api, env);
        Self::from_command(cmd)
    }

    /// Gives `cmd` the environment `spawn` uses (to run a function under a
    /// wrapper such as `strace`).
    pub fn prepare(
        cmd: &mut std::process::Command,
        function_name: &str,
        runtime_api: SocketAddr,
        env: &[(&str, &str)],
    ) {
        cmd.env_clear()
            .envs(lambda_env(function_name, runtime_api))
            .envs(env.iter().copied());
    }

    /// Spawns a prepared command, capturing its output.
    pub fn from_command(mut cmd: std::process::Command) -> std::io::Result<Self> {
        use std::process::Stdio;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned_at = Instant::now();
        let mut child = cmd.spawn()?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let pipes: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ];
        for mut pipe in pipes.into_iter().flatten() {
            let out = output.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }));
        }
        Ok(Self {
            child,
            output,
            readers,
            spawned_at,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Peak resident set size so far (`VmHWM`, KiB), while the process lives.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// The exit status, if the process exits within `timeout`; then all its
    /// output has been collected.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared)
}

fn status(code: StatusCode, body: &'static str) -> Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn error_type(headers: &HeaderMap) -> String {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned()
}

impl Shared {
    fn report(&self, o: Outcome) {
        let _ = self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(o);
    }

    /// True if `id` was handed out and not answered yet; marks it answered.
    fn close(&self, id: &str) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Response {
    {
        let mut nexts = s.nexts.lock().unwrap_or_else(|e| e.into_inner());
        nexts.push(Instant::now());
        s.next_arrived.notify_all();
    }
    let Some(ev) = s.queue.lock().await.recv().await else {
        return status(StatusCode::GONE, r#"{"errorType":"ShuttingDown"}"#);
    };
    s.open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(ev.request_id.clone());
    let deadline = (SystemTime::now() + INVOCATION_TIMEOUT)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        uuid::Uuid::new_v4().as_u128() >> 32,
        uuid::Uuid::new_v4().as_u128() as u64,
    );
    let mut resp = (StatusCode::OK, ev.body).into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let pairs = [
        ("lambda-runtime-aws-request-id", ev.request_id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            FUNCTION_ARN.to_owned(),
        ),
        ("lambda-runtime-trace-id", trace),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

async fn response(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let at = Instant::now();
    if !s.close(&id) {
        return status(
            StatusCode::BAD_REQUEST,
            r#"{"errorType":"InvalidRequestID"}"#,
        );
    }
    s.report(Outcome::Response(Invocation {
        request_id: id,
        body,
        at,
    }));
    status(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

async fn error(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    if !s.close(&id) {
        return status(
            StatusCode::BAD_REQUEST,
            r#"{"errorType":"InvalidRequestID"}"#,
        );
    }
    s.report(Outcome::Failed(EmulatorError::Invocation {
        request_id: id,
        error_type: error_type(&headers),
        body,
        at,
    }));
    status(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

async fn init_error(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    s.report(Outcome::Failed(EmulatorError::Init {
        error_type: error_type(&headers),
        body,
        at,
    }));
    status(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

/// What the function crates' runtime smoke tests share
/// (`functions/*/tests/runtime.rs`): which binaries to run, the `events/`
/// files with a token filled in, and one invocation's answer.
#[cfg(feature = "smoke")]
pub mod smoke {
    use super::{Emulator, EmulatorHandle, FunctionProcess};
    use recovery_portal::tools::devidp::DevIdentityProvider;
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub const ISSUER: &str = "https://login.example.test/smoke/v2.0";
    pub const AUDIENCE: &str = "api://recovery-portal-smoke";
    pub const TIMEOUT: Duration = Duration::from_secs(20);

    /// `cargo_built` (the test's `CARGO_BIN_EXE_…`), and the packaged
    /// bootstrap `$PORTAL_SMOKE_BOOTSTRAP_DIR/<function>/bootstrap` when that
    /// variable is set (`scripts/test.sh --package`).
    pub fn binaries(function: &str, cargo_built: &str) -> Vec<PathBuf> {
        let mut v = vec![PathBuf::from(cargo_built)];
        if let Some(dir) = std::env::var_os("PORTAL_SMOKE_BOOTSTRAP_DIR") {
            let p = PathBuf::from(dir).join(function).join("bootstrap");
            assert!(
                p.is_file(),
                "PORTAL_SMOKE_BOOTSTRAP_DIR is set but {} is missing",
                p.display()
            );
            v.push(p);
        }
        v
    }

    /// The event file `events/<name>` with `{{TOKEN}}` replaced.
    pub fn event(name: &str, token: &str) -> String {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .replace("{{TOKEN}}", token)
    }

    /// Invokes once; returns (statusCode, headers, JSON body) of the API
    /// Gateway v2 answer, and checks the function is still serving.
    pub fn invoke(
        emu: &EmulatorHandle,
        f: &mut FunctionProcess,
        event: String,
    ) -> (u64, Value, Value) {
        let id = emu.push(event);
        let reply = emu
            .wait_response(TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}; function output:\n{}", f.output()));
        assert_eq!(reply.request_id, id);
        let r = reply.json().expect("the answer is JSON");
        let status = r["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("no statusCode: {r}"));
        assert_eq!(r["isBase64Encoded"], false, "{r}");
        let body: Value =
            serde_json::from_str(r["body"].as_str().expect("a text body")).expect("JSON body");
        assert!(f.is_running(), "the function must keep serving");
        (status, r["headers"].clone(), body)
    }

    /// Where a Linux system keeps its CA certificates (Debian, Red Hat,
    /// Alpine, Amazon Linux layouts).
    pub const TRUST_STORE_DIRS: &[&str] = &[
        "/etc/ssl/",
        "/etc/pki/",
        "/etc/ca-certificates",
        "/usr/share/ca-certificates",
        "/usr/local/share/ca-certificates",
        "/usr/lib/ssl/",
    ];

    /// What a function's init did, seen by `strace`.
    #[derive(Debug, Default)]
    pub struct InitTrace {
        /// `open`/`openat` calls on a file under [`TRUST_STORE_DIRS`].
        pub trust_store_opens: Vec<String>,
        /// `connect` calls to anything but the runtime API.
        pub foreign_connects: Vec<String>,
    }

    /// Runs `program` as `function` under `strace -f -e trace=open,openat,connect`
    /// until it asks for its first event (plus a moment for background tasks
    /// spawned at init), with `env` added to the Lambda environment. Needs
    /// `strace` (scripts/test.sh installs it).
    pub fn trace_init(program: &Path, function: &str, env: &[(&str, &str)]) -> InitTrace {
        let (addr, emu) = Emulator::start().unwrap();
        let trace = std::env::temp_dir().join(format!(
            "init-trace-{function}-{}-{}.txt",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut cmd = std::process::Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=open,openat,connect", "-o"])
            .arg(&trace)
            .arg(program);
        FunctionProcess::prepare(&mut cmd, function, addr, env);
        let mut f = FunctionProcess::from_command(cmd).unwrap_or_else(|e| {
            panic!(
                "cannot run strace ({e}): install it (scripts/test.sh does: apt-get install strace)"
            )
        });
        let started = emu.wait_next(1, TIMEOUT).is_some();
        std::thread::sleep(Duration::from_millis(300));
        // strace detaches from, not kills, the traced function: kill it first.
        let children = format!("/proc/{pid}/task/{pid}/children", pid = f.id());
        for pid in std::fs::read_to_string(children)
            .unwrap_or_default()
            .split_whitespace()
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid])
                .status();
        }
        f.kill();
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let _ = std::fs::remove_file(&trace);
        assert!(
            started,
            "{function}: no /next under strace:\n{}\n{text}",
            f.output()
        );
        let runtime = format!("htons({})", addr.port());
        let lines = |keep: &dyn Fn(&str) -> bool| -> Vec<String> {
            text.lines()
                .filter(|l| keep(l))
                .map(str::to_owned)
                .collect()
        };
        InitTrace {
            trust_store_opens: lines(&|l: &str| {
                l.contains("open")
                    && TRUST_STORE_DIRS
                        .iter()
                        .any(|d| l.contains(&format!("\"{d}")))
            }),
            foreign_connects: lines(&|l: &str| l.contains("connect(") && !l.contains(&runtime)),
        }
    }

    /// The Lambda environment of a function on the AWS backend (no AWS
    /// endpoint is contacted at init; these values are never used).
    pub const AWS_BACKEND: &[(&str, &str)] = &[
        ("PORTAL_BACKEND", "aws"),
        ("PORTAL_TABLE_PREFIX", "recovery-portal"),
        (
            "PORTAL_KMS_KEY_ID",
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE00"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "example/secret/key/only/for/the/init/trace",
        ),
        ("AWS_SESSION_TOKEN", "example-session-token"),
    ];

    /// The init guard every function's tests run: on both backends, with
    /// the issuer's keys inline, init opens no file of the system's trust
    /// store and connects only to the runtime API. With
    /// `PORTAL_TLS_ROOTS=system` (the platform store on purpose) the same
    /// trace does see the store, so the guard can fail.
    pub fn assert_init_reads_no_trust_store(
        program: &Path,
        function: &str,
        idp: &DevIdentityProvider,
    ) {
        let jwks = idp.jwks_json();
        let auth = [
            ("PORTAL_ISSUER", ISSUER),
            ("PORTAL_AUDIENCE", AUDIENCE),
            ("PORTAL_JWKS", jwks.as_str()),
        ];
        let embedded = [("PORTAL_BACKEND", "embedded")];
        for (name, backend) in [("embedded", &embedded[..]), ("aws", AWS_BACKEND)] {
            let env: Vec<_> = auth.iter().chain(backend).copied().collect();
            let t = trace_init(program, function, &env);
            assert!(
                t.trust_store_opens.is_empty(),
                "{function} ({name}): init opens the system trust store:\n{}",
                t.trust_store_opens.join("\n")
            );
            assert!(
                t.foreign_connects.is_empty(),
                "{function} ({name}): init connects elsewhere than the runtime API:\n{}",
                t.foreign_connects.join("\n")
            );
        }
        let mut env: Vec<_> = auth.iter().chain(AWS_BACKEND).copied().collect();
        env.push(("PORTAL_TLS_ROOTS", "system"));
        let t = trace_init(program, function, &env);
        assert!(
            !t.trust_store_opens.is_empty(),
            "{function}: with PORTAL_TLS_ROOTS=system the trace must see the trust store (is the guard blind?)"
        );
    }

    /// Starts `program` as `function` on the embedded backend with `idp`'s
    /// keys inline, plus `extra` variables.
    pub fn start(
        program: &Path,
        function: &str,
        idp: &DevIdentityProvider,
        extra: &[(&str, &str)],
    ) -> (EmulatorHandle, FunctionProcess) {
        let (addr, emu) = Emulator::start().unwrap();
        let jwks = idp.jwks_json();
        let mut env = vec![
            ("PORTAL_BACKEND", "embedded"),
            ("PORTAL_ISSUER", ISSUER),
            ("PORTAL_AUDIENCE", AUDIENCE),
            ("PORTAL_JWKS", jwks.as_str()),
        ];
        env.extend_from_slice(extra);
        let f = FunctionProcess::spawn(program, function, addr, &env).unwrap();
        (emu, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// One HTTP/1.1 exchange over a fresh connection: (status, headers, body).
    fn exchange(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nlambda-runtime-function-error-type: Runtime.Test\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let code = head[9..12].parse().unwrap();
        (code, head.to_ascii_lowercase(), body.to_owned())
    }

    #[test]
    fn hands_out_events_and_collects_answers() {
        let (addr, emu) = Emulator::start().unwrap();
        assert!(emu.first_next_at().is_none());
        let id = emu.push(r#"{"hello":1}"#);
        let before = Instant::now();
        let (code, head, body) = exchange(addr, "GET", "/2018-06-01/runtime/invocation/next", "");
        assert_eq!(code, 200);
        assert_eq!(body, r#"{"hello":1}"#);
        assert!(head.contains(&format!("lambda-runtime-aws-request-id: {id}")));
        for h in [
            "lambda-runtime-deadline-ms: ",
            "lambda-runtime-invoked-function-arn: arn:aws:lambda:",
            "lambda-runtime-trace-id: root=1-",
        ] {
            assert!(head.contains(h), "{h} missing in {head}");
        }
        assert!(emu.first_next_at().unwrap() >= before);

        // Unknown ids are refused and not reported.
        let (code, _, _) = exchange(
            addr,
            "POST",
            "/2018-06-01/runtime/invocation/nope/response",
            "x",
        );
        assert_eq!(code, 400);
        let path = format!("/2018-06-01/runtime/invocation/{id}/response");
        assert_eq!(exchange(addr, "POST", &path, r#"{"ok":true}"#).0, 202);
        let r = emu.wait_response(Duration::from_secs(5)).unwrap();
        assert_eq!(r.request_id, id);
        assert_eq!(r.json().unwrap()["ok"], true);
        assert!(r.at >= emu.first_next_at().unwrap());
        // Answered once only.
        assert_eq!(exchange(addr, "POST", &path, "{}").0, 400);

        let id2 = emu.push("{}");
        assert_eq!(
            exchange(addr, "GET", "/2018-06-01/runtime/invocation/next", "").0,
            200
        );
        assert_eq!(emu.nexts().len(), 2);
        let path = format!("/2018-06-01/runtime/invocation/{id2}/error");
        assert_eq!(exchange(addr, "POST", &path, "boom").0, 202);
        match emu.wait_response(Duration::from_secs(5)) {
            Err(EmulatorError::Invocation {
                request_id,
                error_type,
                body,
                ..
            }) => {
                assert_eq!(request_id, id2);
                assert_eq!(error_type, "Runtime.Test");
                assert_eq!(&body[..], b"boom");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            exchange(addr, "POST", "/2018-06-01/runtime/init/error", "bad").0,
            202
        );
        assert!(matches!(
            emu.wait_response(Duration::from_secs(5)),
            Err(EmulatorError::Init { .. })
        ));
        assert!(matches!(
            emu.wait_response(Duration::from_millis(50)),
            Err(EmulatorError::Timeout(_))
        ));
    }

    #[test]
    fn next_long_polls_until_an_event_is_pushed() {
        let (addr, emu) = Emulator::start().unwrap();
        let t = std::thread::spawn(move || {
            exchange(addr, "GET", "/2018-06-01/runtime/invocation/next", "")
        });
        let first = emu
            .wait_next(1, Duration::from_secs(5))
            .expect("poll arrived");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "/next must wait for an event");
        emu.push("{}");
        let (code, _, _) = t.join().unwrap();
        assert_eq!(code, 200);
        assert_eq!(emu.first_next_at(), Some(first));
        // Dropping the handle with a poll pending stops promptly.
        let (addr, emu) = Emulator::start().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        .unwrap();
        emu.wait_next(1, Duration::from_secs(5)).unwrap();
        drop(emu);
    }
}
