//! A small Microsoft Graph client for the sync: a client-credentials token
//! (cached until shortly before it expires), GETs with Graph's throttling
//! rules (429/503 honour `Retry-After`, bounded), OData paging through
//! `@odata.nextLink`, and the request headers the BitLocker API documents
//! (`User-Agent`, `ocp-client-name`, `ocp-client-version`).
//!
//! Bodies are read into zeroized buffers, because a key read's body holds a
//! recovery password; no body is ever logged or put into an error.

use super::certificate::{self, ClientCertificate};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Attempts per request when Graph throttles (429) or is unavailable (503).
pub const MAX_ATTEMPTS: u32 = 5;
/// The longest `Retry-After` we wait; a longer one fails the run (the next
/// run resumes: everything stored is skipped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Wait when a 429/503 has no `Retry-After`: this, doubled per attempt.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);
/// A token is renewed this long before Entra says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// The `ocp-client-name` Graph's BitLocker API asks clients to send.
pub const CLIENT_NAME: &str = "recovery-portal sync";

/// How the application proves who it is to Entra: exactly one of
/// `PORTAL_ENTRA_CLIENT_SECRET` and `PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE`.
pub enum ClientCredential {
    Secret(Zeroizing<String>),
    Certificate(ClientCertificate),
}

/// How the sync reaches Entra: `PORTAL_ENTRA_*` and `PORTAL_GRAPH_URL`.
pub struct GraphConfig {
    /// The Entra tenant (GUID or verified domain) the app is registered in.
    pub entra_tenant: String,
    pub client_id: String,
    pub credential: ClientCredential,
    /// `https://graph.microsoft.com` or a national cloud's Graph.
    pub graph_url: Url,
    /// `https://login.microsoftonline.com` or a national cloud's login.
    pub login_url: Url,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {detail}")]
    Request { what: String, detail: String },
    /// 404 of one entity (a key deleted between listing and reading it).
    #[error("{0}: not found")]
    NotFound(String),
}

/// Counters for the summary: what the run cost Graph (and Entra's audit log).
#[derive(Debug, Default)]
pub struct GraphStats {
    pub requests: AtomicUsize,
    pub retries: AtomicUsize,
    /// `$select=key` reads: each one is an Entra audit entry (KeyManagement).
    pub key_reads: AtomicUsize,
}

pub struct GraphClient {
    http: reqwest::Client,
    config: GraphConfig,
    token: tokio::sync::Mutex<Option<(Zeroizing<String>, Instant)>>,
    pub stats: GraphStats,
}

impl GraphConfig {
    /// From `lookup` (the environment): every problem at once, naming the
    /// variable; never echoing the secret.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut errors = Vec::new();
        let mut required = |name: &str| match lookup(name).filter(|v| !v.trim().is_empty()) {
            Some(v) => v.trim().to_owned(),
            None => {
                errors.push(format!("{name}: is required"));
                String::new()
            }
        };
        let entra_tenant = required("PORTAL_ENTRA_TENANT_ID");
        let client_id = required("PORTAL_ENTRA_CLIENT_ID");
        let credential = credential(&lookup).map_err(|e| errors.push(e)).ok();
        let url = |name: &str, default: &str, errors: &mut Vec<String>| {
            let raw = lookup(name).unwrap_or_else(|| default.to_owned());
            base_url(&raw)
                .map_err(|e| errors.push(format!("{name}: {e}")))
                .ok()
        };
        let graph_url = url(
            "PORTAL_GRAPH_URL",
            "https://graph.microsoft.com",
            &mut errors,
        );
        let login_url = url(
            "PORTAL_ENTRA_LOGIN_URL",
            "https://login.microsoftonline.com",
            &mut errors,
        );
        let tenant_ok = !entra_tenant.is_empty()
            && entra_tenant.len() <= 256
            && entra_tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
        if !entra_tenant.is_empty() && !tenant_ok {
            errors.push("PORTAL_ENTRA_TENANT_ID: must be the tenant's GUID or domain".into());
        }
        match (graph_url, login_url, credential) {
            (Some(graph_url), Some(login_url), Some(credential)) if errors.is_empty() => Ok(Self {
                entra_tenant,
                client_id,
                credential,
                graph_url,
                login_url,
            }),
            _ => Err(errors.join("; ")),
        }
    }
}

