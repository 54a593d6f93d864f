//! The route table: every route of the API once, with the method and path
//! template the OpenAPI document and API Gateway name it by, the Lambda
//! function serving it, the permission that admits a caller, how a refusal
//! is audited, its body limit and its handler. The dispatcher, the `Allow`
//! header, the permission check, `/openapi.json`'s drift test and the
//! Terraform route test all read this table.

use super::error::HttpError;
use super::openapi::RouteDoc;
use super::routes;
use super::{ApiResponse, Ctx, MAX_BATCH_BODY, MAX_BODY};
use crate::domain::audit::Action;
/// What admits a caller to a route: the domain's, so that only its check
/// makes the proof services take (`policy::Permitted`).
pub use crate::domain::policy::Permission;
use futures_util::future::BoxFuture;

/// Which routes a deployment unit serves: each Lambda function serves its
/// own; the local server serves all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// `list-devices`: devices, key lookup, audit events.
    List,
    /// `get-recovery-key`: key retrieval.
    Key,
    /// `manage-keys`: escrow, device enrolment and retirement, rotation
    /// requests, tenant settings, incidents.
    Manage,
    All,
}

impl Routes {
    /// The Lambda function serving this unit's routes (`None` for `All`).
    pub fn function(self) -> Option<&'static str> {
        match self {
            Self::List => Some("list-devices"),
            Self::Key => Some("get-recovery-key"),
            Self::Manage => Some("manage-keys"),
            Self::All => None,
        }
    }
}

/// A route's handler: runs after routing, sign-in and the permission check.
pub type Handler = for<'a> fn(&'a Ctx<'a>) -> BoxFuture<'a, Result<ApiResponse, HttpError>>;

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// `{name}` stands for one non-empty path segment.
    pub path: &'static str,
    pub unit: Routes,
    pub permission: Permission,
    /// The action a refusal is audited under: every disclosure and every
    /// write is, a read is not (it changes and discloses nothing).
    pub audit: Option<Action>,
    /// Largest accepted request body.
    pub max_body: usize,
    pub(crate) handler: Handler,
    /// The rest of its OpenAPI operation, beside its handler.
    pub(crate) doc: &'static RouteDoc,
}

macro_rules! route {
    ($method:literal $path:literal, $unit:ident, $permission:ident, $audit:expr, $max:expr, $route:ident) => {
        Route {
            method: $method,
            path: $path,
            unit: Routes::$unit,
            permission: Permission::$permission,
            audit: $audit,
            max_body: $max,
            handler: |c| Box::pin(routes::$route::run(c)),
            doc: &routes::$route::DOC,
        }
    };
}

/// Every route the API serves. The methods of one path are listed in the
/// order its `Allow` header names them.
pub const ROUTES: &[Route] = &[
    route!("GET" "/v1/devices", List, ReadDevices, None, MAX_BODY, list_devices),
    route!("GET" "/v1/recovery-keys", List, LookUpKeys, None, MAX_BODY, find_keys),
    route!("GET" "/v1/audit-events", List, ReadAudit, None, MAX_BODY, audit_events),
    route!("POST" "/v1/devices/{device_id}/recovery-key", Key, RetrieveKeys, Some(Action::Disclose), MAX_BODY, retrieve_key),
    route!("POST" "/v1/recovery-keys/batch", Key, RetrieveBatch, Some(Action::Disclose), MAX_BATCH_BODY, batch_keys),
    route!("PUT" "/v1/devices/{device_id}", Manage, WriteDevices, Some(Action::DeviceUpsert), MAX_BODY, put_device),
    route!("DELETE" "/v1/devices/{device_id}", Manage, WriteDevices, Some(Action::DeviceRetire), MAX_BODY, retire_device),
    route!("POST" "/v1/devices/{device_id}/restore", Manage, WriteDevices, Some(Action::DeviceRestore), MAX_BODY, restore_device),
    route!("PUT" "/v1/devices/{device_id}/recovery-keys/{key_id}", Manage, Escrow, Some(Action::Escrow), MAX_BODY, escrow),
    route!("GET" "/v1/rotation-requests", Manage, Escrow, None, MAX_BODY, rotation_requests),
    route!("GET" "/v1/tenant/settings", Manage, ManageSettings, None, MAX_BODY, get_settings),
    route!("PATCH" "/v1/tenant/settings", Manage, ManageSettings, Some(Action::SettingsChange), MAX_BODY, patch_settings),
    route!("GET" "/v1/incidents", Manage, ReadIncidents, None, MAX_BODY, list_incidents),
    route!("POST" "/v1/incidents", Manage, RunIncidents, Some(Action::IncidentOpen), MAX_BODY, open_incident),
    route!("DELETE" "/v1/incidents/{incident_id}", Manage, RunIncidents, Some(Action::IncidentClose), MAX_BODY, close_incident),
];

/// The values of `template`'s `{name}` segments if `path` matches it.
pub(crate) fn match_template<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
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

/// The unit serving `path` (whatever the method), if it is a route's.
pub(crate) fn unit_of(path: &str) -> Option<Routes> {
    ROUTES
        .iter()
        .find(|r| match_template(r.path, path).is_some())
        .map(|r| r.unit)
}

/// The route `method` and `path` ask for on a unit serving `serves`, with
/// its path parameters: 404 for no route (or another unit's), 405 with the
/// path's methods for another method.
pub(crate) fn resolve<'p>(
    serves: Routes,
    method: &str,
    path: &'p str,
) -> Result<(&'static Route, Vec<&'p str>), HttpError> {
    let mut allow: Vec<&str> = Vec::new();
    let mut unit = None;
    let mut found = None;
    for r in ROUTES {
        let Some(params) = match_template(r.path, path) else {
            continue;
        };
        unit = Some(r.unit);
        allow.push(r.method);
        if r.method == method {
            found = Some((r, params));
        }
    }
    match unit {
        Some(u) if serves == Routes::All || serves == u => {}
        _ => return Err(HttpError::RouteNotFound),
    }
    found.ok_or_else(|| HttpError::MethodNotAllowed {
        allow: allow.join(", "),
    })
}

#[cfg(test)]
mod tests;
