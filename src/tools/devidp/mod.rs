//! A development identity provider: signs tokens for `portal serve` when no
//! real issuer is configured, and for tests and benchmarks. Local use only.
//!
//! Files: `keys` (the signing key: generated, or a private file), `flow`
//! (the authorization-code flow with PKCE), `loopback` (the addresses that
//! flow may redirect to), `pages` (its sign-in and error pages).

mod flow;
mod keys;
mod loopback;
mod pages;

pub use flow::{
    AuthorizeRequest, CODE_TTL_SECS, DEFAULT_FORM_SCOPE, DEV_CLIENT_ID, FLOW_TOKEN_TTL_SECS,
    FlowError, SignIn, TokenError,
};
pub use loopback::{LOOPBACK_NAMES, PAGE_PATHS, loopback_origin};

use flow::PendingCode;
pub use pages::{error_page, sign_in_page};

use crate::adapters::jwt::{JwksSource, JwtSettings, JwtVerifier, KeySet};
use crate::domain::ids::{TenantId, UserId};
use crate::domain::ports::Clock;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Audience of development tokens.
pub const DEV_AUDIENCE: &str = "api://recovery-portal";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevAlg {
    Es256,
    Rs256,
}

pub struct DevIdentityProvider {
    pub issuer: String,
    pub audience: String,
    pub kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwks: Value,
    /// Authorization codes not yet redeemed (the code flow below).
    codes: Mutex<HashMap<String, PendingCode>>,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl DevIdentityProvider {
    pub fn jwks_json(&self) -> String {
        self.jwks.to_string()
    }

    /// The `openid-configuration` document for this issuer: keys, and the
    /// authorization-code flow with PKCE for a public client (the portal page).
    pub fn discovery(&self) -> Value {
        let base = self.issuer.trim_end_matches('/');
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "id_token_signing_alg_values_supported": [match self.alg { Algorithm::RS256 => "RS256", _ => "ES256" }],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "Devices.Read", "RecoveryKey.Read", "RecoveryKey.Read.All", "AuditLog.Read.All"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "tid", "oid", "scp"],
            "subject_types_supported": ["public"],
        })
    }

    /// Signs `claims` under a raw header (tests use this to forge headers).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &self.key, self.alg).expect("signing");
        format!("{msg}.{sig}")
    }

    /// Signs `claims` under a raw header with another algorithm of this
    /// key's family (tests: RS384, PS256, … with the RSA key).
    pub fn sign_raw_as(&self, alg: Algorithm, header: &Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &self.key, alg).expect("signing");
        format!("{msg}.{sig}")
    }

    /// Signs `claims` under this provider's normal header.
    pub fn sign(&self, claims: &Value) -> String {
        let alg = if self.alg == Algorithm::RS256 {
            "RS256"
        } else {
            "ES256"
        };
        self.sign_raw(&json!({"alg": alg, "typ": "JWT", "kid": self.kid}), claims)
    }

    /// A token for `user` in `tenant` with space-separated `scopes`.
    pub fn token(&self, tenant: &str, user: &str, scopes: &str, now: i64, ttl_secs: i64) -> String {
        self.sign(&json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_secs,
            "tid": tenant,
            "oid": user,
            "sub": user,
            "scp": scopes,
        }))
    }

    /// A verifier that trusts exactly this provider's key.
    pub fn verifier(&self, clock: Arc<dyn Clock>) -> JwtVerifier {
        let keys = KeySet::from_jwks_json(&self.jwks_json()).expect("own JWKS parses");
        JwtVerifier::new(
            JwtSettings {
                issuer: self.issuer.clone(),
                audience: self.audience.clone(),
                default_tenant: None,
                ..Default::default()
            },
            keys,
            JwksSource::Fixed,
            clock,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(redirect: &str, scope: &str) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", DEV_CLIENT_ID),
            ("redirect_uri", redirect),
            ("state", "s"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
            ("scope", scope),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn redirect_uris_must_be_on_this_machine() {
        for ok in [
            "http://127.0.0.1:8080/",
            "http://localhost:5173/callback?x=1",
            "http://[::1]:9/",
            "https://127.0.0.2/",
        ] {
            assert!(loopback_origin(ok).is_some(), "{ok}");
        }
        for bad in [
            "https://example.com/",
            "http://127.0.0.1.example.com/",
            "http://localhost.evil/",
            "http://user@localhost/",
            "http://localhost/#frag",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "/relative",
        ] {
            assert!(loopback_origin(bad).is_none(), "{bad}");
        }
        assert_eq!(
            loopback_origin("http://LOCALHOST:8080/x").as_deref(),
            Some("http://localhost:8080")
        );
    }

    #[test]
    fn the_form_prefills_the_requested_permissions_without_oidc_scopes() {
        let r = AuthorizeRequest::parse(&request("http://127.0.0.1/", "openid profile")).unwrap();
        assert_eq!(r.form_scope(), DEFAULT_FORM_SCOPE);
        let r = AuthorizeRequest::parse(&request(
            "http://127.0.0.1/",
            "openid RecoveryKey.Read.All AuditLog.Read.All",
        ))
        .unwrap();
        assert_eq!(r.form_scope(), "RecoveryKey.Read.All AuditLog.Read.All");
        assert_eq!(r.redirect_origin, "http://127.0.0.1");
    }

    #[test]
    fn sign_in_input_follows_the_id_rules() {
        let who = SignIn::parse(
            " contoso ",
            "alice",
            " RecoveryKey.Read   AuditLog.Read.All ",
        )
        .unwrap();
        assert_eq!(who.scope, "RecoveryKey.Read AuditLog.Read.All");
        assert!(SignIn::parse("a b", "alice", "RecoveryKey.Read").is_err());
        assert!(SignIn::parse("contoso", &"x".repeat(129), "RecoveryKey.Read").is_err());
        assert!(SignIn::parse("contoso", "alice", "").is_err());
        assert!(SignIn::parse("contoso", "alice", "a<b").is_err());
    }

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let mut params = request("http://127.0.0.1/", "openid");
        params.iter_mut().find(|(k, _)| k == "state").unwrap().1 = "\"><script>x</script>".into();
        let r = AuthorizeRequest::parse(&params).unwrap();
        let page = sign_in_page(&r, "<b>", "\"'", "&", None);
        assert!(!page.contains("<script>") && !page.contains("<b>"));
        assert!(page.contains("&quot;&gt;&lt;script&gt;") && page.contains("&amp;"));
    }
}
