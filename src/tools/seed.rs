//! The seed / import file format, validated as a whole before anything is
//! written: one invalid record and nothing loads. Errors name the record and
//! the field.
//!
//! ```text
//! {"tenants":[{"tenant_id","self_service":bool,"helpdesk":{name,email,phone,url},
//!              "require_reason"?:"never"|"helpdesk"|"always","superseded_key_retention_days"?:1..3650,
//!              "retired_device_retention_days"?:1..3650,
//!               "self_service_rate_limit"?:1..100000,"helpdesk_rate_limit"?:1..100000}],
//!  "devices":[{"tenant_id","device_id","owner","display_name","os","managed_by",
//!              "recovery_keys":[{"key_id":GUID,"volume_type","recovery_password","created_at":RFC3339}]}]}
//! ```

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::model::{
    Device, Helpdesk, KeyMeta, ManagedBy, RecoveryPassword, RequireReason, Tenant, TenantPolicy,
    VolumeType,
};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// The demo data `portal serve` loads when no `--seed` is given.
pub const DEMO_SEED: &str = include_str!("demo-seed.json");

/// Errors shown at most, so a broken 100,000-row file gives a readable answer.
const MAX_ERRORS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid seed file ({} problem{}); nothing was loaded:\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
pub struct SeedError(pub Vec<String>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeed {
    #[serde(default)]
    tenants: Vec<RawTenant>,
    #[serde(default)]
    devices: Vec<RawDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    tenant_id: String,
    self_service: bool,
    #[serde(default)]
    helpdesk: Option<Helpdesk>,
    #[serde(default)]
    require_reason: Option<RequireReason>,
    #[serde(default)]
    superseded_key_retention_days: Option<u16>,
    #[serde(default)]
    retired_device_retention_days: Option<u16>,
    #[serde(default)]
    self_service_rate_limit: Option<u32>,
    #[serde(default)]
    helpdesk_rate_limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    tenant_id: String,
    device_id: String,
    owner: String,
    display_name: String,
    os: String,
    managed_by: String,
    #[serde(default)]
    recovery_keys: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key_id: String,
    volume_type: String,
    recovery_password: Zeroizing<String>,
    created_at: String,
}

/// One device and its plaintext keys, ready to seal.
pub struct SeedDevice {
    pub device: Device,
    pub policy: TenantPolicy,
    pub passwords: Vec<(KeyMeta, RecoveryPassword)>,
}

pub struct Seed {
    pub tenants: Vec<Tenant>,
    pub devices: Vec<SeedDevice>,
}

impl Seed {
    pub fn key_count(&self) -> usize {
        self.devices.iter().map(|d| d.passwords.len()).sum()
    }
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// Problems found so far, at most `MAX_ERRORS` of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, msg: String) {
        if self.0.len() < MAX_ERRORS {
            self.0.push(msg);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Parses and validates a whole seed document.
pub fn parse(json: &str) -> Result<Seed, SeedError> {
    let raw = read(json)?;
    let mut problems = Problems::default();
    let (tenants, policies) = tenants(raw.tenants, &mut problems);
    let devices = devices(raw.devices, &policies, &mut problems);
    if problems.0.is_empty() {
        Ok(Seed { tenants, devices })
    } else {
        Err(SeedError(problems.0))
    }
}

/// The document's shape: a type error names its path.
fn read(json: &str) -> Result<RawSeed, SeedError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        SeedError(vec![if path == "." {
            format!("{inner}")
        } else {
            format!("{path}: {inner}")
        }])
    })
}

/// The tenants, each once, and their policies by ID.
fn tenants(
    raw: Vec<RawTenant>,
    problems: &mut Problems,
) -> (Vec<Tenant>, HashMap<TenantId, TenantPolicy>) {
    let mut tenants: Vec<Tenant> = Vec::new();
    let mut policies: HashMap<TenantId, TenantPolicy> = HashMap::new();
    for (i, t) in raw.into_iter().enumerate() {
        let at = format!("tenants[{i}]");
        let Some(tenant) = tenant(&at, t, problems) else {
            continue;
        };
        let id = &tenant.id;
        if policies.insert(id.clone(), tenant.policy.clone()).is_some() {
            problems.push(format!("{at}.tenant_id: duplicate tenant {id}"));
        }
        tenants.push(tenant);
    }
    (tenants, policies)
}

