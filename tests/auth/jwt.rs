//! Token verification: algorithms, headers, claims, time, tenants,
//! permissions, and JWKS refresh against a real HTTP JWKS endpoint.

use crate::support::common;

use axum::Router;
use axum::routing::get;
use common::*;
use recovery_portal::adapters::jwt::{JwksSource, JwtSettings, JwtVerifier, KeySet};
use recovery_portal::adapters::token_cache::CachingVerifier;
use recovery_portal::domain::error::AuthFailure;
use recovery_portal::domain::ids::TenantId;
use recovery_portal::domain::ports::TokenVerifier;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 600, "nbf": NOW - 10, "tid": "contoso", "oid": "alice", "scp": "RecoveryKey.Read"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn verifier(idp: &DevIdentityProvider, default_tenant: Option<&str>) -> JwtVerifier {
    JwtVerifier::new(
        JwtSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            default_tenant: default_tenant.map(|t| TenantId::parse(t).unwrap()),
            ..Default::default()
        },
        KeySet::from_jwks_json(&idp.jwks_json()).unwrap(),
        JwksSource::Fixed,
        TestClock::at(NOW),
    )
}

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test]
async fn accepts_rs256_and_es256_and_reads_identity_and_permissions() {
    for alg in [DevAlg::Rs256, DevAlg::Es256] {
        let idp = DevIdentityProvider::generate(alg, ISSUER, AUDIENCE);
        let v = verifier(&idp, None);
        let c = v.verify(&idp.sign(&claims(json!({})))).await.unwrap();
        assert_eq!((c.tenant.as_str(), c.user.as_str()), ("contoso", "alice"));
        assert!(c.permissions.key_read && !c.permissions.key_read_all);
        assert_eq!(c.expires_at, NOW + 600);
    }
}

#[tokio::test]
async fn permissions_come_from_scp_scope_and_roles_matched_exactly() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    let p = |extra| {
        let t = idp.sign(&claims(extra));
        let v = &v;
        async move { v.verify(&t).await.unwrap().permissions }
    };
    let got = p(json!({"scp": ["Devices.Read", "AuditLog.Read.All"]})).await;
    assert!(got.devices_read && got.audit_read_all && !got.key_read);
    let got = p(json!({"scp": null, "scope": "openid RecoveryKey.Read.All"})).await;
    assert!(got.key_read_all && !got.key_read);
    let got = p(json!({"scp": null, "roles": ["RecoveryKey.Read.All"]})).await;
    assert!(got.key_read_all);
    let got = p(json!({"scp": "recoverykey.read RecoveryKey.Read.AllX RecoveryKey"})).await;
    assert_eq!(
        got,
        Default::default(),
        "matching is exact and case-sensitive"
    );
}

#[tokio::test]
async fn caller_identity_rules() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    let c = v
        .verify(&idp.sign(&claims(json!({"oid": null, "sub": "user-sub"}))))
        .await
        .unwrap();
    assert_eq!(c.user.as_str(), "user-sub");
    let c = v
        .verify(&idp.sign(&claims(json!({"sub": "user-sub"}))))
        .await
        .unwrap();
    assert_eq!(c.user.as_str(), "alice", "oid wins over sub");
    assert_eq!(
        v.verify(&idp.sign(&claims(json!({"tid": null})))).await,
        Err(AuthFailure::NoTenant)
    );
    let with_default = verifier(&idp, Some("default-tenant"));
    let c = with_default
        .verify(&idp.sign(&claims(json!({"tid": null}))))
        .await
        .unwrap();
    assert_eq!(c.tenant.as_str(), "default-tenant");
    assert!(
        v.verify(&idp.sign(&claims(json!({"oid": null}))))
            .await
            .is_err()
    );
    assert!(
        v.verify(&idp.sign(&claims(json!({"tid": "a/b"}))))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rejects_wrong_issuer_audience_time_and_claim_types() {
    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    let check = |extra: Value| {
        let t = idp.sign(&claims(extra));
        let v = &v;
        async move { v.verify(&t).await }
    };
    assert_eq!(
        check(json!({"iss": format!("{ISSUER}/")})).await,
        Err(AuthFailure::Issuer)
    );
    assert_eq!(
        check(json!({"aud": "api://other"})).await,
        Err(AuthFailure::Audience)
    );
    assert!(
        check(json!({"aud": ["api://other", AUDIENCE]}))
            .await
            .is_ok()
    );
    assert!(check(json!({"aud": null})).await.is_err());
    assert!(check(json!({"exp": null})).await.is_err());
    assert!(check(json!({"exp": "9999999999"})).await.is_err());
    assert_eq!(
        check(json!({"exp": NOW - 61})).await,
        Err(AuthFailure::Expired)
    );
    assert!(check(json!({"exp": NOW - 59})).await.is_ok(), "60 s leeway");
    assert_eq!(
        check(json!({"nbf": NOW + 61})).await,
        Err(AuthFailure::NotYetValid)
    );
    assert!(check(json!({"nbf": NOW + 59})).await.is_ok());
    assert!(check(json!({"nbf": "soon"})).await.is_err());
    assert!(check(json!({"tid": 42})).await.is_err());
    assert!(check(json!({"scp": 7})).await.is_err());
    assert!(
        check(json!({"roles": "RecoveryKey.Read.All"}))
            .await
            .is_err()
    );
    assert!(check(json!({"iss": ["x"]})).await.is_err());
}

#[tokio::test]
async fn rejects_none_hmac_mismatched_families_crit_and_garbage() {
    let rsa = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let v = verifier(&rsa, None);
    let body = b64(claims(json!({})).to_string().as_bytes());
    // alg none
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": rsa.kid})
            .to_string()
            .as_bytes()),
        body
    );
    assert_eq!(v.verify(&none).await, Err(AuthFailure::Algorithm));
    // HS256 keyed with the public JWKS: the classic confusion attack.
    let header = b64(json!({"alg": "HS256", "kid": rsa.kid})
        .to_string()
        .as_bytes());
    let msg = format!("{header}.{body}");
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(rsa.jwks_json().as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        v.verify(&format!("{msg}.{sig}")).await,
        Err(AuthFailure::Algorithm)
    );
    // An ES256 header naming the RSA key.
    let t = rsa.sign_raw(&json!({"alg": "ES256", "kid": rsa.kid}), &claims(json!({})));
    assert_eq!(v.verify(&t).await, Err(AuthFailure::Algorithm));
    // Other RSA algorithms are not accepted either.
    let t = rsa.sign_raw(&json!({"alg": "RS512", "kid": rsa.kid}), &claims(json!({})));
    assert_eq!(v.verify(&t).await, Err(AuthFailure::Algorithm));
    // Unknown critical extension.
    let t = rsa.sign_raw(
        &json!({"alg": "RS256", "kid": rsa.kid, "crit": ["exp"], "exp": 1}),
        &claims(json!({})),
    );
    assert_eq!(v.verify(&t).await, Err(AuthFailure::Critical));
    // No kid, unknown kid.
    let t = rsa.sign_raw(&json!({"alg": "RS256"}), &claims(json!({})));
    assert_eq!(v.verify(&t).await, Err(AuthFailure::UnknownKey));
    let t = rsa.sign_raw(&json!({"alg": "RS256", "kid": "other"}), &claims(json!({})));
    assert_eq!(v.verify(&t).await, Err(AuthFailure::UnknownKey));
    // Signed by another key under our kid.
    let evil = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let t = evil.sign_raw(&json!({"alg": "RS256", "kid": rsa.kid}), &claims(json!({})));
    assert_eq!(v.verify(&t).await, Err(AuthFailure::Signature));
    // A valid token with a flipped signature byte.
    let mut good = rsa.sign(&claims(json!({})));
    let last = good.pop().unwrap();
    good.push(if last == 'A' { 'B' } else { 'A' });
    assert!(v.verify(&good).await.is_err());
    for junk in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "....",
        "e30.e30.",
        &"x".repeat(20_000),
    ] {
        assert!(v.verify(junk).await.is_err(), "{junk:.20}");
    }
}

