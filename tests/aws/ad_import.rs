//! `portal import --format ad-ldif|ad-csv` on moto (the CLI) and on the
//! embedded store (the same loader and import code): an `ldifde` export
//! or a PowerShell `Export-Csv` with an owners file imports with the right
//! key IDs, owners and passwords, volume types from a volumes file; a
//! malformed file writes nothing; the summary says which volume types
//! were assumed; no password in the output.

use crate::support::aws::{call, moto_env, moto_url, portal};
use recovery_portal::domain::ports::Portal;
use recovery_portal::tools::ad;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ad");
const AGENT: &str = "contoso|agent|RecoveryKey.Read.All";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

async fn import(
    env: &crate::support::aws::MotoEnv,
    format: &str,
    file: &Path,
    volumes: bool,
) -> (bool, String) {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal"));
    c.args([
        "import", "--format", format, "--tenant", "contoso", "--actor", "ad-test",
    ])
    .arg("--owners")
    .arg(fixture("owners.csv"));
    if volumes {
        c.arg("--volumes").arg(fixture("volumes.csv"));
    }
    let out = c
        .arg(file)
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

/// A copy of a fixture with one replacement, in a fresh directory.
fn broken(name: &str, from: &str, to: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portal-ad-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read(fixture(name)).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(from), "{from}");
    let path = dir.join(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

async fn nothing_written(p: &Portal) {
    for prefix in ["1F2E3D4C", "A0B1C2D3"] {
        let q = format!("/v1/recovery-keys?key_id_prefix={prefix}");
        let (_, found) = call(p, "GET", &q, Some(AGENT), "").await;
        assert_eq!(
            found["recovery_keys"],
            serde_json::json!([]),
            "a malformed file wrote: {found}"
        );
    }
}

/// Both keys are where the export says, with their owners, passwords and
/// (for PC-2's key, with the volumes file) volume type.
async fn imported(p: &Portal, pc2_type: &str) {
    let (_, found) = call(
        p,
        "GET",
        "/v1/recovery-keys?key_id_prefix=1F2E3D4C",
        Some(AGENT),
        "",
    )
    .await;
    assert_eq!(found["recovery_keys"][0]["device_id"], "PC-1", "{found}");
    assert_eq!(found["recovery_keys"][0]["owner"], "alice", "{found}");
    let body = r#"{"key_id":"1F2E3D4C","reason":"ticket 21"}"#;
    let (r, got) = call(
        p,
        "POST",
        "/v1/devices/PC-1/recovery-key",
        Some(AGENT),
        body,
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "{got}");
    assert_eq!(
        got["recovery_password"],
        "038258-286682-604857-317823-647658-401093-009361-230186"
    );
    let (_, found) = call(
        p,
        "GET",
        "/v1/recovery-keys?key_id_prefix=A0B1C2D3",
        Some(AGENT),
        "",
    )
    .await;
    assert_eq!(
        found["recovery_keys"][0]["volume_type"], pc2_type,
        "{found}"
    );
    let body = r#"{"key_id":"A0B1C2D3-E4F5-4617-8829-3A4B5C6D7E8F","reason":"ticket 21"}"#;
    let (r, got) = call(
        p,
        "POST",
        "/v1/devices/PC-2/recovery-key",
        Some(AGENT),
        body,
    )
    .await;
    assert_eq!(r.status().as_u16(), 200, "{got}");
    assert_eq!(
        got["recovery_password"],
        "111111-222222-333333-444444-555555-666666-000000-000011"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldifde_export_with_owners_imports_and_a_malformed_one_writes_nothing() {
    let env = moto_env().await;
    let p = portal(env.store.clone(), env.cipher.clone());
    let bad = broken("recovery.ldif", "TD0uH2pbmEeKmwwdLj9KWw==", "TD0uH2pb");
    let (ok, text) = import(&env, "ad-ldif", &bad, false).await;
    assert!(
        !ok && text.contains("msFVE-RecoveryGuid") && text.contains("nothing was loaded"),
        "{text}"
    );
    nothing_written(&p).await;

    let (ok, text) = import(&env, "ad-ldif", &fixture("recovery.ldif"), false).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("2 devices written, 2 keys written")
            && text.contains("2 keys given volume type operating_system"),
        "{text}"
    );
    imported(&p, "operating_system").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_csv_with_owners_and_volumes_imports_and_a_byte_array_one_writes_nothing() {
    let env = moto_env().await;
    let p = portal(env.store.clone(), env.cipher.clone());
    let bad = broken(
        "recovery.csv",
        "\"1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b\"",
        "\"System.Byte[]\"",
    );
    let (ok, text) = import(&env, "ad-csv", &bad, true).await;
    assert!(
        !ok && text.contains("[guid]::new([byte[]]$_.'msFVE-RecoveryGuid')")
            && text.contains("nothing was loaded"),
        "{text}"
    );
    nothing_written(&p).await;

    let (ok, text) = import(&env, "ad-csv", &fixture("recovery.csv"), true).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("2 devices written, 2 keys written")
            && text
                .contains("1 keys typed from --volumes, 1 keys given volume type operating_system"),
        "{text}"
    );
    imported(&p, "fixed_data").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_exports_import_on_the_embedded_store() {
    for (format, file, pc2_type) in [
        (ad::Format::Ldif, "recovery.ldif", "operating_system"),
        (ad::Format::Csv, "recovery.csv", "fixed_data"),
    ] {
        let store = std::sync::Arc::new(recovery_portal::adapters::embedded::MemoryStore::new());
        let cipher =
            std::sync::Arc::new(recovery_portal::adapters::embedded::LocalCipher::random());
        let (owners, volumes) = (fixture("owners.csv"), fixture("volumes.csv"));
        let files = |file: &Path| {
            ad::files::load(&ad::files::AdFiles {
                format,
                file,
                owners: Some(&owners),
                volumes: Some(&volumes),
                tenant: Some("contoso"),
            })
        };
        let bad = broken(file, "038258-286682", "038259-286682");
        let e = files(&bad).err().unwrap();
        assert!(
            e.contains("msFVE-RecoveryPassword") && !e.contains("038259"),
            "{e}"
        );
        let a = files(&fixture(file)).unwrap();
        recovery_portal::tools::import::import(
            &a.seed,
            cipher.as_ref(),
            store.as_ref(),
            &|_, _| {},
        )
        .await
        .unwrap();
        imported(&portal(store, cipher), pc2_type).await;
    }
}
