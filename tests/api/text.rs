//! Issue 17, finding 5: text that people read is checked. The helpdesk card
//! that locked-out users see, the `reason` a SIEM searches, the user agent
//! an auditor reads.

use crate::support::common;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "Tenant.Settings.ReadWrite";

async fn patch(s: &Server, token: &str, body: Value) -> Reply {
    s.send(
        "PATCH",
        "/v1/tenant/settings",
        Some(token),
        Some(("application/json", &body.to_string())),
    )
    .await
}

#[tokio::test]
async fn the_helpdesk_card_takes_plain_text_an_https_url_and_a_plain_address() {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    let admin = h.token("contoso", "admin", ADMIN);
    for card in [
        json!({"name": "IT \u{202E}kseD"}),
        json!({"name": "IT\u{200B}Desk"}),
        json!({"name": "IT\u{00AD}Desk"}),
        json!({"phone": "+1 555\u{2066}0100"}),
        json!({"url": "http://help.contoso.test"}),
        json!({"url": "javascript:alert(1)"}),
        json!({"url": "https://"}),
        json!({"email": "mailto:help@contoso.test?bcc=attacker@evil.test"}),
        json!({"email": "help@contoso.test?bcc=attacker@evil.test"}),
        json!({"email": "help@contoso.test,attacker@evil.test"}),
        json!({"email": "not an address"}),
    ] {
        let r = patch(&s, &admin, json!({"helpdesk": card})).await;
        let p = r.assert_problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("helpdesk."),
            "{card}: {p}"
        );
    }
    let r = s.get("/v1/tenant/settings", &admin).await;
    assert_eq!(
        r.json()["helpdesk"]["url"],
        "https://help.contoso.test",
        "unchanged"
    );
    assert!(h.memory.audit_log().is_empty());

    let card = json!({"name": "Contoso Service Desk", "email": "desk@contoso.test",
                      "phone": "+1 555 0199", "url": "https://desk.contoso.test/help"});
    let r = patch(&s, &admin, json!({"helpdesk": card})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = h.memory.audit_log();
    let j = log[0].justification.as_deref().unwrap();
    for want in [
        "https://help.contoso.test",
        "https://desk.contoso.test/help",
        "Contoso IT",
        "desk@contoso.test",
    ] {
        assert!(j.contains(want), "{j}");
    }
}

#[tokio::test]
async fn reasons_hide_nothing_and_are_stored_in_nfc() {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    let agent = h.token("contoso", "agent", "RecoveryKey.Read.All");
    for reason in [
        "ticket 47\u{200D}11",
        "ticket 47\u{200B}11",
        "ticket 47\u{2060}11",
        "\u{FEFF}ticket 4711",
        "ticket 4711\u{E0041}",
        "ticket 47\u{00AD}11",
        "ticket \u{3164}4711",
        "ticket \u{115F}4711",
        "ticket 47\u{034F}11",
        "\u{0301}ticket 4711",
    ] {
        let body = json!({ "reason": reason }).to_string();
        let r = s.post_key("PC-BOB", &agent, Some(&body)).await;
        r.assert_problem(400);
    }
    assert_eq!(h.opens(), 0, "nothing decrypted");
    let body = json!({ "reason": "ticket 4711 for Rene\u{0301}" }).to_string();
    let r = s.post_key("PC-BOB", &agent, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = h.memory.audit_log();
    let granted = log.iter().find(|e| e.reason == "helpdesk").unwrap();
    assert_eq!(
        granted.justification.as_deref(),
        Some("ticket 4711 for Ren\u{00E9}")
    );
}

#[tokio::test]
async fn user_agents_are_stored_without_control_characters() {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    let alice = h.token("contoso", "alice", "RecoveryKey.Read");
    let r = reqwest::Client::new()
        .post(s.url("/v1/devices/PC-ALICE/recovery-key"))
        .bearer_auth(&alice)
        .header("user-agent", "Mozilla/5.0\tforged=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = h.memory.audit_log();
    assert_eq!(log[0].user_agent.as_deref(), Some("Mozilla/5.0forged=1"));
}
