//! The OpenAPI document (`openapi.json`) against the code: the same routes as
//! the router, the permissions the router enforces, and every documented
//! answer produced for real over a socket and validated against its schema
//! (the other API tests validate every answer they get, too: `common::openapi`).

use crate::support::common;

use async_trait::async_trait;
use common::openapi::{self, doc};
use common::*;
use recovery_portal::api::ROUTES;
use recovery_portal::domain::audit::AuditEvent;
use recovery_portal::domain::error::{Cause, Unavailable};
use recovery_portal::domain::ids::{DeviceId, KeyId, TenantId};
use recovery_portal::domain::model::{KeyContext, RecoveryPassword, SealedKey, TenantPolicy};
use recovery_portal::domain::ports::{
    CipherError, DeviceRecord, DeviceUpsert, EscrowWrite, KeyCipher, LifecycleStore, RotationPage,
    StoredKeyPage, WriteOutcome,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

const OWNER: &str = "RecoveryKey.Read";
const HELPDESK: &str = "RecoveryKey.Read.All";
const AUDITOR: &str = "AuditLog.Read.All";
const ESCROW: &str = "RecoveryKey.Escrow";
const DEVICES_WRITE: &str = "Devices.ReadWrite.All";
const SETTINGS: &str = "Tenant.Settings.ReadWrite";
const INCIDENT: &str = "RecoveryKey.Incident";
const PERMISSIONS: [&str; 8] = [
    "Devices.Read",
    OWNER,
    HELPDESK,
    AUDITOR,
    ESCROW,
    DEVICES_WRITE,
    SETTINGS,
    INCIDENT,
];
/// A valid recovery password (BitLocker's documentation example).
const PASSWORD: &str = "038258-286682-604857-317823-647658-401093-009361-230186";
const NEW_KEY: &str = "77777777-aaaa-4aaa-8aaa-000000000001";

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_with_valid_schemas_and_resolvable_refs() {
    let d = doc();
    assert!(
        d["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        d["openapi"]
    );
    assert_eq!(
        d["components"]["securitySchemes"]["bearerAuth"],
        serde_json::json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": d["components"]["securitySchemes"]["bearerAuth"]["description"]})
    );
    // Every schema is a valid JSON Schema 2020-12 document and compiles.
    for (name, schema) in d["components"]["schemas"].as_object().unwrap() {
        jsonschema::draft202012::meta::validate(schema)
            .unwrap_or_else(|e| panic!("components/schemas/{name}: {e}"));
        openapi::validator(schema);
    }
    // Every $ref points somewhere.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(d, &mut all);
    assert!(all.len() > 20);
    for r in all {
        assert!(openapi::resolve(&r).is_some(), "unresolvable $ref {r}");
    }
}

/// The drift test: the router's routes are exactly the document's
/// operations, each served by the function the document names; and API
/// Gateway (infra/api.tf) routes the same list.
#[test]
fn the_router_and_the_document_know_the_same_routes() {
    let router: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let documented: BTreeSet<(String, String)> = openapi::operations().into_iter().collect();
    assert_eq!(
        router, documented,
        "http::ROUTES and openapi.json differ: add the route to both"
    );
    for r in ROUTES {
        let op = &doc()["paths"][r.path][r.method.to_ascii_lowercase()];
        let function = r
            .unit
            .function()
            .expect("a route is served by one function");
        assert_eq!(op["x-lambda-function"], function, "{} {}", r.method, r.path);
        // The permissions the table checks are the ones documented.
        assert_eq!(
            strings(&op["x-permissions"]),
            r.permission.names().iter().map(|p| p.to_string()).collect(),
            "{} {}: the table's permissions and x-permissions",
            r.method,
            r.path
        );
        // Path parameters are exactly the template's.
        let in_template: BTreeSet<String> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => openapi::resolve(r).unwrap(),
                None => p,
            })
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(in_template, declared, "{} {}", r.method, r.path);
    }
    // The API's routes are the keys of local.routes (infra/api.tf).
    let api_tf: hcl::Body = hcl::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/api.tf")).unwrap(),
    )
    .unwrap();
    let routes = api_tf
        .blocks()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .find(|a| a.key() == "routes")
        .map(|a| a.expr().clone());
    let Some(hcl::Expression::Object(routes)) = routes else {
        panic!("infra/api.tf has no local.routes map");
    };
    let gateway: BTreeSet<(String, String)> = routes
        .keys()
        .filter_map(|k| match k {
            hcl::ObjectKey::Expression(hcl::Expression::String(s)) => s.split_once(' '),
            _ => None,
        })
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(
        router, gateway,
        "local.routes in infra/api.tf differs from http::ROUTES"
    );
}

