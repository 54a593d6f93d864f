//! HTTP mapping: routing, input parsing, JSON bodies, and the one place where
//! domain errors become `application/problem+json` answers (RFC 9457).
//!
//! Lambda (`lambda.rs`), the local server (`server.rs`) and the tests all call
//! `handle`, so there is exactly one implementation of each route.

use crate::adapters::jwt;
use crate::domain::audit::Audit;
use crate::domain::audit::{AuditCursor, AuditEvent, AuditQuery};
use crate::domain::batch::{self, BatchKey, ItemOutcome};
use crate::domain::caller::Caller;
use crate::domain::denial::Denied;
use crate::domain::devices;
use crate::domain::error::{ApiError, AuthFailure};
use crate::domain::ids::{DeviceId, KeyIdPrefix, KeySelector, UserId};
use crate::domain::keys::{self, RequestMeta, RetrievalRequest};
use crate::domain::model::{Device, Helpdesk};
use crate::domain::policy;
use crate::ports::Portal;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

mod lifecycle;

/// Largest accepted request body.
pub const MAX_BODY: usize = 4 * 1024;
/// Largest body of `POST /v1/recovery-keys/batch` (100 full key IDs and a
/// reason need about 4.2 KB).
pub const MAX_BATCH_BODY: usize = 16 * 1024;
/// The largest body any API route accepts (what a front end must read).
pub const MAX_ANY_BODY: usize = MAX_BATCH_BODY;
/// Longest `reason` a caller may give for a retrieval.
pub const MAX_REASON_CHARS: usize = 200;
/// `Retry-After` of a 503 (and `retry_after` of a batch item 503): AWS
/// throttling and transient faults clear within seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// A request as every front end (API Gateway, local server) delivers it.
/// Its `Debug` form leaves out the bearer token (see below).
#[derive(Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source_ip: Option<String>,
    /// The front end's request id (API Gateway's, or a fresh one locally);
    /// a valid client `X-Request-Id` takes precedence so retries keep it.
    pub request_id: String,
}

/// Debug output may end up in a log: the `Authorization` (and any cookie)
/// value is shown as `<redacted>`, and the body only by its length.
impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'a>(&'a HeaderMap);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let secret = |n: &header::HeaderName| {
                    [
                        header::AUTHORIZATION,
                        header::COOKIE,
                        header::PROXY_AUTHORIZATION,
                    ]
                    .contains(n)
                };
                let mut m = f.debug_map();
                for (n, v) in self.0 {
                    if secret(n) {
                        m.entry(n, &"<redacted>");
                    } else {
                        m.entry(n, v);
                    }
                }
                m.finish()
            }
        }
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &Headers(&self.headers))
            .field("body_len", &self.body.len())
            .field("source_ip", &self.source_ip)
            .field("request_id", &self.request_id)
            .finish()
    }
}

pub type ApiResponse = Response<Vec<u8>>;

/// Which routes a deployment unit serves: each Lambda function serves its
/// own; the local server serves all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `list-devices`: devices, key lookup, audit events.
    List,
    /// `get-recovery-key`: key retrieval.
    Key,
    /// `manage-keys`: escrow, device enrolment and retirement, rotation
    /// requests, tenant settings (`api::lifecycle`).
    Manage,
    All,
}

enum Route {
    ListDevices,
    FindKeys,
    RetrieveKey(String),
    AuditEvents,
    BatchKeys,
}

/// One route of the API: the method and path template the OpenAPI document
/// (`openapi.json`) and API Gateway name it by, and the unit serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    /// `{name}` stands for one non-empty path segment.
    pub path: &'static str,
    pub unit: Routes,
}

