//! Per-request cost through the real `http::handle` on the embedded
//! backends, against the floor: verifying the same RS256 token alone.
//! Run by `scripts/bench.sh` (`cargo bench --bench requests`); not in CI.
//!
//! Every request carries a fresh request id and callers rotate among many
//! users, each with a rate limit of 10,000 per hour, so no retrieval is a
//! retry or rate-limited: each one reads, audits (a new event), decrypts and
//! serialises. Logs go to a JSON subscriber writing to a sink, as in Lambda.

#[path = "support/synthetic.rs"]
mod synthetic;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, header};
use recovery_portal::api::{ApiRequest, Routes, handle};
use recovery_portal::app;
use recovery_portal::domain::ports::{SystemClock, TokenVerifier};
use recovery_portal::frontends::lambda;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const USERS: usize = 4096;
const ISSUER: &str = "https://login.example.test/bench/v2.0";
const AUDIENCE: &str = "api://recovery-portal-bench";

fn request(method: Method, path: String, token: &str, body: &'static str, id: usize) -> ApiRequest {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static("Mozilla/5.0 (Windows NT 10.0; Win64; x64) CompanyPortal"),
    );
    if !body.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    ApiRequest {
        method,
        path,
        query: None,
        headers,
        body: Bytes::from_static(body.as_bytes()),
        source_ip: Some("198.51.100.23".into()),
        request_id: format!("bench-{id:012}"),
    }
}

/// Benchmarks `routes` on `portal` with requests from `make`, each answered 200.
fn bench_route(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &tokio::runtime::Runtime,
    portal: &recovery_portal::domain::ports::Portal,
    routes: Routes,
    make: &dyn Fn() -> ApiRequest,
) {
    g.bench_function(name, |b| {
        b.iter_batched(
            make,
            |req| {
                let r = rt.block_on(handle(portal, routes, req));
                assert_eq!(r.status(), 200);
                r
            },
            BatchSize::SmallInput,
        )
    });
}

