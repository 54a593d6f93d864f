//! The backends the port contracts run on, and the macro that turns each
//! contract case into one `#[tokio::test]` per backend, so that a failure
//! names both its case and its backend
//! (`contract::dynamodb::find_keys_match_a_prefix_within_the_tenant`).
//!
//! Every test gets a fresh backend (a new store; on moto new tables under a
//! fresh prefix and a new KMS key). The cases share fixed tenant IDs, so
//! sharing tables between them would couple them; and an SDK client made on
//! one test's runtime must not outlive it into another's.

use crate::support::aws::moto_env;
use recovery_portal::adapters::embedded::{LocalCipher, MemoryStore};
use recovery_portal::domain::ports::{ImportStore, KeyCipher, LifecycleStore, Store};
use std::sync::Arc;

/// One backend's ports, all over the same data.
pub(crate) struct Backend {
    pub store: Arc<dyn Store>,
    pub import: Arc<dyn ImportStore>,
    pub life: Arc<dyn LifecycleStore>,
    pub cipher: Arc<dyn KeyCipher>,
    /// Whether `sweep_expired` deletes (embedded, SQLite) or leaves it to
    /// DynamoDB TTL (AWS).
    pub sweeps: bool,
}

impl Backend {
    fn of<S>(store: Arc<S>, cipher: Arc<dyn KeyCipher>, sweeps: bool) -> Self
    where
        S: Store + ImportStore + LifecycleStore + 'static,
    {
        Backend {
            store: store.clone(),
            import: store.clone(),
            life: store,
            cipher,
            sweeps,
        }
    }
}

/// The in-memory store of `portal serve` with a random local key.
pub(crate) async fn embedded() -> Backend {
    Backend::of(
        Arc::new(MemoryStore::new()),
        Arc::new(LocalCipher::random()),
        true,
    )
}

/// The persistent store of `portal serve --data-dir`, with its master key.
pub(crate) async fn sqlite() -> Backend {
    let (store, cipher) = sqlite_backends().await;
    Backend::of(Arc::new(store), Arc::new(cipher), true)
}

/// DynamoDB + KMS on moto (needs `PORTAL_TEST_MOTO_URL`, see scripts/moto.sh).
pub(crate) async fn dynamodb() -> Backend {
    let env = moto_env().await;
    Backend::of(env.store, env.cipher, false)
}

/// A fresh SQLite store in its own directory, unlocked.
pub(crate) async fn sqlite_backends()
-> (recovery_portal::adapters::sqlite::SqliteStore, LocalCipher) {
    use recovery_portal::adapters::sqlite::{MasterKey, SqliteStore};
    let dir = std::env::temp_dir().join(format!("portal-sqlite-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir).unwrap();
    let key = MasterKey::load_or_create(&dir.join("master.key")).unwrap();
    let cipher = store.unlock(&key).await.unwrap();
    (store, cipher)
}

/// `contract_tests!(backend, [case, ...])`: a module `backend` with one test
/// per case, each calling `super::case(&backend().await)`. Multi-threaded,
/// as the SQLite contract always ran.
macro_rules! contract_tests {
    ($backend:ident, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::contract_backends::$backend().await;
                    super::$case(&backend).await;
                }
            )*
        }
    };
}
pub(crate) use contract_tests;
