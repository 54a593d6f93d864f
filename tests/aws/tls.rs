//! The SDK's HTTPS client trusts the compiled-in Amazon Trust Services roots
//! and only what `AWS_CA_BUNDLE` / `PORTAL_TLS_ROOTS` add, checked over real
//! TLS sockets against an endpoint whose certificate a private CA issued.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use recovery_portal::adapters::aws::tls::TrustRoots;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the endpoint answers to every request, once TLS is established.
const ANSWER: &str = "answered over TLS by the test endpoint";

struct Endpoint {
    addr: SocketAddr,
    ca_pem: String,
    /// Completed TLS handshakes.
    handshakes: Arc<AtomicUsize>,
}

/// An HTTPS endpoint on 127.0.0.1 with a certificate for `localhost` issued
/// by a fresh private CA; every request gets a DynamoDB-style 400.
async fn endpoint() -> Endpoint {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "recovery-portal test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let h = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                answer(&mut tls).await;
            });
        }
    });
    Endpoint {
        addr,
        ca_pem: ca.pem(),
        handshakes,
    }
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body) and
/// answers it with a DynamoDB `ValidationException`.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body_start = loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < body_start + length {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"{ANSWER}"}}"#
    );
    let resp = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn client(roots: &TrustRoots, e: &Endpoint) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(format!("https://localhost:{}", e.addr.port()))
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .http_client(roots.http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

#[tokio::test]
async fn only_amazon_roots_by_default_and_a_ca_bundle_adds_its_ca() {
    let e = endpoint().await;

    // Default: Amazon Trust Services roots only, so a private CA's
    // certificate is refused during the handshake; nothing is sent.
    let amazon_only = TrustRoots {
        system: false,
        extra_pem: None,
    };
    let err = client(&amazon_only, &e)
        .list_tables()
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, SdkError::DispatchFailure(_)),
        "{}",
        DisplayErrorContext(&err)
    );
    assert!(
        DisplayErrorContext(&err)
            .to_string()
            .contains("UnknownIssuer"),
        "{}",
        DisplayErrorContext(&err)
    );
    // The platform's store does not hold the private CA either.
    let system = TrustRoots {
        system: true,
        extra_pem: None,
    };
    let err = client(&system, &e).list_tables().send().await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)));
    assert_eq!(e.handshakes.load(Ordering::SeqCst), 0);

    // AWS_CA_BUNDLE's certificates are trusted in addition.
    let with_bundle = TrustRoots {
        system: false,
        extra_pem: Some(e.ca_pem.clone().into_bytes()),
    };
    let err = client(&with_bundle, &e)
        .list_tables()
        .send()
        .await
        .unwrap_err();
    let text = DisplayErrorContext(&err).to_string();
    assert!(matches!(err, SdkError::ServiceError(_)), "{text}");
    assert!(text.contains(ANSWER), "{text}");
    assert_eq!(e.handshakes.load(Ordering::SeqCst), 1);
}

fn portal_tables_create() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_portal"));
    c.args(["tables", "create"])
        .env("PORTAL_TABLE_PREFIX", "tls-test")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("PORTAL_TLS_ROOTS");
    c
}

#[tokio::test]
async fn the_portal_reads_aws_ca_bundle_and_refuses_bad_tls_settings() {
    let e = endpoint().await;
    let dir = std::env::temp_dir().join(format!("portal-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, &e.ca_pem).unwrap();
    let url = format!("https://localhost:{}", e.addr.port());
    let run = |c: &mut std::process::Command| {
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // Through the process's own configuration: the bundle makes the
    // endpoint's certificate trusted, so the request reaches it.
    let stderr = tokio::task::spawn_blocking({
        let (url, bundle) = (url.clone(), bundle.clone());
        move || {
            run(portal_tables_create()
                .env("AWS_ENDPOINT_URL", url)
                .env("AWS_CA_BUNDLE", bundle))
        }
    })
    .await
    .unwrap();
    assert!(stderr.contains(ANSWER), "{stderr}");
    assert_eq!(e.handshakes.load(Ordering::SeqCst), 1);

    // Without it, the handshake fails and nothing reaches the endpoint.
    let stderr = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(portal_tables_create().env("AWS_ENDPOINT_URL", url))
    })
    .await
    .unwrap();
    assert!(!stderr.contains(ANSWER), "{stderr}");
    assert_eq!(e.handshakes.load(Ordering::SeqCst), 1);

    // Bad settings stop the process before any request, naming the variable.
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "no certificates here\n").unwrap();
    for (var, value, says) in [
        ("AWS_CA_BUNDLE", dir.join("missing.pem"), "AWS_CA_BUNDLE"),
        ("AWS_CA_BUNDLE", not_pem, "no PEM certificate"),
        ("PORTAL_TLS_ROOTS", "mozilla".into(), "PORTAL_TLS_ROOTS"),
    ] {
        let url = url.clone();
        let stderr = tokio::task::spawn_blocking(move || {
            run(portal_tables_create()
                .env("AWS_ENDPOINT_URL", url)
                .env(var, value))
        })
        .await
        .unwrap();
        assert!(stderr.contains(says), "{var}: {stderr}");
    }
    assert_eq!(e.handshakes.load(Ordering::SeqCst), 1);
}

/// The identity provider's JWKS client trusts Mozilla's roots compiled into
/// the binary (no trust-store file at init): it speaks TLS, and refuses a
/// certificate no root it knows issued, as it must.
#[tokio::test]
async fn the_jwks_client_verifies_certificates_against_its_compiled_roots() {
    let ep = endpoint().await;
    let client = recovery_portal::adapters::jwt::jwks_http_client().expect("builds with no file");
    let url = format!("https://localhost:{}/jwks.json", ep.addr.port());
    let err = client
        .get(&url)
        .send()
        .await
        .expect_err("a private CA is not trusted");
    let mut chain = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        chain = format!("{chain}: {s}");
        src = s.source();
    }
    assert!(
        chain.to_ascii_lowercase().contains("certificate"),
        "a certificate error, not another failure: {chain}"
    );
    assert_eq!(
        ep.handshakes.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
}