/// One tenant record: `None` without a valid ID; otherwise the tenant,
/// with any problem of its settings pushed.
fn tenant(at: &str, t: RawTenant, problems: &mut Problems) -> Option<Tenant> {
    let Ok(id) = TenantId::parse(&t.tenant_id) else {
        problems.push(format!(
            "{at}.tenant_id: {:?} must be 1 to 128 characters from A-Z a-z 0-9 . _ -",
            t.tenant_id
        ));
        return None;
    };
    if let Some(Err(e)) = t.helpdesk.as_ref().map(Helpdesk::check) {
        problems.push(format!("{at} (tenant {id}).{e}"));
    }
    let retention = t
        .superseded_key_retention_days
        .unwrap_or(TenantPolicy::DEFAULT_RETENTION_DAYS);
    let retired_retention = t
        .retired_device_retention_days
        .unwrap_or(TenantPolicy::DEFAULT_RETENTION_DAYS);
    for (field, days) in [
        ("superseded_key_retention_days", retention),
        ("retired_device_retention_days", retired_retention),
    ] {
        if !TenantPolicy::RETENTION_DAYS.contains(&days) {
            problems.push(format!(
                "{at} (tenant {id}).{field}: must be a whole number from {} to {}",
                TenantPolicy::RETENTION_DAYS.start(),
                TenantPolicy::RETENTION_DAYS.end()
            ));
        }
    }
    for (field, limit) in [
        ("self_service_rate_limit", t.self_service_rate_limit),
        ("helpdesk_rate_limit", t.helpdesk_rate_limit),
    ] {
        if limit.is_some_and(|l| !TenantPolicy::RATE_LIMITS.contains(&l)) {
            problems.push(format!(
                "{at} (tenant {id}).{field}: must be a whole number from {} to {}",
                TenantPolicy::RATE_LIMITS.start(),
                TenantPolicy::RATE_LIMITS.end()
            ));
        }
    }
    // A tenant in the file sets all of its settings; the ones it leaves
    // out take their defaults.
    let policy = TenantPolicy {
        self_service: t.self_service,
        helpdesk: t.helpdesk,
        require_reason: t.require_reason.unwrap_or_default(),
        superseded_key_retention_days: retention,
        retired_device_retention_days: retired_retention,
        self_service_rate_limit: t.self_service_rate_limit,
        helpdesk_rate_limit: t.helpdesk_rate_limit,
        incident: None,
    };
    Some(Tenant { id, policy })
}

/// What the device records have seen so far: duplicates are refused.
#[derive(Default)]
struct Seen {
    devices: HashSet<(TenantId, DeviceId)>,
    /// Which device (as written in the file) holds each key.
    keys: HashMap<(TenantId, KeyId), String>,
}

/// The devices, each with its keys; none when any record has a problem.
fn devices(
    raw: Vec<RawDevice>,
    policies: &HashMap<TenantId, TenantPolicy>,
    problems: &mut Problems,
) -> Vec<SeedDevice> {
    let mut seen = Seen::default();
    let mut devices = Vec::new();
    for (i, d) in raw.into_iter().enumerate() {
        let at = format!("devices[{i}] (device_id {:?})", d.device_id);
        let before = problems.len();
        let device = device(&at, d, policies, &mut seen, problems);
        if problems.len() == before {
            devices.extend(device);
        }
    }
    devices
}

