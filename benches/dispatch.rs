//! Dispatcher measurement (issue 19): the functions' table dispatch
//! (`frontends::lambda::handle` → `api::handle`) against the same table as
//! an axum `Router` (benches/support/axum_router.rs), both served through
//! `lambda_http`'s own adapter as `lambda_http::run` serves them: a
//! `LambdaEvent` in, a `LambdaResponse` out. Counted in instructions under
//! callgrind, which a shared, busy machine does not disturb:
//!
//! ```sh
//! scripts/bench.sh dispatch        # every row of BENCHMARKS.md §6
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_*' \
//!     target/bench-dispatch/deps/dispatch-* run table key 1000
//! ```
//!
//! `run <dispatcher> <request> <n>`: builds the embedded backends, warms the
//! dispatcher up (and checks its answers), then serves `n` prepared events
//! inside `measured_requests`: only that is counted, so per request =
//! collected / n. Dispatchers: `floor` (a handler answering an empty 200),
//! `table-trivial` (the table lookup, then the same empty 200),
//! `axum-trivial` (the router with empty handlers), `table` (what the
//! functions run), `axum` (the router into the same pipeline). Requests:
//! `key` (retrieve a key; the 16 callers' tokens already verified, as at
//! a user's second request), `list` (list devices, the same), `unauth`
//! (retrieve without a token: 401), `notfound` (an unknown path: 404).
//!
//! `init <unit>`: builds the unit's router inside `measured_init` (the
//! table dispatch has nothing to build: `api::ROUTES` is a `const`).

#[path = "support/axum_router.rs"]
mod axum_router;
#[path = "support/synthetic.rs"]
mod synthetic;

use http::{Response, StatusCode};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::{Service, ServiceExt};
use lambda_http::{Adapter, Context, IntoResponse, LambdaEvent, Request};
use recovery_portal::api::Routes;
use recovery_portal::app;
use recovery_portal::domain::ports::{Portal, SystemClock, TokenVerifier};
use recovery_portal::frontends::lambda;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

const ISSUER: &str = "https://login.example.test/bench/v2.0";
const AUDIENCE: &str = "api://recovery-portal-bench";
/// Requests served (and checked) before counting starts.
const WARMUP: usize = 20;
/// Callers the requests rotate among (each token verified once, before
/// counting: the cached path, a user's second request).
const USERS: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    List,
    Unauth,
    NotFound,
}

impl Kind {
    fn parse(s: &str) -> Self {
        match s {
            "key" => Self::Key,
            "list" => Self::List,
            "unauth" => Self::Unauth,
            "notfound" => Self::NotFound,
            _ => usage(),
        }
    }
    /// The function that would receive it.
    fn unit(self) -> Routes {
        match self {
            Self::List => Routes::List,
            _ => Routes::Key,
        }
    }
    fn status(self) -> StatusCode {
        match self {
            Self::Key | Self::List => StatusCode::OK,
            Self::Unauth => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: dispatch run floor|table-trivial|axum-trivial|table|axum key|list|unauth|notfound N\n       dispatch init key|list|manage|all"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["run", dispatcher, kind, n] => {
            let n: usize = n.parse().unwrap_or_else(|_| usage());
            run(dispatcher, Kind::parse(kind), n);
        }
        ["init", unit] => init(match *unit {
            "key" => Routes::Key,
            "list" => Routes::List,
            "manage" => Routes::Manage,
            "all" => Routes::All,
            _ => usage(),
        }),
        _ => usage(),
    }
}

/// The embedded backends with `users` synthetic users, a verified-token
/// cache in front of the verifier, and one token per user, already cached.
fn setup(
    rt: &tokio::runtime::Runtime,
    users: usize,
) -> (&'static Portal, Vec<String>, Vec<String>) {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let verifier: Arc<dyn TokenVerifier> = Arc::new(idp.verifier(Arc::new(SystemClock)));
    let cached: Arc<dyn TokenVerifier> = Arc::new(
        recovery_portal::adapters::token_cache::CachingVerifier::new(
            verifier,
            Arc::new(SystemClock),
        ),
    );
    let (seed_json, expected) = synthetic::seed(users);
    let seed = recovery_portal::tools::seed::parse(&seed_json).unwrap();
    let limits = app::RateLimits {
        key: 10_000,
        ..Default::default()
    };
    let (portal, _store) = rt.block_on(app::embedded(&seed, cached.clone(), limits));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tokens: Vec<String> = expected
        .iter()
        .map(|e| {
            idp.token(
                synthetic::TENANT,
                &e.user,
                "RecoveryKey.Read",
                now,
                3 * 3600,
            )
        })
        .collect();
    for t in &tokens {
        rt.block_on(cached.verify(t)).unwrap();
    }
    let devices = expected.into_iter().map(|e| e.device_id).collect();
    (Box::leak(Box::new(portal)), tokens, devices)
}

