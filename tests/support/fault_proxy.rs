//! A fault-injecting HTTP/1.1 proxy in front of moto: AWS's own error
//! answers (throttling, cancelled transactions, unprocessed keys) on the
//! wire exactly as DynamoDB and KMS send them, for the requests a test
//! chooses by their `X-Amz-Target`; everything else is forwarded to moto
//! unchanged. The SDK clients under test point at [`FaultProxy::url`] with
//! the production retry and timeout configuration ([`proxied_config`]).
//!
//! A raw HTTP/1.1 loop over tokio's `TcpStream` (the SDK sends JSON bodies
//! with `Content-Length`; keep-alive connections are served request after
//! request); the upstream leg is `reqwest`.
#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const BATCH_GET_ITEM: &str = "DynamoDB_20120810.BatchGetItem";
pub const TRANSACT_WRITE_ITEMS: &str = "DynamoDB_20120810.TransactWriteItems";
pub const QUERY: &str = "DynamoDB_20120810.Query";
pub const GET_ITEM: &str = "DynamoDB_20120810.GetItem";
pub const DECRYPT: &str = "TrentService.Decrypt";

const DDB: &str = "com.amazonaws.dynamodb.v20120810#";

/// Which of a rule's matching requests it answers (1-based count of the
/// requests with its target since the rule was added).
#[derive(Debug, Clone, Copy)]
pub enum When {
    /// The first `n`.
    First(usize),
    /// Only the `n`-th.
    Nth(usize),
    /// Every one after the first `n`.
    After(usize),
    /// Every `k`-th (the `k`-th, the `2k`-th, ...).
    Every(usize),
    Always,
}

impl When {
    fn fires(self, m: usize) -> bool {
        match self {
            When::First(n) => m <= n,
            When::Nth(n) => m == n,
            When::After(n) => m > n,
            When::Every(k) => m.is_multiple_of(k),
            When::Always => true,
        }
    }
}

/// Which keys of a `BatchGetItem` come back in `UnprocessedKeys`.
#[derive(Debug, Clone, Copy)]
pub enum Unprocessed {
    /// Every key of every table: `Responses` empty.
    All,
    /// All but the first key of each table (a request of one key per
    /// table is answered in full).
    AllButFirst,
    /// The last key of the request (of its last table), however few are
    /// left: on every attempt, the request never completes.
    Last,
}

/// An answer AWS gives under load.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 400 with this `__type` and `message`.
    Error {
        type_: String,
        message: &'static str,
    },
    /// `TransactionCanceledException`: one cancellation reason per item of
    /// the request, `None` except item `at` (clamped to the last), whose
    /// code is `code` (`TransactionConflict`, `ThrottlingError`).
    Cancelled { code: &'static str, at: usize },
    /// Forwarded, then these keys moved to `UnprocessedKeys` (status 200).
    Unprocessed(Unprocessed),
    /// Forwarded (moto applies it), then answered with this fault instead
    /// of moto's answer: a response lost after the write, as when an
    /// attempt times out. The SDK sends the same request again.
    Applied(Box<Fault>),
}

impl Fault {
    pub fn ddb_throttling() -> Self {
        Fault::Error {
            type_: format!("{DDB}ThrottlingException"),
            message: "Rate of requests exceeds the allowed throughput.",
        }
    }
    pub fn ddb_provisioned_throughput() -> Self {
        Fault::Error {
            type_: format!("{DDB}ProvisionedThroughputExceededException"),
            message: "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
        }
    }
    pub fn ddb_request_limit() -> Self {
        Fault::Error {
            type_: format!("{DDB}RequestLimitExceeded"),
            message: "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at https://aws.amazon.com/support request a limit increase",
        }
    }
    pub fn kms_throttling() -> Self {
        Fault::Error {
            type_: "ThrottlingException".into(),
            message: "Rate exceeded",
        }
    }
    pub fn conflict(at: usize) -> Self {
        Fault::Cancelled {
            code: "TransactionConflict",
            at,
        }
    }
    pub fn cancelled_throttling(at: usize) -> Self {
        Fault::Cancelled {
            code: "ThrottlingError",
            at,
        }
    }
}

