//! The persistent single-node store: SQLite (bundled) in WAL mode behind
//! `Store`, `ImportStore` and `LifecycleStore`, with the semantics of the
//! in-memory and DynamoDB stores (the contract suites in tests/aws run on
//! all three).
//!
//! Why SQLite: operators already know `sqlite3` and its online `.backup`;
//! WAL lets readers run while one writer commits; and a commit with
//! `synchronous=FULL` is on disk when it returns, which is what the
//! audit-before-decrypt rule needs.
//!
//! Concurrency: every write goes through one connection behind a mutex (SQLite
//! has one writer at a time anyway, and a single writer never sees
//! `SQLITE_BUSY`); reads use a small pool of their own connections, each
//! read a snapshot. All of it runs on tokio's blocking pool, never on the
//! async workers.

mod cipher;
mod codec;
mod datadir;
mod import;
mod lifecycle;
mod rows;
mod schema;
mod store;

pub use cipher::{MasterKey, MasterKeyError, rewrap};
pub use datadir::{DEFAULT_KEY_FILE, DataDir};

use crate::domain::error::{Cause, Unavailable};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Read connections: enough for the two cores this runs on, and a few
/// requests waiting on the disk.
const READERS: usize = 4;

/// The database file inside the data directory.
pub const DB_FILE: &str = "portal.db";

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
}

/// A database error as the ports report it: the store is unavailable (the
/// API answers 503 and nothing is disclosed).
fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::new(Cause::Store, e)
}

/// An error of this adapter's own (a record that does not decode, a key
/// that does not open) in the form the transaction helpers carry.
fn failure(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(message),
    )
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqliteStore {
    /// Opens (creating if absent) the database in `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join(DB_FILE);
        let writer = schema::open_writer(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let readers = (0..READERS)
            .map(|_| schema::open_reader(&path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), committed
    /// (and, with `synchronous=FULL`, synced) before this returns; `f`'s
    /// error rolls everything back.
    async fn write<T, F>(&self, f: F) -> Result<T, Unavailable>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(unavailable)?
        .map_err(|e: rusqlite::Error| unavailable(e))
    }

    /// Runs `f` in one read transaction: a consistent snapshot.
    async fn read<T, F>(&self, f: F) -> Result<T, Unavailable>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A free reader if there is one, else wait for one in turn.
            let mut conn = inner
                .readers
                .iter()
                .find_map(|m| m.try_lock().ok())
                .unwrap_or_else(|| lock(&inner.readers[next_reader()]));
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx)?;
            tx.finish()?;
            Ok(out)
        })
        .await
        .map_err(unavailable)?
        .map_err(|e: rusqlite::Error| unavailable(e))
    }
}

/// Round-robin over the readers when all are busy.
fn next_reader() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % READERS
}