const SECRET_VAR: &str = "PORTAL_ENTRA_CLIENT_SECRET";
const CERTIFICATE_VAR: &str = "PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE";

/// Exactly one credential: the secret, or the certificate file (read and
/// checked here, so a wrong file fails before any request).
fn credential(lookup: &impl Fn(&str) -> Option<String>) -> Result<ClientCredential, String> {
    let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    match (set(SECRET_VAR), set(CERTIFICATE_VAR)) {
        (Some(secret), None) => Ok(ClientCredential::Secret(Zeroizing::new(
            secret.trim().to_owned(),
        ))),
        (None, Some(path)) => {
            let path = path.trim();
            let text = std::fs::read(path)
                .map(Zeroizing::new)
                .map_err(|e| format!("{CERTIFICATE_VAR}: {path}: {e}"))?;
            ClientCertificate::from_pem(&text)
                .map(ClientCredential::Certificate)
                .map_err(|e| format!("{CERTIFICATE_VAR}: {path} {e}"))
        }
        (Some(_), Some(_)) => Err(format!(
            "{SECRET_VAR} and {CERTIFICATE_VAR} are both set: set exactly one (the certificate is the stronger credential)"
        )),
        (None, None) => Err(format!(
            "{SECRET_VAR} or {CERTIFICATE_VAR} (a PEM file with the certificate and its private key) is required"
        )),
    }
}

/// A base URL: https, or http to a loopback address (tests, local fakes);
/// no credentials, query or fragment. Kept without a trailing slash.
pub fn base_url(raw: &str) -> Result<Url, String> {
    let url = crate::adapters::jwt::check_fetch_url(raw.trim_end_matches('/'))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(url)
}

/// Same scheme, host and port: a `nextLink` elsewhere would be sent our token.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Graph's `Retry-After` (seconds), else exponential backoff.
fn retry_wait(resp: &reqwest::Response, attempt: u32) -> Duration {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BACKOFF * 2u32.pow(attempt.saturating_sub(1)))
}

