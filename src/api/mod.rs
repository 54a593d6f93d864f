//! HTTP mapping: the route table (`table`), sign-in and the permission
//! check, one module per route (`routes`), input parsing (`body`), and the
//! one place where errors become `application/problem+json` answers
//! (`problem`, RFC 9457).
//!
//! Lambda (`frontends::lambda`), the local server (`frontends::server`) and
//! the tests all call `handle`, so there is exactly one implementation of
//! each route.

mod auth;
mod body;
mod error;
pub mod openapi;
mod problem;
mod request;
mod routes;
mod table;
mod views;

pub use auth::bearer_token;
pub use body::MAX_REASON_CHARS;
pub use error::HttpError;
pub use problem::problem;
pub use request::ApiRequest;
pub use table::{Handler, Permission, ROUTES, Route, Routes};
pub use views::event_json;

use crate::domain::audit::{Action, Audit};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::error::ApiError;
use crate::domain::ids::DeviceId;
use crate::domain::keys::RequestMeta;
use crate::domain::policy::{Admitted, Grant, Permitted};
use crate::domain::ports::Portal;
use http::{HeaderValue, Response, header};

/// Largest request body of most routes.
pub const MAX_BODY: usize = 4 * 1024;
/// Largest body of `POST /v1/recovery-keys/batch` (100 full key IDs and a
/// reason need about 4.2 KB).
pub const MAX_BATCH_BODY: usize = 16 * 1024;
/// The largest body any API route accepts (what a front end must read).
pub const MAX_ANY_BODY: usize = MAX_BATCH_BODY;
/// `Retry-After` of a 503 (and `retry_after` of a batch item 503): AWS
/// throttling and transient faults clear within seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

pub type ApiResponse = Response<Vec<u8>>;

/// What a route's handler gets: a signed-in caller the route's permission
/// admits, and the request.
pub struct Ctx<'a> {
    portal: &'a Portal,
    caller: Caller,
    /// The proof of the route's permission check, which services take.
    admitted: Admitted,
    meta: RequestMeta,
    req: ApiRequest,
    /// The values of the path template's `{name}` segments, in order.
    params: Vec<String>,
}

impl Ctx<'_> {
    fn query(&self) -> Option<&str> {
        self.req.query.as_deref()
    }

    /// The proof a service takes that this caller holds `G`'s permission.
    fn permitted<G: Grant>(&self) -> Result<Permitted<'_, G>, ApiError> {
        self.admitted.permitted()
    }
}

/// Serves one request. Never panics on input and never answers 5xx for
/// anything a client can send.
pub async fn handle(portal: &Portal, serves: Routes, mut req: ApiRequest) -> ApiResponse {
    if let Some(id) = request::client_request_id(&req.headers) {
        req.request_id = id;
    }
    let request_id = req.request_id.clone();
    // Routed once: the route, and the unit that decides `Pragma`.
    let resolved = table::resolve(serves, req.method.as_str(), &req.path);
    let is_key_route = resolved.unit == Some(Routes::Key);
    let routed = resolved
        .route
        .map(|(route, params)| (route, params.into_iter().map(str::to_owned).collect()));
    let resp = match dispatch(portal, routed, req).await {
        Ok(r) => r,
        Err(e) => problem(&e, &request_id),
    };
    with_standard_headers(resp, &request_id, is_key_route)
}

/// Headers every answer carries; `key_route` adds `Pragma: no-cache`.
pub fn with_standard_headers(
    mut resp: ApiResponse,
    request_id: &str,
    key_route: bool,
) -> ApiResponse {
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if key_route {
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

/// The route `table::resolve` found (with its path parameters) or its
/// 404/405.
type Routed = Result<(&'static Route, Vec<String>), HttpError>;

/// Routing's outcome, body limit, sign-in and permission, in that order;
/// then the route's handler.
async fn dispatch(
    portal: &Portal,
    routed: Routed,
    req: ApiRequest,
) -> Result<ApiResponse, HttpError> {
    let (route, params) = routed?;
    if req.body.len() > route.max_body {
        return Err(HttpError::PayloadTooLarge {
            max: route.max_body,
        });
    }
    let caller = auth::authenticate(portal, &req.headers).await?;
    let meta = request::request_meta(&req);
    let admitted = permit(portal, route, &caller, &meta, &params).await?;
    let ctx = Ctx {
        portal,
        caller,
        admitted,
        meta,
        req,
        params,
    };
    (route.handler)(&ctx).await
}

/// The route's permission check, and its proof: a refused disclosure or
/// write is audited (under the device the path names, if it is a valid ID).
async fn permit(
    portal: &Portal,
    route: &Route,
    caller: &Caller,
    meta: &RequestMeta,
    params: &[String],
) -> Result<Admitted, ApiError> {
    let e = match route.permission.check(caller) {
        Ok(admitted) => return Ok(admitted),
        Err(e) => e,
    };
    let Some(action) = route.audit else {
        return Err(e);
    };
    let device = route
        .path
        .starts_with("/v1/devices/{device_id}")
        .then(|| params.first().and_then(|d| DeviceId::parse(d).ok()))
        .flatten();
    let audit = match action {
        Action::Disclose => Audit::disclosure(portal.into(), caller, meta, device.as_ref(), None),
        action => Audit::write(portal.into(), caller, meta, action, device.as_ref()),
    };
    Err(audit.deny(None, Denied::InsufficientScope, e).await)
}
