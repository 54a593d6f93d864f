//! The thin I/O shell of `portal import --format ad-ldif|ad-csv`: reads
//! the export, the owners file and the optional volumes file (each into a
//! buffer wiped on drop: the export holds every password in clear text).

use super::{AdImport, Format, Volumes};
use crate::domain::ids::TenantId;
use std::path::Path;
use zeroize::Zeroizing;

/// The command-line inputs of an AD import.
pub struct AdFiles<'a> {
    pub format: Format,
    pub file: &'a Path,
    pub owners: Option<&'a Path>,
    pub volumes: Option<&'a Path>,
    pub tenant: Option<&'a str>,
}

fn read(p: &Path) -> Result<Zeroizing<String>, String> {
    let bytes = std::fs::read(p)
        .map(Zeroizing::new)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    super::table::decode(&bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// The validated import, or every problem (naming the file).
pub fn load(f: &AdFiles) -> Result<AdImport, String> {
    let flag = match f.format {
        Format::Ldif => "--format ad-ldif",
        Format::Csv => "--format ad-csv",
    };
    let tenant = f
        .tenant
        .ok_or(format!("{flag} needs --tenant (the portal's tenant ID)"))?;
    let tenant = TenantId::parse(tenant).map_err(|e| format!("--tenant {e}"))?;
    let owners_path = f.owners.ok_or(format!(
        "{flag} needs --owners FILE (computer name,owner ID)"
    ))?;
    let owners = super::owners(&read(owners_path)?)
        .map_err(|e| format!("{}: {e}", owners_path.display()))?;
    let volumes = match f.volumes {
        Some(p) => super::volumes(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?,
        None => Volumes::new(),
    };
    super::import(f.format, &read(f.file)?, &tenant, &owners, &volumes)
        .map_err(|e| format!("{}: {e}", f.file.display()))
}
