//! The recovery-information records of a PowerShell export:
//! `Get-ADObject -Filter 'objectClass -eq "msFVE-RecoveryInformation"'
//! -Properties … | Select-Object … | Export-Csv` (the full command is in
//! docs/getting-keys-in.md). Columns are found by name, in any order and
//! case. Two things `Export-Csv` does unless told otherwise are refused
//! with the conversion to use: a `byte[]` GUID becomes the literal
//! `System.Byte[]`, and `whenCreated` is written in the exporting
//! machine's culture, without a time zone.

use super::{Record, table, values};
use crate::domain::model::RecoveryPassword;
use std::collections::BTreeMap;

const DN: &str = "DistinguishedName";
const PASSWORD: &str = "msFVE-RecoveryPassword";
const GUID: &str = "msFVE-RecoveryGuid";
const CREATED: &str = "whenCreated";
const VOLUME: &str = "msFVE-VolumeGuid";
const CLASS: &str = "ObjectClass";

/// The `Select-Object` calculated property that exports `column` usably.
pub fn conversion(column: &str) -> String {
    match column {
        CREATED => "@{n='whenCreated';e={$_.whenCreated.ToUniversalTime().ToString('o')}}".into(),
        GUID => "@{n='msFVE-RecoveryGuid';e={[guid]::new([byte[]]$_.'msFVE-RecoveryGuid')}}".into(),
        _ => format!(
            "@{{n='{column}';e={{if ($_.'{column}') {{[guid]::new([byte[]]$_.'{column}')}}}}}}"
        ),
    }
}

/// Column indexes by (lower-cased) header name.
struct Columns(BTreeMap<String, usize>);

impl Columns {
    fn get<'a>(&self, row: &'a [String], name: &str) -> Option<&'a str> {
        let i = self.0.get(&name.to_ascii_lowercase())?;
        row.get(*i).map(String::as_str)
    }
}

/// Problems every row of a column shares, reported once with the fix.
#[derive(Default)]
struct Systemic(BTreeMap<&'static str, (usize, usize)>);

impl Systemic {
    fn add(&mut self, column: &'static str, line: usize) {
        let e = self.0.entry(column).or_insert((line, 0));
        e.1 += 1;
    }

    fn messages(self) -> Vec<String> {
        self.0
            .into_iter()
            .map(|(column, (line, n))| {
                let what = if column == CREATED {
                    "is in the exporting machine's date format, which has no time zone (and may put the day first)".to_owned()
                } else {
                    format!("is {:?}: Export-Csv wrote the type name of a byte array, not the GUID", values::BYTE_ARRAY)
                };
                let more = match n {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                format!(
                    "line {line}{more}: {column} {what}. Export it with this in Select-Object: {}",
                    conversion(column)
                )
            })
            .collect()
    }
}

/// One data row: its record, or its problems (systemic ones noted apart).
fn record(
    cols: &Columns,
    line: usize,
    row: &[String],
    systemic: &mut Systemic,
) -> Result<Record, Vec<String>> {
    let dn = cols.get(row, DN).unwrap_or_default();
    let at = format!("line {line} ({dn})");
    let mut errors = Vec::new();
    let computer = super::computer_of(dn);
    if computer.is_none() {
        errors.push(format!(
            "{at}: the parent in the DistinguishedName is not a computer (CN=...)"
        ));
    }
    let guid = cols.get(row, GUID).unwrap_or_default();
    let key_id = values::key_id(guid.as_bytes());
    if guid == values::BYTE_ARRAY {
        systemic.add(GUID, line);
    } else if key_id.is_none() {
        errors.push(format!(
            "{at}: {GUID} must be a GUID such as 1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b"
        ));
    }
    let password = cols
        .get(row, PASSWORD)
        .and_then(|v| RecoveryPassword::parse(v).ok());
    if password.is_none() {
        errors.push(format!("{at}: {}", super::BAD_PASSWORD));
    }
    let created = cols.get(row, CREATED).unwrap_or_default();
    let created_at = values::csv_time(created);
    if created_at.is_none() {
        if created.is_empty() {
            errors.push(format!("{at}: {CREATED} is empty"));
        } else {
            systemic.add(CREATED, line);
        }
    }
    let volume = cols.get(row, VOLUME).unwrap_or_default();
    let volume_guid = values::volume_guid(volume.as_bytes());
    if volume == values::BYTE_ARRAY {
        systemic.add(VOLUME, line);
    } else if !volume.is_empty() && volume_guid.is_none() {
        errors.push(format!("{at}: {VOLUME} must be empty or a GUID"));
    }
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

/// The header's columns, or which required ones are missing.
fn columns(header: &[String]) -> Result<Columns, Vec<String>> {
    let mut map = BTreeMap::new();
    for (i, name) in header.iter().enumerate() {
        map.entry(name.to_ascii_lowercase()).or_insert(i);
    }
    let missing: Vec<String> = [DN, PASSWORD, GUID, CREATED]
        .into_iter()
        .filter(|c| !map.contains_key(&c.to_ascii_lowercase()))
        .map(|c| format!("line 1: no {c} column (the header must name {DN}, {PASSWORD}, {GUID} and {CREATED}; see docs/getting-keys-in.md for the export command)"))
        .collect();
    if missing.is_empty() {
        Ok(Columns(map))
    } else {
        Err(missing)
    }
}

/// Every recovery-information record of the export, or every problem.
pub fn records(text: &str) -> Result<Vec<Record>, Vec<String>> {
    let rows = table::rows(text).map_err(|e| vec![e])?;
    let Some(((_, header), data)) = rows.split_first() else {
        return Err(vec!["the file is empty".into()]);
    };
    let cols = columns(header)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut systemic = Systemic::default();
    for (line, row) in data {
        let class = cols.get(row, CLASS);
        if class.is_some_and(|c| !c.eq_ignore_ascii_case("msFVE-RecoveryInformation")) {
            continue;
        }
        if row.len() != header.len() {
            errors.push(format!(
                "line {line}: {} fields, the header has {}",
                row.len(),
                header.len()
            ));
            continue;
        }
        match record(&cols, *line, row, &mut systemic) {
            Ok(r) => out.push(r),
            Err(es) => errors.extend(es),
        }
    }
    let mut all = systemic.messages();
    all.extend(errors);
    if all.is_empty() { Ok(out) } else { Err(all) }
}
