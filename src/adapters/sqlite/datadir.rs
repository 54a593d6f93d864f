//! The data directory: created private (0700), and locked for as long as
//! one process uses it, so `portal keys rewrap` cannot re-seal keys under a
//! running server that still holds the old master key, and two servers
//! never share one directory.

use std::path::{Path, PathBuf};

/// The lock file inside the data directory.
const LOCK_FILE: &str = "portal.lock";
/// The master key file's default place (`PORTAL_MASTER_KEY_FILE` moves it).
pub const DEFAULT_KEY_FILE: &str = "master.key";

/// A data directory this process holds; the lock is released when this is
/// dropped or the process ends, however it ends (SIGKILL included).
pub struct DataDir {
    path: PathBuf,
    _lock: std::fs::File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let shown = path.display();
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| format!("data directory {shown}: {e}"))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(|e| format!("data directory {shown}: {e}"))?;
        // flock(LOCK_EX | LOCK_NB) on Unix: std's, so no unsafe code here.
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "data directory {shown} is in use by another portal process (a running `portal serve`?): stop it first"
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("data directory {shown}: cannot lock it: {e}"));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PORTAL_MASTER_KEY_FILE` if given, else `master.key` in here.
    pub fn key_file(&self, configured: Option<&Path>) -> PathBuf {
        configured
            .map(Path::to_owned)
            .unwrap_or_else(|| self.path.join(DEFAULT_KEY_FILE))
    }
}
