//! The local server: the same `api::handle` as Lambda, behind axum, plus
//! the development identity provider (discovery, JWKS, the authorization
//! code flow), the portal page (`web`) and CORS for the API.

use crate::api::{self, ApiRequest, MAX_ANY_BODY, Routes};
use crate::frontends::web;
use crate::ports::Portal;
use crate::tools::devidp::DevIdentityProvider;
use crate::tools::devidp::{AuthorizeRequest, FlowError, SignIn};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    portal: Portal,
    idp: Option<Arc<DevIdentityProvider>>,
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

pub fn router(portal: Portal, idp: Option<Arc<DevIdentityProvider>>) -> Router {
    router_with(portal, idp, Options::default())
}

pub fn router_with(
    portal: Portal,
    idp: Option<Arc<DevIdentityProvider>>,
    options: Options,
) -> Router {
    // Other methods fall through to the API's own 404 problem answer.
    let mut r = Router::new().route("/openapi.json", get(openapi).fallback(handle));
    if idp.is_some() {
        r = r
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/authorize", get(authorize_form).post(authorize_submit))
            .route("/token", post(token));
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
    let r = if state.idp.is_some() {
        r.layer(middleware::from_fn_with_state(
            state.clone(),
            dev_host_guard,
        ))
    } else {
        r
    };
    // Outermost: every route, the page's and the IdP's included, answers
    // only after the body was read (see `read_body_first`).
    r.layer(middleware::from_fn(read_body_first))
        .with_state(state)
}

/// Without `PORTAL_ISSUER` this server is its own identity provider, bound
/// to loopback. A web page elsewhere can still make its own name resolve to
/// 127.0.0.1 (DNS rebinding) and drive the sign-in form, `/token` and the
/// API as a same-origin page; its requests carry its name in `Host`. So
/// every route answers only requests addressed to a loopback name with this
/// server's port (HTTP/1.1's request-target authority, if any, too), and
/// anything else gets 421 Misdirected Request.
async fn dev_host_guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(idp) = &s.idp else {
        return next.run(req).await;
    };
    let hosts: Vec<&str> = req
        .headers()
        .get_all(http::header::HOST)
        .iter()
        .map(|h| h.to_str().unwrap_or(""))
        .collect();
    let host_ok = match hosts.as_slice() {
        [one] => idp.is_own_authority(one),
        // HTTP/2 has no Host header: its `:authority` is the URI's.
        [] => req.uri().authority().is_some(),
        _ => false,
    };
    let target_ok = req
        .uri()
        .authority()
        .is_none_or(|a| idp.is_own_authority(a.as_str()));
    if host_ok && target_ok {
        return next.run(req).await;
    }
    tracing::warn!(
        host = ?hosts.first().copied().unwrap_or(""),
        "refused a request for another host (421): this development server answers only its loopback names"
    );
    misdirected()
}

/// 421 Misdirected Request as `application/problem+json`.
fn misdirected() -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "type": "https://recovery-portal.dev/problems/misdirected-request",
        "title": "Misdirected request",
        "status": 421,
        "detail": "This local development server answers only requests addressed to localhost, 127.0.0.1 or [::1] with its own port. Open the portal at the address it printed on start.",
        "request_id": request_id,
    });
    let mut resp = (http::StatusCode::MISDIRECTED_REQUEST, body.to_string()).into_response();
    set_header(&mut resp, "content-type", "application/problem+json");
    set_header(&mut resp, "cache-control", "no-store");
    set_header(&mut resp, "x-content-type-options", "nosniff");
    set_header(&mut resp, "x-request-id", &request_id);
    resp
}

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
    idp: Option<Arc<DevIdentityProvider>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, portal, idp, Options::default(), shutdown).await
}

