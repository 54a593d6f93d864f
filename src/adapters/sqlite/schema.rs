//! The database's tables and connection settings.
//!
//! Records the domain reads whole (a device with its key metadata, a
//! tenant's settings, a rate window, an incident) are JSON in one column
//! (`codec`); what the store looks up or orders by has a column and an
//! index of its own. Ciphertexts are BLOBs; no column ever holds a
//! recovery password.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// `PRAGMA user_version` of the schema below; a newer file is refused.
const VERSION: i64 = 1;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenants (
    tenant  TEXT PRIMARY KEY,
    policy  TEXT,              -- NULL: no record yet, only a version
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    tenant      TEXT NOT NULL,
    device      TEXT NOT NULL,
    owner       TEXT NOT NULL,
    record      TEXT NOT NULL,  -- metadata and every live key's metadata
    digests     TEXT NOT NULL,  -- per key: SHA-256 of context and password
    fingerprint TEXT NOT NULL,  -- of the import that wrote it, or ''
    PRIMARY KEY (tenant, device)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS devices_by_owner ON devices (tenant, owner);
-- Versions outlive a retired device, so a write that read it cannot pass
-- against a device enrolled again under the same ID.
CREATE TABLE IF NOT EXISTS device_versions (
    tenant  TEXT NOT NULL,
    device  TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sealed_keys (
    tenant     TEXT NOT NULL,
    device     TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    superseded INTEGER NOT NULL,
    sealed     BLOB NOT NULL,   -- AES-256-GCM: nonce, ciphertext, tag
    PRIMARY KEY (tenant, device, key_id)
);  -- a rowid table: rowid keeps the order keys were escrowed in
-- Helpdesk lookup by key ID: lower-case hex without dashes.
CREATE TABLE IF NOT EXISTS key_index (
    tenant  TEXT NOT NULL,
    key_hex TEXT NOT NULL,
    device  TEXT NOT NULL,
    PRIMARY KEY (tenant, key_hex, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    pos    TEXT NOT NULL,       -- audit::Position::key(): sorts as the trail
    actor  TEXT NOT NULL,
    device TEXT,
    event  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (tenant, pos);
CREATE INDEX IF NOT EXISTS audit_by_device ON audit (tenant, device, pos);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (tenant, actor, pos);
CREATE TABLE IF NOT EXISTS denials (
    tenant TEXT NOT NULL,
    actor  TEXT NOT NULL,
    hour   INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    marked INTEGER NOT NULL,
    PRIMARY KEY (tenant, actor, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_windows (
    tenant  TEXT NOT NULL,
    actor   TEXT NOT NULL,
    version INTEGER NOT NULL,
    window  TEXT NOT NULL,
    PRIMARY KEY (tenant, actor)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents (
    tenant      TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    opened_at   TEXT NOT NULL,  -- audit::time_key: sorts in time order
    record      TEXT NOT NULL,
    PRIMARY KEY (tenant, incident_id)
) WITHOUT ROWID;
";

/// Settings every connection needs. `synchronous=FULL`: a commit returns
/// only after the WAL is synced, so an audit event the API relies on
/// survives a power cut, not just a crash of the process.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Freed pages are zeroed, so a deleted ciphertext leaves no copy.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(())
}

/// The writer: creates the file (mode 0600, whatever the umask; SQLite
/// gives the WAL the same), switches it to WAL and creates the tables.
pub(super) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    restrict_mode(path);
    configure(&conn)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(super::failure(format!("journal_mode is {mode}, not WAL")));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > VERSION {
        return Err(super::failure(format!(
            "written by a newer portal (schema {version}, this one knows {VERSION})"
        )));
    }
    conn.execute_batch(TABLES)?;
    conn.pragma_update(None, "user_version", VERSION)?;
    Ok(conn)
}

pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    // Read-write at the file level (a read-only connection cannot always
    // map a WAL database's shared memory); `query_only` keeps it to reads.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// The database holds only ciphertexts, but metadata and the audit trail
/// are nobody else's business either.
fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