/// One rule: its target, when it fires, what it answers, and counters.
#[derive(Debug)]
pub struct Rule {
    target: String,
    when: When,
    fault: Fault,
    matched: AtomicUsize,
    fired: AtomicUsize,
}

impl Rule {
    /// Requests it answered instead of moto.
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct State {
    upstream: String,
    http: Option<reqwest::Client>,
    rules: Mutex<Vec<Arc<Rule>>>,
    seen: Mutex<HashMap<String, usize>>,
    conns: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// The proxy; stops (connections included) when dropped.
pub struct FaultProxy {
    pub url: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.state.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (moto's URL) on a free local port.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: Some(reqwest::Client::builder().no_proxy().build().unwrap()),
            ..Default::default()
        });
        let s = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let _ = sock.set_nodelay(true);
                let task = tokio::spawn(serve(sock, s.clone()));
                s.conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { url, state, accept }
    }

    /// Adds a rule. Each rule counts the requests with its target from
    /// when it is added; of the rules that fire for a request, the first
    /// added answers it.
    pub fn add(&self, target: &str, when: When, fault: Fault) -> Arc<Rule> {
        let rule = Arc::new(Rule {
            target: target.to_owned(),
            when,
            fault,
            matched: AtomicUsize::new(0),
            fired: AtomicUsize::new(0),
        });
        self.state.rules.lock().unwrap().push(rule.clone());
        rule
    }

    /// Switches every fault off.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Requests with this target the proxy received (answered or forwarded).
    pub fn count(&self, target: &str) -> usize {
        self.state
            .seen
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    pub fn reset_counts(&self) {
        self.state.seen.lock().unwrap().clear();
    }
}

/// SDK configuration pointed at `url` with the production retry policy and
/// timeouts (`recovery_portal::adapters::aws::{retry_config, timeout_config}`).
pub async fn proxied_config(url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "proxy"))
        .endpoint_url(url)
        .retry_config(recovery_portal::adapters::aws::retry_config())
        .timeout_config(recovery_portal::adapters::aws::timeout_config())
        .load()
        .await
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request; `None` when the client closed the connection.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p + 4;
        }
        if sock.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    assert!(
        req.header("transfer-encoding").is_none(),
        "fault proxy: chunked request bodies are not supported"
    );
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        if sock.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
    req.body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Some(req)
}

