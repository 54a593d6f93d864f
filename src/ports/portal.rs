//! The assembled application as the domain sees it: one implementation of
//! each port. `app` builds it from configuration.

use super::{Clock, KeyCipher, LifecycleStore, Store, TokenVerifier};
use std::sync::Arc;

#[derive(Clone)]
pub struct Portal {
    pub store: Arc<dyn Store>,
    /// The key lifecycle (escrow, devices, settings): the same backend as
    /// `store`.
    pub lifecycle: Arc<dyn LifecycleStore>,
    pub cipher: Arc<dyn KeyCipher>,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<dyn TokenVerifier>,
    /// Keys disclosed to one caller per rolling hour.
    pub key_rate_limit: u32,
}
