//! The portal page's server side over real sockets: the development identity
//! provider's authorization code flow (PKCE, one-time and short-lived codes,
//! exact redirect URIs), the page and `/config.json` with their security
//! headers, and CORS for `--cors-origin`. The page itself is tested in
//! Chromium by tests/browser (run by scripts/test.sh).

use crate::support;
use crate::support::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use recovery_portal::frontends::server::{self, Options};
use recovery_portal::frontends::web::{DEFAULT_SCOPES, WebConfig};
use recovery_portal::tools::devidp::{
    CODE_TTL_SECS, DEV_AUDIENCE, DEV_CLIENT_ID, DevAlg, DevIdentityProvider,
};
use serde_json::Value;
use std::sync::Arc;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PAGE_ORIGIN: &str = "https://portal.example.test";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

struct Site {
    h: Harness,
    base: String,
    redirect_uri: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `portal serve` in process: the dev identity provider at the server's own
/// address, the page, and CORS for `cors`.
async fn site(cors: &[&str]) -> Site {
    let h = Harness::new(&test_seed(), 10).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = Arc::new(DevIdentityProvider::generate(
        DevAlg::Es256,
        &base,
        DEV_AUDIENCE,
    ));
    let mut portal = h.portal.clone();
    portal.verifier = Arc::new(idp.verifier(h.clock.clone()));
    let options = Options {
        cors_origins: cors.iter().map(|s| s.to_string()).collect(),
        web: Some(WebConfig {
            issuer: base.clone(),
            client_id: DEV_CLIENT_ID.into(),
            scopes: DEFAULT_SCOPES.into(),
            auth_params: String::new(),
            max_age: None,
        }),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        server::serve_with(listener, portal, Some(idp), options, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Site {
        h,
        redirect_uri: format!("{base}/"),
        base,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _stop: tx,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k.as_ref(), v.as_ref());
    }
    s.finish()
}

/// A form POST body (reqwest's `form` feature is not enabled here).
trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(encode(pairs))
    }
}

async fn answer(r: reqwest::RequestBuilder) -> Answer {
    let r = r.send().await.expect("request");
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

impl Site {
    fn authorize_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", DEV_CLIENT_ID.into()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", "openid RecoveryKey.Read".into()),
            ("state", "st4te".into()),
            ("nonce", "n0nce".into()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".into()),
        ]
    }

    async fn authorize_get(&self, params: &[(&str, String)]) -> Answer {
        answer(
            self.client
                .get(format!("{}/authorize?{}", self.base, encode(params))),
        )
        .await
    }

    /// Submits the sign-in form as the page would (its hidden fields, the
    /// request's scope as `requested_scope`).
    async fn authorize_post(&self, params: &[(&str, String)], who: [(&str, &str); 3]) -> Answer {
        let mut form: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| {
                let k = if *k == "scope" { "requested_scope" } else { k };
                (k.to_string(), v.clone())
            })
            .collect();
        form.extend(who.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        answer(
            self.client
                .post(format!("{}/authorize", self.base))
                .form_body(&form),
        )
        .await
    }

    /// A code for alice (or `who`), from the form's redirect.
    async fn code_for(&self, who: [(&str, &str); 3]) -> String {
        let r = self.authorize_post(&self.authorize_params(), who).await;
        assert_eq!(r.status, 303, "{}", r.text);
        let location = url::Url::parse(r.header("location").unwrap()).unwrap();
        assert!(location.as_str().starts_with(&self.redirect_uri));
        let q: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert!(q.contains(&("state".into(), "st4te".into())), "{q:?}");
        q.into_iter().find(|(k, _)| k == "code").unwrap().1
    }

    async fn alice_code(&self) -> String {
        self.code_for([
            ("tenant", "contoso"),
            ("user", "alice"),
            ("scope", "RecoveryKey.Read"),
        ])
        .await
    }

    async fn redeem(&self, form: &[(&str, &str)]) -> Answer {
        answer(
            self.client
                .post(format!("{}/token", self.base))
                .form_body(form),
        )
        .await
    }

    async fn redeem_code(&self, code: &str) -> Answer {
        self.redeem(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", DEV_CLIENT_ID),
            ("code_verifier", VERIFIER),
        ])
        .await
    }
}

fn assert_invalid_grant(r: &Answer) {
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.text);
    assert!(r.json()["error_description"].is_string());
    assert!(!r.text.contains("access_token"));
}

