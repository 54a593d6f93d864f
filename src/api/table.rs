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

/// Most `{name}` segments of any template (checked below, at compile time).
const MAX_PARAMS: usize = 2;

/// Whether `path` matches `template`, compared byte by byte without
/// splitting either (this runs against every template on every request):
/// a `{name}` segment takes one non-empty path segment, stored in `params`
/// in order (their count is the answer); every other byte, `/` included,
/// must be equal. Same answer as
/// splitting both at `/` and comparing segments, because every `{name}`
/// fills a whole segment (`templates_well_formed`).
fn matches<'p>(template: &str, path: &'p str, params: &mut [&'p str; MAX_PARAMS]) -> Option<usize> {
    let (t, p) = (template.as_bytes(), path.as_bytes());
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < t.len() {
        if t[i] == b'{' {
            let end = p[j..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(p.len(), |k| j + k);
            if end == j {
                return None;
            }
            params[n] = &path[j..end];
            n += 1;
            j = end;
            i += t[i..]
                .iter()
                .position(|&b| b == b'}')
                .map_or(t.len(), |k| k + 1);
        } else if p.get(j) == Some(&t[i]) {
            i += 1;
            j += 1;
        } else {
            return None;
        }
    }
    (j == p.len()).then_some(n)
}

/// Whether every template starts with `/` and each of its `{` opens a
/// whole `{name}` segment, at most `MAX_PARAMS` of them: what `matches`
/// relies on. Evaluated by the compiler, so free at init.
const fn templates_well_formed(routes: &[Route]) -> bool {
    let mut r = 0;
    while r < routes.len() {
        let t = routes[r].path.as_bytes();
        if t.is_empty() || t[0] != b'/' {
            return false;
        }
        let (mut i, mut params) = (0, 0);
        while i < t.len() {
            match t[i] {
                b'{' => {
                    if t[i - 1] != b'/' {
                        return false;
                    }
                    params += 1;
                    let mut k = i + 1;
                    while k < t.len() && t[k] != b'}' {
                        if t[k] == b'/' || t[k] == b'{' {
                            return false;
                        }
                        k += 1;
                    }
                    if k == t.len() || k == i + 1 || (k + 1 < t.len() && t[k + 1] != b'/') {
                        return false;
                    }
                    i = k;
                }
                b'}' => return false,
                _ => {}
            }
            i += 1;
        }
        if params > MAX_PARAMS {
            return false;
        }
        r += 1;
    }
    true
}

const _: () = assert!(templates_well_formed(ROUTES));

/// What the table says about one request, from one pass over it.
#[derive(Debug)]
pub(crate) struct Resolved<'p> {
    /// The unit whose route `path` is (whatever the method, whichever unit
    /// asks): a key route's answers carry `Pragma`, even its 404 and 405.
    pub unit: Option<Routes>,
    /// The route with its path parameters, or 404 for no route (or another
    /// unit's) and 405 with the path's methods for another method.
    pub route: Result<(&'static Route, Vec<&'p str>), HttpError>,
}

/// The route `method` and `path` ask for on a unit serving `serves`.
pub(crate) fn resolve<'p>(serves: Routes, method: &str, path: &'p str) -> Resolved<'p> {
    let mut unit = None;
    let mut found = None;
    let mut params = [""; MAX_PARAMS];
    for r in ROUTES {
        // One template, one unit (tested): its other methods share the unit.
        let Some(n) = matches(r.path, path, &mut params) else {
            continue;
        };
        unit = Some(r.unit);
        if r.method == method {
            found = Some((r, params[..n].to_vec()));
        }
    }
    let route = match unit {
        Some(u) if serves == Routes::All || serves == u => found.ok_or_else(|| {
            // Only a 405 needs the path's other methods: a second pass there.
            let mut scratch = [""; MAX_PARAMS];
            let allow: Vec<&str> = ROUTES
                .iter()
                .filter(|r| matches(r.path, path, &mut scratch).is_some())
                .map(|r| r.method)
                .collect();
            HttpError::MethodNotAllowed {
                allow: allow.join(", "),
            }
        }),
        _ => Err(HttpError::RouteNotFound),
    };
    Resolved { unit, route }
}

#[cfg(test)]
mod tests;
