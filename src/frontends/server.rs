//! The local server: the same `api::handle` as Lambda, behind axum, plus
//! the development identity provider's discovery and JWKS documents.

use crate::api::{self, ApiRequest, MAX_BODY, Routes};
use crate::ports::Portal;
use crate::tools::devidp::DevIdentityProvider;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone)]
struct AppState {
    portal: Portal,
    idp: Option<Arc<DevIdentityProvider>>,
}

pub fn router(portal: Portal, idp: Option<Arc<DevIdentityProvider>>) -> Router {
    let mut r = Router::new();
    if idp.is_some() {
        r = r
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks.json", get(jwks));
    }
    r.fallback(handle)
        .layer(middleware::from_fn(read_body_first))
        .with_state(AppState { portal, idp })
}

/// Bytes of a too-long body the server still reads, and discards, so the
/// client's connection stays usable for its next request...
const DRAIN_LIMIT: usize = 64 * 1024;
/// ...and the longest it waits for them.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads every request's body before any route answers. An answer given
/// with part of the body still unread would make hyper drop the connection
/// after it, and a keep-alive client's next request on it would fail. So a
/// too-long body is read to its end when that is cheap (at most
/// `DRAIN_LIMIT` bytes, within `DRAIN_TIME`); otherwise the answer says
/// `Connection: close`. Routes get the body in memory: all of it, or, when
/// it is over `MAX_BODY`, an over-long stand-in.
async fn read_body_first(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (body, reusable) = read_bounded(body, declared).await;
    let mut resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await;
    if !reusable {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// The body (or an over-long stand-in), and whether the connection was left
/// at a request boundary.
async fn read_bounded(body: axum::body::Body, declared: Option<u64>) -> (bytes::Bytes, bool) {
    let too_long = || bytes::Bytes::from(vec![0u8; MAX_BODY + 1]);
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return (too_long(), false);
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    loop {
        match stream.next().await {
            None => return (buf.freeze(), true),
            // A broken stream: nothing sensible follows on this connection.
            Some(Err(_)) => return (too_long(), false),
            Some(Ok(chunk)) if buf.len() + chunk.len() <= MAX_BODY => {
                buf.extend_from_slice(&chunk);
            }
            Some(Ok(chunk)) => {
                let mut seen = buf.len() + chunk.len();
                drop(buf);
                let drained = tokio::time::timeout(DRAIN_TIME, async {
                    while let Some(chunk) = stream.next().await {
                        seen += chunk.map_err(|_| ())?.len();
                        if seen > DRAIN_LIMIT {
                            return Err(());
                        }
                    }
                    Ok(())
                })
                .await;
                return (too_long(), matches!(drained, Ok(Ok(()))));
            }
        }
    }
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
