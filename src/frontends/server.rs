//! The local server: the same `api::handle` as Lambda, behind axum, plus
//! the development identity provider (feature `dev-idp`: discovery, JWKS,
//! the authorization code flow; `server/idp.rs`), the portal page (`web`)
//! and CORS for the API.

use crate::api::{self, ApiRequest, MAX_ANY_BODY, Routes};
use crate::domain::ports::Portal;
use crate::frontends::web;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

// The dev identity provider's routes: discovery, JWKS, the code flow.
#[cfg(feature = "dev-idp")]
mod idp;

/// The development identity provider this server can be. Without the
/// `dev-idp` feature (the operator build) there is none to pass: the type
/// has no values, and no token minter is compiled in.
#[cfg(feature = "dev-idp")]
pub type DevIdp = Arc<crate::tools::devidp::DevIdentityProvider>;
#[cfg(not(feature = "dev-idp"))]
pub type DevIdp = std::convert::Infallible;

#[derive(Clone)]
struct AppState {
    portal: Portal,
    #[cfg_attr(not(feature = "dev-idp"), allow(dead_code))]
    idp: Option<DevIdp>,
    options: Arc<Options>,
}

/// What the local server offers besides the API.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Origins whose pages may call `/v1` (`--cors-origin`), canonical
    /// (`web::parse_origin`).
    pub cors_origins: Vec<String>,
    /// Serve the portal page at `/` with this `/config.json`.
    pub web: Option<web::WebConfig>,
}

/// The OpenAPI 3.1 document of the API (`openapi.json` in the repository).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"));

pub fn router(portal: Portal, idp: Option<DevIdp>) -> Router {
    router_with(portal, idp, Options::default())
}

pub fn router_with(portal: Portal, idp: Option<DevIdp>, options: Options) -> Router {
    // Other methods fall through to the API's own 404 problem answer.
    let mut r = Router::new().route("/openapi.json", get(openapi).fallback(handle));
    #[cfg(feature = "dev-idp")]
    if idp.is_some() {
        r = idp::routes(r);
    }
    if options.web.is_some() {
        for asset in web::ASSETS {
            r = r.route(
                asset.path,
                get(move |State(s): State<AppState>| async move { web_asset(&s, asset) }),
            );
        }
        r = r.route("/config.json", get(config_json));
    }
    let cors = !options.cors_origins.is_empty();
    let state = AppState {
        portal,
        idp,
        options: Arc::new(options),
    };
    let r = r.fallback(handle);
    let r = if cors {
        r.layer(middleware::from_fn_with_state(state.clone(), cors_layer))
    } else {
        r
    };
    // In dev-IdP mode, no route answers a request for another host (DNS
    // rebinding); CORS headers are never added to that refusal.
    #[cfg(feature = "dev-idp")]
    let r = if state.idp.is_some() {
        r.layer(middleware::from_fn_with_state(
            state.clone(),
            idp::dev_host_guard,
        ))
    } else {
        r
    };
    // Outermost: every route, the page's and the IdP's included, answers
    // only after the body was read (see `read_body_first`).
    r.layer(middleware::from_fn(read_body_first))
        .with_state(state)
}

/// Largest sign-in form or token request the dev identity provider accepts.
const MAX_FORM: usize = 16 * 1024;

/// The largest body any route here accepts: the dev identity provider's
/// forms (`MAX_FORM`); the API's own limit (`MAX_ANY_BODY`) is smaller, and
/// `api::handle` answers 413 above it. A longer body reaches the routes as
/// an over-long stand-in.
const KEEP_BODY: usize = if MAX_FORM > MAX_ANY_BODY {
    MAX_FORM
} else {
    MAX_ANY_BODY
};

