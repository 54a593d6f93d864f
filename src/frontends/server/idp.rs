//! The development identity provider's routes (feature `dev-idp`):
//! discovery, JWKS and the authorization code flow with PKCE, and the
//! loopback-only host guard of a server that is its own identity provider.

use super::{AppState, MAX_FORM, set_header, set_headers};
use crate::frontends::web;
use crate::tools::devidp::DevIdentityProvider;
use crate::tools::devidp::{AuthorizeRequest, FlowError, SignIn};
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// `r` with the provider's routes.
pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/authorize", get(authorize_form).post(authorize_submit))
        .route("/token", post(token))
}

/// Without `PORTAL_ISSUER` this server is its own identity provider, bound
/// to loopback. A web page elsewhere can still make its own name resolve to
/// 127.0.0.1 (DNS rebinding) and drive the sign-in form, `/token` and the
/// API as a same-origin page; its requests carry its name in `Host`. So
/// every route answers only requests addressed to a loopback name with this
/// server's port (HTTP/1.1's request-target authority, if any, too), and
/// anything else gets 421 Misdirected Request.
pub(super) async fn dev_host_guard(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(idp) = &s.idp else {
        return next.run(req).await;
    };
    let hosts: Vec<&str> = req
        .headers()
        .get_all(http::header::HOST)
        .iter()
        .map(|h| h.to_str().unwrap_or(""))
        .collect();
    let host_ok = match hosts.as_slice() {
        [one] => idp.is_own_authority(one),
        // HTTP/2 has no Host header: its `:authority` is the URI's.
        [] => req.uri().authority().is_some(),
        _ => false,
    };
    let target_ok = req
        .uri()
        .authority()
        .is_none_or(|a| idp.is_own_authority(a.as_str()));
    if host_ok && target_ok {
        return next.run(req).await;
    }
    tracing::warn!(
        host = ?hosts.first().copied().unwrap_or(""),
        "refused a request for another host (421): this development server answers only its loopback names"
    );
    misdirected()
}

/// 421 Misdirected Request as `application/problem+json`.
fn misdirected() -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "type": "https://recovery-portal.dev/problems/misdirected-request",
        "title": "Misdirected request",
        "status": 421,
        "detail": "This local development server answers only requests addressed to localhost, 127.0.0.1 or [::1] with its own port. Open the portal at the address it printed on start.",
        "request_id": request_id,
    });
    let mut resp = (http::StatusCode::MISDIRECTED_REQUEST, body.to_string()).into_response();
    set_header(&mut resp, "content-type", "application/problem+json");
    set_header(&mut resp, "cache-control", "no-store");
    set_header(&mut resp, "x-content-type-options", "nosniff");
    set_header(&mut resp, "x-request-id", &request_id);
    resp
}