#[tokio::test]
async fn code_flow_signs_in_with_pkce_and_the_token_reads_the_api() {
    let s = site(&[]).await;
    // Discovery names the endpoints and PKCE.
    let d = answer(
        s.client
            .get(format!("{}/.well-known/openid-configuration", s.base)),
    )
    .await
    .json();
    assert_eq!(d["authorization_endpoint"], format!("{}/authorize", s.base));
    assert_eq!(d["token_endpoint"], format!("{}/token", s.base));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["grant_types_supported"],
        serde_json::json!(["authorization_code"])
    );

    // The form: inputs tenant, user and scope; the permissions prefilled
    // without the OIDC scopes; no script; may post only here and to the client.
    let form = s.authorize_get(&s.authorize_params()).await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert_eq!(
        form.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for name in ["tenant", "user", "scope"] {
        assert!(form.text.contains(&format!("name=\"{name}\"")), "{name}");
    }
    assert!(form.text.contains(
        "id=\"scope\" name=\"scope\" required maxlength=\"1024\" value=\"RecoveryKey.Read\""
    ));
    assert!(!form.text.contains("<script"));
    let csp = form.header("content-security-policy").unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {}", s.base)),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(form.header("cache-control"), Some("no-store"));

    let code = s
        .code_for([
            ("tenant", "contoso"),
            ("user", "alice"),
            ("scope", "RecoveryKey.Read  AuditLog.Read.All"),
        ])
        .await;
    let t = s.redeem_code(&code).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.header("cache-control"), Some("no-store"));
    assert_eq!(t.header("access-control-allow-origin"), Some("*"));
    let j = t.json();
    assert_eq!(j["token_type"], "Bearer");
    let access = j["access_token"].as_str().unwrap();
    // The same token format as `portal token`.
    let a = claims(access);
    assert_eq!(a["aud"], DEV_AUDIENCE);
    assert_eq!(a["iss"], s.base.as_str());
    assert_eq!(
        (a["tid"].as_str(), a["oid"].as_str()),
        (Some("contoso"), Some("alice"))
    );
    assert_eq!(a["scp"], "RecoveryKey.Read AuditLog.Read.All");
    let id = claims(j["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n0nce");
    assert_eq!(id["aud"], DEV_CLIENT_ID);
    assert_eq!(id["iss"], s.base.as_str());
    assert_eq!(id["sub"], "alice");

    let devices = answer(
        s.client
            .get(format!("{}/v1/devices", s.base))
            .bearer_auth(access),
    )
    .await;
    assert_eq!(devices.status, 200, "{}", devices.text);
    assert_eq!(devices.json()["devices"].as_array().unwrap().len(), 4);
    let audit = answer(
        s.client
            .get(format!("{}/v1/audit-events", s.base))
            .bearer_auth(access),
    )
    .await;
    assert_eq!(audit.status, 200, "{}", audit.text);
}

