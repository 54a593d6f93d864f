//! The recovery-information records of an `ldifde` export.

use super::values;
use super::{Record, ldif};
use crate::domain::model::RecoveryPassword;

fn is_recovery_information(e: &ldif::Entry) -> bool {
    e.attrs
        .iter()
        .any(|(n, v)| n == "objectclass" && v.eq_ignore_ascii_case(b"msFVE-RecoveryInformation"))
}

/// One `msFVE-RecoveryInformation` entry: its record, or what is wrong.
fn record(e: &ldif::Entry) -> Result<Record, Vec<String>> {
    let at = format!("line {} ({})", e.line, e.dn);
    let mut errors = Vec::new();
    let computer = super::computer_of(&e.dn);
    if computer.is_none() {
        errors.push(format!(
            "{at}: the parent in the DN is not a computer (CN=...)"
        ));
    }
    let key_id = e.get("msFVE-RecoveryGuid").and_then(values::key_id);
    if key_id.is_none() {
        errors.push(format!(
            "{at}: msFVE-RecoveryGuid must be a 16-byte GUID or a GUID in text"
        ));
    }
    // Never echo the password itself.
    let password = e
        .get("msFVE-RecoveryPassword")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| RecoveryPassword::parse(v.trim()).ok());
    if password.is_none() {
        errors.push(format!("{at}: {}", super::BAD_PASSWORD));
    }
    let created_at = e.get("whenCreated").and_then(values::generalized_time);
    if created_at.is_none() {
        errors.push(format!(
            "{at}: whenCreated must be a GeneralizedTime such as 20240515163000.0Z"
        ));
    }
    let volume_guid = match e.get("msFVE-VolumeGuid") {
        None => None,
        Some(v) => {
            let g = values::volume_guid(v);
            if g.is_none() {
                errors.push(format!(
                    "{at}: msFVE-VolumeGuid must be a 16-byte GUID or a GUID in text"
                ));
            }
            g
        }
    };
    match (computer, key_id, password, created_at) {
        (Some(computer), Some(key_id), Some(password), Some(created_at)) if errors.is_empty() => {
            Ok(Record {
                at,
                computer,
                key_id,
                password,
                created_at,
                volume_guid,
            })
        }
        _ => Err(errors),
    }
}

/// Every recovery-information record of the file, or every problem.
pub fn records(text: &str) -> Result<Vec<Record>, Vec<String>> {
    let entries = ldif::parse(text).map_err(|e| vec![e])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for e in entries.iter().filter(|e| is_recovery_information(e)) {
        match record(e) {
            Ok(r) => out.push(r),
            Err(es) => errors.extend(es),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