/// Every route the router knows, and so the one list the OpenAPI document is
/// checked against. `route` matches requests against the read and key routes
/// here; the `Routes::Manage` ones are matched (with their 405s) by
/// `lifecycle::route`, which a unit test keeps in step with this list.
pub const ROUTES: [RouteSpec; 15] = [
    RouteSpec {
        method: "GET",
        path: "/v1/devices",
        unit: Routes::List,
    },
    RouteSpec {
        method: "GET",
        path: "/v1/recovery-keys",
        unit: Routes::List,
    },
    RouteSpec {
        method: "GET",
        path: "/v1/audit-events",
        unit: Routes::List,
    },
    RouteSpec {
        method: "POST",
        path: "/v1/devices/{device_id}/recovery-key",
        unit: Routes::Key,
    },
    RouteSpec {
        method: "POST",
        path: "/v1/recovery-keys/batch",
        unit: Routes::Key,
    },
    RouteSpec {
        method: "PUT",
        path: "/v1/devices/{device_id}",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "DELETE",
        path: "/v1/devices/{device_id}",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "POST",
        path: "/v1/devices/{device_id}/restore",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "PUT",
        path: "/v1/devices/{device_id}/recovery-keys/{key_id}",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "GET",
        path: "/v1/rotation-requests",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "GET",
        path: "/v1/tenant/settings",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "PATCH",
        path: "/v1/tenant/settings",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "GET",
        path: "/v1/incidents",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "POST",
        path: "/v1/incidents",
        unit: Routes::Manage,
    },
    RouteSpec {
        method: "DELETE",
        path: "/v1/incidents/{incident_id}",
        unit: Routes::Manage,
    },
];

/// The values of `template`'s `{name}` segments if `path` matches it.
fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut actual = path.split('/');
    for want in template.split('/') {
        let got = actual.next()?;
        if want.starts_with('{') && want.ends_with('}') {
            if got.is_empty() {
                return None;
            }
            params.push(got);
        } else if want != got {
            return None;
        }
    }
    actual.next().is_none().then_some(params)
}

fn route(path: &str) -> Option<(Route, &'static str, Routes)> {
    ROUTES.iter().find_map(|spec| {
        let params = match_template(spec.path, path)?;
        let route = match (spec.path, params.as_slice()) {
            ("/v1/devices", []) => Route::ListDevices,
            ("/v1/recovery-keys", []) => Route::FindKeys,
            ("/v1/audit-events", []) => Route::AuditEvents,
            ("/v1/recovery-keys/batch", []) => Route::BatchKeys,
            ("/v1/devices/{device_id}/recovery-key", [device]) => {
                Route::RetrieveKey((*device).to_owned())
            }
            _ => return None,
        };
        Some((route, spec.method, spec.unit))
    })
}

fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-request-id")?.to_str().ok()?;
    let ok = (8..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| v.to_owned())
}

/// Serves one request. Never panics on input and never answers 5xx for
/// anything a client can send.
pub async fn handle(portal: &Portal, serves: Routes, mut req: ApiRequest) -> ApiResponse {
    if let Some(id) = client_request_id(&req.headers) {
        req.request_id = id;
    }
    let request_id = req.request_id.clone();
    let is_key_route = matches!(
        route(&req.path),
        Some((Route::RetrieveKey(_) | Route::BatchKeys, ..))
    );
    let resp = match dispatch(portal, serves, req).await {
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

async fn dispatch(
    portal: &Portal,
    serves: Routes,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    if let Some((r, methods)) = lifecycle::route(&req.path) {
        return lifecycle::dispatch(portal, serves, req, r, methods).await;
    }
    let Some((route, method, unit)) = route(&req.path) else {
        return Err(ApiError::RouteNotFound);
    };
    if serves != Routes::All && serves != unit {
        return Err(ApiError::RouteNotFound);
    }
    if req.method.as_str() != method {
        return Err(ApiError::MethodNotAllowed { allow: method });
    }
    let max = if matches!(route, Route::BatchKeys) {
        MAX_BATCH_BODY
    } else {
        MAX_BODY
    };
    if req.body.len() > max {
        return Err(ApiError::PayloadTooLarge { max });
    }
    let caller = authenticate(portal, &req.headers).await?;
    let meta = request_meta(&req);
    match route {
        Route::ListDevices => {
            let q = Query::parse(req.query.as_deref(), &["owner"])?;
            let owner = q
                .get("owner")
                .map(|o| UserId::parse(o).map_err(|e| bad("owner", e)))
                .transpose()?;
            let listing = devices::list(portal, &caller, owner).await?;
            Ok(json_response(StatusCode::OK, &DevicesBody::from(listing)))
        }
        Route::FindKeys => {
            let q = Query::parse(req.query.as_deref(), &["key_id_prefix"])?;
            // Permission before input validation: no hints to the unauthorised.
            policy::may_look_up_keys(&caller)?;
            let raw = q
                .get("key_id_prefix")
                .ok_or_else(|| ApiError::BadRequest("key_id_prefix is required".into()))?;
            let prefix = KeyIdPrefix::parse(raw).map_err(|e| bad("key_id_prefix", e))?;
            let keys = devices::find_keys(portal, &caller, &prefix).await?;
            let body = json!({ "recovery_keys": keys.iter().map(|k| json!({
                "key_id": k.key_id,
                "device_id": k.device_id,
                "display_name": k.display_name,
                "owner": k.owner,
                "volume_type": k.volume_type,
                "created_at": rfc3339(k.created_at),
            })).collect::<Vec<_>>() });
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::AuditEvents => {
            let q = Query::parse(
                req.query.as_deref(),
                &["device_id", "actor", "limit", "since", "until", "cursor"],
            )?;
            policy::may_read_audit(&caller)?;
            let query = audit_query(&q)?;
            let page = portal.store.audit_events(&caller.tenant, &query).await?;
            // Defence in depth: the store was asked for one tenant.
            let events: Vec<serde_json::Value> = page
                .events
                .iter()
                .filter(|e| e.tenant_id == caller.tenant && query.matches(e))
                .map(event_json)
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "events": events, "next": page.next.map(|c| c.encode()) }),
            ))
        }
        Route::RetrieveKey(raw_device) => {
            retrieve_key(portal, &caller, &meta, &raw_device, &req).await
        }
        Route::BatchKeys => batch_keys(portal, &caller, &meta, &req).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    key_ids: Vec<String>,
    reason: Option<String>,
}

