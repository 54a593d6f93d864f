//! A synthetic seed for the benchmarks: one tenant, `users` users with one or
//! two devices each; every device holds an operating-system key (the second
//! device also a data-volume key). Shared by `benches/requests.rs`,
//! `benches/outage.rs` and `benches/awspath.rs`.
//!
//! For the incident benchmark, users retrieve the key of their first device
//! themselves and the helpdesk retrieves the keys of every second device
//! ([`helpdesk_keys`]), so every disclosed key is expected exactly once.
#![allow(dead_code)]

use serde_json::{Value, json};

pub const TENANT: &str = "loadtest";

/// What a user's default retrieval on their first device must disclose.
pub struct Expected {
    pub user: String,
    pub device_id: String,
    pub key_id: String,
    pub password: String,
}

/// A key the helpdesk retrieves in a batch (second devices only).
#[derive(Clone)]
pub struct HelpdeskKey {
    pub device_id: String,
    pub key_id: String,
    pub password: String,
    pub os: bool,
}

pub fn user(i: usize) -> String {
    format!("user{i:05}")
}

/// Unique per `n`, and spread over the first 8 hex digits as real BitLocker
/// key IDs (random GUIDs) are: the key-ID index is bucketed by them.
fn key_id(n: usize) -> String {
    format!(
        "{:08X}-{:04X}-4{:03X}-8{:03X}-{:012X}",
        (n as u32).wrapping_mul(2_654_435_761),
        n & 0xffff,
        n % 0xfff,
        (n * 7) % 0xfff,
        n
    )
}

/// A valid recovery password (8 groups of 6 digits, each a multiple of 11
/// below 720,896), distinct per `n`.
fn password(n: usize) -> String {
    (0..8)
        .map(|g| format!("{:06}", ((n * 8 + g) * 7919 % 65_536) * 11))
        .collect::<Vec<_>>()
        .join("-")
}

/// The seed JSON and, per user, the key a default retrieval on the user's
/// first device (in listing order) discloses.
pub fn seed(users: usize) -> (String, Vec<Expected>) {
    let (seed, expected, _) = seed_with_helpdesk(users);
    (seed, expected)
}

/// [`seed`], plus the keys of every user's second device (both volumes), in
/// device order: the keys no user retrieves, left to the helpdesk.
pub fn seed_with_helpdesk(users: usize) -> (String, Vec<Expected>, Vec<HelpdeskKey>) {
    let mut devices = Vec::new();
    let mut expected = Vec::new();
    let mut helpdesk = Vec::new();
    let mut k = 0usize;
    for i in 0..users {
        let owner = user(i);
        let n_devices = 1 + i % 2;
        for d in 0..n_devices {
            let device_id = format!("PC-{i:05}-{d}");
            let mut keys: Vec<Value> = Vec::new();
            let os_key = key_id(k);
            let os_password = password(k);
            keys.push(json!({"key_id": os_key, "volume_type": "operating_system",
                "recovery_password": os_password, "created_at": "2025-01-01T00:00:00Z"}));
            k += 1;
            if d == 1 {
                helpdesk.push(HelpdeskKey {
                    device_id: device_id.clone(),
                    key_id: os_key.clone(),
                    password: os_password.clone(),
                    os: true,
                });
                keys.push(json!({"key_id": key_id(k), "volume_type": "fixed_data",
                    "recovery_password": password(k), "created_at": "2025-02-01T00:00:00Z"}));
                helpdesk.push(HelpdeskKey {
                    device_id: device_id.clone(),
                    key_id: key_id(k),
                    password: password(k),
                    os: false,
                });
                k += 1;
            }
            if d == 0 {
                expected.push(Expected {
                    user: owner.clone(),
                    device_id: device_id.clone(),
                    key_id: os_key,
                    password: os_password,
                });
            }
            devices.push(
                json!({"tenant_id": TENANT, "device_id": device_id, "owner": owner,
                "display_name": format!("Laptop {i} #{d}"), "os": "Windows 11 Enterprise",
                "managed_by": "organization", "recovery_keys": keys}),
            );
        }
    }
    let seed = json!({
        "tenants": [{"tenant_id": TENANT, "self_service": true,
            "helpdesk": {"name": "Load Test IT", "email": "it@loadtest.example"}}],
        "devices": devices,
    });
    (seed.to_string(), expected, helpdesk)
}

/// `keys` (as [`seed_with_helpdesk`] lists them: both keys of a device
/// together) dealt to `agents` agents, each agent's share cut into requests
/// of at most `batch` key IDs. Within a request, the operating-system keys
/// of up to `batch / 2` devices come first, then their data keys, so
/// consecutive keys belong to distinct devices (the store writes the audit
/// events of distinct devices together).
pub fn helpdesk_batches(
    keys: &[HelpdeskKey],
    agents: usize,
    batch: usize,
) -> Vec<Vec<Vec<HelpdeskKey>>> {
    let mut per_device: Vec<Vec<HelpdeskKey>> = Vec::new();
    for k in keys {
        match per_device.last_mut() {
            Some(d) if d[0].device_id == k.device_id => d.push(k.clone()),
            _ => per_device.push(vec![k.clone()]),
        }
    }
    let agents = agents.max(1);
    let share = per_device.len().div_ceil(agents).max(1);
    let group = (batch / 2).max(1);
    per_device
        .chunks(share)
        .map(|devices| {
            let mut ordered = Vec::new();
            for g in devices.chunks(group) {
                ordered.extend(g.iter().flat_map(|d| d.iter().filter(|k| k.os)).cloned());
                ordered.extend(g.iter().flat_map(|d| d.iter().filter(|k| !k.os)).cloned());
            }
            ordered.chunks(batch.max(1)).map(<[_]>::to_vec).collect()
        })
        .collect()
}
