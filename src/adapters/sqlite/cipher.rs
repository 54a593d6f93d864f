//! The master key that seals recovery keys at rest (AES-256-GCM through
//! `LocalCipher`, the tenant, device and key ID bound as associated data),
//! its key file, and `rewrap`, which moves every ciphertext to a new key.
//!
//! The key file lives apart from the database (`PORTAL_MASTER_KEY_FILE`,
//! e.g. a mounted secret; by default `master.key` in the data directory):
//! a copy of the database alone discloses nothing.

use super::SqliteStore;
use crate::adapters::embedded::LocalCipher;
use crate::domain::ids::{DeviceId, KeyId, TenantId};
use crate::domain::model::{KeyContext, RecoveryPassword, SealedKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{OptionalExtension, Transaction, params};
use std::path::Path;
use zeroize::Zeroizing;

/// What `meta.master_key_check` seals: a well-formed recovery password
/// that is no one's, under a context no device can have, so a start with
/// the wrong key file stops at once instead of failing key by key.
const CHECK_PASSWORD: &str = "000000-000000-000000-000000-000000-000000-000000-000000";
const CHECK_NAME: &str = "master_key_check";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{0}")]
    File(String),
    #[error(
        "{0}: this key file does not open this database's keys (another key, or the database was rewrapped: use the key file `portal keys rewrap` wrote)"
    )]
    WrongKey(String),
    #[error("{0}")]
    Store(String),
}

/// A 256-bit master key; zeroed on drop.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    /// Loads the key file at `path`, creating it (mode 0600, 32 random
    /// bytes, base64) when absent. A file group or others can read or
    /// write is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, MasterKeyError> {
        let shown = path.display();
        match std::fs::File::open(path) {
            Ok(file) => Self::read(path, file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                aws_lc_rs::rand::fill(&mut *key)
                    .map_err(|_| MasterKeyError::File("no system randomness".into()))?;
                write_private(path, STANDARD.encode(*key).as_bytes())
                    .map_err(|e| MasterKeyError::File(format!("{shown}: {e}")))?;
                Ok(Self { key })
            }
            Err(e) => Err(MasterKeyError::File(format!("{shown}: {e}"))),
        }
    }

    fn read(path: &Path, mut file: std::fs::File) -> Result<Self, MasterKeyError> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let mode = file
            .metadata()
            .map_err(|e| MasterKeyError::File(format!("{shown}: {e}")))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::File(format!(
                "{shown}: the master key file is readable or writable by group or others (mode {mode:04o}); whoever reads it can decrypt every recovery key. Run `chmod 600 {shown}`"
            )));
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text)
            .map_err(|e| MasterKeyError::File(format!("{shown}: {e}")))?;
        let raw = Zeroizing::new(STANDARD.decode(text.trim()).unwrap_or_default());
        let key: [u8; 32] = raw.as_slice().try_into().map_err(|_| {
            MasterKeyError::File(format!(
                "{shown}: is not a master key file (one line: 32 bytes in base64)"
            ))
        })?;
        Ok(Self {
            key: Zeroizing::new(key),
        })
    }

    pub fn cipher(&self) -> LocalCipher {
        LocalCipher::from_key(&self.key)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    // On disk before any key is sealed with it.
    f.sync_all()
}

fn check_context() -> KeyContext {
    KeyContext {
        tenant: TenantId::parse("portal.master-key-check").expect("valid id"),
        device: DeviceId::parse("portal.master-key-check").expect("valid id"),
        key_id: KeyId::parse("00000000-0000-0000-0000-000000000000").expect("valid id"),
    }
}

fn check_password() -> RecoveryPassword {
    RecoveryPassword::parse(CHECK_PASSWORD).expect("well-formed")
}

/// Whether `cipher` opens the database's key check; writes the check when
/// the database has none yet (first start).
fn check_key(tx: &Transaction<'_>, cipher: &LocalCipher) -> rusqlite::Result<bool> {
    let stored: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM meta WHERE name = ?1",
            [CHECK_NAME],
            |r| r.get(0),
        )
        .optional()?;
    match stored {
        Some(blob) => Ok(cipher.open_now(&check_context(), &SealedKey(blob)).is_ok()),
        None => {
            put_check(tx, cipher)?;
            Ok(true)
        }
    }
}

fn put_check(tx: &Transaction<'_>, cipher: &LocalCipher) -> rusqlite::Result<()> {
    let sealed = cipher
        .seal_now(&check_context(), &check_password())
        .map_err(|e| super::failure(e.to_string()))?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)",
        params![CHECK_NAME, sealed.0],
    )?;
    Ok(())
}

impl SqliteStore {
    /// The cipher for this database: `key` if it is the one its keys were
    /// sealed with (the first key used becomes that key).
    pub async fn unlock(&self, key: &MasterKey) -> Result<LocalCipher, MasterKeyError> {
        let cipher = key.cipher();
        let probe = key.cipher();
        let ok = self
            .write(move |tx| check_key(tx, &probe))
            .await
            .map_err(|e| MasterKeyError::Store(e.to_string()))?;
        if ok {
            Ok(cipher)
        } else {
            Err(MasterKeyError::WrongKey(self.path().display().to_string()))
        }
    }
}

/// Re-seals every stored ciphertext (current and superseded) and the key
/// check under `new`, in one transaction: all keys move, or none does.
/// Returns how many keys moved. The server must be stopped (the caller
/// holds the data directory's lock), since it would still hold `old`.
pub async fn rewrap(
    store: &SqliteStore,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, MasterKeyError> {
    let old_cipher = store.unlock(old).await?;
    let new_cipher = new.cipher();
    store
        .write(move |tx| rewrap_tx(tx, &old_cipher, &new_cipher))
        .await
        .map_err(|e| MasterKeyError::Store(e.to_string()))
}

fn rewrap_tx(
    tx: &Transaction<'_>,
    old: &LocalCipher,
    new: &LocalCipher,
) -> rusqlite::Result<usize> {
    let rows: Vec<(i64, String, String, String, Vec<u8>)> = tx
        .prepare("SELECT rowid, tenant, device, key_id, sealed FROM sealed_keys")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let fail = |e: crate::domain::ports::CipherError| super::failure(e.to_string());
    for (rowid, t, d, k, blob) in &rows {
        let ctx = KeyContext {
            tenant: super::codec::tenant_id(t)?,
            device: super::codec::device_id(d)?,
            key_id: super::codec::key_id(k)?,
        };
        let password = old.open_now(&ctx, &SealedKey(blob.clone())).map_err(|e| {
            super::failure(format!(
                "tenant {t} device {d} key {k} does not open ({e}); nothing was changed"
            ))
        })?;
        let sealed = new.seal_now(&ctx, &password).map_err(fail)?;
        tx.execute(
            "UPDATE sealed_keys SET sealed = ?1 WHERE rowid = ?2",
            params![sealed.0, rowid],
        )?;
    }
    put_check(tx, new)?;
    Ok(rows.len())
}
