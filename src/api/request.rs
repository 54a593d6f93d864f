//! The request every front end (API Gateway, local server) hands to
//! `api::handle`, and what the audit trail records of it.

use crate::domain::keys::RequestMeta;
use bytes::Bytes;
use http::{HeaderMap, Method, header};

/// A request as every front end (API Gateway, local server) delivers it.
/// Its `Debug` form leaves out the bearer token (see below).
#[derive(Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source_ip: Option<String>,
    /// The front end's request id (API Gateway's, or a fresh one locally);
    /// a valid client `X-Request-Id` takes precedence so retries keep it.
    pub request_id: String,
}

/// Debug output may end up in a log: the `Authorization` (and any cookie)
/// value is shown as `<redacted>`, and the body only by its length.
impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'a>(&'a HeaderMap);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let secret = |n: &header::HeaderName| {
                    [
                        header::AUTHORIZATION,
                        header::COOKIE,
                        header::PROXY_AUTHORIZATION,
                    ]
                    .contains(n)
                };
                let mut m = f.debug_map();
                for (n, v) in self.0 {
                    if secret(n) {
                        m.entry(n, &"<redacted>");
                    } else {
                        m.entry(n, v);
                    }
                }
                m.finish()
            }
        }
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &Headers(&self.headers))
            .field("body_len", &self.body.len())
            .field("source_ip", &self.source_ip)
            .field("request_id", &self.request_id)
            .finish()
    }
}

/// A client's `X-Request-Id`, if it is one we can safely echo and log.
pub(crate) fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-request-id")?.to_str().ok()?;
    let ok = (8..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| v.to_owned())
}

/// What the audit trail records of the request. The user agent is the
/// client's own text: stored without control characters (a TAB or a line
/// break would forge columns or lines in an export) and at most 256
/// characters.
pub(crate) fn request_meta(req: &ApiRequest) -> RequestMeta {
    RequestMeta {
        request_id: req.request_id.clone(),
        client_request_id: client_request_id(&req.headers).is_some(),
        source_ip: req.source_ip.clone(),
        user_agent: req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().filter(|c| !c.is_control()).take(256).collect()),
    }
}