fn parse_batch_body(req: &ApiRequest) -> Result<(Vec<BatchKey>, String), ApiError> {
    Query::parse(req.query.as_deref(), &[])?;
    if !is_json(&req.headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if req.body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            r#"the body must be a JSON object such as {"key_ids": ["3B8FAA18", "1F2E3D4C"], "reason": "incident 2026-11-25"}"#.into(),
        ));
    }
    let b: BatchBody = serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid JSON body (line {}, column {}): it must be an object with key_ids (a list of key IDs) and reason",
            e.line(),
            e.column()
        ))
    })?;
    if b.key_ids.is_empty() || b.key_ids.len() > batch::MAX_KEYS {
        return Err(ApiError::BadRequest(format!(
            "key_ids must list 1 to {} key IDs",
            batch::MAX_KEYS
        )));
    }
    let keys = b
        .key_ids
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            KeySelector::parse(&k)
                .map(|selector| BatchKey {
                    requested: k,
                    selector,
                })
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "key_ids[{i}] must be a full key ID (GUID) or at least 8 of its leading hex digits"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reason = match b.reason {
        Some(r) if !r.trim().is_empty() => r,
        _ => {
            return Err(ApiError::BadRequest(
                "reason is required for a batch retrieval: give the incident or ticket it is for"
                    .into(),
            ));
        }
    };
    let reason = check_reason(&reason)?;
    Ok((keys, reason))
}

async fn batch_keys(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let (keys, reason) = match parse_batch_body(req) {
        Ok(v) => v,
        Err(e) => {
            let attempt = Audit::disclosure(portal, caller, meta, None, None);
            // Permission before input validation: no hints to the unauthorised.
            if let Err(p) = policy::may_retrieve_batch(caller) {
                return Err(attempt.deny(None, Denied::InsufficientScope, p).await);
            }
            return Err(attempt.deny(None, Denied::InvalidRequest, e).await);
        }
    };
    let items = batch::retrieve(portal, caller, meta, keys, &reason).await?;
    let results: Vec<serde_json::Value> = items
        .into_iter()
        .map(|item| {
            let mut m = serde_json::Map::new();
            m.insert("key_id_prefix".into(), json!(item.requested));
            let (status, detail) = match item.outcome {
                ItemOutcome::Disclosed(d) => {
                    m.insert("device_id".into(), json!(d.device_id));
                    m.insert("key_id".into(), json!(d.key_id));
                    m.insert("volume_type".into(), json!(d.volume_type));
                    m.insert("recovery_password".into(), json!(d.password.expose()));
                    m.insert("created_at".into(), json!(rfc3339(d.created_at)));
                    (200, None)
                }
                ItemOutcome::NotFound => (404, Some("No key of your organization matches this key ID. Check the digits on the recovery screen.")),
                ItemOutcome::Ambiguous(candidates) => {
                    m.insert("candidates".into(), json!(candidates));
                    (409, Some("Several keys start with this key ID. Enter more digits of the key ID shown on the recovery screen."))
                }
                ItemOutcome::RateLimited { retry_after_secs } => {
                    m.insert("retry_after".into(), json!(retry_after_secs));
                    (429, Some("You reached your limit of recovery keys for now (the incident's limit). Try this key again later."))
                }
                ItemOutcome::Unavailable => {
                    m.insert("retry_after".into(), json!(UNAVAILABLE_RETRY_AFTER_SECS));
                    (503, Some("This key could not be disclosed safely right now; nothing was disclosed. Try it again in a few seconds."))
                }
                ItemOutcome::Internal => (500, Some("The stored key could not be decrypted. Contact your IT administrator.")),
            };
            m.insert("status".into(), json!(status));
            if let Some(d) = detail {
                m.insert("detail".into(), json!(d));
            }
            serde_json::Value::Object(m)
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results, "display_seconds": keys::DISPLAY_SECONDS }),
    ))
}