/// How the fake identity provider answers an endpoint.
#[derive(Clone, Debug)]
enum Answer {
    /// The normal document.
    Serve,
    /// This body with status 200.
    Body(String),
    Status(u16),
    /// Never answers within the verifier's timeout.
    Hang,
}

/// A fake identity provider on a real loopback socket: a discovery document
/// and a JWKS endpoint, each switchable between serving, failing and
/// hanging, counting fetches; plus an "attacker" endpoint that must never be
/// contacted.
struct JwksServer {
    base: String,
    doc: Arc<Mutex<String>>,
    keys_answer: Arc<Mutex<Answer>>,
    discovery_answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
    attacker_hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn keys(&self, a: Answer) {
        *self.keys_answer.lock().unwrap() = a;
    }
    fn discovery(&self, a: Answer) {
        *self.discovery_answer.lock().unwrap() = a;
    }
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
    fn discovery_fetches(&self) -> usize {
        self.discovery_fetches.load(Ordering::SeqCst)
    }
}

async fn answer(a: Answer, normal: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    match a {
        Answer::Serve => normal.into_response(),
        Answer::Body(b) => b.into_response(),
        Answer::Status(s) => axum::http::StatusCode::from_u16(s).unwrap().into_response(),
        Answer::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            normal.into_response()
        }
    }
}

async fn jwks_server(initial: String) -> JwksServer {
    let doc = Arc::new(Mutex::new(initial));
    let keys_answer = Arc::new(Mutex::new(Answer::Serve));
    let discovery_answer = Arc::new(Mutex::new(Answer::Serve));
    let fetches = Arc::new(AtomicUsize::new(0));
    let discovery_fetches = Arc::new(AtomicUsize::new(0));
    let attacker_hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (d, ka, f) = (doc.clone(), keys_answer.clone(), fetches.clone());
    let (da, df, a, b) = (
        discovery_answer.clone(),
        discovery_fetches.clone(),
        attacker_hits.clone(),
        base.clone(),
    );
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                df.fetch_add(1, Ordering::SeqCst);
                let normal = json!({"issuer": b, "jwks_uri": format!("{b}/keys")}).to_string();
                let a = da.lock().unwrap().clone();
                answer(a, normal)
            }),
        )
        .route(
            "/keys",
            get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let normal = d.lock().unwrap().clone();
                let a = ka.lock().unwrap().clone();
                answer(a, normal)
            }),
        )
        .route(
            "/evil",
            get(move || {
                a.fetch_add(1, Ordering::SeqCst);
                async { String::new() }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer {
        base,
        doc,
        keys_answer,
        discovery_answer,
        fetches,
        discovery_fetches,
        attacker_hits,
    }
}

#[tokio::test]
async fn unknown_kid_refreshes_once_per_interval_and_picks_up_rotated_keys() {
    let old = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let new = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let srv = jwks_server(old.jwks_json()).await;
    let v = Arc::new(JwtVerifier::new(
        JwtSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            default_tenant: None,
            ..Default::default()
        },
        KeySet::from_jwks_json(&old.jwks_json()).unwrap(),
        JwksSource::Url(format!("{}/keys", srv.base)),
        TestClock::at(NOW),
    ));
    // Known kid: no network.
    v.verify(&old.sign(&claims(json!({})))).await.unwrap();
    assert_eq!(srv.fetches.load(Ordering::SeqCst), 0);
    // The issuer rotates: the new key's first token triggers exactly one fetch,
    // however many requests arrive at once.
    *srv.doc.lock().unwrap() = new.jwks_json();
    let t = new.sign(&claims(json!({})));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (v, t) = (v.clone(), t.clone());
        tasks.push(tokio::spawn(async move { v.verify(&t).await }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap().is_ok());
    }
    assert_eq!(ok, 8, "requests waiting on the refresh use its result");
    assert_eq!(srv.fetches.load(Ordering::SeqCst), 1);
    assert!(v.verify(&t).await.is_ok());
    // A token under yet another unknown kid within 30 s: no second fetch.
    let stranger = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    assert_eq!(
        v.verify(&stranger.sign(&claims(json!({})))).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(srv.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_jku_headers_are_never_followed() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let srv = jwks_server(idp.jwks_json()).await;
    let v = JwtVerifier::new(
        JwtSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            default_tenant: None,
            ..Default::default()
        },
        KeySet::default(),
        JwksSource::Discovery(srv.base.clone()),
        TestClock::at(NOW),
    );
    // No inline JWKS: the first token fetches through discovery.
    v.verify(&idp.sign(&claims(json!({})))).await.unwrap();
    assert_eq!(srv.fetches.load(Ordering::SeqCst), 1);
    let attacker = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let evil_url = format!("{}/evil", srv.base);
    let header = json!({"alg": "ES256", "kid": attacker.kid, "jku": evil_url, "x5u": evil_url,
        "jwk": serde_json::from_str::<Value>(&attacker.jwks_json()).unwrap()["keys"][0]});
    let t = attacker.sign_raw(&header, &claims(json!({})));
    assert!(v.verify(&t).await.is_err());
    assert_eq!(srv.attacker_hits.load(Ordering::SeqCst), 0);
}

/// `claims` with `field` set to `value` as is (JSON null included: the
/// `claims` helper treats null as "remove").
fn claims_with(field: &str, value: Value) -> Value {
    let mut c = claims(json!({}));
    c[field] = value;
    c
}

#[tokio::test]
async fn a_string_aud_is_one_value_never_split_on_spaces() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    for aud in [
        format!("api://evil {AUDIENCE}"),
        format!("{AUDIENCE} api://evil"),
        format!(" {AUDIENCE}"),
        format!("{AUDIENCE} "),
    ] {
        assert_eq!(
            v.verify(&idp.sign(&claims(json!({ "aud": aud })))).await,
            Err(AuthFailure::Audience),
            "{aud:?}"
        );
    }
    // An array member is one value too.
    assert_eq!(
        v.verify(&idp.sign(&claims(json!({"aud": [format!("api://evil {AUDIENCE}")]}))))
            .await,
        Err(AuthFailure::Audience)
    );
    assert!(v.verify(&idp.sign(&claims(json!({})))).await.is_ok());
}

#[tokio::test]
async fn claims_of_the_wrong_type_are_refused_even_when_null() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, Some("default-tenant"));
    let mut bad = vec![
        ("iat", json!("yesterday")),
        ("iat", json!(null)),
        ("iat", json!([NOW])),
        ("nbf", json!(null)),
    ];
    for field in ["oid", "sub", "tid"] {
        for value in [
            json!(null),
            json!(42),
            json!(true),
            json!(["alice"]),
            json!({"id": "alice"}),
        ] {
            bad.push((field, value));
        }
    }
    for field in ["scp", "scope", "roles"] {
        bad.push((field, json!(null)));
    }
    for (field, value) in bad {
        let t = idp.sign(&claims_with(field, value.clone()));
        assert!(
            matches!(v.verify(&t).await, Err(AuthFailure::Claims(_))),
            "{field}: {value}"
        );
    }
    // `"oid": null` must not fall back to `sub`.
    let mut c = claims(json!({"sub": "someone-else"}));
    c["oid"] = Value::Null;
    assert!(v.verify(&idp.sign(&c)).await.is_err());
    // Well-typed values still pass.
    for (field, value) in [
        ("iat", json!(NOW)),
        ("iat", json!(NOW as f64 + 0.5)),
        ("sub", json!("alice-sub")),
    ] {
        assert!(
            v.verify(&idp.sign(&claims_with(field, value.clone())))
                .await
                .is_ok(),
            "{field}: {value}"
        );
    }
}