/// The whole body, in a buffer wiped on drop.
async fn body(mut resp: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, reqwest::Error> {
    let mut out = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Graph's error code from an error body (`{"error":{"code":…}}`), never
/// the message text, which may quote the request.
fn error_code(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Inner {
        code: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Option<Inner>,
    }
    serde_json::from_slice::<Outer>(bytes)
        .ok()
        .and_then(|o| o.error?.code)
        .map(|c| c.chars().filter(char::is_ascii_graphic).take(64).collect())
        .unwrap_or_else(|| "no error code".into())
}

/// The token endpoint's `error` and `AADSTS` codes (`invalid_client,
/// AADSTS700027`: what Entra's troubleshooting pages are indexed by), never
/// its description.
fn token_error(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<String>,
        #[serde(default)]
        error_codes: Vec<u64>,
    }
    let Ok(a) = serde_json::from_slice::<Answer>(bytes) else {
        return "no error code".into();
    };
    let codes = a.error_codes.iter().map(|c| format!("AADSTS{c}"));
    let error = a
        .error
        .map(|e| e.chars().filter(char::is_ascii_graphic).take(64).collect());
    let parts: Vec<String> = error.into_iter().chain(codes).collect();
    if parts.is_empty() {
        "no error code".into()
    } else {
        parts.join(", ")
    }
}

/// A page of an OData collection.
#[derive(serde::Deserialize)]
struct Page<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl GraphClient {
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let http = crate::adapters::jwt::jwks_http_client().map_err(GraphError::Config)?;
        Ok(Self::with_http(config, http))
    }

    /// With another HTTP client (tests: one trusting the system roots).
    pub fn with_http(config: GraphConfig, http: reqwest::Client) -> Self {
        Self {
            http,
            config,
            token: tokio::sync::Mutex::new(None),
            stats: GraphStats::default(),
        }
    }

    pub fn graph_url(&self) -> &Url {
        &self.config.graph_url
    }

    /// A client-credentials token for Graph, cached until near its expiry.
    async fn token(&self) -> Result<Zeroizing<String>, GraphError> {
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let (token, lifetime) = self.fetch_token().await?;
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    async fn fetch_token(&self) -> Result<(Zeroizing<String>, Duration), GraphError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            access_token: Zeroizing<String>,
            expires_in: Option<u64>,
        }
        let c = &self.config;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            c.login_url.as_str().trim_end_matches('/'),
            c.entra_tenant
        );
        let scope = format!("{}/.default", c.graph_url.as_str().trim_end_matches('/'));
        let failed = |detail: String| GraphError::Request {
            what: format!("token from {}", c.login_url),
            detail,
        };
        let mut request = Zeroizing::new(String::new());
        let mut form = form_urlencoded::Serializer::new(&mut *request);
        form.append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &c.client_id)
            .append_pair("scope", &scope);
        match &c.credential {
            ClientCredential::Secret(secret) => {
                form.append_pair("client_secret", secret);
            }
            ClientCredential::Certificate(cert) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let assertion = cert.assertion(&c.client_id, &url, now).map_err(failed)?;
                form.append_pair("client_assertion_type", certificate::ASSERTION_TYPE)
                    .append_pair("client_assertion", &assertion);
            }
        }
        form.finish();
        let resp = self
            .http
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::USER_AGENT, user_agent())
            .body(request.as_str().to_owned())
            .send()
            .await
            .map_err(|e| failed(transport(&e)))?;
        let status = resp.status();
        let bytes = body(resp).await.map_err(|e| failed(transport(&e)))?;
        if !status.is_success() {
            return Err(failed(format!("{status} ({})", token_error(&bytes))));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| failed("the answer is not a token response".into()))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        Ok((answer.access_token, lifetime))
    }

    /// GET `url` (on the Graph origin) with retries on 429/503; the body of
    /// a 2xx answer. `what` names the request in errors.
    pub async fn get(&self, url: &Url, what: &str) -> Result<Zeroizing<Vec<u8>>, GraphError> {
        if !same_origin(url, &self.config.graph_url) {
            return Err(GraphError::Request {
                what: what.to_owned(),
                detail: format!("refusing to follow a link off {}", self.config.graph_url),
            });
        }
        let failed = |detail: String| GraphError::Request {
            what: what.to_owned(),
            detail,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let token = self.token().await?;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .http
                .get(url.clone())
                .bearer_auth(token.as_str())
                .header(reqwest::header::USER_AGENT, user_agent())
                .header("ocp-client-name", CLIENT_NAME)
                .header("ocp-client-version", env!("CARGO_PKG_VERSION"))
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| failed(transport(&e)))?;
            let status = resp.status();
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) && attempt < MAX_ATTEMPTS
            {
                let wait = retry_wait(&resp, attempt);
                if wait > MAX_RETRY_AFTER {
                    return Err(failed(format!("{status} with Retry-After {wait:?}")));
                }
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(what, %status, wait_ms = wait.as_millis() as u64, "Graph throttled; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let bytes = body(resp).await.map_err(|e| failed(transport(&e)))?;
            return match status {
                s if s.is_success() => Ok(bytes),
                StatusCode::NOT_FOUND => Err(GraphError::NotFound(what.to_owned())),
                s => Err(failed(format!("{s} ({})", error_code(&bytes)))),
            };
        }
        Err(failed(format!(
            "still throttled after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// `path` (with its query) under the Graph base URL.
    pub fn url(&self, path: &str) -> Result<Url, GraphError> {
        let base = self.config.graph_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).map_err(|e| GraphError::Config(format!("{path}: {e}")))
    }

    /// Every item of a collection, following `@odata.nextLink`.
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, GraphError> {
        let mut url = self.url(path)?;
        let mut out = Vec::new();
        for page_no in 1.. {
            let what = format!("GET {path} (page {page_no})");
            let bytes = self.get(&url, &what).await?;
            let page: Page<T> =
                serde_json::from_slice(&bytes).map_err(|e| GraphError::Request {
                    what: what.clone(),
                    detail: format!("unexpected answer: {e}"),
                })?;
            out.extend(page.value);
            match page.next_link {
                Some(next) => {
                    url = Url::parse(&next).map_err(|_| GraphError::Request {
                        what,
                        detail: "@odata.nextLink is not a URL".into(),
                    })?
                }
                None => break,
            }
        }
        Ok(out)
    }
}

fn user_agent() -> String {
    format!("recovery-portal/{}", env!("CARGO_PKG_VERSION"))
}

/// A transport failure without the URL's query (reqwest's Display has it).
fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const BASE: &[(&str, &str)] = &[
        ("PORTAL_ENTRA_TENANT_ID", "contoso.onmicrosoft.com"),
        (
            "PORTAL_ENTRA_CLIENT_ID",
            "11111111-2222-3333-4444-555555555555",
        ),
        ("PORTAL_ENTRA_CLIENT_SECRET", "s3cr3t-value"),
    ];

    #[test]
    fn configuration_defaults_to_the_global_cloud() {
        let c = GraphConfig::from_lookup(env(BASE)).unwrap();
        assert_eq!(c.graph_url.as_str(), "https://graph.microsoft.com/");
        assert_eq!(c.login_url.as_str(), "https://login.microsoftonline.com/");
    }

    #[test]
    fn base_urls_are_https_except_loopback() {
        for (raw, ok) in [
            ("https://graph.microsoft.us", true),
            ("https://microsoftgraph.chinacloudapi.cn/", true),
            ("http://127.0.0.1:9999", true),
            ("http://[::1]:9999", true),
            ("http://localhost:1", true),
            ("http://graph.microsoft.com", false),
            ("http://10.0.0.1", false),
            ("ftp://graph.microsoft.com", false),
            ("https://user:pw@graph.microsoft.com", false),
            ("https://graph.microsoft.com/?x=1", false),
        ] {
            assert_eq!(base_url(raw).is_ok(), ok, "{raw}");
        }
    }

    #[test]
    fn every_problem_is_named_and_the_secret_never_echoed() {
        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != "PORTAL_ENTRA_CLIENT_ID");
        pairs.push(("PORTAL_GRAPH_URL", "http://graph.example.com"));
        pairs.push(("PORTAL_ENTRA_TENANT_ID", "bad tenant/"));
        let e = GraphConfig::from_lookup(|k| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .err()
        .unwrap();
        for part in [
            "PORTAL_ENTRA_CLIENT_ID",
            "PORTAL_GRAPH_URL",
            "PORTAL_ENTRA_TENANT_ID",
        ] {
            assert!(e.contains(part), "{e}");
        }
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn exactly_one_credential_secret_or_certificate() {
        let c = GraphConfig::from_lookup(env(BASE)).unwrap();
        assert!(matches!(c.credential, ClientCredential::Secret(_)));
        let mut both = BASE.to_vec();
        both.push((
            "PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE",
            "/nonexistent/app.pem",
        ));
        let e = GraphConfig::from_lookup(env(&both)).err().unwrap();
        assert!(e.contains("are both set: set exactly one"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let neither: Vec<_> = BASE[..2].to_vec();
        let e = GraphConfig::from_lookup(env(&neither)).err().unwrap();
        assert!(
            e.contains("PORTAL_ENTRA_CLIENT_SECRET or PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE"),
            "{e}"
        );
        let mut cert = neither.clone();
        cert.push((
            "PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE",
            "/nonexistent/app.pem",
        ));
        let e = GraphConfig::from_lookup(env(&cert)).err().unwrap();
        assert!(
            e.starts_with("PORTAL_ENTRA_CLIENT_CERTIFICATE_FILE: /nonexistent/app.pem:"),
            "{e}"
        );
    }

    #[test]
    fn token_errors_give_the_aadsts_code_not_the_description() {
        let b = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: x","error_codes":[7000215]}"#;
        assert_eq!(token_error(b), "invalid_client, AADSTS7000215");
        assert_eq!(token_error(b"<html>"), "no error code");
    }

    #[test]
    fn next_links_must_stay_on_the_graph_origin() {
        let g = Url::parse("https://graph.microsoft.com/").unwrap();
        let ok = Url::parse("https://graph.microsoft.com/v1.0/devices?$skiptoken=x").unwrap();
        let bad = Url::parse("https://evil.example/v1.0/devices").unwrap();
        let port = Url::parse("https://graph.microsoft.com:8443/v1.0").unwrap();
        assert!(same_origin(&ok, &g));
        assert!(!same_origin(&bad, &g));
        assert!(!same_origin(&port, &g));
    }

    #[test]
    fn graph_error_codes_only_never_messages() {
        let b = br#"{"error":{"code":"Authorization_RequestDenied","message":"key 123456-..."}}"#;
        assert_eq!(error_code(b), "Authorization_RequestDenied");
        assert_eq!(error_code(b"<html>"), "no error code");
    }
}
