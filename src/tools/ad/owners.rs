//! The files that say what AD does not record: who owns each computer
//! (`--owners`) and, optionally, which volume a volume GUID is
//! (`--volumes`). Both are two-column CSV with an optional header, as a
//! spreadsheet or `Export-Csv` writes them (see `table`).

use super::table;
use super::values;
use crate::domain::ids::UserId;
use crate::domain::model::VolumeType;
use crate::tools::seed::SeedError;
use std::collections::HashMap;

/// The two columns of every data row; a first row whose first field
/// starts with one of `header` is the header. Errors name the line.
fn pairs(
    text: &str,
    header: &[&str],
    expected: &str,
) -> Result<Vec<(String, String, String)>, SeedError> {
    let rows = table::rows(text).map_err(|e| SeedError(vec![e]))?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, (line, fields)) in rows.into_iter().enumerate() {
        let first = fields[0].to_ascii_lowercase();
        if i == 0 && header.iter().any(|h| first.starts_with(h)) {
            continue;
        }
        let at = format!("line {line}");
        match <[String; 2]>::try_from(fields) {
            Ok([a, b]) if !a.is_empty() => out.push((at, a, b)),
            _ => errors.push(format!("{at}: expected \"{expected}\"")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SeedError(errors))
    }
}

/// The owners file: `computer name,owner ID` per line (a header line
/// starting with `computer` or `name` is skipped). Computer names match
/// case-insensitively, as in AD.
pub fn owners(text: &str) -> Result<HashMap<String, UserId>, SeedError> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (at, computer, owner) in pairs(text, &["computer", "name"], "computer name,owner ID")? {
        match UserId::parse(&owner) {
            Ok(o) => {
                if out.insert(computer.to_ascii_lowercase(), o).is_some() {
                    errors.push(format!("{at}: computer {computer:?} is listed twice"));
                }
            }
            Err(e) => errors.push(format!("{at}: owner {e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SeedError(errors))
    }
}

/// Volume types by volume GUID (`msFVE-VolumeGuid`), from `--volumes`.
pub type Volumes = HashMap<uuid::Uuid, VolumeType>;

/// The volumes file: `volume GUID,volume type` per line, the type one of
/// `operating_system`, `fixed_data`, `removable_data` (a header line
/// starting with `volume` is skipped). A GUID listed twice must agree.
pub fn volumes(text: &str) -> Result<Volumes, SeedError> {
    let mut out = Volumes::new();
    let mut errors = Vec::new();
    for (at, guid, kind) in pairs(text, &["volume"], "volume GUID,volume type")? {
        let Some(guid) = values::volume_guid(guid.as_bytes()) else {
            errors.push(format!("{at}: {guid:?} is not a GUID"));
            continue;
        };
        let Some(kind) = VolumeType::parse(&kind.to_ascii_lowercase()) else {
            errors.push(format!(
                "{at}: volume type must be operating_system, fixed_data or removable_data, got {kind:?}"
            ));
            continue;
        };
        if out.insert(guid, kind).is_some_and(|k| k != kind) {
            errors.push(format!("{at}: volume {guid} is listed with two types"));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SeedError(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_with_or_without_a_header_quoted_or_not() {
        let o = owners("\"Computer\",\"Owner\"\r\n\"PC-1\",\"alice\"\r\npc-2,bob\n").unwrap();
        assert_eq!(o["pc-1"].as_str(), "alice");
        assert_eq!(o["pc-2"].as_str(), "bob");
        assert_eq!(owners("PC-1,alice\n").unwrap().len(), 1);
        for (bad, want) in [
            ("computer,owner\nPC-1,al ice\n", "line 2: owner"),
            (
                "PC-1,alice\nPC-1,bob\n",
                "line 2: computer \"PC-1\" is listed twice",
            ),
            ("PC-1\n", "line 1: expected"),
            ("PC-1,alice,extra\n", "line 1: expected"),
        ] {
            let e = owners(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn volumes_map_guids_to_types() {
        let v = volumes(
            "volume_guid,volume_type\n{5C6D7E8F-0A1B-4C2D-8E3F-405162738495},fixed_data\n\
             a0b1c2d3-e4f5-4617-8829-3a4b5c6d7e8f,Operating_System\n",
        )
        .unwrap();
        let g = |s: &str| uuid::Uuid::parse_str(s).unwrap();
        assert_eq!(
            v[&g("5c6d7e8f-0a1b-4c2d-8e3f-405162738495")],
            VolumeType::FixedData
        );
        assert_eq!(
            v[&g("a0b1c2d3-e4f5-4617-8829-3a4b5c6d7e8f")],
            VolumeType::OperatingSystem
        );
        for (bad, want) in [
            ("x,fixed_data\n", "line 1: \"x\" is not a GUID"),
            (
                "5c6d7e8f-0a1b-4c2d-8e3f-405162738495,data\n",
                "line 1: volume type must be",
            ),
            (
                "5c6d7e8f-0a1b-4c2d-8e3f-405162738495,fixed_data\n5c6d7e8f-0a1b-4c2d-8e3f-405162738495,removable_data\n",
                "line 2: volume 5c6d7e8f-0a1b-4c2d-8e3f-405162738495 is listed with two types",
            ),
        ] {
            let e = volumes(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