#[tokio::test]
async fn any_crit_header_is_refused_whatever_its_type() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    for crit in [
        json!(null),
        json!([]),
        json!("exp"),
        json!(7),
        json!({"exp": true}),
        json!(["exp"]),
    ] {
        let t = idp.sign_raw(
            &json!({"alg": "ES256", "kid": idp.kid, "crit": crit}),
            &claims(json!({})),
        );
        assert_eq!(v.verify(&t).await, Err(AuthFailure::Critical), "{crit}");
    }
}

#[tokio::test]
async fn only_jwt_and_at_jwt_token_types_are_accepted() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    let with_typ = |typ: Option<Value>| {
        let mut h = json!({"alg": "ES256", "kid": idp.kid});
        if let Some(t) = typ {
            h["typ"] = t;
        }
        idp.sign_raw(&h, &claims(json!({})))
    };
    for ok in [
        None,
        Some(json!("JWT")),
        Some(json!("jwt")),
        Some(json!("at+jwt")),
        Some(json!("AT+JWT")),
        Some(json!("application/at+jwt")),
    ] {
        assert!(v.verify(&with_typ(ok.clone())).await.is_ok(), "{ok:?}");
    }
    for bad in [
        json!("id+jwt"),
        json!("JWS"),
        json!("logout+jwt"),
        json!("JOSE"),
        json!("dpop+jwt"),
        json!(""),
        json!(null),
        json!(5),
        json!(["JWT"]),
    ] {
        assert!(
            v.verify(&with_typ(Some(bad.clone()))).await.is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn cognito_style_id_tokens_are_refused_by_token_use() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    assert!(
        v.verify(&idp.sign(&claims(json!({"token_use": "access"}))))
            .await
            .is_ok()
    );
    for bad in [json!("id"), json!("ID"), json!(null), json!(1)] {
        assert!(
            v.verify(&idp.sign(&claims_with("token_use", bad.clone())))
                .await
                .is_err(),
            "{bad}"
        );
    }
}

/// An OIDC ID token is not an access token, even where its `aud` is this
/// API (an Entra app registration that is both the API and the page's
/// client): it carries `nonce` (the page always sends one) or the
/// `at_hash`/`c_hash` of the code flow, which access tokens never do.
#[tokio::test]
async fn id_tokens_are_refused_by_their_id_token_claims() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = verifier(&idp, None);
    assert!(v.verify(&idp.sign(&claims(json!({})))).await.is_ok());
    for claim in ["nonce", "at_hash", "c_hash"] {
        for value in [json!("n-0S6_WzA2Mj"), json!(null)] {
            let got = v
                .verify(&idp.sign(&claims_with(claim, value.clone())))
                .await;
            assert!(got.is_err(), "{claim}: {value}");
        }
    }
}

fn settings() -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        default_tenant: None,
        ..Default::default()
    }
}

/// A verifier that fetches its keys from `srv`'s JWKS URL (none inline).
fn url_verifier(srv: &JwksServer, clock: Arc<TestClock>) -> JwtVerifier {
    JwtVerifier::new(
        settings(),
        KeySet::default(),
        JwksSource::Url(format!("{}/keys", srv.base)),
        clock,
    )
}

fn token_at(idp: &DevIdentityProvider, clock: &TestClock, ttl: i64) -> String {
    idp.token("contoso", "alice", "RecoveryKey.Read", clock.unix(), ttl)
}

