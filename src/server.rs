//! The local server: the same `http::handle` as Lambda, behind axum, plus
//! the development identity provider's discovery and JWKS documents.

use crate::app::Portal;
use crate::devidp::DevIdentityProvider;
use crate::http::{self as api, ApiRequest, MAX_BODY, Routes};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    portal: Portal,
    idp: Option<Arc<DevIdentityProvider>>,
}

/// The OpenAPI 3.1 document of the API (`openapi.json` in the repository).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"));

pub fn router(portal: Portal, idp: Option<Arc<DevIdentityProvider>>) -> Router {
    // Other methods fall through to the API's own 404 problem answer.
    let mut r = Router::new().route("/openapi.json", get(openapi).fallback(handle));
    if idp.is_some() {
        r = r
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks));
    }
    r.fallback(handle).with_state(AppState { portal, idp })
}

/// Serves until the future `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    portal: Portal,
    idp: Option<Arc<DevIdentityProvider>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(portal, idp).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn openapi() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "no-cache"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

async fn discovery(State(s): State<AppState>) -> Response {
    match &s.idp {
        Some(idp) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            idp.discovery().to_string(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn jwks(State(s): State<AppState>) -> Response {
    match &s.idp {
        Some(idp) => (
            [(http::header::CONTENT_TYPE, "application/json")],
            idp.jwks_json(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn handle(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY + 1).await {
        Ok(b) => b,
        // Over the limit (or a broken stream): an over-long stand-in makes
        // `handle` answer 413 with the usual problem body and headers.
        Err(_) => bytes::Bytes::from(vec![0u8; MAX_BODY + 1]),
    };
    let req = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        source_ip: Some(peer.ip().to_string()),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let (parts, body) = api::handle(&s.portal, Routes::All, req).await.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}