/// One device record: the device if every field is valid (its problems
/// pushed otherwise).
fn device(
    at: &str,
    d: RawDevice,
    policies: &HashMap<TenantId, TenantPolicy>,
    seen: &mut Seen,
    problems: &mut Problems,
) -> Option<SeedDevice> {
    let tenant = TenantId::parse(&d.tenant_id)
        .map_err(|e| problems.push(format!("{at}.tenant_id: {e}")))
        .ok();
    let policy = tenant.as_ref().and_then(|t| {
        let p = policies.get(t).cloned();
        if p.is_none() {
            problems.push(format!(
                "{at}.tenant_id: tenant {t} is not declared in \"tenants\""
            ));
        }
        p
    });
    let device_id = DeviceId::parse(&d.device_id)
        .map_err(|e| problems.push(format!("{at}.device_id: {e}")))
        .ok();
    let owner = UserId::parse(&d.owner)
        .map_err(|e| problems.push(format!("{at}.owner: {e}")))
        .ok();
    let managed_by = description(at, &d, problems);
    if let (Some(t), Some(id)) = (&tenant, &device_id)
        && !seen.devices.insert((t.clone(), id.clone()))
    {
        problems.push(format!(
            "{at}.device_id: duplicate device {id} in tenant {t}"
        ));
    }
    let passwords = keys(at, &d, tenant.as_ref(), seen, problems);
    let (tenant, policy, device_id, owner, managed_by) =
        (tenant?, policy?, device_id?, owner?, managed_by?);
    let keys = passwords.iter().map(|(m, _)| m.clone()).collect();
    Some(SeedDevice {
        device: Device {
            tenant,
            device_id,
            owner,
            display_name: d.display_name,
            os: d.os,
            managed_by,
            keys,
            owner_since: None,
            retired: None,
        },
        policy,
        passwords,
    })
}

/// Checks how the device is described (name, OS, management); returns
/// how it is managed.
fn description(at: &str, d: &RawDevice, problems: &mut Problems) -> Option<ManagedBy> {
    if !text_ok(&d.display_name, 256) {
        problems.push(format!(
            "{at}.display_name: must be 1 to 256 characters without control characters"
        ));
    }
    if !text_ok(&d.os, 128) {
        problems.push(format!(
            "{at}.os: must be 1 to 128 characters without control characters"
        ));
    }
    let managed_by = ManagedBy::parse(&d.managed_by);
    if managed_by.is_none() {
        problems.push(format!(
            "{at}.managed_by: must be \"organization\" or \"user\", got {:?}",
            d.managed_by
        ));
    }
    if managed_by == Some(ManagedBy::User) && !d.recovery_keys.is_empty() {
        problems.push(format!(
            "{at}.recovery_keys: a personally encrypted device (managed_by \"user\") has no escrowed keys"
        ));
    }
    managed_by
}