/// Each operation's permissions (`x-permissions`, the roles of its security
/// requirements) are what the router enforces: each one alone admits a
/// caller, and all the others together do not.
#[tokio::test]
async fn documented_permissions_are_the_enforced_ones() {
    let h = Harness::new(&test_seed(), 100).await;
    let s = h.serve().await;
    let upsert = (
        "application/json",
        r#"{"owner":"alice","display_name":"New PC","os":"Windows 11","managed_by":"organization"}"#,
    );
    let escrow =
        format!(r#"{{"volume_type":"operating_system","recovery_password":"{PASSWORD}"}}"#);
    // An incident to close (DELETE runs first; POST then opens another,
    // which the batch route after it needs).
    let lead = h.token("contoso", "lead", INCIDENT);
    let r = s
        .send(
            "POST",
            "/v1/incidents",
            Some(&lead),
            Some((
                "application/json",
                r#"{"reason":"outage","duration_hours":2}"#,
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let incident = format!(
        "/v1/incidents/{}",
        r.json()["incident_id"].as_str().unwrap()
    );
    for (method, template) in openapi::operations() {
        let op = &doc()["paths"][&template][method.to_ascii_lowercase()];
        let listed = strings(&op["x-permissions"]);
        let roles: BTreeSet<String> = op["security"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|req| strings(&req["bearerAuth"]))
            .collect();
        assert_eq!(
            listed, roles,
            "{method} {template}: x-permissions and security roles"
        );
        for p in &listed {
            let text = op["description"].as_str().unwrap();
            assert!(
                text.contains(&format!("`{p}`")),
                "{method} {template}: description lacks {p}"
            );
        }
        let (path, body) = match template.as_str() {
            "/v1/recovery-keys" => ("/v1/recovery-keys?key_id_prefix=11111111".to_owned(), None),
            "/v1/devices/{device_id}/recovery-key" => (
                "/v1/devices/PC-ALICE/recovery-key".to_owned(),
                Some(("application/json", "{}")),
            ),
            // Sorted order: DELETE runs before the PUTs, on another device.
            "/v1/devices/{device_id}" if method == "DELETE" => {
                ("/v1/devices/PC-ALICE-NOKEY".to_owned(), None)
            }
            "/v1/devices/{device_id}" => ("/v1/devices/PC-NEW".to_owned(), Some(upsert)),
            // Retired by the DELETE above (sorted order).
            "/v1/devices/{device_id}/restore" => {
                ("/v1/devices/PC-ALICE-NOKEY/restore".to_owned(), None)
            }
            "/v1/devices/{device_id}/recovery-keys/{key_id}" => (
                format!("/v1/devices/PC-ALICE-2/recovery-keys/{NEW_KEY}"),
                Some(("application/json", escrow.as_str())),
            ),
            "/v1/tenant/settings" if method == "PATCH" => (
                template.clone(),
                Some(("application/json", r#"{"require_reason":"never"}"#)),
            ),
            "/v1/incidents/{incident_id}" => (incident.clone(), None),
            "/v1/incidents" if method == "POST" => (
                template.clone(),
                Some((
                    "application/json",
                    r#"{"reason":"outage","duration_hours":2}"#,
                )),
            ),
            "/v1/recovery-keys/batch" => (
                template.clone(),
                Some((
                    "application/json",
                    r#"{"key_ids":["44444444"],"reason":"INC-1"}"#,
                )),
            ),
            other => (other.to_owned(), None),
        };
        // Batches by another person than the incident's opener (alice
        // opened one just before, with only RecoveryKey.Incident).
        let user = if template == "/v1/recovery-keys/batch" {
            "agent"
        } else {
            "alice"
        };
        for p in &listed {
            let r = s
                .send(&method, &path, Some(&h.token("contoso", user, p)), body)
                .await;
            // 201 for a device enrolled or a key escrowed, 204 for one retired.
            assert!(
                [200, 201, 204].contains(&r.status),
                "{method} {template} with only {p}: {} {}",
                r.status,
                r.text
            );
        }
        let others: Vec<&str> = PERMISSIONS
            .into_iter()
            .filter(|p| !listed.contains(*p))
            .collect();
        let r = s
            .send(
                &method,
                &path,
                Some(&h.token("contoso", "alice", &others.join(" "))),
                body,
            )
            .await;
        let j = r.assert_problem(403);
        assert!(
            listed.contains(j["required_permission"].as_str().unwrap()),
            "{method} {template} with {others:?}: {j}"
        );
    }
}

/// (method, path, token, (content type, body)).
type Case<'a> = (&'a str, String, Option<&'a str>, Option<(&'a str, &'a str)>);

/// Every (operation, status) the document lists is produced for real here,
/// each answer validates against its schema, and no answer has a status the
/// document does not list.
#[tokio::test]
async fn every_documented_answer_is_real_and_matches_its_schema() {
    let mut seen: BTreeSet<(String, String, u16)> = BTreeSet::new();
    let mut record = |r: Reply, method: &str, path: &str| {
        let hit = openapi::check(method, path, r.status, &r.headers, &r.text)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", r.text))
            .unwrap_or_else(|| panic!("{method} {path} ({}) matched no operation", r.status));
        seen.insert(hit);
    };

    let h = Harness::new(&test_seed(), 1).await;
    let s = h.serve().await;
    let (alice, agent, auditor) = (
        h.token("contoso", "alice", OWNER),
        h.token("contoso", "agent", HELPDESK),
        h.token("contoso", "auditor", AUDITOR),
    );
    let (alice, agent, auditor) = (alice.as_str(), agent.as_str(), auditor.as_str());
    let big = "x".repeat(recovery_portal::api::MAX_BODY + 1);
    let big = big.as_str();
    let carol = h.token("fabrikam", "carol", OWNER);
    let reader = h.token("contoso", "alice", "Devices.Read");
    let key = "/v1/devices/PC-ALICE/recovery-key";
    let json = |b: &'static str| Some(("application/json", b));

    // (method, path, token, body)
    let cases: Vec<Case> = vec![
        ("GET", "/v1/devices".into(), Some(alice), None),
        ("GET", "/v1/devices?colour=red".into(), Some(alice), None),
        ("GET", "/v1/devices".into(), None, None),
        ("GET", "/v1/devices?owner=bob".into(), Some(alice), None),
        (
            "GET",
            "/v1/devices".into(),
            Some(alice),
            Some(("text/plain", big)),
        ),
        (
            "GET",
            "/v1/recovery-keys?key_id_prefix=11111111".into(),
            Some(agent),
            None,
        ),
        (
            "GET",
            "/v1/recovery-keys?key_id_prefix=1111".into(),
            Some(agent),
            None,
        ),
        (
            "GET",
            "/v1/recovery-keys?key_id_prefix=11111111".into(),
            Some("x.y.z"),
            None,
        ),
        (
            "GET",
            "/v1/recovery-keys?key_id_prefix=11111111".into(),
            Some(alice),
            None,
        ),
        (
            "GET",
            "/v1/recovery-keys".into(),
            Some(agent),
            Some(("text/plain", big)),
        ),
        (
            "POST",
            key.into(),
            Some(alice),
            json(r#"{"reason":"lost PIN"}"#),
        ),
        (
            "POST",
            key.into(),
            Some(alice),
            json(r#"{"reason":"lost PIN"}"#),
        ), // 429
        ("POST", key.into(), Some(alice), json("{")),
        ("POST", key.into(), None, None),
        ("POST", key.into(), Some(&reader), None),
        (
            "POST",
            "/v1/devices/PC-CAROL/recovery-key".into(),
            Some(&carol),
            None,
        ),
        (
            "POST",
            "/v1/devices/PC-BOB/recovery-key".into(),
            Some(alice),
            None,
        ),
        (
            "POST",
            "/v1/devices/PC-ALICE-HOME/recovery-key".into(),
            Some(alice),
            None,
        ),
        (
            "POST",
            key.into(),
            Some(agent),
            json(r#"{"key_id":"11111111"}"#),
        ),
        (
            "POST",
            key.into(),
            Some(agent),
            Some(("application/json", big)),
        ),
        ("POST", key.into(), Some(agent), Some(("text/plain", "{}"))),
        ("GET", "/v1/audit-events".into(), Some(auditor), None),
        (
            "GET",
            "/v1/audit-events?device_id=PC-ALICE&limit=2".into(),
            Some(auditor),
            None,
        ),
        (
            "GET",
            "/v1/audit-events?limit=0".into(),
            Some(auditor),
            None,
        ),
        ("GET", "/v1/audit-events".into(), None, None),
        ("GET", "/v1/audit-events".into(), Some(alice), None),
        (
            "GET",
            "/v1/audit-events".into(),
            Some(auditor),
            Some(("text/plain", big)),
        ),
    ];
    for (method, path, token, body) in cases {
        record(s.send(method, &path, token, body).await, method, &path);
    }

    // The lifecycle routes, in order: enrol PC-NEW, escrow a key for it.
    let mdm = h.token("contoso", "mdm", &format!("{ESCROW} {DEVICES_WRITE}"));
    let admin = h.token("contoso", "admin", SETTINGS);
    let (mdm, admin) = (mdm.as_str(), admin.as_str());
    let device = "/v1/devices/PC-NEW";
    let restore = format!("{device}/restore");
    let upsert = json(
        r#"{"owner":"alice","display_name":"New PC","os":"Windows 11","managed_by":"organization"}"#,
    );
    let escrow_path = format!("{device}/recovery-keys/{NEW_KEY}");
    let escrow =
        format!(r#"{{"volume_type":"operating_system","recovery_password":"{PASSWORD}"}}"#);
    let other = escrow.replace("-230186", "-230197");
    let escrow = Some(("application/json", escrow.as_str()));
    let settings = "/v1/tenant/settings";
    let life: Vec<Case> = vec![
        ("PUT", device.into(), Some(mdm), upsert), // 201
        ("PUT", device.into(), Some(mdm), upsert), // 200: unchanged
        (
            "PUT",
            device.into(),
            Some(mdm),
            json(r#"{"owner":"alice"}"#),
        ),
        ("PUT", device.into(), None, upsert),
        ("PUT", device.into(), Some(alice), upsert),
        (
            "PUT",
            device.into(),
            Some(mdm),
            Some(("application/json", big)),
        ),
        ("PUT", device.into(), Some(mdm), Some(("text/plain", "x"))),
        ("PUT", escrow_path.clone(), Some(mdm), escrow), // 201
        ("PUT", escrow_path.clone(), Some(mdm), escrow), // 200: already held
        (
            "PUT",
            escrow_path.clone(),
            Some(mdm),
            Some(("application/json", other.as_str())),
        ), // 409
        (
            "PUT",
            format!("/v1/devices/PC-NONE/recovery-keys/{NEW_KEY}"),
            Some(mdm),
            escrow,
        ), // 404
        (
            "PUT",
            format!("{device}/recovery-keys/not-a-guid"),
            Some(mdm),
            escrow,
        ),
        ("PUT", escrow_path.clone(), None, escrow),
        ("PUT", escrow_path.clone(), Some(alice), escrow),
        (
            "PUT",
            escrow_path.clone(),
            Some(mdm),
            Some(("application/json", big)),
        ),
        (
            "PUT",
            escrow_path.clone(),
            Some(mdm),
            Some(("text/plain", "x")),
        ),
        ("GET", "/v1/rotation-requests".into(), Some(mdm), None),
        (
            "GET",
            "/v1/rotation-requests?limit=0".into(),
            Some(mdm),
            None,
        ),
        ("GET", "/v1/rotation-requests".into(), None, None),
        ("GET", "/v1/rotation-requests".into(), Some(alice), None),
        (
            "GET",
            "/v1/rotation-requests".into(),
            Some(mdm),
            Some(("text/plain", big)),
        ),
        ("GET", settings.into(), Some(admin), None),
        ("GET", format!("{settings}?x=1"), Some(admin), None),
        ("GET", settings.into(), None, None),
        ("GET", settings.into(), Some(alice), None),
        (
            "GET",
            settings.into(),
            Some(admin),
            Some(("text/plain", big)),
        ),
        (
            "PATCH",
            settings.into(),
            Some(admin),
            json(r#"{"require_reason":"never"}"#),
        ),
        (
            "PATCH",
            settings.into(),
            Some(admin),
            json(r#"{"require_reason":"sometimes"}"#),
        ),
        ("PATCH", settings.into(), None, json("{}")),
        ("PATCH", settings.into(), Some(alice), json("{}")),
        (
            "PATCH",
            settings.into(),
            Some(admin),
            Some(("application/json", big)),
        ),
        (
            "PATCH",
            settings.into(),
            Some(admin),
            Some(("text/plain", "x")),
        ),
        ("DELETE", device.into(), Some(mdm), None), // 204
        ("DELETE", device.into(), Some(mdm), None), // 404: gone
        ("DELETE", format!("{device}?x=1"), Some(mdm), None),
        ("DELETE", device.into(), None, None),
        ("DELETE", device.into(), Some(alice), None),
        (
            "DELETE",
            device.into(),
            Some(mdm),
            Some(("text/plain", big)),
        ),
        (
            "DELETE",
            device.into(),
            Some(mdm),
            Some(("text/plain", "x")),
        ), // 415
        ("PUT", device.into(), Some(mdm), upsert), // 409: retired
        ("POST", restore.clone(), Some(mdm), None), // 200
        ("POST", restore.clone(), Some(mdm), None), // 404: not retired
        ("POST", format!("{restore}?x=1"), Some(mdm), None),
        ("POST", restore.clone(), None, None),
        ("POST", restore.clone(), Some(alice), None),
        (
            "POST",
            restore.clone(),
            Some(mdm),
            Some(("text/plain", big)),
        ),
        // 403 second-person-required: an owner change naming the caller.
        (
            "PUT",
            "/v1/devices/PC-BOB".into(),
            Some(mdm),
            json(
                r#"{"owner":"mdm","display_name":"Bob PC","os":"Windows 11","managed_by":"organization"}"#,
            ),
        ),
    ];
    for (method, path, token, body) in life {
        record(s.send(method, &path, token, body).await, method, &path);
    }
    // Incident mode: open, list, batch, close.
    let lead = h.token("contoso", "lead", INCIDENT);
    let lead = lead.as_str();
    let incidents = "/v1/incidents";
    let open = json(r#"{"reason":"faulty update","duration_hours":2}"#);
    let batch = "/v1/recovery-keys/batch";
    let huge = "x".repeat(recovery_portal::api::MAX_BATCH_BODY + 1);
    let huge = huge.as_str();
    // Its own agent: the batch's disclosure must not use up `agent`'s
    // hourly slot, which the cases below still need.
    let agent2 = h.token("contoso", "agent-2", HELPDESK);
    let agent2 = agent2.as_str();
    let inc: Vec<Case> = vec![
        ("GET", incidents.into(), Some(lead), None),
        ("GET", format!("{incidents}?x=1"), Some(lead), None),
        ("GET", incidents.into(), None, None),
        ("GET", incidents.into(), Some(alice), None),
        (
            "GET",
            incidents.into(),
            Some(lead),
            Some(("text/plain", big)),
        ),
        (
            "POST",
            batch.into(),
            Some(agent2),
            json(r#"{"key_ids":["44444444"],"reason":"x"}"#),
        ), // 403: no incident
        ("POST", incidents.into(), Some(lead), open), // 201
        ("POST", incidents.into(), Some(lead), open), // 409
        (
            "POST",
            incidents.into(),
            Some(lead),
            json(r#"{"reason":"x"}"#),
        ),
        ("POST", incidents.into(), None, open),
        ("POST", incidents.into(), Some(alice), open),
        (
            "POST",
            incidents.into(),
            Some(lead),
            Some(("application/json", big)),
        ),
        (
            "POST",
            incidents.into(),
            Some(lead),
            Some(("text/plain", "x")),
        ),
        (
            "POST",
            batch.into(),
            Some(agent2),
            json(
                r#"{"key_ids":["44444444-dddd-4ddd-8ddd-000000000005","11111111","99999999"],"reason":"INC-7"}"#,
            ),
        ), // 200: a key, an ambiguous prefix, no match
        (
            "POST",
            batch.into(),
            Some(agent2),
            json(r#"{"key_ids":[],"reason":"x"}"#),
        ),
        ("POST", batch.into(), None, json("{}")),
        (
            "POST",
            batch.into(),
            Some(alice),
            json(r#"{"key_ids":["44444444"],"reason":"x"}"#),
        ),
        (
            "POST",
            batch.into(),
            Some(agent2),
            Some(("application/json", huge)),
        ),
        (
            "POST",
            batch.into(),
            Some(agent2),
            Some(("text/plain", "x")),
        ),
        ("DELETE", format!("{incidents}/not-an-id"), Some(lead), None),
        (
            "DELETE",
            format!("{incidents}/6f1c2d3e-0000-4000-8000-000000000000"),
            Some(lead),
            None,
        ),
        (
            "DELETE",
            format!("{incidents}/6f1c2d3e-0000-4000-8000-000000000000"),
            None,
            None,
        ),
        (
            "DELETE",
            format!("{incidents}/6f1c2d3e-0000-4000-8000-000000000000"),
            Some(alice),
            None,
        ),
        (
            "DELETE",
            format!("{incidents}/6f1c2d3e-0000-4000-8000-000000000000"),
            Some(lead),
            Some(("text/plain", big)),
        ),
    ];
    let mut open_id = None;
    for (method, path, token, body) in inc {
        let r = s.send(method, &path, token, body).await;
        if r.status == 201 {
            open_id = r.json()["incident_id"].as_str().map(str::to_owned);
        }
        if method == "POST" && path == batch && r.status == 200 {
            let items = r.json()["results"].clone();
            assert_eq!(items[0]["status"], 200, "{items}");
            assert_eq!(items[1]["status"], 409, "{items}");
            assert_eq!(items[2]["status"], 404, "{items}");
        }
        record(r, method, &path);
    }
    let path = format!("{incidents}/{}", open_id.expect("an incident was opened"));
    record(
        s.send("DELETE", &path, Some(lead), None).await,
        "DELETE",
        &path,
    );

    // Events carry what the trail records, every field present.
    let r = s.get("/v1/audit-events", auditor).await;
    assert!(
        r.json()["events"].as_array().unwrap().len() >= 5,
        "{}",
        r.text
    );

    // 503: the store or the audit trail down, nothing disclosed.
    h.store.fail_audit.store(true, Ordering::SeqCst);
    let r = s.post_key("PC-ALICE-2", agent, None).await;
    assert!(!r.text.contains("recovery_password"));
    record(r, "POST", "/v1/devices/PC-ALICE-2/recovery-key");
    h.store.fail_audit.store(false, Ordering::SeqCst);
    h.store.fail_reads.store(true, Ordering::SeqCst);
    for (path, token) in [
        ("/v1/devices", alice),
        ("/v1/recovery-keys?key_id_prefix=11111111", agent),
        ("/v1/audit-events", auditor),
        ("/v1/devices/PC-ALICE-2/recovery-key", agent),
        ("/v1/recovery-keys/batch", agent),
    ] {
        let method = if path.ends_with("recovery-key") || path.ends_with("batch") {
            "POST"
        } else {
            "GET"
        };
        let body = if path.ends_with("batch") {
            json(r#"{"key_ids":["44444444"],"reason":"x"}"#)
        } else {
            None
        };
        record(s.send(method, path, Some(token), body).await, method, path);
    }
    h.store.fail_reads.store(false, Ordering::SeqCst);

    // 500: a ciphertext that does not open under this cipher.
    let mut portal = h.portal.clone();
    portal.cipher = std::sync::Arc::new(recovery_portal::adapters::embedded::LocalCipher::random());
    let broken = serve_portal(portal).await;
    let r = broken.post_key("PC-BOB", agent, None).await;
    record(r, "POST", "/v1/devices/PC-BOB/recovery-key");

    // 500: KMS refuses to seal an escrowed key.
    let mut portal = h.portal.clone();
    portal.cipher = Arc::new(RefusingCipher);
    let refusing = serve_portal(portal).await;
    let path = format!("/v1/devices/PC-ALICE-2/recovery-keys/{NEW_KEY}");
    record(
        refusing.send("PUT", &path, Some(mdm), escrow).await,
        "PUT",
        &path,
    );

    // 503: the lifecycle store down, nothing changed.
    let mut portal = h.portal.clone();
    portal.lifecycle = Arc::new(DownStore);
    let down = serve_portal(portal).await;
    for (method, path, token, body) in [
        ("PUT", "/v1/devices/PC-ALICE".to_owned(), mdm, upsert),
        ("DELETE", "/v1/devices/PC-ALICE".to_owned(), mdm, None),
        ("POST", "/v1/devices/PC-ALICE/restore".to_owned(), mdm, None),
        (
            "PUT",
            format!("/v1/devices/PC-ALICE/recovery-keys/{NEW_KEY}"),
            mdm,
            escrow,
        ),
        ("GET", "/v1/rotation-requests".to_owned(), mdm, None),
        ("GET", settings.to_owned(), admin, None),
        ("PATCH", settings.to_owned(), admin, json("{}")),
        ("GET", "/v1/incidents".to_owned(), lead, None),
        ("POST", "/v1/incidents".to_owned(), lead, open),
        (
            "DELETE",
            "/v1/incidents/6f1c2d3e-0000-4000-8000-000000000000".to_owned(),
            lead,
            None,
        ),
    ] {
        record(
            down.send(method, &path, Some(token), body).await,
            method,
            &path,
        );
    }

    // Exactly the documented answers were produced.
    let mut documented = BTreeSet::new();
    for (method, template) in openapi::operations() {
        let op = &doc()["paths"][&template][method.to_ascii_lowercase()];
        for status in op["responses"].as_object().unwrap().keys() {
            documented.insert((
                method.clone(),
                template.clone(),
                status.parse::<u16>().unwrap(),
            ));
        }
    }
    let missing: Vec<_> = documented.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "documented but never produced here: {missing:?}"
    );
    assert_eq!(seen, documented);
}

/// `portal serve` (the same router) serves the document, byte for byte; any
/// other method gets the API's 404 problem.
#[tokio::test]
async fn the_local_server_serves_the_document() {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    let r = s.client.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), openapi::DOCUMENT);
    assert_eq!(
        recovery_portal::frontends::server::OPENAPI_JSON,
        openapi::DOCUMENT
    );
    s.send("POST", "/openapi.json", None, None)
        .await
        .assert_problem(404);
}

/// The oracle itself rejects answers the document does not allow.
#[test]
fn the_oracle_rejects_undocumented_answers() {
    let ok_headers = |key_route: bool| {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-request-id", "r-1".parse().unwrap());
        h.insert("cache-control", "no-store".parse().unwrap());
        h.insert("x-content-type-options", "nosniff".parse().unwrap());
        if key_route {
            h.insert("pragma", "no-cache".parse().unwrap());
        }
        h
    };
    let devices = r#"{"devices":[],"helpdesk":null}"#;
    assert!(openapi::check("GET", "/v1/devices", 200, &ok_headers(false), devices).is_ok());
    for (status, headers, body) in [
        (200, ok_headers(false), r#"{"devices":[]}"#),
        (
            200,
            ok_headers(false),
            r#"{"devices":[],"helpdesk":null,"extra":1}"#,
        ),
        (
            200,
            ok_headers(false),
            r#"{"devices":[{"device_id":"a b","display_name":"x","os":"y","managed_by":"organization","recovery_keys":[]}],"helpdesk":null}"#,
        ),
        (418, ok_headers(false), devices),
        (200, http::HeaderMap::new(), devices),
    ] {
        assert!(
            openapi::check("GET", "/v1/devices", status, &headers, body).is_err(),
            "{status} {body} {headers:?}"
        );
    }
    let key = r#"{"device_id":"PC-1","key_id":"3B8FAA18-37F8-488B-97FC-695A07A0CA6E","volume_type":"operating_system","recovery_password":"038258-286682-604857-317823-647658-401093-009361-230186","created_at":"2025-01-20T08:00:00Z","display_seconds":300}"#;
    let path = "/v1/devices/PC-1/recovery-key";
    assert!(openapi::check("POST", path, 200, &ok_headers(true), key).is_ok());
    assert!(
        openapi::check("POST", path, 200, &ok_headers(false), key).is_err(),
        "no Pragma"
    );
    let short = key.replace("-230186", "");
    assert!(openapi::check("POST", path, 200, &ok_headers(true), &short).is_err());
    assert!(openapi::check("GET", "/v2", 200, &ok_headers(false), devices).is_err());
}

/// Found by schemathesis against `portal serve`: a JSON array is not the
/// documented object body, yet `[null, null]` read as "no options" and
/// `["<key id>", "<reason>"]` as positional fields.
#[tokio::test]
async fn a_key_request_body_must_be_an_object() {
    let h = Harness::new(&test_seed(), 10).await;
    let s = h.serve().await;
    let t = h.token("contoso", "alice", OWNER);
    for body in [
        "[null, null]",
        r#"["11111111-aaaa-4aaa-8aaa-000000000001", "x"]"#,
        "null",
        "5",
        r#""x""#,
    ] {
        let j = s
            .post_key("PC-ALICE", &t, Some(body))
            .await
            .assert_problem(400);
        assert!(
            j["detail"].as_str().unwrap().contains("JSON object"),
            "{body}: {j}"
        );
    }
    // Objects, with or without fields (null meaning absent), still work.
    for body in [
        "{}",
        r#"{"key_id": null, "reason": null}"#,
        r#" {"reason": "x"} "#,
    ] {
        assert_eq!(
            s.post_key("PC-ALICE", &t, Some(body)).await.status,
            200,
            "{body}"
        );
    }
    assert_eq!(h.opens(), 3);
}

/// A cipher whose every seal and open is refused (a KMS policy denial).
struct RefusingCipher;

#[async_trait]
impl KeyCipher for RefusingCipher {
    async fn seal(&self, _: &KeyContext, _: &RecoveryPassword) -> Result<SealedKey, CipherError> {
        Err(CipherError::Rejected("refused".into()))
    }
    async fn open(&self, _: &KeyContext, _: &SealedKey) -> Result<RecoveryPassword, CipherError> {
        Err(CipherError::Rejected("refused".into()))
    }
}

/// A lifecycle store that never answers.
struct DownStore;

fn down<T>() -> Result<T, Unavailable> {
    Err(Unavailable::new(Cause::Store, "injected failure"))
}

#[async_trait]
impl LifecycleStore for DownStore {
    async fn commit_incident(
        &self,
        _: &recovery_portal::domain::incidents::Incident,
        _: Option<&recovery_portal::domain::incidents::OpenIncident>,
        _: u64,
        _: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        down()
    }
    async fn incident(
        &self,
        _: &TenantId,
        _: &recovery_portal::domain::incidents::IncidentId,
    ) -> Result<Option<recovery_portal::domain::incidents::Incident>, Unavailable> {
        down()
    }
    async fn incidents(
        &self,
        _: &TenantId,
        _: usize,
    ) -> Result<Vec<recovery_portal::domain::incidents::Incident>, Unavailable> {
        down()
    }
    async fn device_for_write(
        &self,
        _: &TenantId,
        _: &DeviceId,
    ) -> Result<(Option<DeviceRecord>, TenantPolicy), Unavailable> {
        down()
    }
    async fn commit_escrow(
        &self,
        _: &EscrowWrite,
        _: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        down()
    }
    async fn commit_upsert(
        &self,
        _: &DeviceUpsert,
        _: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        down()
    }
    async fn retire_device(
        &self,
        _: &recovery_portal::domain::model::Device,
        _: u64,
        _: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        down()
    }
    async fn restore_device(
        &self,
        _: &recovery_portal::domain::model::Device,
        _: u64,
        _: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        down()
    }
    async fn superseded_key(
        &self,
        _: &TenantId,
        _: &DeviceId,
        _: &KeyId,
    ) -> Result<Option<SealedKey>, Unavailable> {
        down()
    }
    async fn rotation_requests(
        &self,
        _: &TenantId,
        _: Option<&str>,
        _: usize,
    ) -> Result<RotationPage, Unavailable> {
        down()
    }
    async fn tenant_settings(&self, _: &TenantId) -> Result<(TenantPolicy, u64), Unavailable> {
        down()
    }
    async fn commit_settings(
        &self,
        _: &TenantId,
        _: &TenantPolicy,
        _: u64,
        _: &AuditEvent,
    ) -> Result<WriteOutcome, Unavailable> {
        down()
    }
    async fn stored_keys(
        &self,
        _: Option<&TenantId>,
        _: Option<&str>,
    ) -> Result<StoredKeyPage, Unavailable> {
        down()
    }
    async fn sweep_expired(&self, _: OffsetDateTime) -> Result<usize, Unavailable> {
        down()
    }
}

/// The committed `openapi.json` is what `api::openapi::document()` makes of
/// the route table, the routes' `DOC`s and the body types. With
/// `UPDATE_OPENAPI=1` this test rewrites the file instead of failing:
/// `UPDATE_OPENAPI=1 cargo test --test api openapi_json_is_current`.
#[test]
fn openapi_json_is_current() {
    let generated = recovery_portal::api::openapi::render();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == generated,
        "openapi.json is not what the code generates: run \
         `UPDATE_OPENAPI=1 cargo test --test api openapi_json_is_current` and commit it"
    );
}
