//! The issuer's signing keys (a parsed JWKS) and the algorithms they verify.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Rsa,
    /// P-256 (ES256).
    Ec,
    /// P-384 (ES384).
    Ec384,
}

pub(super) struct Key {
    pub(super) family: Family,
    /// The JWK's `alg`, when it names one: the only algorithm it verifies.
    pub(super) alg: Option<Algorithm>,
    pub(super) decoding: DecodingKey,
    /// The key's public parameters as published: tells a replaced key from
    /// a kept one.
    material: String,
}

/// Parsed signing keys by `kid`.
#[derive(Default)]
pub struct KeySet {
    pub(super) keys: HashMap<String, Key>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the RSA (2048 bits and more), P-256
    /// and P-384 signing keys and skipping anything else (encryption keys,
    /// symmetric keys, other curves, short RSA).
    pub fn from_jwks_json(json: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct RawKey {
            kty: String,
            kid: Option<String>,
            #[serde(rename = "use")]
            use_: Option<String>,
            alg: Option<String>,
            n: Option<String>,
            e: Option<String>,
            crv: Option<String>,
            x: Option<String>,
            y: Option<String>,
        }
        let doc: Doc =
            serde_json::from_str(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        for v in doc.keys {
            let Ok(k) = serde_json::from_value::<RawKey>(v) else {
                continue;
            };
            let Some(kid) = k.kid else { continue };
            if k.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let alg = match k.alg.as_deref() {
                None => None,
                Some(a) => match algorithm_of(a) {
                    Some((alg, _)) => Some(alg),
                    None => continue,
                },
            };
            let parsed = match (k.kty.as_str(), k.crv.as_deref()) {
                ("RSA", _) => match (k.n, k.e) {
                    (Some(n), Some(e)) if rsa_bits(&n) >= 2048 => {
                        DecodingKey::from_rsa_components(&n, &e)
                            .ok()
                            .map(|d| (Family::Rsa, d, format!("RSA {n} {e}")))
                    }
                    _ => None,
                },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => match (k.x, k.y) {
                    (Some(x), Some(y)) => {
                        let family = if crv == "P-256" {
                            Family::Ec
                        } else {
                            Family::Ec384
                        };
                        DecodingKey::from_ec_components(&x, &y)
                            .ok()
                            .map(|d| (family, d, format!("EC {crv} {x} {y}")))
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some((family, decoding, material)) = parsed
                && alg.is_none_or(|a| algorithm_family(a) == family)
            {
                keys.insert(
                    kid,
                    Key {
                        family,
                        alg,
                        decoding,
                        material,
                    },
                );
            }
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether some key of `old` is missing from this set or was replaced.
    pub(super) fn withdraws_any_of(&self, old: &KeySet) -> bool {
        old.keys.iter().any(|(kid, k)| {
            self.keys
                .get(kid)
                .is_none_or(|new| new.material != k.material)
        })
    }
}

fn rsa_bits(n_b64: &str) -> usize {
    URL_SAFE_NO_PAD
        .decode(n_b64.trim_end_matches('='))
        .map(|n| n.iter().skip_while(|&&b| b == 0).count() * 8)
        .unwrap_or(0)
}

/// The accepted signature algorithms (never HS* or `none`).
pub(super) fn algorithm_of(alg: &str) -> Option<(Algorithm, Family)> {
    let a = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    };
    Some((a, algorithm_family(a)))
}

fn algorithm_family(a: Algorithm) -> Family {
    match a {
        Algorithm::ES256 => Family::Ec,
        Algorithm::ES384 => Family::Ec384,
        _ => Family::Rsa,
    }
}