/// The device's valid keys with their passwords (problems pushed for the
/// others).
fn keys(
    at: &str,
    d: &RawDevice,
    tenant: Option<&TenantId>,
    seen: &mut Seen,
    problems: &mut Problems,
) -> Vec<(KeyMeta, RecoveryPassword)> {
    let mut passwords = Vec::new();
    for (j, k) in d.recovery_keys.iter().enumerate() {
        let kat = format!("{at}.recovery_keys[{j}]");
        let key_id = KeyId::parse(&k.key_id)
            .map_err(|e| problems.push(format!("{kat}.key_id: {e}")))
            .ok();
        if let (Some(t), Some(kid)) = (tenant, key_id)
            && let Some(other) = seen.keys.insert((t.clone(), kid), d.device_id.clone())
        {
            problems.push(format!(
                "{kat}.key_id: key {kid} is already used by device {other:?} in tenant {t}"
            ));
        }
        let volume_type = VolumeType::parse(&k.volume_type);
        if volume_type.is_none() {
            problems.push(format!(
                "{kat}.volume_type: must be operating_system, fixed_data or removable_data, got {:?}",
                k.volume_type
            ));
        }
        // Never echo the password itself.
        let password = RecoveryPassword::parse(&k.recovery_password)
            .map_err(|e| problems.push(format!("{kat}.recovery_password: {e}")))
            .ok();
        let created_at = OffsetDateTime::parse(&k.created_at, &Rfc3339)
            .map_err(|_| problems.push(format!("{kat}.created_at: must be an RFC 3339 timestamp such as 2024-05-15T09:30:00Z, got {:?}", k.created_at)))
            .ok();
        if let (Some(key_id), Some(volume_type), Some(password), Some(created_at)) =
            (key_id, volume_type, password, created_at)
        {
            passwords.push((KeyMeta::new(key_id, volume_type, created_at), password));
        }
    }
    passwords
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_seed_is_valid() {
        let s = parse(DEMO_SEED).expect("demo seed");
        assert!(s.devices.len() >= 4);
        assert!(s.key_count() >= 4);
    }

    #[test]
    fn errors_name_record_and_field_and_never_the_password() {
        let bad = r#"{"tenants":[{"tenant_id":"t1","self_service":true}],
          "devices":[{"tenant_id":"t1","device_id":"PC-1","owner":"u1","display_name":"PC","os":"Windows 11","managed_by":"organization",
            "recovery_keys":[{"key_id":"1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b","volume_type":"operating_system",
              "recovery_password":"111112-234564-345675-456786-567897-679008-700007-000000","created_at":"2024-05-15T09:30:00Z"}]}]}"#;
        let e = parse(bad).err().expect("invalid");
        assert_eq!(e.0.len(), 1);
        assert!(
            e.0[0].starts_with(
                r#"devices[0] (device_id "PC-1").recovery_keys[0].recovery_password:"#
            ),
            "{}",
            e.0[0]
        );
        assert!(!e.to_string().contains("111112"));
    }

    #[test]
    fn tenants_carry_all_their_settings_with_defaults_for_the_new_ones() {
        let s = parse(
            r#"{"tenants":[{"tenant_id":"t1","self_service":false,"require_reason":"helpdesk","superseded_key_retention_days":90},
                           {"tenant_id":"t2","self_service":true}]}"#,
        )
        .unwrap();
        assert_eq!(s.tenants[0].policy.require_reason, RequireReason::Helpdesk);
        assert_eq!(s.tenants[0].policy.superseded_key_retention_days, 90);
        assert_eq!(s.tenants[1].policy.require_reason, RequireReason::Never);
        assert_eq!(s.tenants[1].policy.superseded_key_retention_days, 30);
        for bad in [
            r#""superseded_key_retention_days":0"#,
            r#""superseded_key_retention_days":3651"#,
            r#""require_reason":"sometimes""#,
        ] {
            let doc = format!(r#"{{"tenants":[{{"tenant_id":"t1","self_service":true,{bad}}}]}}"#);
            let e = parse(&doc).err().expect(bad);
            assert!(e.0[0].contains("tenants[0]"), "{}", e.0[0]);
        }
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let e = parse(r#"{"tenants":[{"tenant_id":"t1","self_service":true,"colour":"red"}]}"#)
            .err()
            .unwrap();
        assert!(
            e.0[0].contains("tenants[0]") && e.0[0].contains("colour"),
            "{}",
            e.0[0]
        );
    }

    #[test]
    fn each_tenant_problem_is_named_with_its_record_and_field() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"tenant_id":"t1","self_service":true}"#, &[]),
            (
                r#"{"tenant_id":"t 1","self_service":true}"#,
                &[r#"tenants[3].tenant_id: "t 1" must be 1 to 128 characters"#],
            ),
            (
                r#"{"tenant_id":"t1","self_service":true,"retired_device_retention_days":0}"#,
                &["tenants[3] (tenant t1).retired_device_retention_days: must be"],
            ),
            (
                r#"{"tenant_id":"t1","self_service":true,"superseded_key_retention_days":3651,
                    "self_service_rate_limit":0,"helpdesk_rate_limit":100001}"#,
                &[
                    "tenants[3] (tenant t1).superseded_key_retention_days: must be",
                    "tenants[3] (tenant t1).self_service_rate_limit: must be",
                    "tenants[3] (tenant t1).helpdesk_rate_limit: must be",
                ],
            ),
        ];
        for (json, want) in cases {
            let raw: RawTenant = serde_json::from_str(json).unwrap();
            let mut problems = Problems::default();
            let parsed = tenant("tenants[3]", raw, &mut problems);
            assert_eq!(problems.0.len(), want.len(), "{json}: {:?}", problems.0);
            for (got, want) in problems.0.iter().zip(want.iter()) {
                assert!(got.starts_with(want), "{json}: {got}");
            }
            assert_eq!(parsed.is_none(), json.contains("t 1"), "{json}");
        }
    }

    #[test]
    fn problems_stop_at_the_cap() {
        let mut problems = Problems::default();
        for i in 0..MAX_ERRORS + 5 {
            problems.push(format!("problem {i}"));
        }
        assert_eq!(problems.len(), MAX_ERRORS);
        assert_eq!(
            problems.0.last().unwrap(),
            &format!("problem {}", MAX_ERRORS - 1)
        );
    }
}
