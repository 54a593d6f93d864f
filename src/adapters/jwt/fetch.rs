//! Fetching the issuer's documents: which URLs may be fetched, the HTTP
//! client, discovery, and a bounded GET.

pub use crate::config::{IdpRoots, check_fetch_url};
use serde::Deserialize;
use std::time::Duration;

/// Whole fetch (discovery and JWKS each), and connecting: below the
/// functions' request budget, so an outage answers 503 in time.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT: usize = 512 * 1024;

pub(super) enum FetchError {
    /// Refused, timed out, 5xx, malformed, no usable keys.
    Unreachable(String),
    /// The issuer's documents contradict the configuration.
    Misconfigured(String),
}

/// The HTTP client that fetches discovery documents and JWKS: short
/// timeouts, no redirects, the compiled-in roots. Built at init (see
/// `setup`), so a platform that cannot provide it stops the process there
/// rather than at the first token.
pub fn jwks_http_client() -> Result<reqwest::Client, String> {
    jwks_http_client_with(IdpRoots::Compiled)
}

/// [`jwks_http_client`] trusting `roots`.
pub fn jwks_http_client_with(roots: IdpRoots) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    let builder = match roots {
        IdpRoots::System => builder,
        IdpRoots::Compiled => builder.tls_backend_preconfigured(compiled_roots_tls()?),
    };
    builder.build().map_err(|e| {
        use std::error::Error;
        let mut msg = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        format!("cannot build the HTTP client that fetches the issuer's signing keys: {msg}")
    })
}

/// A rustls configuration on aws-lc with Mozilla's roots, already parsed
/// into trust anchors at compile time: no file, no parsing at start.
fn compiled_roots_tls() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS for the issuer's signing keys: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// What `{issuer}/.well-known/openid-configuration` names as its `issuer`
/// (`portal serve` compares it with `PORTAL_ISSUER` at start). `Err`: the
/// document could not be fetched or read.
pub async fn discovered_issuer(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
    }
    let d = discovery_url(issuer);
    check_fetch_url(&d).map_err(|e| format!("{d} {e}"))?;
    let body = get(http, &d).await.map_err(|e| match e {
        FetchError::Unreachable(e) | FetchError::Misconfigured(e) => e,
    })?;
    serde_json::from_slice::<Discovery>(&body)
        .map(|doc| doc.issuer)
        .map_err(|e| format!("{d}: not a discovery document: {e}"))
}

/// OIDC Discovery §4: the issuer with any trailing slash removed, then
/// `/.well-known/openid-configuration`.
pub(super) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// GETs `url`, reading at most `MAX_DOCUMENT` bytes of a 2xx answer.
pub(super) async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, FetchError> {
    let fail = |e: String| FetchError::Unreachable(format!("{url}: {e}"));
    let mut resp = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.to_string()))?;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(fail(format!("document over {MAX_DOCUMENT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
