//! The sync's certificate credential: a client assertion (RFC 7523 JWT)
//! signed with the application's certificate, as the Microsoft identity
//! platform's "certificate credentials" documentation specifies:
//! header `alg` PS256, `typ` JWT, `x5t#S256` the base64url SHA-256 of the
//! certificate's DER; claims `aud` the token endpoint, `iss` and `sub` the
//! client ID, a fresh `jti`, `nbf`/`iat` now, `exp` a few minutes on.
//!
//! The PEM file holds the certificate and its unencrypted RSA private key
//! (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), in either order.
//! jsonwebtoken (its `use_pem`) reads the key and the certificate's public
//! key; they are checked to match before anything is sent.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use zeroize::Zeroizing;

/// How long an assertion is valid: the documentation asks for 5-10
/// minutes at most after `nbf`.
pub const ASSERTION_LIFETIME_SECS: i64 = 300;
/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub struct ClientCertificate {
    key: EncodingKey,
    /// `x5t#S256`: base64url SHA-256 of the certificate's DER.
    thumbprint: String,
}

/// Never shows the key.
impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCertificate(x5t#S256 {})", self.thumbprint)
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// The base64url SHA-256 of a certificate's DER (`x5t#S256`).
pub fn thumbprint_s256(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

impl ClientCertificate {
    /// From the PEM text of a certificate and its private key; errors say
    /// what to fix and never contain key material.
    pub fn from_pem(text: &[u8]) -> Result<Self, String> {
        let blocks = pem::parse_many(text).map_err(|_| "is not a PEM file".to_owned())?;
        let cert = blocks.iter().find(|b| b.tag() == "CERTIFICATE").ok_or(
            "has no CERTIFICATE block (the file must hold the certificate and its private key)",
        )?;
        let key = blocks
            .iter()
            .find(|b| b.tag().ends_with("PRIVATE KEY"))
            .ok_or(
                "has no PRIVATE KEY block (the file must hold the certificate and its private key)",
            )?;
        match key.tag() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err("holds an encrypted private key: export it unencrypted (openssl pkcs12 -in app.pfx -nodes) and protect the file instead".into());
            }
            _ => {
                return Err(
                    "holds a non-RSA private key: Entra certificate credentials use RSA".into(),
                );
            }
        }
        let key_pem = Zeroizing::new(pem::encode(key));
        let key = EncodingKey::from_rsa_pem(key_pem.as_bytes())
            .map_err(|_| "holds a private key that is not a usable RSA key".to_owned())?;
        let public = DecodingKey::from_rsa_pem(pem::encode(cert).as_bytes())
            .map_err(|_| "holds a certificate without an RSA public key".to_owned())?;
        let probe = b"recovery-portal certificate check";
        let sig = jsonwebtoken::crypto::sign(probe, &key, Algorithm::PS256)
            .map_err(|_| "holds a private key that cannot sign PS256".to_owned())?;
        if !jsonwebtoken::crypto::verify(&sig, probe, &public, Algorithm::PS256).unwrap_or(false) {
            return Err("holds a private key that does not belong to its certificate".into());
        }
        Ok(Self {
            key,
            thumbprint: thumbprint_s256(cert.contents()),
        })
    }

    /// The `x5t#S256` the assertions carry (what Entra shows as the
    /// certificate's thumbprint is its SHA-1, in hex).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A client assertion for `client_id` at the token endpoint `audience`,
    /// issued at `now` (Unix seconds).
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<Zeroizing<String>, String> {
        let mut header = Header::new(Algorithm::PS256);
        header.typ = Some("JWT".into());
        header.x5t_s256 = Some(self.thumbprint.clone());
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Zeroizing::new)
            .map_err(|_| "could not sign the client assertion".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_certificate_and_key_is_named_without_echoing() {
        for (text, want) in [
            ("hello", "has no CERTIFICATE block"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "has no PRIVATE KEY block",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nQUJD\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted private key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nQUJD\n-----END EC PRIVATE KEY-----\n",
                "non-RSA",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n",
                "not a usable RSA key",
            ),
        ] {
            let e = ClientCertificate::from_pem(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("QUJD"), "{e}");
        }
    }

    #[test]
    fn thumbprints_are_base64url_sha256() {
        // SHA-256("abc") = ba7816bf…f20015ad.
        assert_eq!(
            thumbprint_s256(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