/// The filters of `GET /v1/audit-events`.
fn audit_query(q: &Query) -> Result<AuditQuery, ApiError> {
    let time = |name: &str| {
        q.get(name)
            .map(|v| {
                time::OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{name} must be an RFC 3339 time such as 2026-01-01T00:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    let query = AuditQuery {
        device_id: q
            .get("device_id")
            .map(|d| DeviceId::parse(d).map_err(|e| bad("device_id", e)))
            .transpose()?,
        actor: q
            .get("actor")
            .map(|a| UserId::parse_actor(a).map_err(|e| bad("actor", e)))
            .transpose()?,
        since: time("since")?,
        until: time("until")?,
        after: q
            .get("cursor")
            .map(|c| AuditCursor::decode(c).map_err(|e| bad("cursor", e)))
            .transpose()?,
        limit: match q.get("limit") {
            None => AuditQuery::DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=AuditQuery::MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {}",
                        AuditQuery::MAX_LIMIT
                    ))
                })?,
        },
    };
    if query.is_empty_range() {
        return Err(ApiError::BadRequest(
            "since must be earlier than until".into(),
        ));
    }
    Ok(query)
}

async fn retrieve_key(
    portal: &Portal,
    caller: &Caller,
    meta: &RequestMeta,
    raw_device: &str,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let attempt = |device_id| Audit::disclosure(portal, caller, meta, device_id, None);
    let device_id = match DeviceId::parse(raw_device) {
        Ok(d) => d,
        Err(e) => {
            return Err(attempt(None)
                .deny(None, Denied::InvalidRequest, bad("device_id", e))
                .await);
        }
    };
    // This route takes no query parameters: a stray one is refused (and
    // audited like any other bad input) rather than silently ignored.
    if let Err(e) = Query::parse(req.query.as_deref(), &[]) {
        return Err(attempt(Some(&device_id))
            .deny(None, Denied::InvalidRequest, e)
            .await);
    }
    let (key, justification) = match parse_key_body(&req.headers, &req.body) {
        Ok(v) => v,
        Err(e) => {
            return Err(attempt(Some(&device_id))
                .deny(None, Denied::InvalidRequest, e)
                .await);
        }
    };
    let d = keys::retrieve(
        portal,
        caller,
        meta,
        RetrievalRequest {
            device_id,
            key,
            justification,
        },
    )
    .await?;
    let body = json!({
        "device_id": d.device_id,
        "key_id": d.key_id,
        "volume_type": d.volume_type,
        "recovery_password": d.password.expose(),
        "created_at": rfc3339(d.created_at),
        "display_seconds": keys::DISPLAY_SECONDS,
    });
    Ok(json_response(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key_id: Option<String>,
    reason: Option<String>,
}

fn parse_key_body(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Option<KeySelector>, Option<String>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // serde would also read a struct from a JSON array, by position.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            r#"the body must be a JSON object such as {"key_id": "3B8FAA18", "reason": "ticket 4711"}"#
                .into(),
        ));
    }
    let b: KeyBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let key = b
        .key_id
        .map(|k| {
            KeySelector::parse(&k).map_err(|_| {
                ApiError::BadRequest(
                    "key_id must be a full key ID (GUID) or at least 8 of its leading hex digits"
                        .into(),
                )
            })
        })
        .transpose()?;
    let reason = b.reason.map(|r| check_reason(&r)).transpose()?;
    Ok((key, reason.filter(|r| !r.trim().is_empty())))
}