/// Bytes of a too-long body the server still reads, and discards, so the
/// client's connection stays usable for its next request...
const DRAIN_LIMIT: usize = 64 * 1024;
/// ...and the longest it waits for them.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads every request's body before any route answers. An answer given
/// with part of the body still unread would make hyper drop the connection
/// after it, and a keep-alive client's next request on it would fail. So a
/// too-long body is read to its end when that is cheap (at most
/// `DRAIN_LIMIT` bytes, within `DRAIN_TIME`); otherwise the answer says
/// `Connection: close`. Routes get the body in memory: all of it, or, when
/// it is over `MAX_ANY_BODY`, an over-long stand-in.
async fn read_body_first(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (body, reusable) = read_bounded(body, declared).await;
    let mut resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await;
    if !reusable {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// The body (or an over-long stand-in), and whether the connection was left
/// at a request boundary.
async fn read_bounded(body: axum::body::Body, declared: Option<u64>) -> (bytes::Bytes, bool) {
    let too_long = || bytes::Bytes::from(vec![0u8; KEEP_BODY + 1]);
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return (too_long(), false);
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    loop {
        match stream.next().await {
            None => return (buf.freeze(), true),
            // A broken stream: nothing sensible follows on this connection.
            Some(Err(_)) => return (too_long(), false),
            Some(Ok(chunk)) if buf.len() + chunk.len() <= KEEP_BODY => {
                buf.extend_from_slice(&chunk);
            }
            Some(Ok(chunk)) => {
                let mut seen = buf.len() + chunk.len();
                drop(buf);
                let drained = tokio::time::timeout(DRAIN_TIME, async {
                    while let Some(chunk) = stream.next().await {
                        seen += chunk.map_err(|_| ())?.len();
                        if seen > DRAIN_LIMIT {
                            return Err(());
                        }
                    }
                    Ok(())
                })
                .await;
                return (too_long(), matches!(drained, Ok(Ok(()))));
            }
        }
    }
}

/// Serves until the future `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    portal: Portal,
    idp: Option<DevIdp>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, portal, idp, Options::default(), shutdown).await
}

/// `serve` with the portal page and CORS as `options` say.
pub async fn serve_with(
    listener: TcpListener,
    portal: Portal,
    idp: Option<DevIdp>,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router_with(portal, idp, options).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn openapi() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "no-cache"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

async fn handle(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_ANY_BODY + 1).await {
        Ok(b) => b,
        // Over the limit (or a broken stream): an over-long stand-in makes
        // `handle` answer 413 with the usual problem body and headers.
        Err(_) => bytes::Bytes::from(vec![0u8; MAX_ANY_BODY + 1]),
    };
    let req = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        source_ip: Some(peer.ip().to_string()),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let (parts, body) = api::handle(&s.portal, Routes::All, req).await.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

// ---------------------------------------------------------------------------
// The portal page
// ---------------------------------------------------------------------------

fn web_asset(s: &AppState, asset: &'static web::Asset) -> Response {
    let Some(cfg) = &s.options.web else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let mut resp = Response::new(axum::body::Body::from(asset.body));
    set_headers(
        &mut resp,
        &web::page_headers(&cfg.content_security_policy()),
    );
    set_header(&mut resp, "content-type", asset.content_type);
    resp
}

async fn config_json(State(s): State<AppState>, headers: http::HeaderMap) -> Response {
    let Some(cfg) = &s.options.web else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let mut resp = Response::new(axum::body::Body::from(
        cfg.config_json(&web::api_base_from_host(host)),
    ));
    set_headers(
        &mut resp,
        &web::page_headers(&cfg.content_security_policy()),
    );
    set_header(&mut resp, "content-type", "application/json");
    resp
}

fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn set_headers(resp: &mut Response, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        set_header(resp, name, value);
    }
}

// ---------------------------------------------------------------------------
// CORS for the API (`--cors-origin`): only listed origins, only `/v1`.
// ---------------------------------------------------------------------------

const CORS_ALLOW_HEADERS: &str = "authorization, content-type, x-request-id";
const CORS_EXPOSE_HEADERS: &str = "Retry-After, X-Request-Id, WWW-Authenticate";

async fn cors_layer(
    State(s): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let origin = req
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|_| path == "/v1" || path.starts_with("/v1/"))
        .filter(|o| s.options.cors_origins.iter().any(|a| a == o))
        .map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let preflight = req.method() == http::Method::OPTIONS
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut r = http::StatusCode::NO_CONTENT.into_response();
        set_header(&mut r, "access-control-allow-methods", "GET, POST");
        set_header(&mut r, "access-control-allow-headers", CORS_ALLOW_HEADERS);
        set_header(&mut r, "access-control-max-age", "600");
        set_header(&mut r, "cache-control", "no-store");
        r
    } else {
        let mut r = next.run(req).await;
        set_header(&mut r, "access-control-expose-headers", CORS_EXPOSE_HEADERS);
        r
    };
    set_header(&mut resp, "access-control-allow-origin", &origin);
    resp.headers_mut()
        .append(http::header::VARY, http::HeaderValue::from_static("Origin"));
    resp
}
