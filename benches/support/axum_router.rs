//! Prototype, not production code (issue 19, BENCHMARKS.md §6): the route
//! table served as an axum `Router` through `lambda_http`, as the Lambda
//! runtime's `http-axum` example does, to measure against `api::handle`'s
//! own table dispatch.
//!
//! One `MethodRouter` per path template of `api::ROUTES` (axum 0.8 reads
//! `{name}` segments as the table writes them); each route, a method the
//! path does not serve (405) and an unknown path (404) all end in the same
//! pipeline the functions run, `frontends::lambda::handle`, so answers are
//! identical. That pipeline routes again through the table: the
//! measurement subtracts one table lookup to estimate a dispatcher that
//! routes only once (BENCHMARKS.md §6).
#![allow(dead_code)]

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::Request as AxumRequest;
use axum::routing::{MethodFilter, MethodRouter};
use http::Response;
use recovery_portal::api::{ROUTES, Route, Routes};
use recovery_portal::domain::ports::Portal;
use recovery_portal::frontends::lambda;

/// The routes a unit serves, as the table lists them.
pub fn served(serves: Routes) -> impl Iterator<Item = &'static Route> {
    ROUTES
        .iter()
        .filter(move |r| serves == Routes::All || r.unit == serves)
}

/// The path templates a unit serves, each once, in table order.
fn templates(serves: Routes) -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for r in served(serves) {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    paths
}

pub fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        other => panic!("route table method {other} has no axum filter"),
    }
}

/// The router for a function serving `serves`: every route through the
/// function's pipeline.
pub fn router(portal: &'static Portal, serves: Routes) -> Router {
    let mut router = Router::new();
    for path in templates(serves) {
        let mut methods = MethodRouter::new();
        for r in served(serves).filter(|r| r.path == path) {
            let unit = r.unit;
            methods = methods.on(method_filter(r.method), move |req: AxumRequest| {
                pipeline(portal, unit, req)
            });
        }
        // Another method: the pipeline answers 405 with the table's Allow.
        methods = methods.fallback(move |req: AxumRequest| pipeline(portal, serves, req));
        router = router.route(path, methods);
    }
    router.fallback(move |req: AxumRequest| pipeline(portal, serves, req))
}

/// The same router shape with handlers that do nothing: axum's own
/// routing and body conversion, to compare with a bare table lookup.
pub fn trivial_router(serves: Routes) -> Router {
    let mut router = Router::new();
    for path in templates(serves) {
        let mut methods = MethodRouter::new();
        for r in served(serves).filter(|r| r.path == path) {
            methods = methods.on(method_filter(r.method), || async {});
        }
        router = router.route(path, methods.fallback(|| async {}));
    }
    router.fallback(|| async {})
}

/// An axum request through the function's pipeline: its body collected
/// (already in memory in Lambda), handed to `lambda::handle` as the
/// functions do, the answer's body back into axum's type.
async fn pipeline(portal: &'static Portal, unit: Routes, req: AxumRequest) -> Response<AxumBody> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Binary(bytes.into())
    };
    let Ok(resp) = lambda::handle(portal, unit, http::Request::from_parts(parts, body)).await;
    resp.map(|b| match b {
        lambda_http::Body::Text(s) => AxumBody::from(s),
        lambda_http::Body::Binary(v) => AxumBody::from(v),
        _ => AxumBody::empty(),
    })
}

/// The route `method` and `path` name among `serves`' routes, matched as
/// `api::table::resolve` does (crate-private there, so copied): the cost
/// of the table lookup alone.
pub fn table_lookup<'p>(
    serves: Routes,
    method: &str,
    path: &'p str,
) -> Result<(&'static Route, Vec<&'p str>), Option<String>> {
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
        _ => return Err(None),
    }
    found.ok_or_else(|| Some(allow.join(", ")))
}

/// `api::table::match_template`, copied.
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