async fn serve(mut sock: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let resp = handle(&state, req).await;
        let reason = ::http::StatusCode::from_u16(resp.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", resp.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        if sock.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

async fn handle(state: &State, req: Request) -> Response {
    let target = req.header("x-amz-target").unwrap_or("").to_owned();
    *state
        .seen
        .lock()
        .unwrap()
        .entry(target.clone())
        .or_default() += 1;
    let mut fault = {
        let rules = state.rules.lock().unwrap();
        // Every rule of the target counts the request; the first that
        // fires answers it.
        let mut answer = None;
        for r in rules.iter().filter(|r| r.target == target) {
            let m = r.matched.fetch_add(1, Ordering::SeqCst) + 1;
            if answer.is_none() && r.when.fires(m) {
                r.fired.fetch_add(1, Ordering::SeqCst);
                answer = Some(r.fault.clone());
            }
        }
        answer
    };
    let content_type = if target.starts_with("TrentService.") {
        "application/x-amz-json-1.1"
    } else {
        "application/x-amz-json-1.0"
    };
    let error = |body: Value| Response {
        status: 400,
        headers: vec![
            ("content-type".into(), content_type.into()),
            (
                "x-amzn-requestid".into(),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
        ],
        body: body.to_string().into_bytes(),
    };
    if let Some(Fault::Applied(then)) = fault {
        forward(state, &req).await;
        fault = Some(*then);
    }
    match fault {
        None | Some(Fault::Applied(_)) => forward(state, &req).await,
        Some(Fault::Error { type_, message }) => {
            error(json!({"__type": type_, "message": message}))
        }
        Some(Fault::Cancelled { code, at }) => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let n = body["TransactItems"].as_array().map_or(1, Vec::len).max(1);
            let at = at.min(n - 1);
            let message = match code {
                "TransactionConflict" => "Transaction is ongoing for the item",
                _ => {
                    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html."
                }
            };
            let reasons: Vec<Value> = (0..n)
                .map(|i| {
                    if i == at {
                        json!({"Code": code, "Message": message})
                    } else {
                        json!({"Code": "None"})
                    }
                })
                .collect();
            let codes: Vec<&str> = (0..n)
                .map(|i| if i == at { code } else { "None" })
                .collect();
            error(json!({
                "__type": format!("{DDB}TransactionCanceledException"),
                "Message": format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                ),
                "CancellationReasons": reasons,
            }))
        }
        Some(Fault::Unprocessed(which)) => {
            let mut resp = forward(state, &req).await;
            if resp.status == 200 {
                let request: Value = serde_json::from_slice(&req.body).unwrap();
                let mut answer: Value = serde_json::from_slice(&resp.body).unwrap();
                unprocess(&request, &mut answer, which);
                resp.body = answer.to_string().into_bytes();
                // The body changed: its checksum no longer holds.
                resp.headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-crc32"));
            }
            resp
        }
    }
}

/// Moves keys of the request (with its other `KeysAndAttributes` fields:
/// projection, names, consistency) to `UnprocessedKeys`, and their items
/// out of `Responses`.
fn unprocess(request: &Value, answer: &mut Value, which: Unprocessed) {
    let mut unprocessed = serde_json::Map::new();
    let Some(tables) = request["RequestItems"].as_object() else {
        return;
    };
    let last_table = tables.keys().next_back().cloned();
    for (table, ka) in tables {
        let keys = ka["Keys"].as_array().cloned().unwrap_or_default();
        let skip = match which {
            Unprocessed::All => 0,
            Unprocessed::AllButFirst => 1,
            Unprocessed::Last if Some(table) == last_table.as_ref() => keys.len().max(1) - 1,
            Unprocessed::Last => keys.len(),
        };
        let moved: Vec<Value> = keys.into_iter().skip(skip).collect();
        if moved.is_empty() {
            continue;
        }
        if let Some(items) = answer["Responses"][table].as_array_mut() {
            items.retain(|item| {
                !moved.iter().any(|key| {
                    key.as_object()
                        .unwrap()
                        .iter()
                        .all(|(attr, v)| item.get(attr) == Some(v))
                })
            });
        }
        let mut left = ka.clone();
        left["Keys"] = Value::Array(moved);
        unprocessed.insert(table.clone(), left);
    }
    let old = answer["UnprocessedKeys"].as_object().cloned();
    for (table, ka) in old.into_iter().flatten() {
        unprocessed.entry(table).or_insert(ka);
    }
    answer["UnprocessedKeys"] = Value::Object(unprocessed);
}

async fn forward(state: &State, req: &Request) -> Response {
    let http = state.http.as_ref().unwrap();
    let mut r = http.request(
        req.method.parse().unwrap(),
        format!("{}{}", state.upstream, req.path),
    );
    for (k, v) in &req.headers {
        let skip = [
            "host",
            "content-length",
            "connection",
            "keep-alive",
            "transfer-encoding",
        ];
        if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            r = r.header(k.as_str(), v.as_str());
        }
    }
    match r.body(req.body.clone()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter(|(k, _)| {
                    ![
                        "content-length",
                        "connection",
                        "transfer-encoding",
                        "keep-alive",
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            Response {
                status,
                headers,
                body,
            }
        }
        // moto unreachable: a 502 the SDK classifies as transient.
        Err(e) => Response {
            status: 502,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: format!("fault proxy: upstream failed: {e}").into_bytes(),
        },
    }
}
