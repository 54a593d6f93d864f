//! `GET /v1/audit-events`: the tenant's audit trail, filtered and paged.

use crate::api::body::{Query, bad, limit};
use crate::api::views::{EventView, json_response};
use crate::api::{ApiResponse, Ctx, HttpError};
use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, UserId};
use http::StatusCode;
use serde::Serialize;

/// The answer: one page of events, and the cursor of the next.
#[derive(Serialize)]
struct EventsBody<'a> {
    events: Vec<EventView<'a>>,
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
