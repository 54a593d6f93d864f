//! `portal import` must handle 100,000 devices: the whole file is parsed and
//! validated, sealed and loaded, and a second run skips every device.

use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::domain::ids::{DeviceId, TenantId};
use recovery_portal::domain::ports::ImportStore;
use std::fmt::Write;

const DEVICES: usize = 100_000;

fn big_seed() -> String {
    let mut s = String::with_capacity(DEVICES * 420);
    s.push_str(r#"{"tenants":[{"tenant_id":"big","self_service":true}],"devices":["#);
    for i in 0..DEVICES {
        if i > 0 {
            s.push(',');
        }
        let pw: Vec<String> = (0..8)
            .map(|g| format!("{:06}", ((i * 8 + g) % 65_536) * 11))
            .collect();
        write!(
            s,
            r#"{{"tenant_id":"big","device_id":"PC-{i:06}","owner":"user-{}","display_name":"PC {i}","os":"Windows 11","managed_by":"organization","recovery_keys":[{{"key_id":"{:08x}-0000-4000-8000-{:012x}","volume_type":"operating_system","recovery_password":"{}","created_at":"2025-01-01T00:00:00Z"}}]}}"#,
            i / 2,
            i,
            i,
            pw.join("-")
        )
        .unwrap();
    }
    s.push_str("]}");
    s
}

#[tokio::test]
async fn imports_100k_devices_and_reimports_nothing() {
    let text = big_seed();
    let seed = recovery_portal::tools::seed::parse(&text).expect("valid");
    assert_eq!(seed.devices.len(), DEVICES);
    let store = MemoryStore::new();
    let cipher = LocalCipher::random();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let progress = |done: usize, total: usize| {
        assert!(done <= total && total == DEVICES);
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let s = recovery_portal::tools::import::import(&seed, &cipher, &store, &progress)
        .await
        .unwrap();
    assert_eq!((s.devices, s.keys, s.skipped), (DEVICES, DEVICES, 0));
    assert!(
        calls.load(std::sync::atomic::Ordering::Relaxed) > 100,
        "progress is reported per chunk"
    );
    let again = recovery_portal::tools::import::import(&seed, &cipher, &store, &|_, _| {})
        .await
        .unwrap();
    assert_eq!((again.devices, again.keys, again.skipped), (0, 0, DEVICES));
    let last = (
        TenantId::parse("big").unwrap(),
        DeviceId::parse("PC-099999").unwrap(),
    );
    assert!(store.stored_devices(&[last]).await.unwrap().len() == 1);

    // One bad record anywhere: nothing is loaded, and the error names it.
    let bad = text.replacen(
        r#""device_id":"PC-077777""#,
        r#""device_id":"PC 077777""#,
        1,
    );
    let e = recovery_portal::tools::seed::parse(&bad)
        .err()
        .expect("invalid");
    assert_eq!(e.0.len(), 1);
    assert!(
        e.0[0].starts_with(r#"devices[77777] (device_id "PC 077777").device_id"#),
        "{}",
        e.0[0]
    );
}