#[tokio::test]
async fn keys_are_refetched_after_the_max_age_and_a_failed_refresh_keeps_the_old_keys() {
    let a = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let b = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let srv = jwks_server(a.jwks_json()).await;
    let clock = TestClock::at(NOW);
    let v = url_verifier(&srv, clock.clone());
    v.verify(&token_at(&a, &clock, 600)).await.unwrap();
    assert_eq!(srv.fetches(), 1, "no keys yet: fetched on first use");
    // The issuer withdraws key A.
    *srv.doc.lock().unwrap() = b.jwks_json();
    // First interval (default max age 3600 s): A is still trusted, no fetch.
    clock.advance(3599);
    v.verify(&token_at(&a, &clock, 600)).await.unwrap();
    assert_eq!(srv.fetches(), 1);
    // At the max age the keys are refetched: A no longer verifies, B does.
    clock.advance(1);
    assert_eq!(
        v.verify(&token_at(&a, &clock, 600)).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(srv.fetches(), 2);
    v.verify(&token_at(&b, &clock, 600)).await.unwrap();
    assert_eq!(srv.fetches(), 2, "fresh keys: no second fetch");
    // Second interval: the refresh fails and the old keys (B) are kept.
    srv.keys(Answer::Status(500));
    clock.advance(3600);
    v.verify(&token_at(&b, &clock, 600)).await.unwrap();
    assert_eq!(srv.fetches(), 3);
    // The failed refresh is retried after a back-off, not on every request.
    v.verify(&token_at(&b, &clock, 600)).await.unwrap();
    assert_eq!(srv.fetches(), 3);
    // Once the issuer answers again, its current set replaces the old one.
    srv.keys(Answer::Serve);
    *srv.doc.lock().unwrap() = a.jwks_json();
    clock.advance(60);
    assert_eq!(
        v.verify(&token_at(&b, &clock, 600)).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(srv.fetches(), 4);
    v.verify(&token_at(&a, &clock, 600)).await.unwrap();
}

#[tokio::test]
async fn while_the_issuer_is_down_old_keys_serve_one_more_max_age_then_tokens_cannot_be_checked() {
    let a = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let srv = jwks_server(a.jwks_json()).await;
    let clock = TestClock::at(NOW);
    let v = url_verifier(&srv, clock.clone());
    v.verify(&token_at(&a, &clock, 600)).await.unwrap();
    srv.keys(Answer::Status(500));
    // Just before twice the max age, the old keys still verify...
    clock.advance(2 * 3600 - 1);
    v.verify(&token_at(&a, &clock, 600)).await.unwrap();
    // ...then nothing can be checked until the issuer answers.
    clock.advance(1);
    let err = v.verify(&token_at(&a, &clock, 600)).await.unwrap_err();
    assert!(
        matches!(err, AuthFailure::IssuerUnavailable { retry_after_secs } if (1..=30).contains(&retry_after_secs)),
        "{err:?}"
    );
    // Decidable without keys: still a sign-in error.
    assert_eq!(v.verify("a.b").await, Err(AuthFailure::Malformed));
    srv.keys(Answer::Serve);
    clock.advance(30);
    v.verify(&token_at(&a, &clock, 600)).await.unwrap();
}

#[tokio::test]
async fn a_cached_token_signed_by_a_withdrawn_key_stops_being_served() {
    let a = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let b = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let srv = jwks_server(a.jwks_json()).await;
    let clock = TestClock::at(NOW);
    let cache = CachingVerifier::new(Arc::new(url_verifier(&srv, clock.clone())), clock.clone());
    let long_lived = token_at(&a, &clock, 4 * 3600);
    cache.verify(&long_lived).await.unwrap();
    assert_eq!(cache.len(), 1);
    *srv.doc.lock().unwrap() = b.jwks_json();
    clock.advance(3600);
    assert_eq!(
        cache.verify(&long_lived).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(
        cache.verify(&long_lived).await,
        Err(AuthFailure::UnknownKey)
    );
    cache.verify(&token_at(&b, &clock, 600)).await.unwrap();
}

#[tokio::test]
async fn inline_keys_never_expire() {
    let a = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let b = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let srv = jwks_server(b.jwks_json()).await;
    srv.keys(Answer::Status(500));
    let clock = TestClock::at(NOW);
    // Initial keys and a source for unknown kids: the initial keys never
    // expire (PORTAL_JWKS itself fetches nothing, see below).
    let v = JwtVerifier::new(
        settings(),
        KeySet::from_jwks_json(&a.jwks_json()).unwrap(),
        JwksSource::Url(format!("{}/keys", srv.base)),
        clock.clone(),
    );
    for _ in 0..3 {
        clock.advance(30 * 86_400);
        v.verify(&token_at(&a, &clock, 600)).await.unwrap();
    }
    assert_eq!(srv.fetches(), 0);
}

/// A portal on a real socket whose verifier (behind the token cache)
/// discovers its keys from `source`, on the harness's clock.
async fn portal_with_idp(source: JwksSource) -> (Harness, Server) {
    let mut h = Harness::new(&test_seed(), 10).await;
    let jwt = JwtVerifier::new(settings(), KeySet::default(), source, h.clock.clone());
    h.portal.verifier = Arc::new(CachingVerifier::new(Arc::new(jwt), h.clock.clone()));
    let server = h.serve().await;
    (h, server)
}

fn assert_outage(r: &Reply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text);
    let j = r.assert_problem(503);
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
    assert!(
        j["detail"].as_str().unwrap().contains("again"),
        "{what}: {j}"
    );
    assert!(
        r.header("www-authenticate").is_none(),
        "{what}: not a sign-in error"
    );
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_a_503_with_retry_after_not_a_401() {
    let cases: Vec<(&str, Option<Answer>, Option<Answer>)> = vec![
        ("JWKS 500", None, Some(Answer::Status(500))),
        ("JWKS 503", None, Some(Answer::Status(503))),
        ("JWKS not JSON", None, Some(Answer::Body("<html>".into()))),
        (
            "JWKS of the wrong shape",
            None,
            Some(Answer::Body(r#"{"keys":"x"}"#.into())),
        ),
        (
            "JWKS without usable keys",
            None,
            Some(Answer::Body(r#"{"keys":[]}"#.into())),
        ),
        ("discovery 502", Some(Answer::Status(502)), None),
        (
            "discovery not JSON",
            Some(Answer::Body("garbage".into())),
            None,
        ),
        (
            "discovery without jwks_uri",
            Some(Answer::Body("{}".into())),
            None,
        ),
        ("refused", None, None),
    ];
    for (what, discovery, keys) in cases {
        let srv = jwks_server(String::new()).await;
        let source = if what == "refused" {
            JwksSource::Discovery(closed_port_url())
        } else {
            JwksSource::Discovery(srv.base.clone())
        };
        let (h, server) = portal_with_idp(source).await;
        *srv.doc.lock().unwrap() = h.idp.jwks_json();
        if let Some(a) = discovery {
            srv.discovery(a);
        }
        if let Some(a) = keys {
            srv.keys(a);
        }
        let token = h.token("contoso", "alice", "RecoveryKey.Read");
        let r = server.get("/v1/devices", &token).await;
        assert_outage(&r, what);
        let r = server.post_key("PC-ALICE", &token, None).await;
        assert_outage(&r, what);
        assert_eq!(h.opens(), 0);
        // Operators see it: one `Unavailable` (Cause=idp) per refused request.
        use recovery_portal::domain::metrics::{Cause, Metric};
        assert_eq!(h.metrics.get(Metric::Unavailable(Cause::Idp)), 2, "{what}");
        if what == "refused" {
            continue;
        }
        // The failure was not cached: once the issuer answers, the same
        // token is accepted.
        srv.discovery(Answer::Serve);
        srv.keys(Answer::Serve);
        h.clock.advance(60);
        let r = server.get("/v1/devices", &token).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text);
    }
}

#[tokio::test]
async fn one_fetch_in_flight_and_a_back_off_while_the_identity_provider_is_down() {
    let srv = jwks_server(String::new()).await;
    let (h, server) = portal_with_idp(JwksSource::Url(format!("{}/keys", srv.base))).await;
    *srv.doc.lock().unwrap() = h.idp.jwks_json();
    srv.keys(Answer::Hang);
    let token = h.token("contoso", "alice", "RecoveryKey.Read");
    let server = Arc::new(server);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (server, token) = (server.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            server.get("/v1/devices", &token).await
        }));
    }
    for t in tasks {
        assert_outage(&t.await.unwrap(), "hanging JWKS");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    assert_eq!(srv.fetches(), 1, "concurrent requests share one fetch");
    // Within the back-off no request reaches the identity provider.
    srv.keys(Answer::Status(500));
    for _ in 0..5 {
        assert_outage(&server.get("/v1/devices", &token).await, "back-off");
    }
    assert_eq!(srv.fetches(), 1);
    // The back-off grows with each failure.
    let mut waited = Vec::new();
    for _ in 0..4 {
        let before = srv.fetches();
        let mut secs = 0;
        while srv.fetches() == before {
            h.clock.advance(1);
            secs += 1;
            assert_outage(&server.get("/v1/devices", &token).await, "retry");
            assert!(secs <= 60);
        }
        waited.push(secs);
    }
    assert!(waited.windows(2).all(|w| w[0] <= w[1]), "{waited:?}");
    assert!(waited[3] > waited[0], "{waited:?}");
    // Recovered: served again.
    srv.keys(Answer::Serve);
    h.clock.advance(60);
    assert_eq!(server.get("/v1/devices", &token).await.status, 200);
}

#[tokio::test]
async fn an_unknown_kid_is_401_when_the_refetch_succeeds_and_503_when_it_fails() {
    let srv = jwks_server(String::new()).await;
    let (h, server) = portal_with_idp(JwksSource::Url(format!("{}/keys", srv.base))).await;
    *srv.doc.lock().unwrap() = h.idp.jwks_json();
    let token = h.token("contoso", "alice", "RecoveryKey.Read");
    assert_eq!(server.get("/v1/devices", &token).await.status, 200);
    let stranger = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let unknown = stranger.token("contoso", "alice", "RecoveryKey.Read", h.clock.unix(), 3600);
    // The issuer answers and does not know the key: a sign-in error.
    h.clock.advance(31);
    let r = server.get("/v1/devices", &unknown).await;
    r.assert_problem(401);
    assert_eq!(srv.fetches(), 2, "the unknown kid was looked up");
    // The issuer is down: the key might be a new one, so it is an outage;
    // tokens under the known key are still served.
    srv.keys(Answer::Status(500));
    h.clock.advance(31);
    assert_outage(&server.get("/v1/devices", &unknown).await, "unknown kid");
    assert_eq!(srv.fetches(), 3);
    assert_eq!(server.get("/v1/devices", &token).await.status, 200);
    // Malformed tokens need no keys: still 401.
    server
        .get("/v1/devices", "not-a-token")
        .await
        .assert_problem(401);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_or_with_a_plain_http_jwks_uri_is_not_used() {
    let srv = jwks_server(String::new()).await;
    let port = srv.base.rsplit(':').next().unwrap().to_owned();
    for (what, doc) in [
        (
            "another issuer",
            json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/keys", srv.base)}),
        ),
        (
            "issuer with a trailing slash",
            json!({"issuer": format!("{}/", srv.base), "jwks_uri": format!("{}/keys", srv.base)}),
        ),
        (
            "plain http jwks_uri",
            // 0.0.0.0 reaches this host on Linux, yet is not a loopback name.
            json!({"issuer": srv.base, "jwks_uri": format!("http://0.0.0.0:{port}/keys")}),
        ),
    ] {
        let (h, server) = portal_with_idp(JwksSource::Discovery(srv.base.clone())).await;
        *srv.doc.lock().unwrap() = h.idp.jwks_json();
        srv.discovery(Answer::Body(doc.to_string()));
        let (before, discoveries) = (srv.fetches(), srv.discovery_fetches());
        let token = h.token("contoso", "alice", "RecoveryKey.Read");
        assert_misconfigured(&server.get("/v1/devices", &token).await, what);
        assert_eq!(srv.discovery_fetches(), discoveries + 1, "{what}");
        assert_eq!(srv.fetches(), before, "{what}: keys were fetched");
    }
}

/// Not an outage to wait out: a 503 whose type tells the page to say "the
/// portal is misconfigured, tell IT" instead of offering a retry.
fn assert_misconfigured(r: &Reply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text);
    let j = r.assert_problem(503);
    assert_eq!(
        j["type"], "https://recovery-portal.dev/problems/identity-provider-misconfigured",
        "{what}"
    );
    assert!(
        j["detail"]
            .as_str()
            .unwrap()
            .contains("Tell your IT support"),
        "{what}: {j}"
    );
    assert!(
        r.header("www-authenticate").is_none(),
        "{what}: not a sign-in error"
    );
}

#[tokio::test]
async fn a_misconfigured_issuer_is_logged_once_as_an_error() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let srv = jwks_server(String::new()).await;
    let doc = json!({"issuer": format!("{}/", srv.base), "jwks_uri": format!("{}/keys", srv.base)});
    srv.discovery(Answer::Body(doc.to_string()));
    let clock = TestClock::at(NOW);
    let v = JwtVerifier::new(
        settings(),
        KeySet::default(),
        JwksSource::Discovery(srv.base.clone()),
        clock.clone(),
    );
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    for _ in 0..3 {
        let t = idp.sign(&claims(json!({})));
        assert_eq!(v.verify(&t).await, Err(AuthFailure::IssuerMisconfigured));
        clock.advance(60);
    }
    assert_eq!(srv.discovery_fetches(), 3, "it keeps checking, quietly");
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let errors: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{logs}");
    assert!(
        errors[0].contains(&format!("names issuer \"{}/\"", srv.base)),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn accepts_ps256_384_512_rs384_512_and_es384_never_hs_or_none() {
    use jsonwebtoken::Algorithm as A;
    let rsa = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    // The JWK without `alg`: the key verifies every RSA algorithm.
    let mut jwks: Value = serde_json::from_str(&rsa.jwks_json()).unwrap();
    jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    let v = JwtVerifier::new(
        settings(),
        KeySet::from_jwks_json(&jwks.to_string()).unwrap(),
        JwksSource::Fixed,
        TestClock::at(NOW),
    );
    for (alg, name) in [
        (A::RS256, "RS256"),
        (A::RS384, "RS384"),
        (A::RS512, "RS512"),
        (A::PS256, "PS256"),
        (A::PS384, "PS384"),
        (A::PS512, "PS512"),
    ] {
        let t = rsa.sign_raw_as(
            alg,
            &json!({"alg": name, "kid": rsa.kid}),
            &claims(json!({})),
        );
        assert!(v.verify(&t).await.is_ok(), "{name}");
        // Signed with one algorithm, labelled another: a bad signature.
        let t = rsa.sign_raw_as(
            A::RS256,
            &json!({"alg": name, "kid": rsa.kid}),
            &claims(json!({})),
        );
        assert_eq!(
            v.verify(&t).await.is_ok(),
            name == "RS256",
            "{name} labelled, RS256 signed"
        );
    }
    // A JWK that names its `alg` verifies that algorithm only.
    let pinned = verifier(&rsa, None);
    let t = rsa.sign_raw_as(
        A::PS256,
        &json!({"alg": "PS256", "kid": rsa.kid}),
        &claims(json!({})),
    );
    assert_eq!(pinned.verify(&t).await, Err(AuthFailure::Algorithm));
    for alg in ["HS256", "HS384", "HS512", "none", "EdDSA"] {
        let t = rsa.sign_raw(&json!({"alg": alg, "kid": rsa.kid}), &claims(json!({})));
        assert_eq!(v.verify(&t).await, Err(AuthFailure::Algorithm), "{alg}");
    }
    // ES384 with a P-384 key, and never on the P-256 curve's key.
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let point = kp.public_key_raw();
    let jwk = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "p384", "use": "sig",
        "x": b64(&point[1..49]), "y": b64(&point[49..97])}]});
    let keys = KeySet::from_jwks_json(&jwk.to_string()).unwrap();
    assert_eq!(keys.len(), 1);
    let v384 = JwtVerifier::new(settings(), keys, JwksSource::Fixed, TestClock::at(NOW));
    let header = b64(json!({"alg": "ES384", "kid": "p384"})
        .to_string()
        .as_bytes());
    let msg = format!("{header}.{}", b64(claims(json!({})).to_string().as_bytes()));
    let key = jsonwebtoken::EncodingKey::from_ec_der(&kp.serialize_der());
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, A::ES384).unwrap();
    assert!(v384.verify(&format!("{msg}.{sig}")).await.is_ok());
    let ec = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let t = ec.sign_raw(&json!({"alg": "ES384", "kid": ec.kid}), &claims(json!({})));
    assert_eq!(
        verifier(&ec, None).verify(&t).await,
        Err(AuthFailure::Algorithm)
    );
}

