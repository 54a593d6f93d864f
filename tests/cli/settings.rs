//! Every variable of the README's configuration table that applies to
//! `portal serve` changes what `portal serve` does, on the in-memory store
//! and on the persistent one alike: one row per setting, each started as a
//! real process and observed through the API.

use crate::support::portal_cli::{portal, temp_dir, token};
use crate::support::serve::{Served, spawn};
use std::path::{Path, PathBuf};

/// Which store a row runs on.
#[derive(Debug, Clone, Copy)]
enum StoreKind {
    Memory,
    Persistent,
}

/// One server under test, its dev signing key and its own directory.
struct Run {
    served: Served,
    key: PathBuf,
}

impl Run {
    fn start(store: StoreKind, dir: &Path, env: &[(&str, String)]) -> Self {
        let key = dir.join("dev-key.p8");
        let mut c = portal(&key);
        c.args(["serve", "--addr", "127.0.0.1:0"]);
        if let StoreKind::Persistent = store {
            c.arg("--data-dir").arg(dir.join("data"));
        }
        for (k, v) in env {
            c.env(k, v);
        }
        Self {
            served: spawn(c),
            key,
        }
    }

    fn token(&self, user: &str, scope: &str) -> String {
        token(&self.key, &self.served.base, "contoso", user, scope)
    }

    /// Retrieves DESKTOP-7Q2M4K1's key `n` times as `user`; the statuses.
    async fn retrievals(&self, user: &str, scope: &str, n: usize) -> Vec<u16> {
        let t = self.token(user, scope);
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for _ in 0..n {
            let r = client
                .post(format!(
                    "{}/v1/devices/DESKTOP-7Q2M4K1/recovery-key",
                    self.served.base
                ))
                .bearer_auth(&t)
                .json(&serde_json::json!({"reason": "settings test"}))
                .send()
                .await
                .unwrap();
            out.push(r.status().as_u16());
        }
        out
    }
}

async fn helpdesk_rate_limit(store: StoreKind) {
    let dir = temp_dir("helpdesk-limit");
    let run = Run::start(
        store,
        &dir,
        &[("PORTAL_HELPDESK_RATE_LIMIT", "3".to_owned())],
    );
    assert_eq!(
        run.retrievals("agent", "RecoveryKey.Read.All", 4).await,
        [200, 200, 200, 429],
        "{store:?}: the fourth key of an agent's hour is over PORTAL_HELPDESK_RATE_LIMIT=3"
    );
}

#[tokio::test]
async fn portal_helpdesk_rate_limit_limits_agents_in_memory() {
    helpdesk_rate_limit(StoreKind::Memory).await;
}
