//! The OpenAPI 3.1 document (`openapi.json`), generated from the route
//! table (`api::ROUTES`), each route's `DOC` and the types of the bodies
//! (`utoipa::ToSchema`). The committed `openapi.json` is this function's
//! output: `UPDATE_OPENAPI=1 cargo test --test api openapi_json_is_current`
//! rewrites it, and that test fails while it differs. Nothing generates it
//! at run time: `/openapi.json` serves the committed file.

mod paths;
mod problems;
mod schemas;

pub(crate) use paths::{Answer, In, Param, RequestBody, RouteDoc};
pub(crate) use problems::{
    AMBIGUOUS_KEY_ID, CONFLICT, DEVICE_NOT_FOUND, INCIDENT_NOT_FOUND, INCIDENT_REQUIRED,
    INSUFFICIENT_SCOPE, INTERNAL, INVALID_REQUEST, NO_RECOVERY_KEY, RATE_LIMITED,
    SECOND_PERSON_REQUIRED, SELF_SERVICE_DISABLED, SHARED_INSUFFICIENT_SCOPE,
    SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE, SHARED_UNAVAILABLE_READ, SHARED_UNAVAILABLE_WRITE,
    SHARED_UNSUPPORTED_MEDIA_TYPE,
};
pub(crate) use schemas::{Schemas, Timestamp, action, incident_state, of, outcome, uuid};

use crate::api::ROUTES;
use serde_json::{Map, Value, json};

/// The whole document, keys sorted (`serde_json`'s map): stable output.
pub fn document() -> Value {
    let mut schemas = Schemas::default();
    let mut paths = Map::new();
    for route in ROUTES {
        let op = paths::operation(route, &mut schemas);
        let item = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[route.method.to_ascii_lowercase()] = op;
    }
    problems::add_schemas(&mut schemas);
    let mut doc = head();
    doc["paths"] = Value::Object(paths);
    doc["components"] = json!({
        "schemas": Value::Object(schemas.0),
        "responses": paths::shared_responses(),
        "parameters": parameters(),
        "headers": headers(),
        "securitySchemes": security_schemes(),
    });
    doc
}

/// The document as committed: pretty JSON and a final newline.
pub fn render() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

const TAGS: &[(&str, &str)] = &[
    ("devices", "A user's own devices and keys."),
    (
        "helpdesk",
        "Helpdesk agents: any device of the tenant, lookup by key ID.",
    ),
    ("audit", "The audit trail of key retrievals."),
    (
        "lifecycle",
        "The key lifecycle: escrow by an MDM sync job or device agent, device enrolment and retirement, rotation requests.",
    ),
    ("settings", "The tenant's settings."),
    (
        "incidents",
        "Incident mode for a mass outage: a time-boxed state of a tenant with higher helpdesk limits and batch retrieval.",
    ),
];

/// Everything before `paths`.
fn head() -> Value {
    let tags: Vec<Value> = TAGS
        .iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "recovery-portal API",
            "version": "1",
            "summary": "BitLocker recovery-key portal: list devices, retrieve a recovery key, look keys up, read the audit trail; escrow keys, enrol and retire devices, rotation requests, tenant settings.",
            "description": "Every request carries `Authorization: Bearer <JWT>` from the configured OIDC issuer (`PORTAL_ISSUER`, `PORTAL_AUDIENCE`); permissions come from the token's `scp`, `scope` and `roles` claims. Each operation lists the permissions that admit it (any one suffices) in its `security` roles and in `x-permissions`; `x-lambda-function` names the Lambda function that serves it.\n\nEvery answer carries `X-Request-Id`, `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`. Errors are `application/problem+json` (RFC 9457) with `type`, `title`, `status`, `detail` (what to do next) and `request_id`, plus `helpdesk`, `candidates`, `required_permission` or `retry_after` where they apply. Beyond the answers listed per operation, any path answers 404 `not-found` when it is not a route, and 405 `method-not-allowed` (with `Allow`) for another method. Behind API Gateway, the stage throttle may also answer 429 before the API is reached, and the JWT authorizer 401, both without a problem body.\n\n`portal serve` serves this document at `/openapi.json`.",
            "license": { "name": "MIT", "identifier": "MIT" },
        },
        "servers": [
            { "url": "http://127.0.0.1:8080", "description": "`portal serve` (local development)" },
            {
                "url": "https://{api_id}.execute-api.{region}.amazonaws.com",
                "description": "The deployed API Gateway stage (Terraform output `api_url`)",
                "variables": { "api_id": { "default": "abc123" }, "region": { "default": "eu-west-1" } },
            },
        ],
        "security": [{ "bearerAuth": [] }],
        "tags": tags,
    })
}

fn security_schemes() -> Value {
    json!({
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token of the configured issuer: RS256 or ES256 with a `kid` of the issuer's JWKS; `iss` equal to `PORTAL_ISSUER`; `aud` containing `PORTAL_AUDIENCE`; `exp` required. The caller is (`tid` else `PORTAL_DEFAULT_TENANT`, `oid` else `sub`). The roles in each operation's security requirement are the permissions (`scp`/`scope`/`roles` values) that admit it.",
        }
    })
}

fn parameters() -> Value {
    json!({
        "RequestId": {
            "name": "X-Request-Id",
            "in": "header",
            "required": false,
            "description": "Optional client request id. A valid one (8–64 characters of `A-Za-z0-9._-`) is kept as the request's id, so a retried request keeps its audit identity and adds no second audit event; reusing it for a different request is a 400. An invalid one is ignored.",
            "schema": { "type": "string" },
        }
    })
}

/// The headers answers carry (`api::with_standard_headers`, `api::problem`).
fn headers() -> Value {
    let text = |c: &str| json!({ "type": "string", "const": c });
    json!({
        "X-Request-Id": {
            "description": "The request's id: the client's valid `X-Request-Id`, else the gateway's (or a fresh one). Audit events carry it.",
            "required": true,
            "schema": { "type": "string", "minLength": 1 },
        },
        "Cache-Control": { "description": "Never cached.", "required": true, "schema": text("no-store") },
        "X-Content-Type-Options": { "required": true, "schema": text("nosniff") },
        "Pragma": {
            "description": "On the key route, for HTTP/1.0 caches.",
            "required": true,
            "schema": text("no-cache"),
        },
        "WWW-Authenticate": {
            "description": "`Bearer` when no token was sent; `Bearer error=\"invalid_token\", ...` for a rejected one; `Bearer error=\"insufficient_scope\", scope=\"<permission>\"` for a missing permission.",
            "required": true,
            "schema": { "type": "string", "pattern": "^Bearer" },
        },
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": true,
            "schema": { "type": "string", "pattern": "^[0-9]+$" },
        },
    })
}