/// `application/json` or any `+json` media type.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.to_ascii_lowercase().ends_with("+json")
        })
}

/// A `reason` as the trail stores it (`domain::text::reason`): at most
/// `MAX_REASON_CHARS`, nothing hidden, NFC.
pub(crate) fn check_reason(r: &str) -> Result<String, ApiError> {
    check_reason_max(r, MAX_REASON_CHARS)
}

pub(crate) fn check_reason_max(r: &str, max: usize) -> Result<String, ApiError> {
    crate::domain::text::reason(r, max).map_err(|_| {
        ApiError::BadRequest(format!(
            "reason must be at most {max} characters of plain text, without control, format (zero-width, bidi, soft hyphen, tag), line-separator or filler characters and without a combining mark at the start of a word; retype it and retry"
        ))
    })
}

/// What the audit trail records of the request. The user agent is the
/// client's own text: stored without control characters (a TAB or a line
/// break would forge columns or lines in an export) and at most 256
/// characters.
pub(crate) fn request_meta(req: &ApiRequest) -> RequestMeta {
    RequestMeta {
        request_id: req.request_id.clone(),
        client_request_id: client_request_id(&req.headers).is_some(),
        source_ip: req.source_ip.clone(),
        user_agent: req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().filter(|c| !c.is_control()).take(256).collect()),
    }
}

async fn authenticate(portal: &Portal, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let value = match headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => None,
        [v] => Some(
            v.to_str()
                .map_err(|_| ApiError::Unauthenticated(AuthFailure::Malformed))?,
        ),
        _ => return Err(ApiError::Unauthenticated(AuthFailure::Malformed)),
    };
    let token = jwt::bearer_token(value).map_err(ApiError::Unauthenticated)?;
    portal.verifier.verify(token).await.map_err(|f| {
        tracing::info!(reason = %f, "token rejected");
        let e = ApiError::from(f);
        if matches!(
            e,
            ApiError::IdentityProviderUnavailable { .. } | ApiError::IdentityProviderMisconfigured
        ) {
            portal.count(
                crate::domain::metrics::Metric::Unavailable(crate::domain::metrics::Cause::Idp),
                1,
            );
        }
        e
    })
}

/// Query parameters: known names only, each at most once.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::BadRequest(if allowed.is_empty() {
                    format!("unknown query parameter {k:?}; this route takes none")
                } else {
                    format!(
                        "unknown query parameter {k:?}; allowed: {}",
                        allowed.join(", ")
                    )
                }));
            }
            if out.iter().any(|(x, _)| x == &k) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {k} given more than once"
                )));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn bad(field: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{field} {e}"))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[derive(Serialize)]
struct DevicesBody {
    devices: Vec<serde_json::Value>,
    helpdesk: Option<Helpdesk>,
}

impl From<devices::DeviceListing> for DevicesBody {
    fn from(l: devices::DeviceListing) -> Self {
        Self {
            devices: l.devices.iter().map(device_json).collect(),
            helpdesk: l.helpdesk,
        }
    }
}

fn device_json(d: &Device) -> serde_json::Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "os": d.os,
        "managed_by": d.managed_by,
        "recovery_keys": d.keys.iter().map(lifecycle::key_json).collect::<Vec<_>>(),
    })
}

/// An audit event as the API (and `portal audit export`) shows it.
pub fn event_json(e: &AuditEvent) -> serde_json::Value {
    json!({
        "action": e.action,
        "event_id": e.event_id,
        "time": rfc3339(e.time),
        "tenant_id": e.tenant_id,
        "actor": e.actor,
        "device_id": e.device_id,
        "key_id": e.key_id,
        "outcome": e.outcome,
        "reason": e.reason,
        "justification": e.justification,
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "request_id": e.request_id,
    })
}

fn json_response(status: StatusCode, body: &impl Serialize) -> ApiResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(bytes);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `Retry-After` of a 503 `identity-provider-misconfigured`.
const MISCONFIGURED_RETRY_AFTER_SECS: u64 = 30;

const PROBLEM_BASE: &str = "https://recovery-portal.dev/problems/";

