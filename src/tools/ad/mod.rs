//! Active Directory's BitLocker recovery information into the import
//! format: `msFVE-RecoveryInformation` objects from an `ldifde` export,
//! each under its computer (the parent in the DN), with owners from an
//! owners file (AD records no owner for a computer's key). The result is a
//! [`Seed`] of devices only, loaded by `portal import`'s own code, so the
//! same guarantees hold: validated as a whole (one bad record and nothing
//! is written), sealed per key, unchanged devices skipped.

pub mod ldif;

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::model::{
    Device, KeyMeta, ManagedBy, RecoveryPassword, TenantPolicy, VolumeType,
};
use crate::tools::seed::{Seed, SeedDevice, SeedError};
use std::collections::{BTreeMap, HashMap, HashSet};
use time::OffsetDateTime;

/// What an AD file gives besides the seed: keys whose volume type AD did
/// not record (given `operating_system`, as the summary says).
pub struct AdImport {
    pub seed: Seed,
    pub volume_type_assumed: usize,
}

/// AD's binary GUID (as `ldifde` writes `msFVE-RecoveryGuid::`): the first
/// three fields little-endian, the last eight bytes in order.
pub fn guid_from_ad_bytes(b: &[u8]) -> Option<KeyId> {
    let b: &[u8; 16] = b.try_into().ok()?;
    let hex = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |s: &[u8]| hex(&s.iter().rev().copied().collect::<Vec<_>>());
    let text = format!(
        "{}-{}-{}-{}-{}",
        rev(&b[0..4]),
        rev(&b[4..6]),
        rev(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    );
    KeyId::parse(&text).ok()
}

/// The key ID: a 16-byte binary GUID, or a GUID in text.
fn key_id(v: &[u8]) -> Option<KeyId> {
    guid_from_ad_bytes(v).or_else(|| KeyId::parse(std::str::from_utf8(v).ok()?.trim()).ok())
}

/// AD's `whenCreated`, a GeneralizedTime such as `20240515163000.0Z` (UTC).
pub fn generalized_time(v: &[u8]) -> Option<OffsetDateTime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let digits = s.get(..14)?;
    let rest = &s[14..];
    let frac_ok = rest
        .strip_suffix('Z')?
        .trim_start_matches(['.', ','])
        .bytes()
        .all(|b| b.is_ascii_digit());
    if !frac_ok || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

/// The owners file: `computer name,owner ID` per line (a header line
/// starting with `computer` or `name` is skipped). Computer names match
/// case-insensitively, as in AD.
pub fn owners(text: &str) -> Result<HashMap<String, UserId>, SeedError> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        if line.trim().is_empty()
            || (i == 0
                && ["computer", "name"]
                    .iter()
                    .any(|h| fields[0].to_ascii_lowercase().starts_with(h)))
        {
            continue;
        }
        let at = format!("owners line {}", i + 1);
        match fields.as_slice() {
            [computer, owner] if !computer.is_empty() => match UserId::parse(owner) {
                Ok(o) => {
                    if out.insert(computer.to_ascii_lowercase(), o).is_some() {
                        errors.push(format!("{at}: computer {computer:?} is listed twice"));
                    }
                }
                Err(e) => errors.push(format!("{at}: owner {e}")),
            },
            _ => errors.push(format!("{at}: expected \"computer name,owner ID\"")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SeedError(errors))
    }
}

/// One recovery-information entry: its computer and key, or what is wrong.
fn entry_key(e: &ldif::Entry) -> Result<(String, KeyMeta, RecoveryPassword), Vec<String>> {
    let at = format!("line {} ({})", e.line, e.dn);
    let mut errors = Vec::new();
    let computer = ldif::rdns(&e.dn)
        .get(1)
        .filter(|(t, _)| t == "cn")
        .map(|(_, v)| v.clone());
    if computer.is_none() {
        errors.push(format!(
            "{at}: the parent in the DN is not a computer (CN=...)"
        ));
    }
    let id = e.get("msFVE-RecoveryGuid").and_then(key_id);
    if id.is_none() {
        errors.push(format!(
            "{at}: msFVE-RecoveryGuid must be a 16-byte GUID or a GUID in text"
        ));
    }
    // Never echo the password itself.
    let pw = e
        .get("msFVE-RecoveryPassword")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| RecoveryPassword::parse(v.trim()).ok());
    if pw.is_none() {
        errors.push(format!("{at}: msFVE-RecoveryPassword is missing or not 8 groups of 6 digits each divisible by 11"));
    }
    let created = e.get("whenCreated").and_then(generalized_time);
    if created.is_none() {
        errors.push(format!(
            "{at}: whenCreated must be a GeneralizedTime such as 20240515163000.0Z"
        ));
    }
    match (computer, id, pw, created) {
        (Some(c), Some(id), Some(pw), Some(at)) if errors.is_empty() => {
            Ok((c, KeyMeta::new(id, VolumeType::OperatingSystem, at), pw))
        }
        _ => Err(errors),
    }
}

fn is_recovery_information(e: &ldif::Entry) -> bool {
    e.attrs
        .iter()
        .any(|(n, v)| n == "objectclass" && v.eq_ignore_ascii_case(b"msFVE-RecoveryInformation"))
}