/// `serve` with the portal page and CORS as `options` say.
pub async fn serve_with(
    listener: TcpListener,
    portal: Portal,
    idp: Option<Arc<DevIdentityProvider>>,
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

async fn discovery(State(s): State<AppState>) -> Response {
    match &s.idp {
        Some(idp) => (
            [
                (http::header::CONTENT_TYPE, "application/json"),
                // Public documents: a page on another origin may read them.
                (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            idp.discovery().to_string(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn jwks(State(s): State<AppState>) -> Response {
    match &s.idp {
        Some(idp) => (
            [
                (http::header::CONTENT_TYPE, "application/json"),
                (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            idp.jwks_json(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
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

// ---------------------------------------------------------------------------
// The development identity provider's authorization code flow
// ---------------------------------------------------------------------------

/// Largest sign-in form or token request accepted.
const MAX_FORM: usize = 16 * 1024;

/// A page of the provider: its own CSP (the form may only post here and
/// redirect to the client), never cached, never framed.
fn idp_html(status: http::StatusCode, body: String, form_action: &str) -> Response {
    let mut resp = (status, body).into_response();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    set_headers(&mut resp, &web::page_headers(&csp));
    set_header(&mut resp, "content-type", "text/html; charset=utf-8");
    resp
}

fn idp_error(status: http::StatusCode, e: &FlowError) -> Response {
    idp_html(status, crate::tools::devidp::error_page(e), "'none'")
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

async fn read_form(req: Request) -> Result<(http::HeaderMap, Vec<(String, String)>), ()> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| ())?;
    Ok((parts.headers, form_pairs(&bytes)))
}

/// `GET /authorize`: the sign-in form for a valid request.
async fn authorize_form(State(s): State<AppState>, req: Request) -> Response {
    let Some(idp) = &s.idp else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let params = form_pairs(req.uri().query().unwrap_or("").as_bytes());
    match AuthorizeRequest::parse(&params).and_then(|ar| own_redirect(idp, ar)) {
        Ok(ar) => {
            let action = format!("'self' {}", ar.redirect_origin);
            let page =
                crate::tools::devidp::sign_in_page(&ar, "contoso", "alice", &ar.form_scope(), None);
            idp_html(http::StatusCode::OK, page, &action)
        }
        Err(e) => idp_error(http::StatusCode::BAD_REQUEST, &e),
    }
}

/// The request, if it redirects to the portal page this server serves
/// (`DevIdentityProvider::is_own_redirect_uri`): the dev provider signs in
/// nothing else.
fn own_redirect(
    idp: &DevIdentityProvider,
    ar: AuthorizeRequest,
) -> Result<AuthorizeRequest, FlowError> {
    if idp.is_own_redirect_uri(&ar.redirect_uri) {
        Ok(ar)
    } else {
        Err(FlowError(format!(
            "redirect_uri must be the address of the portal page this server serves, e.g. {}/",
            idp.issuer
        )))
    }
}

/// `POST /authorize`: the submitted form; a code and a redirect to the client.
async fn authorize_submit(State(s): State<AppState>, req: Request) -> Response {
    let Some(idp) = &s.idp else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let Ok((headers, form)) = read_form(req).await else {
        return idp_error(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            &FlowError("The sign-in form is too large.".into()),
        );
    };
    if !is_form(&headers) {
        return idp_error(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &FlowError("Submit the sign-in form as application/x-www-form-urlencoded.".into()),
        );
    }
    // The request's parameters travel as hidden fields (its scope as
    // `requested_scope`); `tenant`, `user` and `scope` are the person's.
    let request: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "tenant" | "user" | "scope"))
        .map(|(k, v)| {
            let k = if k == "requested_scope" { "scope" } else { k };
            (k.to_owned(), v.clone())
        })
        .collect();
    let ar = match AuthorizeRequest::parse(&request).and_then(|ar| own_redirect(idp, ar)) {
        Ok(ar) => ar,
        Err(e) => return idp_error(http::StatusCode::BAD_REQUEST, &e),
    };
    let field = |name: &str| {
        let mut values = form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    let (tenant, user, scope) = (
        field("tenant").unwrap_or(""),
        field("user").unwrap_or(""),
        field("scope").unwrap_or(""),
    );
    match SignIn::parse(tenant, user, scope) {
        Ok(who) => {
            let now = s.portal.clock.now().unix_timestamp();
            let location = idp.issue_code(&ar, who, now);
            let mut resp = http::StatusCode::SEE_OTHER.into_response();
            set_header(&mut resp, "location", &location);
            set_header(&mut resp, "cache-control", "no-store");
            set_header(&mut resp, "referrer-policy", "no-referrer");
            resp
        }
        Err(e) => {
            let action = format!("'self' {}", ar.redirect_origin);
            let page = crate::tools::devidp::sign_in_page(&ar, tenant, user, scope, Some(&e));
            idp_html(http::StatusCode::BAD_REQUEST, page, &action)
        }
    }
}

/// `POST /token`: the authorization_code grant (public client, PKCE).
async fn token(State(s): State<AppState>, req: Request) -> Response {
    let Some(idp) = &s.idp else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let result = match read_form(req).await {
        Err(()) => Err(crate::tools::devidp::TokenError {
            error: "invalid_request",
            description: format!("the request body must be at most {MAX_FORM} bytes"),
        }),
        Ok((headers, _)) if !is_form(&headers) => Err(crate::tools::devidp::TokenError {
            error: "invalid_request",
            description: "send the parameters as application/x-www-form-urlencoded".into(),
        }),
        Ok((_, form)) => idp.redeem(&form, s.portal.clock.now().unix_timestamp()),
    };
    let (status, body) = match result {
        Ok(tokens) => (http::StatusCode::OK, tokens),
        Err(e) => (http::StatusCode::BAD_REQUEST, e.to_json()),
    };
    let mut resp = (status, body.to_string()).into_response();
    set_header(&mut resp, "content-type", "application/json");
    set_header(&mut resp, "cache-control", "no-store");
    set_header(&mut resp, "pragma", "no-cache");
    set_header(&mut resp, "access-control-allow-origin", "*");
    set_header(&mut resp, "x-content-type-options", "nosniff");
    resp
}