/// The API Gateway event of request `i` of `kind`, as the runtime hands it
/// to the adapter (a fresh request id each).
fn event(kind: Kind, token: &str, device: &str, i: usize) -> LambdaEvent<LambdaRequest> {
    let file = match kind {
        Kind::List => "list-devices.json",
        _ => "get-recovery-key.json",
    };
    let text = std::fs::read_to_string(format!("{}/events/{file}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("{{TOKEN}}", token)
        .replace("DESKTOP-7Q2M4K1", device);
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["requestContext"]["requestId"] = format!("dispatch-{i:012}").into();
    match kind {
        Kind::Unauth => {
            v["headers"]
                .as_object_mut()
                .unwrap()
                .remove("authorization");
        }
        Kind::NotFound => {
            v["rawPath"] = "/v1/nothing-here".into();
            v["requestContext"]["http"]["path"] = "/v1/nothing-here".into();
        }
        Kind::Key | Kind::List => {}
    }
    LambdaEvent::new(serde_json::from_value(v).unwrap(), Context::default())
}

fn empty_200() -> Response<lambda_http::Body> {
    Response::new(lambda_http::Body::Empty)
}

fn run(dispatcher: &str, kind: Kind, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (portal, tokens, devices) = setup(&rt, USERS);
    let mut events =
        (0..WARMUP + n).map(|i| event(kind, &tokens[i % USERS], &devices[i % USERS], i));
    let warmup: Vec<_> = events.by_ref().take(WARMUP).collect();
    let measured: Vec<_> = events.collect();
    let unit = kind.unit();
    let expect = match dispatcher {
        "floor" | "table-trivial" | "axum-trivial" => StatusCode::OK,
        _ => kind.status(),
    };
    let routing_only = move |req: Request| async move {
        let found = axum_router::table_lookup(unit, req.method().as_str(), req.uri().path());
        black_box(found.is_ok());
        Ok::<_, Infallible>(empty_200())
    };
    match dispatcher {
        "floor" => bench(
            &rt,
            lambda_http::service_fn(|_req: Request| async { Ok::<_, Infallible>(empty_200()) }),
            warmup,
            measured,
            expect,
        ),
        "table-trivial" => bench(
            &rt,
            lambda_http::service_fn(routing_only),
            warmup,
            measured,
            expect,
        ),
        "axum-trivial" => bench(
            &rt,
            axum_router::trivial_router(unit),
            warmup,
            measured,
            expect,
        ),
        "table" => bench(
            &rt,
            lambda_http::service_fn(move |req| lambda::handle(portal, unit, req)),
            warmup,
            measured,
            expect,
        ),
        "axum" => bench(
            &rt,
            axum_router::router(portal, unit),
            warmup,
            measured,
            expect,
        ),
        _ => usage(),
    }
}

/// Serves `warmup` (checking each answer's status), then `measured`.
fn bench<S, R>(
    rt: &tokio::runtime::Runtime,
    service: S,
    warmup: Vec<LambdaEvent<LambdaRequest>>,
    measured: Vec<LambdaEvent<LambdaRequest>>,
    expect: StatusCode,
) where
    S: Service<Request, Response = R, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    R: IntoResponse,
{
    let mut adapter = Adapter::from(service);
    for ev in warmup {
        let resp = rt.block_on(serve_one(&mut adapter, ev));
        let status = serde_json::to_value(&resp).unwrap()["statusCode"].as_u64();
        assert_eq!(status, Some(u64::from(expect.as_u16())), "warm-up answer");
    }
    let n = measured.len();
    measured_requests(rt, &mut adapter, measured);
    println!("served {n} requests");
}

/// One event through the adapter, as the runtime serves it.
async fn serve_one<A>(adapter: &mut A, ev: LambdaEvent<LambdaRequest>) -> A::Response
where
    A: Service<LambdaEvent<LambdaRequest>, Error = Infallible>,
{
    let Ok(ready) = ServiceExt::<LambdaEvent<LambdaRequest>>::ready(adapter).await;
    let Ok(resp) = ready.call(ev).await;
    resp
}

/// Everything counted per request: the adapter's conversion of the event,
/// the dispatcher, the handler and the answer's conversion back.
#[inline(never)]
fn measured_requests<A>(
    rt: &tokio::runtime::Runtime,
    adapter: &mut A,
    events: Vec<LambdaEvent<LambdaRequest>>,
) where
    A: Service<LambdaEvent<LambdaRequest>, Error = Infallible>,
{
    rt.block_on(async {
        for ev in events {
            black_box(serve_one(adapter, ev).await);
        }
    });
}

fn init(unit: Routes) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (portal, _, _) = setup(&rt, 1);
    let router = measured_init(portal, unit);
    drop(black_box(router));
    println!("built the router for {unit:?}");
}

/// Building one function's router, as its `main` would at init.
#[inline(never)]
fn measured_init(portal: &'static Portal, unit: Routes) -> axum::Router {
    axum_router::router(portal, unit)
}