#[tokio::test]
async fn token_endpoint_refuses_pkce_mismatch_reused_expired_and_misdirected_codes() {
    let s = site(&[]).await;

    // PKCE mismatch; and the failed attempt used the code up.
    let code = s.alice_code().await;
    let wrong_verifier = "x".repeat(43);
    let r = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri),
            ("client_id", DEV_CLIENT_ID),
            ("code_verifier", &wrong_verifier),
        ])
        .await;
    assert_invalid_grant(&r);
    assert!(r.text.contains("code_verifier"), "{}", r.text);
    assert_invalid_grant(&s.redeem_code(&code).await);

    // A code works once.
    let code = s.alice_code().await;
    assert_eq!(s.redeem_code(&code).await.status, 200);
    let again = s.redeem_code(&code).await;
    assert_invalid_grant(&again);
    assert!(again.text.contains("already used"), "{}", again.text);

    // Expired: one second past its lifetime.
    let code = s.alice_code().await;
    s.h.clock.advance(CODE_TTL_SECS + 1);
    let r = s.redeem_code(&code).await;
    assert_invalid_grant(&r);
    assert!(r.text.contains("expired"), "{}", r.text);

    // Another redirect_uri than the request's (even on the same origin).
    let code = s.alice_code().await;
    let other = format!("{}/elsewhere", s.base);
    let r = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &other),
            ("client_id", DEV_CLIENT_ID),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_invalid_grant(&r);
    assert!(r.text.contains("redirect_uri"), "{}", r.text);

    // Another client.
    let code = s.alice_code().await;
    let r = s
        .redeem(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri),
            ("client_id", "someone-else"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_invalid_grant(&r);

    // Malformed requests: OAuth errors, never 5xx.
    let r = s
        .redeem(&[("grant_type", "password"), ("username", "alice")])
        .await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let r = s.redeem(&[("grant_type", "authorization_code")]).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = answer(
        s.client
            .post(format!("{}/token", s.base))
            .header("content-type", "application/json")
            .body(r#"{"grant_type":"authorization_code"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = answer(
        s.client
            .post(format!("{}/token", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xffu8; 40_000]),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn authorize_refuses_bad_requests_with_a_page_and_never_redirects() {
    let s = site(&[]).await;
    let with = |name: &'static str, value: Option<&str>| {
        let mut p: Vec<(&str, String)> = s
            .authorize_params()
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect();
        if let Some(v) = value {
            p.push((name, v.to_owned()));
        }
        p
    };
    let cases = [
        (
            "redirect to another host",
            with("redirect_uri", Some("https://evil.example/cb")),
        ),
        (
            "redirect with a fragment",
            with("redirect_uri", Some("http://127.0.0.1:1/#x")),
        ),
        (
            "redirect with credentials",
            with("redirect_uri", Some("http://u:p@localhost/")),
        ),
        ("relative redirect", with("redirect_uri", Some("/cb"))),
        ("plain PKCE", with("code_challenge_method", Some("plain"))),
        ("no PKCE", with("code_challenge", None)),
        ("short challenge", with("code_challenge", Some("abc"))),
        ("unknown client", with("client_id", Some("other"))),
        ("implicit flow", with("response_type", Some("token"))),
        ("no state", with("state", None)),
        (
            "control characters in state",
            with("state", Some("a\u{1}b")),
        ),
    ];
    for (what, params) in &cases {
        let r = s.authorize_get(params).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert!(r.header("location").is_none(), "{what}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{what}"
        );
        assert!(r.text.contains("role=\"alert\""), "{what}");
        assert!(!r.text.contains("<form"), "{what}");
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("form-action 'none'"),
            "{what}"
        );
        // The same request submitted through the form is refused too.
        let r = s
            .authorize_post(
                params,
                [
                    ("tenant", "contoso"),
                    ("user", "alice"),
                    ("scope", "RecoveryKey.Read"),
                ],
            )
            .await;
        assert_eq!(r.status, 400, "{what} (POST): {}", r.text);
        assert!(r.header("location").is_none(), "{what} (POST)");
    }
    // A repeated parameter.
    let mut twice = s.authorize_params();
    twice.push(("state", "other".into()));
    assert_eq!(s.authorize_get(&twice).await.status, 400);

    // Bad sign-in input: the form again, with the problem and the values.
    for (tenant, user, scope) in [
        ("con toso", "alice", "RecoveryKey.Read"),
        ("contoso", "", "RecoveryKey.Read"),
        ("contoso", "alice", ""),
        ("contoso", "al<ice", "RecoveryKey.Read"),
        ("contoso", "alice", "Recovery\"Key"),
    ] {
        let r = s
            .authorize_post(
                &s.authorize_params(),
                [("tenant", tenant), ("user", user), ("scope", scope)],
            )
            .await;
        assert_eq!(r.status, 400, "{tenant}/{user}/{scope}: {}", r.text);
        assert!(r.header("location").is_none());
        assert!(r.text.contains("role=\"alert\""));
        assert!(r.text.contains("name=\"tenant\""));
        // Values are escaped, never markup.
        assert!(!r.text.contains("al<ice"));
    }
    let r = answer(
        s.client
            .post(format!("{}/authorize", s.base))
            .header("content-type", "text/plain")
            .body("tenant=contoso"),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = answer(
        s.client
            .post(format!("{}/authorize", s.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; 100_000]),
    )
    .await;
    assert_eq!(r.status, 413);
}

/// DNS rebinding: a web page on another name that resolves to 127.0.0.1
/// reaches this server with its own name in `Host`. In dev-IdP mode every
/// route answers such a request 421 (problem+json) before doing anything;
/// only the loopback names with the server's own port are served.
#[tokio::test]
async fn dev_mode_refuses_requests_for_other_hosts_with_421() {
    let s = site(&[]).await;
    let port = url::Url::parse(&s.base).unwrap().port().unwrap();
    let authorize = format!("/authorize?{}", encode(&s.authorize_params()));
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/".into()),
        ("GET", "/app.js".into()),
        ("GET", "/config.json".into()),
        ("GET", "/openapi.json".into()),
        ("GET", "/.well-known/openid-configuration".into()),
        ("GET", "/.well-known/jwks.json".into()),
        ("GET", authorize.clone()),
        ("POST", "/authorize".into()),
        ("POST", "/token".into()),
        ("GET", "/v1/devices".into()),
        ("POST", "/v1/devices/DESKTOP-7Q2M4K1/recovery-key".into()),
        ("GET", "/no-such-route".into()),
    ];
    let send = |method: &str, path: &str, host: &str| {
        let url = format!("{}{path}", s.base);
        let r = if method == "GET" {
            s.client.get(url)
        } else {
            s.client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=authorization_code")
        };
        answer(r.header("host", host))
    };
    let foreign = [
        format!("rebind.attacker.example:{port}"),
        "rebind.attacker.example".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1).max(1)),
        "127.0.0.1".to_owned(),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.2:{port}"),
        format!("192.168.1.10:{port}"),
    ];
    for (method, path) in &routes {
        for host in &foreign {
            let r = send(method, path, host).await;
            assert_eq!(r.status, 421, "{method} {path} Host {host:?}: {}", r.text);
            assert_eq!(
                r.header("content-type"),
                Some("application/problem+json"),
                "{method} {path} Host {host:?}"
            );
            let j = r.json();
            assert_eq!(j["status"], 421);
            assert!(
                j["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("/misdirected-request")
            );
            assert!(r.header("location").is_none());
            assert!(r.header("access-control-allow-origin").is_none());
            assert!(!r.text.contains("access_token") && !r.text.contains("\"keys\""));
        }
        // The server's own names are served (whatever the route answers).
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
            format!("[::1]:{port}"),
        ] {
            let r = send(method, path, &host).await;
            assert_ne!(r.status, 421, "{method} {path} Host {host:?}: {}", r.text);
        }
    }
}

