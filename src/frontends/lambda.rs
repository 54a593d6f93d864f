//! The Lambda front end: API Gateway HTTP API (payload 2.0) events in and
//! out of `api::handle`. The function binaries build a `Portal` once, at
//! init, and hand `handle` to `lambda_http::run`.

use crate::api::{self, ApiRequest, Routes};
use crate::app;
use crate::config::Backend;
use crate::domain::error::{ApiError, Cause, Unavailable};
use crate::domain::ports::Portal;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Builds the portal for a function serving `routes` from environment
/// variables; the message names the variable at fault.
pub async fn portal_from_env(routes: Routes) -> Result<Portal, String> {
    let config = config_from_lookup(routes, |k| std::env::var(k).ok())?;
    let auth = config.require_auth().map_err(|e| e.to_string())?.clone();
    let verifier = app::jwt_verifier(&auth).map_err(|e| e.to_string())?;
    app::from_config(&config, verifier).await
}

/// The configuration a function serving `routes` accepts: stricter than the
/// local server's, since a function must never serve the embedded demo data
/// by default nor decrypt with an unpinned key.
pub fn config_from_lookup(
    routes: Routes,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<crate::config::Config, String> {
    if lookup("PORTAL_BACKEND").is_none_or(|v| v.trim().is_empty()) {
        return Err(
            "PORTAL_BACKEND: is required in Lambda: set `aws` (or `embedded` for a demo on built-in data)"
                .into(),
        );
    }
    let config = crate::config::Config::from_lookup(lookup).map_err(|e| e.to_string())?;
    config.require_auth().map_err(|e| e.to_string())?;
    if let Backend::Aws {
        kms_key_id: None, ..
    } = &config.backend
        && routes != Routes::List
    {
        // Decrypting with an unpinned key would accept any key's ciphertext.
        return Err(
            "PORTAL_KMS_KEY_ID: is required to retrieve keys with PORTAL_BACKEND=aws".into(),
        );
    }
    Ok(config)
}

/// Longest a request may take: below the function timeout (10 s by
/// default), so a slow dependency ends in a 503 rather than a Lambda error.
const REQUEST_BUDGET: Duration = Duration::from_secs(8);
/// Kept free before the invocation deadline to send the answer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

pub fn to_api_request(req: Request) -> ApiRequest {
    let (request_id, source_ip) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            (ctx.request_id.clone(), ctx.http.source_ip.clone())
        }
        _ => (None, None),
    };
    let (parts, body) = req.into_parts();
    let body = match body {
        Body::Empty => bytes::Bytes::new(),
        Body::Text(t) => bytes::Bytes::from(t),
        Body::Binary(b) => bytes::Bytes::from(b),
        _ => bytes::Bytes::new(),
    };
    ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        source_ip,
        request_id: request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    }
}

/// The Lambda handler: never fails, every outcome is an HTTP answer.
pub async fn handle(
    portal: &Portal,
    routes: Routes,
    req: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let budget = req
        .lambda_context_ref()
        .and_then(|c| UNIX_EPOCH.checked_add(Duration::from_millis(c.deadline)))
        .and_then(|d| d.duration_since(SystemTime::now()).ok())
        .map(|left| left.saturating_sub(DEADLINE_MARGIN))
        .unwrap_or(REQUEST_BUDGET)
        .min(REQUEST_BUDGET);
    let req = to_api_request(req);
    let request_id = req.request_id.clone();
    let resp = match tokio::time::timeout(budget, api::handle(portal, routes, req)).await {
        Ok(r) => r,
        Err(_) => {
            // Dropping the future abandons the request wherever it was: before
            // the audit commit nothing was written, after it nothing is sent.
            tracing::error!(%request_id, "request exceeded its time budget");
            let e = ApiError::Unavailable(Unavailable::new(Cause::Request, "time budget exceeded"));
            api::with_standard_headers(
                api::problem(&e.into(), &request_id),
                &request_id,
                routes != Routes::List,
            )
        }
    };
    let (parts, body) = resp.into_parts();
    let body = match String::from_utf8(body) {
        Ok(s) => Body::Text(s),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(routes: Routes, pairs: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config_from_lookup(routes, |k| m.get(k).cloned())
    }

    const AUTH: [(&str, &str); 2] = [
        ("PORTAL_ISSUER", "https://login.example/v2.0"),
        ("PORTAL_AUDIENCE", "api://portal"),
    ];

    #[test]
    fn a_function_needs_an_explicit_backend() {
        for routes in [Routes::List, Routes::Key] {
            for unset in [None, Some(""), Some("  ")] {
                let mut env = AUTH.to_vec();
                if let Some(v) = unset {
                    env.push(("PORTAL_BACKEND", v));
                }
                let e = check(routes, &env).unwrap_err();
                assert!(e.starts_with("PORTAL_BACKEND: is required"), "{e}");
            }
            let mut env = AUTH.to_vec();
            env.push(("PORTAL_BACKEND", "embedded"));
            assert_eq!(check(routes, &env).unwrap().backend, Backend::Embedded);
        }
        let mut env = AUTH.to_vec();
        env.extend([("PORTAL_BACKEND", "aws"), ("PORTAL_KMS_KEY_ID", "alias/k")]);
        assert!(matches!(
            check(Routes::Key, &env).unwrap().backend,
            Backend::Aws { .. }
        ));
        // The other rules still hold.
        let e = check(Routes::Key, &[("PORTAL_BACKEND", "embedded")]).unwrap_err();
        assert!(e.starts_with("PORTAL_ISSUER"), "{e}");
        let mut env = AUTH.to_vec();
        env.push(("PORTAL_BACKEND", "aws"));
        assert!(
            check(Routes::Key, &env)
                .unwrap_err()
                .starts_with("PORTAL_KMS_KEY_ID")
        );
        assert!(check(Routes::List, &env).is_ok());
    }
}