fn benches(c: &mut Criterion) {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_target(false)
        .without_time()
        .try_init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = DevIdentityProvider::generate(DevAlg::Rs256, ISSUER, AUDIENCE);
    let verifier: Arc<dyn TokenVerifier> = Arc::new(idp.verifier(Arc::new(SystemClock)));
    let (seed_json, expected) = synthetic::seed(USERS);
    let seed = recovery_portal::tools::seed::parse(&seed_json).unwrap();
    let (portal, _store) = rt.block_on(app::embedded(
        &seed,
        verifier.clone(),
        app::RateLimits {
            key: 10_000,
            ..Default::default()
        },
    ));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tokens: Vec<String> = expected
        .iter()
        .map(|e| {
            idp.token(
                synthetic::TENANT,
                &e.user,
                "RecoveryKey.Read",
                now,
                3 * 3600,
            )
        })
        .collect();
    let event_template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/events/get-recovery-key.json"
    ))
    .unwrap();
    let events: Vec<String> = expected
        .iter()
        .zip(&tokens)
        .map(|(e, t)| {
            event_template
                .replace("{{TOKEN}}", t)
                .replace("DESKTOP-7Q2M4K1", &e.device_id)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let pick = || next.fetch_add(1, Ordering::Relaxed);

    // Every route answers as expected before anything is timed.
    for i in 0..4 {
        let r = rt.block_on(handle(
            &portal,
            Routes::List,
            request(Method::GET, "/v1/devices".into(), &tokens[i], "", pick()),
        ));
        assert_eq!(r.status(), 200);
        let path = format!("/v1/devices/{}/recovery-key", expected[i].device_id);
        let r = rt.block_on(handle(
            &portal,
            Routes::Key,
            request(Method::POST, path, &tokens[i], "", pick()),
        ));
        assert_eq!(r.status(), 200);
        assert!(String::from_utf8_lossy(r.body()).contains(&expected[i].password));
    }

    let mut g = c.benchmark_group("per_request");
    g.warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sample_size(60);

    g.bench_function("floor_verify_rs256_token", |b| {
        b.iter_batched(
            || &tokens[pick() % USERS],
            |t| rt.block_on(verifier.verify(t)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    // One request of each route, for a rotating user and a fresh request id.
    let list_request = || {
        let i = pick();
        request(Method::GET, "/v1/devices".into(), &tokens[i % USERS], "", i)
    };
    let key_request = || {
        let i = pick();
        let u = i % USERS;
        let path = format!("/v1/devices/{}/recovery-key", expected[u].device_id);
        request(
            Method::POST,
            path,
            &tokens[u],
            r#"{"reason":"Locked out after a firmware update"}"#,
            i,
        )
    };
    bench_route(
        &mut g,
        "list_devices",
        &rt,
        &portal,
        Routes::List,
        &list_request,
    );
    bench_route(
        &mut g,
        "retrieve_key",
        &rt,
        &portal,
        Routes::Key,
        &key_request,
    );
    // The same with a verified-token cache in front of the verifier, the
    // token already cached (a user's second request with one token).
    let cached = recovery_portal::domain::ports::Portal {
        verifier: Arc::new(
            recovery_portal::adapters::token_cache::CachingVerifier::new(
                verifier.clone(),
                Arc::new(SystemClock),
            ),
        ),
        ..portal.clone()
    };
    for t in &tokens {
        rt.block_on(cached.verifier.verify(t)).unwrap();
    }
    g.bench_function("cached_token_verify", |b| {
        b.iter_batched(
            || &tokens[pick() % USERS],
            |t| rt.block_on(cached.verifier.verify(t)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    bench_route(
        &mut g,
        "list_devices_cached_token",
        &rt,
        &cached,
        Routes::List,
        &list_request,
    );
    bench_route(
        &mut g,
        "retrieve_key_cached_token",
        &rt,
        &cached,
        Routes::Key,
        &key_request,
    );
    // What the function does per invocation: the API Gateway event parsed
    // into a request (lambda_http), the handler, and the response.
    g.bench_function("retrieve_key_from_apigw_event", |b| {
        b.iter_batched(
            || {
                let i = pick();
                // A fresh request id per invocation, as the gateway gives.
                events[i % USERS].replace("Ab1Cd2Ef3Gh3=", &format!("bench-{i:012}"))
            },
            |event| {
                let req = lambda_http::request::from_str(&event).unwrap();
                let r = rt
                    .block_on(lambda::handle(&portal, Routes::Key, req))
                    .unwrap();
                assert_eq!(r.status(), 200);
                r
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Inside the floor: the RS256 signature check as jsonwebtoken does it
    // (the public key rebuilt from n and e on every call) and with the key
    // parsed once.
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks: serde_json::Value = serde_json::from_str(&idp.jwks_json()).unwrap();
    let n = b64.decode(jwks["keys"][0]["n"].as_str().unwrap()).unwrap();
    let e = b64.decode(jwks["keys"][0]["e"].as_str().unwrap()).unwrap();
    let (msg, sig) = tokens[0].rsplit_once('.').unwrap();
    let sig = b64.decode(sig).unwrap();
    let components = RsaPublicKeyComponents {
        n: &n[..],
        e: &e[..],
    };
    let parsed = components
        .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
        .unwrap();
    let mut g = c.benchmark_group("rs256_signature");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("key_from_components_per_call", |b| {
        b.iter(|| {
            components
                .verify(&RSA_PKCS1_2048_8192_SHA256, msg.as_bytes(), &sig)
                .unwrap()
        })
    });
    g.bench_function("key_parsed_once", |b| {
        b.iter(|| parsed.verify_sig(msg.as_bytes(), &sig).unwrap())
    });
    g.finish();
}

criterion_group!(requests, benches);
criterion_main!(requests);
