//! `GET /v1/audit-events`: the tenant's audit trail, filtered and paged.

use crate::api::body::{Query, bad, limit};
use crate::api::openapi::{
    Answer, Param, RouteDoc, SHARED_INSUFFICIENT_SCOPE, SHARED_INVALID_REQUEST, SHARED_UNAVAILABLE,
    of,
};
use crate::api::views::{EventView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, UserId};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer: one page of events, and the cursor of the next.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuditEventPage)]
struct EventsBody<'a> {
    /// Newest first, own tenant only.
    events: Vec<EventView<'a>>,
    /// Opaque cursor of the next (older) page: pass it as `cursor` with the
    /// same filters. Null or absent on the last page.
    next: Option<String>,
}
use time::format_description::well_known::Rfc3339;

pub(crate) async fn run(c: &Ctx<'_>) -> Result<ApiResponse, HttpError> {
    let q = Query::parse(
        c.query(),
        &["device_id", "actor", "limit", "since", "until", "cursor"],
    )?;
    let query = audit_query(&q)?;
    let tenant = &c.caller.tenant;
    let page = c
        .portal
        .store
        .audit_events(tenant, &query)
        .await
        .map_err(ApiError::from)?;
    // Defence in depth: the store was asked for one tenant.
    let events = page
        .events
        .iter()
        .filter(|e| &e.tenant_id == tenant && query.matches(e))
        .map(EventView::from)
        .collect();
    let next = page.next.map(|c| c.encode());
    Ok(json_response(StatusCode::OK, &EventsBody { events, next }))
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
        limit: limit(q, AuditQuery::DEFAULT_LIMIT, AuditQuery::MAX_LIMIT)?,
    };
    if query.is_empty_range() {
        return Err(ApiError::BadRequest(
            "since must be earlier than until".into(),
        ));
    }
    Ok(query)
}

/// The OpenAPI operation (`api::openapi`).
pub(crate) const DOC: RouteDoc = RouteDoc {
    operation_id: "listAuditEvents",
    tags: &["audit"],
    summary: "Read the audit trail",
    description: "Key-retrieval attempts of the caller's tenant, newest first. **Permission:** `AuditLog.Read.All`.",
    params: &[
        Param::query(
            "device_id",
            "Only events of this device.",
            of::<crate::domain::ids::DeviceId>,
        ),
        Param::query(
            "actor",
            "Only events of this user.",
            of::<crate::domain::ids::UserId>,
        ),
        Param::query(
            "since",
            "Only events at or after this time (inclusive), RFC 3339.",
            |_| serde_json::json!({"type": "string", "format": "date-time"}),
        ),
        Param::query(
            "until",
            "Only events before this time (exclusive), RFC 3339.",
            |_| serde_json::json!({"type": "string", "format": "date-time"}),
        ),
        Param::query(
            "limit",
            "Page size.",
            |_| serde_json::json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
        ),
        Param::query(
            "cursor",
            "The `next` value of the previous page (opaque); send the same filters with it.",
            |_| serde_json::json!({"type": "string", "minLength": 1}),
        ),
    ],
    body: None,
    answers: &[
        Answer::Success(200, "One page of events.", Some(of::<EventsBody>)),
        Answer::Shared(&SHARED_INVALID_REQUEST),
        Answer::Shared(&SHARED_INSUFFICIENT_SCOPE),
        Answer::Shared(&SHARED_UNAVAILABLE),
    ],
};