#[tokio::test]
async fn tenant_and_user_claims_are_configurable() {
    let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let v = JwtVerifier::new(
        JwtSettings {
            tenant_claim: "https://example.com/tenant".into(),
            user_claim: "sub".into(),
            ..settings()
        },
        KeySet::from_jwks_json(&idp.jwks_json()).unwrap(),
        JwksSource::Fixed,
        TestClock::at(NOW),
    );
    let c = v
        .verify(&idp.sign(&claims(
            json!({"tid": null, "oid": "not-this", "sub": "bob", "https://example.com/tenant": "fabrikam", "auth_time": NOW - 30}),
        )))
        .await
        .unwrap();
    assert_eq!((c.tenant.as_str(), c.user.as_str()), ("fabrikam", "bob"));
    assert_eq!(c.auth_time, Some(NOW - 30));
    // `tid` is not looked at any more: no configured claim, no tenant.
    assert_eq!(
        v.verify(&idp.sign(&claims(json!({"sub": "bob"})))).await,
        Err(AuthFailure::NoTenant)
    );
    for bad in [json!(null), json!(7), json!(["fabrikam"])] {
        let mut c = claims(json!({"sub": "bob"}));
        c["https://example.com/tenant"] = bad.clone();
        assert!(v.verify(&idp.sign(&c)).await.is_err(), "{bad}");
    }
    let mut c = claims(json!({"https://example.com/tenant": "fabrikam"}));
    c["auth_time"] = json!("yesterday");
    assert!(
        v.verify(&idp.sign(&c)).await.is_err(),
        "auth_time must be a number"
    );
}

