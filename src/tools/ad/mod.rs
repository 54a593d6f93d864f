//! Active Directory's BitLocker recovery information into the import
//! format: `msFVE-RecoveryInformation` objects from an `ldifde` export
//! (`ldif`, `from_ldif`) or a PowerShell `Export-Csv` (`export_csv`), each
//! under its computer (the parent in the DN), with owners from an owners
//! file (AD records no owner for a computer's key) and, optionally, volume
//! types from a volumes file keyed by `msFVE-VolumeGuid` (AD records no
//! volume type either). The result is a [`Seed`] of devices only, loaded
//! by `portal import`'s own code, so the same guarantees hold: validated as
//! a whole (one bad record and nothing is written), sealed per key,
//! unchanged devices skipped.

pub mod export_csv;
pub mod files;
pub mod from_ldif;
pub mod ldif;
pub mod owners;
pub mod table;
pub mod values;

pub use owners::{Volumes, owners, volumes};
pub use values::{generalized_time, guid_from_ad_bytes};

use crate::domain::ids::{DeviceId, KeyId, TenantId, UserId};
use crate::domain::model::{
    Device, KeyMeta, ManagedBy, RecoveryPassword, TenantPolicy, VolumeType,
};
use crate::tools::seed::{Seed, SeedDevice, SeedError};
use std::collections::{BTreeMap, HashMap, HashSet};
use time::OffsetDateTime;

const BAD_PASSWORD: &str =
    "msFVE-RecoveryPassword is missing or not 8 groups of 6 digits each divisible by 11";
/// Problems shown at most, as `portal import` does.
const MAX_ERRORS: usize = 50;

/// Which export a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `ldifde -f FILE`.
    Ldif,
    /// `Get-ADObject … | Export-Csv`.
    Csv,
}

/// One recovery key as AD holds it.
pub struct Record {
    /// Where it is in the file, for errors.
    pub at: String,
    /// The computer's name: the parent's CN.
    pub computer: String,
    pub key_id: KeyId,
    pub password: RecoveryPassword,
    pub created_at: OffsetDateTime,
    pub volume_guid: Option<uuid::Uuid>,
}

/// What an AD file gives besides the seed: how many keys took their
/// volume type from the volumes file, and how many were given
/// `operating_system` because nothing said otherwise.
pub struct AdImport {
    pub seed: Seed,
    pub volume_type_known: usize,
    pub volume_type_assumed: usize,
}

impl AdImport {
    /// What `portal import`'s summary adds.
    pub fn note(&self) -> String {
        format!(
            ", {} keys typed from --volumes, {} keys given volume type operating_system (no volume type known for their msFVE-VolumeGuid)",
            self.volume_type_known, self.volume_type_assumed
        )
    }
}

/// The computer a recovery-information DN sits under: its parent's CN.
fn computer_of(dn: &str) -> Option<String> {
    ldif::rdns(dn)
        .get(1)
        .filter(|(t, _)| t == "cn")
        .map(|(_, v)| v.clone())
}

/// The devices of an AD export in `tenant`, all or nothing.
pub fn import(
    format: Format,
    text: &str,
    tenant: &TenantId,
    owners: &HashMap<String, UserId>,
    volumes: &Volumes,
) -> Result<AdImport, SeedError> {
    let records = match format {
        Format::Ldif => from_ldif::records(text),
        Format::Csv => export_csv::records(text),
    };
    let mut errors = Vec::new();
    let records = records.unwrap_or_else(|e| {
        errors = e;
        Vec::new()
    });
    let now = OffsetDateTime::now_utc();
    let a = assemble(records, tenant, owners, volumes, now, &mut errors);
    errors.truncate(MAX_ERRORS);
    if errors.is_empty() {
        Ok(a)
    } else {
        Err(SeedError(errors))
    }
}

/// The devices of an `ldifde` export in `tenant`, all or nothing, every
/// key `operating_system`.
pub fn from_ldif(
    text: &str,
    tenant: &TenantId,
    owners: &HashMap<String, UserId>,
) -> Result<AdImport, SeedError> {
    import(Format::Ldif, text, tenant, owners, &Volumes::new())
}

/// The keys by computer, typed from `volumes`; problems into `errors`.
fn assemble(
    records: Vec<Record>,
    tenant: &TenantId,
    owners: &HashMap<String, UserId>,
    volumes: &Volumes,
    now: OffsetDateTime,
    errors: &mut Vec<String>,
) -> AdImport {
    let mut by_computer: BTreeMap<String, Vec<(KeyMeta, RecoveryPassword)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let (mut known, mut assumed) = (0, 0);
    for r in records {
        if !seen.insert(r.key_id) {
            errors.push(format!("{}: key {} appears twice", r.at, r.key_id));
        }
        if r.created_at > now {
            errors.push(from_the_future(&r));
        }
        let volume_type = r.volume_guid.and_then(|g| volumes.get(&g).copied());
        match volume_type {
            Some(_) => known += 1,
            None => assumed += 1,
        }
        let t = volume_type.unwrap_or(VolumeType::OperatingSystem);
        let meta = KeyMeta::new(r.key_id, t, r.created_at);
        by_computer
            .entry(r.computer)
            .or_default()
            .push((meta, r.password));
    }
    let mut devices = Vec::new();
    for (computer, passwords) in by_computer {
        if let Some(d) = device(tenant, computer, passwords, owners, errors) {
            devices.push(d);
        }
    }
    AdImport {
        seed: Seed {
            tenants: Vec::new(),
            devices,
        },
        volume_type_known: known,
        volume_type_assumed: assumed,
    }
}

/// A key AD says was created after now: escrow refuses one (it would
/// become the device's current key ahead of real ones) and the Entra sync
/// skips it, so the import does not load it either.
fn from_the_future(r: &Record) -> String {
    use time::format_description::well_known::Rfc3339;
    format!(
        "{}: whenCreated {} is in the future: check the clock of the domain controller or of the machine that exported the file, then export again",
        r.at,
        r.created_at.format(&Rfc3339).unwrap_or_default()
    )
}

fn device(
    tenant: &TenantId,
    computer: String,
    passwords: Vec<(KeyMeta, RecoveryPassword)>,
    owners: &HashMap<String, UserId>,
    errors: &mut Vec<String>,
) -> Option<SeedDevice> {
    let device_id = DeviceId::parse(&computer)
        .map_err(|e| errors.push(format!("computer {computer:?}: {e}")))
        .ok();
    let owner = owners.get(&computer.to_ascii_lowercase()).cloned();
    if owner.is_none() {
        errors.push(format!(
            "computer {computer:?} has no owner in the owners file"
        ));
    }
    let keys = passwords.iter().map(|(m, _)| m.clone()).collect();
    Some(SeedDevice {
        device: Device {
            tenant: tenant.clone(),
            device_id: device_id?,
            owner: owner?,
            display_name: computer,
            os: "Windows".into(),
            managed_by: ManagedBy::Organization,
            keys,
            owner_since: None,
            retired: None,
        },
        policy: TenantPolicy::default(),
        passwords,
    })
}

#[cfg(test)]
mod tests;