/// The devices of an `ldifde` export in `tenant`, all or nothing.
pub fn from_ldif(
    text: &str,
    tenant: &TenantId,
    owners: &HashMap<String, UserId>,
) -> Result<AdImport, SeedError> {
    let entries = ldif::parse(text).map_err(|e| SeedError(vec![e]))?;
    let mut errors = Vec::new();
    let mut by_computer: BTreeMap<String, Vec<(KeyMeta, RecoveryPassword)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for e in entries.iter().filter(|e| is_recovery_information(e)) {
        match entry_key(e) {
            Ok((computer, meta, pw)) => {
                if !seen.insert(meta.key_id) {
                    errors.push(format!(
                        "line {}: key {} appears twice",
                        e.line, meta.key_id
                    ));
                }
                by_computer.entry(computer).or_default().push((meta, pw));
            }
            Err(es) => errors.extend(es),
        }
    }
    let mut devices = Vec::new();
    let mut assumed = 0;
    for (computer, passwords) in by_computer {
        let device_id = DeviceId::parse(&computer)
            .map_err(|e| errors.push(format!("computer {computer:?}: {e}")))
            .ok();
        let owner = owners.get(&computer.to_ascii_lowercase()).cloned();
        if owner.is_none() {
            errors.push(format!(
                "computer {computer:?} has no owner in the owners file"
            ));
        }
        if let (Some(device_id), Some(owner)) = (device_id, owner) {
            assumed += passwords.len();
            let keys = passwords.iter().map(|(m, _)| m.clone()).collect();
            let device = Device {
                tenant: tenant.clone(),
                device_id,
                owner,
                display_name: computer,
                os: "Windows".into(),
                managed_by: ManagedBy::Organization,
                keys,
                owner_since: None,
                retired: None,
            };
            devices.push(SeedDevice {
                device,
                policy: TenantPolicy::default(),
                passwords,
            });
        }
    }
    errors.truncate(50);
    if !errors.is_empty() {
        return Err(SeedError(errors));
    }
    Ok(AdImport {
        seed: Seed {
            tenants: Vec::new(),
            devices,
        },
        volume_type_assumed: assumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/ad/recovery.ldif");
    const OWNERS: &str = include_str!("../../../tests/fixtures/ad/owners.csv");

    #[test]
    fn ad_binary_guids_are_mixed_endian() {
        // Python: uuid.UUID("1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B").bytes_le
        let b = [
            0x4c, 0x3d, 0x2e, 0x1f, 0x6a, 0x5b, 0x98, 0x47, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f,
            0x4a, 0x5b,
        ];
        assert_eq!(
            guid_from_ad_bytes(&b).unwrap().to_string(),
            "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B"
        );
        assert!(guid_from_ad_bytes(&b[..15]).is_none());
    }

    #[test]
    fn when_created_is_generalized_time() {
        let t = generalized_time(b"20240515163000.0Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1_715_790_600);
        for bad in ["20240515163000", "2024-05-15", "20241315163000.0Z"] {
            assert!(generalized_time(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_ldifde_fixture_imports_with_its_key_ids_and_owners() {
        let tenant = TenantId::parse("contoso").unwrap();
        let a = from_ldif(FIXTURE, &tenant, &owners(OWNERS).unwrap()).unwrap();
        let got: Vec<(String, String, String)> = a
            .seed
            .devices
            .iter()
            .flat_map(|d| {
                d.passwords.iter().map(move |(m, _)| {
                    (
                        d.device.device_id.to_string(),
                        d.device.owner.to_string(),
                        m.key_id.to_string(),
                    )
                })
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "PC-1".into(),
                    "alice".into(),
                    "1F2E3D4C-5B6A-4798-8A9B-0C1D2E3F4A5B".into()
                ),
                (
                    "PC-2".into(),
                    "bob".into(),
                    "A0B1C2D3-E4F5-4617-8829-3A4B5C6D7E8F".into()
                ),
            ]
        );
        assert_eq!(
            a.seed.devices[0].passwords[0].1.expose(),
            "038258-286682-604857-317823-647658-401093-009361-230186"
        );
        assert_eq!(a.volume_type_assumed, 2);
    }

    #[test]
    fn a_malformed_file_or_a_missing_owner_loads_nothing() {
        let tenant = TenantId::parse("contoso").unwrap();
        let o = owners(OWNERS).unwrap();
        let bad_pw = FIXTURE.replace("038258-286682", "038259-286682");
        let e = from_ldif(&bad_pw, &tenant, &o).err().unwrap();
        assert!(e.0[0].contains("msFVE-RecoveryPassword"), "{e}");
        assert!(!e.to_string().contains("038259"), "{e}");
        let mut fewer = o.clone();
        fewer.remove("pc-2");
        let e = from_ldif(FIXTURE, &tenant, &fewer).err().unwrap();
        assert!(e.0[0].contains("\"PC-2\" has no owner"), "{e}");
        assert!(owners("computer,owner\nPC-1,al ice\n").is_err());
    }
}