async fn discovery(State(s): State<AppState>) -> Response {
    match &s.idp {
        Some(idp) => (
            [
                (http::header::CONTENT_TYPE, "application/json"),
                // Public documents: a page on another origin may read them.
                (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            idp.discovery().to_string(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn jwks(State(s): State<AppState>) -> Response {
    match &s.idp {
        Some(idp) => (
            [
                (http::header::CONTENT_TYPE, "application/json"),
                (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            idp.jwks_json(),
        )
            .into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// A page of the provider: its own CSP (the form may only post here and
/// redirect to the client), never cached, never framed.
fn idp_html(status: http::StatusCode, body: String, form_action: &str) -> Response {
    let mut resp = (status, body).into_response();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    set_headers(&mut resp, &web::page_headers(&csp));
    set_header(&mut resp, "content-type", "text/html; charset=utf-8");
    resp
}

fn idp_error(status: http::StatusCode, e: &FlowError) -> Response {
    idp_html(status, crate::tools::devidp::error_page(e), "'none'")
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

async fn read_form(req: Request) -> Result<(http::HeaderMap, Vec<(String, String)>), ()> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| ())?;
    Ok((parts.headers, form_pairs(&bytes)))
}

/// `GET /authorize`: the sign-in form for a valid request.
async fn authorize_form(State(s): State<AppState>, req: Request) -> Response {
    let Some(idp) = &s.idp else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let params = form_pairs(req.uri().query().unwrap_or("").as_bytes());
    match AuthorizeRequest::parse(&params).and_then(|ar| own_redirect(idp, ar)) {
        Ok(ar) => {
            let action = format!("'self' {}", ar.redirect_origin);
            let page =
                crate::tools::devidp::sign_in_page(&ar, "contoso", "alice", &ar.form_scope(), None);
            idp_html(http::StatusCode::OK, page, &action)
        }
        Err(e) => idp_error(http::StatusCode::BAD_REQUEST, &e),
    }
}

/// The request, if it redirects to the portal page this server serves
/// (`DevIdentityProvider::is_own_redirect_uri`): the dev provider signs in
/// nothing else.
fn own_redirect(
    idp: &DevIdentityProvider,
    ar: AuthorizeRequest,
) -> Result<AuthorizeRequest, FlowError> {
    if idp.is_own_redirect_uri(&ar.redirect_uri) {
        Ok(ar)
    } else {
        Err(FlowError(format!(
            "redirect_uri must be the address of the portal page this server serves, e.g. {}/",
            idp.issuer
        )))
    }
}

/// `POST /authorize`: the submitted form; a code and a redirect to the client.
async fn authorize_submit(State(s): State<AppState>, req: Request) -> Response {
    let Some(idp) = &s.idp else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let Ok((headers, form)) = read_form(req).await else {
        return idp_error(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            &FlowError("The sign-in form is too large.".into()),
        );
    };
    if !is_form(&headers) {
        return idp_error(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &FlowError("Submit the sign-in form as application/x-www-form-urlencoded.".into()),
        );
    }
    // The request's parameters travel as hidden fields (its scope as
    // `requested_scope`); `tenant`, `user` and `scope` are the person's.
    let request: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "tenant" | "user" | "scope"))
        .map(|(k, v)| {
            let k = if k == "requested_scope" { "scope" } else { k };
            (k.to_owned(), v.clone())
        })
        .collect();
    let ar = match AuthorizeRequest::parse(&request).and_then(|ar| own_redirect(idp, ar)) {
        Ok(ar) => ar,
        Err(e) => return idp_error(http::StatusCode::BAD_REQUEST, &e),
    };
    let field = |name: &str| {
        let mut values = form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    };
    let (tenant, user, scope) = (
        field("tenant").unwrap_or(""),
        field("user").unwrap_or(""),
        field("scope").unwrap_or(""),
    );
    match SignIn::parse(tenant, user, scope) {
        Ok(who) => {
            let now = s.portal.clock.now().unix_timestamp();
            let location = idp.issue_code(&ar, who, now);
            let mut resp = http::StatusCode::SEE_OTHER.into_response();
            set_header(&mut resp, "location", &location);
            set_header(&mut resp, "cache-control", "no-store");
            set_header(&mut resp, "referrer-policy", "no-referrer");
            resp
        }
        Err(e) => {
            let action = format!("'self' {}", ar.redirect_origin);
            let page = crate::tools::devidp::sign_in_page(&ar, tenant, user, scope, Some(&e));
            idp_html(http::StatusCode::BAD_REQUEST, page, &action)
        }
    }
}

/// `POST /token`: the authorization_code grant (public client, PKCE).
async fn token(State(s): State<AppState>, req: Request) -> Response {
    let Some(idp) = &s.idp else {
        return http::StatusCode::NOT_FOUND.into_response();
    };
    let result = match read_form(req).await {
        Err(()) => Err(crate::tools::devidp::TokenError {
            error: "invalid_request",
            description: format!("the request body must be at most {MAX_FORM} bytes"),
        }),
        Ok((headers, _)) if !is_form(&headers) => Err(crate::tools::devidp::TokenError {
            error: "invalid_request",
            description: "send the parameters as application/x-www-form-urlencoded".into(),
        }),
        Ok((_, form)) => idp.redeem(&form, s.portal.clock.now().unix_timestamp()),
    };
    let (status, body) = match result {
        Ok(tokens) => (http::StatusCode::OK, tokens),
        Err(e) => (http::StatusCode::BAD_REQUEST, e.to_json()),
    };
    let mut resp = (status, body.to_string()).into_response();
    set_header(&mut resp, "content-type", "application/json");
    set_header(&mut resp, "cache-control", "no-store");
    set_header(&mut resp, "pragma", "no-cache");
    set_header(&mut resp, "access-control-allow-origin", "*");
    set_header(&mut resp, "x-content-type-options", "nosniff");
    resp
}

#[cfg(test)]
mod tests {
    /// `portal serve`'s default page client is the one this provider serves.
    #[test]
    fn the_page_default_client_is_the_dev_providers() {
        assert_eq!(
            crate::frontends::web::DEFAULT_CLIENT_ID,
            crate::tools::devidp::DEV_CLIENT_ID
        );
    }
}