#[tokio::test]
async fn without_ca_certificates_the_process_fails_at_start_not_at_the_first_token() {
    // With PORTAL_TLS_ROOTS=system the key-fetching client trusts the
    // platform's CA store: with none, it cannot be built, and `portal serve`
    // must say so at start. (By default it trusts the roots compiled into
    // the binary and needs no CA file: see the next test.)
    let dir = std::env::temp_dir().join(format!("portal-auth-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("PORTAL_DEV_KEY_FILE", dir.join("key.p8"))
        .env("PORTAL_ISSUER", ISSUER)
        .env("PORTAL_AUDIENCE", AUDIENCE)
        .env("PORTAL_BACKEND", "embedded")
        .env("SSL_CERT_FILE", dir.join("empty.pem"))
        .env("SSL_CERT_DIR", dir.join("certs"))
        .env("PORTAL_TLS_ROOTS", "system")
        .env_remove("PORTAL_JWKS")
        .env_remove("PORTAL_JWKS_URL")
        .env_remove("PORTAL_JWKS_MAX_AGE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    if status.is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.is_some(), "still serving: {stderr}");
    assert!(!out.status.success());
    assert!(stderr.contains("PORTAL_ISSUER"), "{stderr}");
    assert!(stderr.contains("HTTP client"), "{stderr}");
}

#[tokio::test]
async fn by_default_the_key_client_needs_no_ca_file_of_the_platform() {
    // The roots are compiled in: an empty platform store does not stop the
    // process (the functions' init guard shows no CA file is even opened).
    let dir = std::env::temp_dir().join(format!("portal-auth-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("PORTAL_DEV_KEY_FILE", dir.join("key.p8"))
        .env("PORTAL_ISSUER", ISSUER)
        .env("PORTAL_AUDIENCE", AUDIENCE)
        .env("PORTAL_BACKEND", "embedded")
        .env("SSL_CERT_FILE", dir.join("empty.pem"))
        .env("SSL_CERT_DIR", dir.join("certs"))
        .env_remove("PORTAL_TLS_ROOTS")
        .env_remove("PORTAL_JWKS")
        .env_remove("PORTAL_JWKS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stderr.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut text = String::new();
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains("listening") {
                return (true, text);
            }
        }
        (false, text)
    });
    let (started, text) = tokio::time::timeout(std::time::Duration::from_secs(20), started)
        .await
        .map(|r| r.unwrap())
        .unwrap_or((false, String::new()));
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        started && running,
        "portal serve must start without a platform CA store: {text}"
    );
}

#[tokio::test]
async fn portal_jwks_max_age_sets_how_long_fetched_keys_are_used() {
    let a = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let b = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
    let srv = jwks_server(a.jwks_json()).await;
    let jwks_url = format!("{}/keys", srv.base);
    let config = recovery_portal::config::Config::from_lookup(|k| match k {
        "PORTAL_ISSUER" => Some(ISSUER.to_owned()),
        "PORTAL_AUDIENCE" => Some(AUDIENCE.to_owned()),
        "PORTAL_JWKS_URL" => Some(jwks_url.clone()),
        "PORTAL_JWKS_MAX_AGE" => Some("60".to_owned()),
        _ => None,
    })
    .unwrap();
    let clock = TestClock::at(NOW);
    let v =
        recovery_portal::app::jwt_verifier_with_clock(config.auth.as_ref().unwrap(), clock.clone())
            .unwrap();
    // Behind the production token cache.
    let ta = token_at(&a, &clock, 3600);
    v.verify(&ta).await.unwrap();
    *srv.doc.lock().unwrap() = b.jwks_json();
    clock.advance(59);
    v.verify(&ta).await.unwrap();
    assert_eq!(srv.fetches(), 1);
    clock.advance(1);
    assert_eq!(v.verify(&ta).await, Err(AuthFailure::UnknownKey));
    assert_eq!(srv.fetches(), 2);
    v.verify(&token_at(&b, &clock, 600)).await.unwrap();
}

/// `PORTAL_JWKS` (keys given inline) is the whole key set: a token naming
/// another `kid` is a sign-in error (401 `invalid_token`), never a reason to
/// fetch keys from the issuer or `PORTAL_JWKS_URL`, which would replace the
/// configured keys with whatever those answer.
#[tokio::test]
async fn with_inline_keys_an_unknown_kid_is_401_and_nothing_is_fetched() {
    let srv = jwks_server(String::new()).await;
    let issuer = srv.base.clone();
    let inline = DevIdentityProvider::generate(DevAlg::Es256, &issuer, AUDIENCE);
    let other = DevIdentityProvider::generate(DevAlg::Es256, &issuer, AUDIENCE);
    // The issuer (discovery, then /keys) publishes the other key.
    *srv.doc.lock().unwrap() = other.jwks_json();
    for jwks_url in [None, Some(format!("{}/keys", srv.base))] {
        let inline_jwks = inline.jwks_json();
        let config = recovery_portal::config::Config::from_lookup(|k| match k {
            "PORTAL_ISSUER" => Some(issuer.clone()),
            "PORTAL_AUDIENCE" => Some(AUDIENCE.to_owned()),
            "PORTAL_JWKS" => Some(inline_jwks.clone()),
            "PORTAL_JWKS_URL" => jwks_url.clone(),
            _ => None,
        })
        .unwrap();
        let mut h = Harness::new(&test_seed(), 10).await;
        h.portal.verifier = recovery_portal::app::jwt_verifier_with_clock(
            config.auth.as_ref().unwrap(),
            h.clock.clone(),
        )
        .unwrap();
        let server = h.serve().await;
        let now = h.clock.unix();
        let known = inline.token("contoso", "alice", "RecoveryKey.Read", now, 3600);
        let unknown = other.token("contoso", "alice", "RecoveryKey.Read", now, 3600);
        assert_eq!(server.get("/v1/devices", &known).await.status, 200);
        for _ in 0..2 {
            let r = server.get("/v1/devices", &unknown).await;
            r.assert_problem(401);
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|w| w.contains("invalid_token")),
                "{:?}",
                r.header("www-authenticate")
            );
            h.clock.advance(31);
        }
        assert_eq!(
            (srv.fetches(), srv.discovery_fetches()),
            (0, 0),
            "PORTAL_JWKS_URL {jwks_url:?}: nothing to fetch"
        );
        // The inline key still verifies, long after.
        h.clock.advance(30 * 86_400);
        let later = inline.token("contoso", "alice", "RecoveryKey.Read", h.clock.unix(), 3600);
        assert_eq!(server.get("/v1/devices", &later).await.status, 200);
    }
}

