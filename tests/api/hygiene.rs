//! Input hygiene and connection handling: what a request may carry in its
//! `reason` and query string, what its `Debug` form shows, and that early
//! answers of the local server leave keep-alive clients working.

use crate::support::common;

use common::*;
use recovery_portal::api::ApiRequest;
use recovery_portal::domain::audit::Outcome;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const OWNER: &str = "RecoveryKey.Read";

#[test]
fn api_request_debug_redacts_the_authorization_header() {
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA";
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    headers.insert(http::header::USER_AGENT, "curl/8".parse().unwrap());
    let req = ApiRequest {
        method: http::Method::POST,
        path: "/v1/devices/PC-ALICE/recovery-key".into(),
        query: None,
        headers,
        body: bytes::Bytes::from_static(br#"{"reason":"lost PIN"}"#),
        source_ip: Some("192.0.2.1".into()),
        request_id: "req-1".into(),
    };
    let shown = format!("{req:?}");
    assert!(!shown.contains(token), "{shown}");
    assert!(!shown.contains("c2lnbmF0dXJl"), "{shown}");
    assert!(
        shown.contains("authorization"),
        "the header is named: {shown}"
    );
    // The rest stays useful for debugging.
    for part in ["/v1/devices/PC-ALICE/recovery-key", "curl/8", "req-1"] {
        assert!(shown.contains(part), "{part} missing: {shown}");
    }
    // Alternate form too.
    assert!(!format!("{req:#?}").contains(token));
}

#[tokio::test]
async fn reason_rejects_control_and_bidirectional_characters() {
    let h = Harness::new(&test_seed(), 100).await;
    let s = h.serve().await;
    let alice = h.token("contoso", "alice", OWNER);
    for bad in [
        "ticket \u{202E}1174", // right-to-left override
        "ticket \u{202A}4711", // left-to-right embedding
        "ticket \u{202B}4711", // right-to-left embedding
        "ticket \u{202C}4711", // pop directional formatting
        "ticket \u{202D}4711", // left-to-right override
        "ticket \u{2066}4711", // left-to-right isolate
        "ticket \u{2067}4711", // right-to-left isolate
        "ticket \u{2068}4711", // first strong isolate
        "ticket \u{2069}4711", // pop directional isolate
        "ticket \u{200E}4711", // left-to-right mark
        "ticket \u{200F}4711", // right-to-left mark
        "ticket \u{061C}4711", // Arabic letter mark
        "ticket\u{2028}4711",  // line separator
        "ticket\u{2029}4711",  // paragraph separator
        "ticket\u{0085}4711",  // next line (C1 control)
        "ticket\u{0007}4711",  // bell
    ] {
        let body = serde_json::json!({ "reason": bad }).to_string();
        let j = s
            .post_key("PC-ALICE", &alice, Some(&body))
            .await
            .assert_problem(400);
        assert!(
            j["detail"].as_str().unwrap().contains("reason"),
            "{bad:?}: {j}"
        );
    }
    assert_eq!(h.opens(), 0, "nothing was decrypted");
    // Every refusal is an audited attempt, without the offending text.
    let log = h.memory.audit_log();
    assert_eq!(log.len(), 16);
    assert!(log.iter().all(|e| e.outcome == Outcome::Denied
        && e.reason == "invalid_request"
        && e.justification.is_none()));
    // Ordinary text in any script is fine.
    for good in [
        "Ticket 4711: lost PIN",
        "رمز الاسترداد",
        "回復キー",
        "ÄÖÜ – é",
    ] {
        let body = serde_json::json!({ "reason": good }).to_string();
        let r = s.post_key("PC-ALICE", &alice, Some(&body)).await;
        assert_eq!(r.status, 200, "{good:?}: {}", r.text);
    }
}

#[tokio::test]
async fn an_unknown_query_parameter_on_key_retrieval_is_a_400_and_audited() {
    let h = Harness::new(&test_seed(), 100).await;
    let s = h.serve().await;
    let alice = h.token("contoso", "alice", OWNER);
    for q in ["key_id=11111111", "debug=1", "reason=x", "&&x"] {
        let r = s
            .send(
                "POST",
                &format!("/v1/devices/PC-ALICE/recovery-key?{q}"),
                Some(&alice),
                None,
            )
            .await;
        let j = r.assert_problem(400);
        assert!(
            j["detail"].as_str().unwrap().contains("query parameter"),
            "{q}: {j}"
        );
    }
    assert_eq!(h.opens(), 0, "nothing was decrypted");
    let log = h.memory.audit_log();
    assert_eq!(log.len(), 4, "{log:?}");
    for e in &log {
        assert_eq!(e.outcome, Outcome::Denied);
        assert_eq!(e.reason, "invalid_request");
        assert_eq!(e.device_id.as_ref().map(|d| d.as_str()), Some("PC-ALICE"));
    }
    // An empty query string is no parameter at all.
    let r = s
        .send(
            "POST",
            "/v1/devices/PC-ALICE/recovery-key?",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// One HTTP/1.1 answer read off a raw connection: (status, lower-cased head,
/// body), reading exactly `content-length` bytes of body.
fn read_answer(s: &mut TcpStream) -> std::io::Result<(u16, String, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

fn post(token: &str, body_len: usize, declared: usize) -> Vec<u8> {
    let mut r = format!(
        "POST /v1/devices/PC-ALICE/recovery-key HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    )
    .into_bytes();
    r.extend(std::iter::repeat_n(b' ', body_len));
    r
}

fn get_devices(token: &str) -> Vec<u8> {
    format!("GET /v1/devices HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

/// Whether the answer's head announces that the server closes the connection.
fn announces_close(head: &str) -> bool {
    head.lines().any(|l| {
        l.strip_prefix("connection:")
            .is_some_and(|v| v.split(',').any(|t| t.trim() == "close"))
    })
}

/// Sends `first` on a fresh connection, expects `expect_first`, then sends a
/// `GET /v1/devices` on the same connection. Returns the first answer's head
/// and the second answer's status, or None when the first answer announced
/// `Connection: close` (and the server then closed). A connection that breaks
/// without that announcement fails the test.
async fn second_request_after(
    h: &Harness,
    first: Vec<u8>,
    expect_first: u16,
) -> (String, Option<u16>) {
    let s = h.serve().await;
    let token = h.token("contoso", "alice", OWNER);
    let addr = s.addr;
    tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Written from another thread, as a client streaming a body does:
        // the server may answer before it has read it all.
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&first).is_ok());
        let (status, head, body) = read_answer(&mut c).expect("the first answer");
        let all_written = writer.join().unwrap();
        assert_eq!(status, expect_first, "{head}{body}");
        if announces_close(&head) {
            // The server said so: nothing follows this answer.
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
            assert!(rest.is_empty(), "bytes after a Connection: close answer: {rest:?}");
            return (head, None);
        }
        assert!(all_written, "the request was cut off without Connection: close\n{head}");
        let second = c
            .write_all(&get_devices(&token))
            .and_then(|()| read_answer(&mut c));
        match second {
            Ok((status, _, body)) => {
                assert!(body.contains("devices"), "{body}");
                (head, Some(status))
            }
            Err(e) => panic!(
                "the connection broke after a {expect_first} without Connection: close: {e}\nfirst answer:\n{head}"
            ),
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_oversized_body_keeps_the_connection_usable() {
    let h = Harness::new(&test_seed(), 100).await;
    // Over the limit, all of it sent: up to 64 KiB the server reads and
    // discards the rest and keeps the connection; beyond, it may close it,
    // but must say so.
    for len in [4097, 5000, 20_000, 65_536, 200_000, 1_000_000] {
        let (head, second) = second_request_after(&h, post(&h_token(&h), len, len), 413).await;
        if len <= 64 * 1024 {
            assert_eq!(second, Some(200), "{len} bytes: {head}");
        }
    }
}

#[tokio::test]
async fn a_huge_declared_body_is_answered_with_connection_close() {
    let h = Harness::new(&test_seed(), 100).await;
    // 10 MB declared, a little of it sent: the server answers 413 at once and
    // says it will close, rather than reading megabytes.
    let (head, second) = second_request_after(&h, post(&h_token(&h), 6000, 10_000_000), 413).await;
    assert!(announces_close(&head), "{head}");
    assert_eq!(second, None);
}

fn h_token(h: &Harness) -> String {
    h.token("contoso", "alice", OWNER)
}