/// The dev provider signs in only the portal page it serves: the redirect
/// URI must be this server's own origin (any loopback name, its port) and
/// the page's path, at `/authorize` (form and submission) and at `/token`.
#[tokio::test]
async fn dev_mode_accepts_only_the_pages_own_redirect_uri() {
    let s = site(&[]).await;
    let port = url::Url::parse(&s.base).unwrap().port().unwrap();
    let with_redirect = |uri: &str| {
        let mut p: Vec<(&str, String)> = s
            .authorize_params()
            .into_iter()
            .filter(|(k, _)| *k != "redirect_uri")
            .collect();
        p.push(("redirect_uri", uri.to_owned()));
        p
    };
    let who = [
        ("tenant", "contoso"),
        ("user", "alice"),
        ("scope", "RecoveryKey.Read"),
    ];
    let other_port = port.wrapping_add(1).max(1);
    for bad in [
        format!("http://127.0.0.1:{other_port}/"),
        format!("http://localhost:{other_port}/"),
        format!("http://127.0.0.1:{port}/elsewhere"),
        format!("http://127.0.0.1:{port}/callback?x=1"),
        format!("http://127.0.0.1:{port}/?next=/evil"),
        format!("https://127.0.0.1:{port}/"),
        format!("http://127.0.0.2:{port}/"),
        "http://localhost/".to_owned(),
    ] {
        let r = s.authorize_get(&with_redirect(&bad)).await;
        assert_eq!(r.status, 400, "GET {bad}: {}", r.text);
        assert!(r.text.contains("redirect_uri"), "GET {bad}: {}", r.text);
        assert!(!r.text.contains("<form"), "GET {bad}");
        let r = s.authorize_post(&with_redirect(&bad), who).await;
        assert_eq!(r.status, 400, "POST {bad}: {}", r.text);
        assert!(r.header("location").is_none(), "POST {bad}");
        // And a token request naming it is refused, whatever the code.
        let code = s.alice_code().await;
        let r = s
            .redeem(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &bad),
                ("client_id", DEV_CLIENT_ID),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_invalid_grant(&r);
    }
    // The page's own URI on each loopback name of this server: a code, and
    // the code redeemed.
    for good in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://127.0.0.1:{port}/index.html"),
    ] {
        let params = with_redirect(&good);
        let r = s.authorize_get(&params).await;
        assert_eq!(r.status, 200, "GET {good}: {}", r.text);
        let r = s.authorize_post(&params, who).await;
        assert_eq!(r.status, 303, "POST {good}: {}", r.text);
        let location = url::Url::parse(r.header("location").unwrap()).unwrap();
        assert!(location.as_str().starts_with(&good), "{location}");
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        let t = s
            .redeem(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &good),
                ("client_id", DEV_CLIENT_ID),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(t.status, 200, "token for {good}: {}", t.text);
    }
}