/// The one mapping from domain errors to HTTP answers.
pub fn problem(e: &ApiError, request_id: &str) -> ApiResponse {
    let mut extra = serde_json::Map::new();
    let mut headers: Vec<(header::HeaderName, String)> = Vec::new();
    let (status, slug, title, detail) = match e {
        ApiError::Unauthenticated(f) => {
            // RFC 6750 §3: a short reason for whoever sets the issuer up;
            // the body stays the person's.
            let challenge = if *f == AuthFailure::Missing {
                "Bearer".to_owned()
            } else {
                format!(r#"Bearer error="invalid_token", error_description="{}""#, f.description())
            };
            headers.push((header::WWW_AUTHENTICATE, challenge));
            (StatusCode::UNAUTHORIZED, "unauthenticated", "Sign-in required", "Sign in to the company portal again, then retry.".to_owned())
        }
        ApiError::IdentityProviderUnavailable { retry_after_secs } => {
            headers.push((header::RETRY_AFTER, retry_after_secs.to_string()));
            extra.insert("retry_after".into(), json!(retry_after_secs));
            (StatusCode::SERVICE_UNAVAILABLE, "identity-provider-unavailable", "Sign-in service unreachable", format!("The portal cannot reach your organization's sign-in service to check your token right now. Nothing was disclosed, and you do not need to sign in again: try again in {retry_after_secs} second{}.", if *retry_after_secs == 1 { "" } else { "s" }))
        }
        ApiError::IdentityProviderMisconfigured => {
            // When the check runs again (the fetch back-off's ceiling): the
            // answer changes only once someone fixes the configuration.
            headers.push((header::RETRY_AFTER, MISCONFIGURED_RETRY_AFTER_SECS.to_string()));
            extra.insert("retry_after".into(), json!(MISCONFIGURED_RETRY_AFTER_SECS));
            (StatusCode::SERVICE_UNAVAILABLE, "identity-provider-misconfigured", "Portal misconfigured", "The portal is misconfigured: its sign-in settings do not match your organization's sign-in service, so it cannot check anyone's sign-in. Nothing was disclosed. Tell your IT support; trying again will not help until they fix it.".to_owned())
        }
        ApiError::SignInTooOld { max_age } => {
            // RFC 9470 (step-up authentication): sign in again, recently.
            headers.push((header::WWW_AUTHENTICATE, format!(r#"Bearer error="insufficient_user_authentication", error_description="sign-in too old", max_age={max_age}"#)));
            extra.insert("max_age".into(), json!(max_age));
            let minutes = max_age.div_ceil(60);
            (StatusCode::UNAUTHORIZED, "unauthenticated", "Sign-in required", format!("To see a recovery key you must have signed in within the last {minutes} minute{}. Sign in again, then retry.", if minutes == 1 { "" } else { "s" }))
        }
        ApiError::InsufficientScope { needed } => {
            headers.push((header::WWW_AUTHENTICATE, format!(r#"Bearer error="insufficient_scope", scope="{needed}""#)));
            extra.insert("required_permission".into(), json!(needed));
            (StatusCode::FORBIDDEN, "insufficient-scope", "Permission required", format!("Your account lacks the {needed} permission. Ask your IT administrator for access."))
        }
        ApiError::SecondPersonRequired(d) => (StatusCode::FORBIDDEN, "second-person-required", "Another person must do this", d.clone()),
        ApiError::SelfServiceDisabled { helpdesk } => {
            extra.insert("helpdesk".into(), json!(helpdesk));
            (StatusCode::FORBIDDEN, "self-service-disabled", "Ask your helpdesk for this key", "Your organization does not let users retrieve recovery keys themselves. Contact your IT support; they can read the key to you.".to_owned())
        }
        ApiError::DeviceNotFound => (
            StatusCode::NOT_FOUND,
            "device-not-found",
            "Device not found",
            "No device with this ID is registered to you. Check the device in your device list, or contact your IT support.".to_owned(),
        ),
        ApiError::NoKeyHeld { helpdesk } => {
            extra.insert("helpdesk".into(), json!(helpdesk));
            (StatusCode::NOT_FOUND, "no-recovery-key", "No recovery key stored", "No recovery key is stored for this device. If your organization encrypted it, contact your IT support for help; keys of devices you encrypted yourself are not kept here.".to_owned())
        }
        ApiError::AmbiguousKey { candidates } => {
            extra.insert("candidates".into(), json!(candidates));
            (StatusCode::CONFLICT, "ambiguous-key-id", "Key ID matches several keys", "Several keys on this device start with that key ID. Enter more digits of the key ID shown on the recovery screen.".to_owned())
        }
        ApiError::RateLimited { retry_after_secs } => {
            headers.push((header::RETRY_AFTER, retry_after_secs.to_string()));
            extra.insert("retry_after".into(), json!(retry_after_secs));
            (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many recovery keys requested", format!("You have retrieved the maximum number of recovery keys for now. Try again in {} minutes, or contact your IT support.", retry_after_secs.div_ceil(60)))
        }
        ApiError::IncidentRequired => (StatusCode::FORBIDDEN, "incident-required", "An incident must be open", "Batch retrieval is available only while an incident is open in your organization. Ask your IT lead to open one (POST /v1/incidents), or retrieve keys one at a time.".to_owned()),
        ApiError::IncidentNotFound => (StatusCode::NOT_FOUND, "incident-not-found", "Incident not found", "No incident with this ID exists in your organization. List the incidents with GET /v1/incidents.".to_owned()),
        ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid-request", "Invalid request", d.clone()),
        ApiError::Conflict(d) => (StatusCode::CONFLICT, "conflict", "Conflicts with what is stored", d.clone()),
        ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type", "Send the request body as application/json.".to_owned()),
        ApiError::PayloadTooLarge { max } => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large", format!("The request body must be at most {max} bytes.")),
        ApiError::MethodNotAllowed { allow } => {
            headers.push((header::ALLOW, (*allow).to_owned()));
            (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed", format!("This resource only supports {allow}."))
        }
        ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "not-found", "Not found", "There is no such API resource. See the API documentation for the routes.".to_owned()),
        ApiError::Unavailable(_) => {
            headers.push((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.to_string()));
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable", "The service could not complete the request safely and disclosed nothing. Try again in a few seconds.".to_owned())
        }
        ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "Something went wrong on our side. Try again, or contact your IT support.".to_owned()),
    };
    let mut body = serde_json::Map::new();
    body.insert("type".into(), json!(format!("{PROBLEM_BASE}{slug}")));
    body.insert("title".into(), json!(title));
    body.insert("status".into(), json!(status.as_u16()));
    body.insert("detail".into(), json!(detail));
    body.insert("request_id".into(), json!(request_id));
    body.extend(extra);
    let mut r = Response::new(serde_json::to_vec(&body).unwrap_or_default());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_route_is_served_and_nothing_else() {
        for spec in ROUTES {
            let path = spec
                .path
                .replace("{device_id}", "PC-1")
                .replace("{key_id}", "K-1");
            if spec.unit == Routes::Manage {
                // Dispatched by `lifecycle::route` before `route` is asked.
                let (_, methods) = lifecycle::route(&path)
                    .unwrap_or_else(|| panic!("{} is not routed", spec.path));
                assert!(methods.contains(&spec.method), "{} {}", spec.method, path);
                assert!(route(&path).is_none(), "{path} is routed twice");
                continue;
            }
            let (_, method, unit) =
                route(&path).unwrap_or_else(|| panic!("{} is not routed", spec.path));
            assert_eq!((method, unit), (spec.method, spec.unit), "{}", spec.path);
        }
        // Every method `lifecycle::route` allows is listed.
        for path in [
            "/v1/devices/PC-1",
            "/v1/devices/PC-1/recovery-keys/K-1",
            "/v1/devices/PC-1/restore",
            "/v1/rotation-requests",
            "/v1/tenant/settings",
        ] {
            let (_, methods) = lifecycle::route(path).unwrap();
            for m in methods {
                assert!(
                    ROUTES.iter().any(|r| r.method == *m
                        && r.unit == Routes::Manage
                        && match_template(r.path, path).is_some()),
                    "{m} {path} is not in ROUTES"
                );
            }
        }
        assert!(matches!(
            route("/v1/devices/PC-1/recovery-key"),
            Some((Route::RetrieveKey(d), "POST", Routes::Key)) if d == "PC-1"
        ));
        for unknown in [
            "",
            "/",
            "/v1",
            "/v1/devices/",
            "/v1/devices//recovery-key",
            "/v1/devices/a/b/recovery-key",
            "/v1/devices/a/recovery-key/",
            "/v1/devices/a/recovery-keys",
            "//v1/devices",
            "/v2/devices",
        ] {
            assert!(route(unknown).is_none(), "{unknown:?} must not be routed");
        }
    }
}
