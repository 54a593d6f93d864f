//! The Lambda front end: API Gateway HTTP API (payload 2.0) events in and
//! out of `http::handle`. The function binaries build a `Portal` once, at
//! init, and hand `handle` to `lambda_http::run`.

use crate::app::{self, Portal};
use crate::http::{self as api, ApiRequest, Routes};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

/// Builds the portal from environment variables; the message names the
/// variable at fault.
pub async fn portal_from_env() -> Result<Portal, String> {
    let config = crate::config::Config::from_env().map_err(|e| e.to_string())?;
    let auth = config.require_auth().map_err(|e| e.to_string())?.clone();
    app::from_config(&config, app::jwt_verifier(&auth)).await
}

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
    let resp = api::handle(portal, routes, to_api_request(req)).await;
    let (parts, body) = resp.into_parts();
    let body = match String::from_utf8(body) {
        Ok(s) => Body::Text(s),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    Ok(Response::from_parts(parts, body))
}
