//! `portal import --format ad-ldif` on moto: an `ldifde` export with an
//! owners file imports with the right key IDs, owners and passwords; a
//! malformed file writes nothing; the summary says which volume types
//! were assumed; no password in the output.

use crate::support::aws::{call, moto_env, moto_url, portal};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ad");

async fn import(env: &crate::support::aws::MotoEnv, ldif: &str) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal"))
        .args([
            "import", "--format", "ad-ldif", "--tenant", "contoso", "--actor", "ad-test",
        ])
        .arg("--owners")
        .arg(format!("{FIXTURES}/owners.csv"))
        .arg(ldif)
        .env("RUST_LOG", "trace")
        .env("AWS_ENDPOINT_URL", moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("PORTAL_TABLE_PREFIX", &env.prefix)
        .env("PORTAL_KMS_KEY_ID", &env.kms_key_id)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("038258-286682") && !text.contains("111111-222222"),
        "a password in the output"
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldifde_export_with_owners_imports_and_a_malformed_one_writes_nothing() {
    let env = moto_env().await;
    let p = portal(env.store.clone(), env.cipher.clone());
    let agent = "contoso|agent|RecoveryKey.Read.All";
    let dir = std::env::temp_dir().join(format!("portal-ad-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.ldif");
    let fixture = std::fs::read_to_string(format!("{FIXTURES}/recovery.ldif")).unwrap();
    std::fs::write(
        &bad,
        fixture.replace("TD0uH2pbmEeKmwwdLj9KWw==", "TD0uH2pb"),
    )
    .unwrap();
    let (ok, text) = import(&env, bad.to_str().unwrap()).await;
    assert!(
        !ok && text.contains("msFVE-RecoveryGuid") && text.contains("nothing was loaded"),
        "{text}"
    );
    let (_, found) = call(
        &p,
        "GET",
        "/v1/recovery-keys?key_id_prefix=A0B1C2D3",
        Some(agent),
        "",
    )
    .await;
    assert_eq!(
        found["recovery_keys"],
        serde_json::json!([]),
        "a malformed file wrote: {found}"
    );

    let (ok, text) = import(&env, &format!("{FIXTURES}/recovery.ldif")).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("2 devices written, 2 keys written")
            && text.contains("2 keys given volume type operating_system"),
        "{text}"
    );
    let (_, found) = call(
        &p,
        "GET",
        "/v1/recovery-keys?key_id_prefix=1F2E3D4C",
        Some(agent),
        "",
    )
    .await;
    assert_eq!(found["recovery_keys"][0]["device_id"], "PC-1", "{found}");
    assert_eq!(found["recovery_keys"][0]["owner"], "alice", "{found}");
    let body = r#"{"key_id":"A0B1C2D3-E4F5-4617-8829-3A4B5C6D7E8F","reason":"ticket 21"}"#;
    let (r, got) = call(
        &p,
        "POST",
        "/v1/devices/PC-2/recovery-key",
        Some(agent),
        body,
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "{got}");
    assert_eq!(
        got["recovery_password"],
        "111111-222222-333333-444444-555555-666666-000000-000011"
    );
}