#[tokio::test]
async fn page_and_config_are_served_with_a_strict_policy() {
    let s = site(&[]).await;
    let page = answer(s.client.get(format!("{}/", s.base))).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap().to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        &format!("connect-src 'self' {}", s.base),
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // Nothing inline: every script has a src, no style element or attribute.
    assert!(
        page.text
            .contains("<script type=\"module\" src=\"app.js\"></script>")
    );
    assert_eq!(page.text.matches("<script").count(), 1);
    assert!(!page.text.contains("<style") && !page.text.contains(" style="));
    assert!(!page.text.contains("onclick=") && !page.text.contains("onload="));

    for (path, ct) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/oidc.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = answer(s.client.get(format!("{}{path}", s.base))).await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ct)),
            "{path}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let c = answer(s.client.get(format!("{}/config.json", s.base))).await;
    assert_eq!(c.header("content-type"), Some("application/json"));
    let j = c.json();
    assert_eq!(j["issuer"], s.base.as_str());
    assert_eq!(j["client_id"], DEV_CLIENT_ID);
    assert_eq!(j["scopes"], DEFAULT_SCOPES);
    assert_eq!(j["api_base_url"], s.base.as_str());

    // Unknown paths are still the API's 404 problem; the API is unchanged.
    let r = answer(s.client.get(format!("{}/nope", s.base))).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = answer(s.client.get(format!("{}/v1/devices", s.base))).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let s = site(&[PAGE_ORIGIN]).await;
    let token = {
        let code = s.alice_code().await;
        s.redeem_code(&code).await.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let preflight = |origin: &str| {
        s.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/devices/PC-ALICE/recovery-key", s.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-request-id",
            )
    };
    let r = answer(preflight(PAGE_ORIGIN)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE_ORIGIN));
    let allowed = r.header("access-control-allow-headers").unwrap().to_owned();
    for h in ["authorization", "content-type", "x-request-id"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(r.header("vary").unwrap().contains("Origin"));

    let r = answer(preflight("https://evil.example")).await;
    assert!(r.header("access-control-allow-origin").is_none());
    assert_ne!(r.status, 204);

    let get = |origin: &str| {
        s.client
            .get(format!("{}/v1/devices", s.base))
            .header("origin", origin)
            .bearer_auth(&token)
    };
    let r = answer(get(PAGE_ORIGIN)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE_ORIGIN));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap()
        .to_owned();
    for h in ["Retry-After", "X-Request-Id", "WWW-Authenticate"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    // Errors carry the headers too, so the page can read Retry-After.
    let r = answer(
        s.client
            .get(format!("{}/v1/devices", s.base))
            .header("origin", PAGE_ORIGIN),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE_ORIGIN));
    let r = answer(get("https://evil.example")).await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());

    // Without --cors-origin, no CORS at all.
    let plain = site(&[]).await;
    let r = answer(
        plain
            .client
            .get(format!("{}/v1/devices", plain.base))
            .header("origin", PAGE_ORIGIN),
    )
    .await;
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn portal_serve_prints_the_page_url_and_checks_cors_origins() {
    let dir = std::env::temp_dir().join(format!("portal-web-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let portal = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_portal"));
        c.env("PORTAL_DEV_KEY_FILE", dir.join("key.p8"));
        for v in [
            "PORTAL_ISSUER",
            "PORTAL_AUDIENCE",
            "PORTAL_JWKS",
            "PORTAL_JWKS_URL",
            "PORTAL_BACKEND",
        ] {
            c.env_remove(v);
        }
        c
    };
    let served = support::serve::spawn({
        let mut c = portal();
        c.args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--cors-origin",
            "http://localhost:5173",
        ]);
        c
    });
    assert!(
        served
            .banner
            .contains(&format!("Portal page: {}/", served.base)),
        "{}",
        served.banner
    );
    let out = portal()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--cors-origin",
            "https://portal.example.com/app",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cors-origin") && err.contains("not an origin"),
        "{err}"
    );
}
