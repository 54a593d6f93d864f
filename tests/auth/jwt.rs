//! Token verification: algorithms, headers, claims, time, tenants,
//! permissions, and JWKS refresh against a real HTTP JWKS endpoint.

use crate::support::common;

use axum::Router;
use axum::routing::get;
use common::*;
use recovery_portal::adapters::jwt::{JwksSource, JwtSettings, JwtVerifier, KeySet};
use recovery_portal::domain::error::AuthFailure;
use recovery_portal::domain::ids::TenantId;
use recovery_portal::ports::TokenVerifier;
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

/// A JWKS endpoint whose document can change, counting fetches, plus an
/// "attacker" endpoint that must never be contacted.
struct JwksServer {
    base: String,
    doc: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    attacker_hits: Arc<AtomicUsize>,
}

async fn jwks_server(initial: String) -> JwksServer {
    let doc = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let attacker_hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (d, f, a, b) = (
        doc.clone(),
        fetches.clone(),
        attacker_hits.clone(),
        base.clone(),
    );
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let b = b.clone();
                async move { json!({"issuer": b, "jwks_uri": format!("{b}/keys")}).to_string() }
            }),
        )
        .route(
            "/keys",
            get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let d = d.lock().unwrap().clone();
                async move { d }
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
        fetches,
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