/// Property tests of header and claims parsing: arbitrary JSON never
/// panics, and a token is accepted exactly when every field we read has
/// its type and value.
mod properties {
    use super::*;
    use proptest::prelude::*;
    use recovery_portal::domain::ids::UserId;
    use std::sync::OnceLock;

    /// Stands for the signing key's `kid` in generated headers.
    const KID: &str = "<the signing key's kid>";
    const WORDS: &[&str] = &[
        "ES256",
        "RS256",
        "HS256",
        "none",
        "JWT",
        "at+jwt",
        "id+jwt",
        "",
        ISSUER,
        AUDIENCE,
        "contoso",
        "alice",
        "a/b",
        "RecoveryKey.Read",
        "access",
        "id",
        KID,
    ];

    struct Fixture {
        rt: tokio::runtime::Runtime,
        idp: DevIdentityProvider,
        verifier: JwtVerifier,
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let idp = DevIdentityProvider::generate(DevAlg::Es256, ISSUER, AUDIENCE);
            let verifier = verifier(&idp, None);
            Fixture {
                rt: tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap(),
                idp,
                verifier,
            }
        })
    }

    impl Fixture {
        fn verify(
            &self,
            token: &str,
        ) -> Result<recovery_portal::domain::caller::Caller, AuthFailure> {
            self.rt.block_on(self.verifier.verify(token))
        }
        /// `v` with the `KID` placeholder replaced by the real kid.
        fn real(&self, v: Value) -> Value {
            if v == json!(KID) {
                json!(self.idp.kid)
            } else {
                v
            }
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (NOW - 200..NOW + 200).prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[ -~]{0,10}".prop_map(Value::String),
            prop::sample::select(WORDS).prop_map(Value::from),
        ]
    }

    fn any_json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,4}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Absent, one of `likely`, or anything.
    fn field(likely: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            2 => Just(None),
            4 => prop::sample::select(likely).prop_map(|s| Some(json!(s))),
            2 => any_json().prop_map(Some),
        ]
    }

    fn typ_ok(typ: Option<&Value>) -> bool {
        match typ {
            None => true,
            Some(Value::String(t)) => {
                let t = t.to_ascii_lowercase();
                ["jwt", "at+jwt", "application/jwt", "application/at+jwt"].contains(&t.as_str())
            }
            Some(_) => false,
        }
    }

    /// The acceptance rule, written from the README's security model:
    /// `Some((tenant, user, exp))` if these claims must be accepted.
    fn expected(c: &serde_json::Map<String, Value>) -> Option<(String, String, i64)> {
        let now = NOW as f64;
        let get = |k: &str| c.get(k);
        let string = |k: &str| match get(k) {
            None => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        (get("iss")? == &json!(ISSUER)).then_some(())?;
        match get("aud")? {
            Value::String(a) if a == AUDIENCE => {}
            Value::Array(a) if strings(get("aud")?) && a.contains(&json!(AUDIENCE)) => {}
            _ => return None,
        }
        let exp = get("exp")?.as_f64()?;
        (exp + 60.0 >= now).then_some(())?;
        if let Some(nbf) = get("nbf") {
            (nbf.as_f64()? - 60.0 <= now).then_some(())?;
        }
        if let Some(iat) = get("iat") {
            iat.as_f64()?;
        }
        if let Some(scp) = get("scp") {
            (scp.is_string() || strings(scp)).then_some(())?;
        }
        if let Some(roles) = get("roles") {
            strings(roles).then_some(())?;
        }
        string("scope")?;
        if let Some(u) = string("token_use")? {
            (u == "access").then_some(())?;
        }
        let tenant = string("tid")??;
        TenantId::parse(&tenant).ok()?;
        let (oid, sub) = (string("oid")?, string("sub")?);
        let user = oid.or(sub)?;
        UserId::parse(&user).ok()?;
        Some((tenant, user, exp as i64))
    }

    const CLAIMS: &[&str] = &[
        "iss",
        "aud",
        "exp",
        "nbf",
        "iat",
        "tid",
        "oid",
        "sub",
        "scp",
        "scope",
        "roles",
        "token_use",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn a_header_is_accepted_exactly_when_alg_kid_typ_and_crit_are_right(
            alg in field(&["ES256", "RS256", "none", "HS256", "es256"]),
            kid in field(&[KID, "other", ""]),
            typ in field(&["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", "id+jwt", "JWS", ""]),
            crit in prop_oneof![4 => Just(None), 1 => any_json().prop_map(Some)],
        ) {
            let f = fixture();
            let mut h = serde_json::Map::new();
            for (name, value) in [("alg", alg), ("kid", kid), ("typ", typ), ("crit", crit)] {
                if let Some(v) = value {
                    h.insert(name.into(), f.real(v));
                }
            }
            let token = f.idp.sign_raw(&Value::Object(h.clone()), &claims(json!({})));
            let got = f.verify(&token);
            let want = h.get("alg") == Some(&json!("ES256"))
                && h.get("kid") == Some(&json!(f.idp.kid))
                && !h.contains_key("crit")
                && typ_ok(h.get("typ"));
            prop_assert_eq!(got.is_ok(), want, "{:?} -> {:?}", h, got);
        }

        #[test]
        fn extra_header_fields_never_make_a_bad_header_good(
            extra in prop::collection::vec(
                (prop::sample::select(&["jku", "x5u", "jwk", "x5c", "cty", "zip", "b64", "typ", "crit", "alg", "kid", "enc"][..]),
                 any_json()),
                0..5),
        ) {
            let f = fixture();
            let mut h = serde_json::Map::new();
            h.insert("alg".into(), json!("ES256"));
            h.insert("kid".into(), json!(f.idp.kid));
            for (name, value) in extra {
                h.insert(name.into(), f.real(value));
            }
            let token = f.idp.sign_raw(&Value::Object(h.clone()), &claims(json!({})));
            if f.verify(&token).is_ok() {
                prop_assert_eq!(h.get("alg"), Some(&json!("ES256")));
                prop_assert_eq!(h.get("kid"), Some(&json!(f.idp.kid)));
                prop_assert!(!h.contains_key("crit"));
                prop_assert!(typ_ok(h.get("typ")), "{:?}", h);
            }
        }

        #[test]
        fn claims_are_accepted_exactly_when_each_claim_read_is_well_typed_and_right(
            changes in prop::collection::vec(
                (prop::sample::select(CLAIMS), prop_oneof![1 => Just(None), 4 => any_json().prop_map(Some)]),
                0..4),
        ) {
            let f = fixture();
            let mut c = claims(json!({"iat": NOW, "sub": "bob"}));
            let m = c.as_object_mut().unwrap();
            for (name, value) in changes {
                match value {
                    Some(v) => m.insert(name.into(), v),
                    None => m.remove(name),
                };
            }
            let want = expected(m);
            let got = f.verify(&f.idp.sign(&c));
            match (&got, &want) {
                (Ok(caller), Some((tenant, user, exp))) => {
                    prop_assert_eq!(caller.tenant.as_str(), tenant);
                    prop_assert_eq!(caller.user.as_str(), user);
                    prop_assert_eq!(caller.expires_at, *exp);
                }
                (Err(_), None) => {}
                _ => prop_assert!(false, "{} -> {:?}, expected {:?}", c, got, want),
            }
        }

        #[test]
        fn arbitrary_strings_and_unsigned_json_are_never_accepted(
            raw in any::<String>(),
            header in any_json(),
            body in any_json(),
            sig in "[A-Za-z0-9_-]{0,90}",
        ) {
            let f = fixture();
            prop_assert!(f.verify(&raw).is_err());
            let token = format!("{}.{}.{sig}", b64(header.to_string().as_bytes()), b64(body.to_string().as_bytes()));
            prop_assert!(f.verify(&token).is_err());
        }
    }
}
