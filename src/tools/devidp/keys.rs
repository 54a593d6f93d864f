//! The signing key: generated in memory, or kept in a private file so
//! `portal token` and `portal serve` agree; and its JWKS entry.

use super::*;

fn kid_of(public: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl DevIdentityProvider {
    /// A provider with a fresh in-memory key.
    pub fn generate(alg: DevAlg, issuer: &str, audience: &str) -> Self {
        match alg {
            DevAlg::Es256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .expect("P-256 key generation");
                Self::from_es256_pkcs8(pkcs8.as_ref(), issuer, audience).expect("fresh key parses")
            }
            DevAlg::Rs256 => {
                let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("RSA key generation");
                let pkcs8 = kp.as_der().expect("PKCS#8 export");
                let pkcs1 = rsa_pkcs1_from_pkcs8(pkcs8.as_ref()).expect("RSA PKCS#8 layout");
                let public = kp.public_key();
                let n = public.modulus().big_endian_without_leading_zero().to_vec();
                let e = public.exponent().big_endian_without_leading_zero().to_vec();
                let kid = kid_of(&n);
                Self {
                    issuer: issuer.to_owned(),
                    audience: audience.to_owned(),
                    jwks: json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64(&n), "e": b64(&e)}]}),
                    kid,
                    alg: Algorithm::RS256,
                    key: EncodingKey::from_rsa_der(&pkcs1),
                    codes: Mutex::default(),
                }
            }
        }
    }

    pub fn from_es256_pkcs8(pkcs8: &[u8], issuer: &str, audience: &str) -> Result<Self, String> {
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        let point = kp.public_key().as_ref(); // 0x04 || X || Y
        if point.len() != 65 {
            return Err("unexpected public key encoding".into());
        }
        let kid = kid_of(point);
        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            jwks: json!({"keys": [{"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..])}]}),
            kid,
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(pkcs8),
            codes: Mutex::default(),
        })
    }

    /// Loads the ES256 key at `path`, creating it (mode 0600) if missing, so
    /// `portal token` and `portal serve` agree across processes.
    /// An existing file others can read or write is refused: whoever reads
    /// it can mint tokens the local server accepts.
    pub fn load_or_create(path: &Path, issuer: &str, audience: &str) -> Result<Self, String> {
        match std::fs::File::open(path) {
            Ok(mut file) => {
                use std::io::Read;
                check_private(path, &file)?;
                let mut der = Vec::new();
                file.read_to_end(&mut der)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Self::from_es256_pkcs8(&der, issuer, audience)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|e| e.to_string())?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                write_private(path, pkcs8.as_ref())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Self::from_es256_pkcs8(pkcs8.as_ref(), issuer, audience)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// `PORTAL_DEV_KEY_FILE`, else `$XDG_STATE_HOME` or `~/.local/state`
    /// `/recovery-portal/dev-signing-key.p8`, else `.portal-dev/` here.
    pub fn default_key_path() -> PathBuf {
        if let Some(p) = std::env::var_os("PORTAL_DEV_KEY_FILE") {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
        match base {
            Some(b) => b.join("recovery-portal/dev-signing-key.p8"),
            None => PathBuf::from(".portal-dev/dev-signing-key.p8"),
        }
    }
}

/// Refuses a key file with any group or other permission bit (checked on
/// the open handle, so the file read is the file checked).
#[cfg(unix)]
fn check_private(path: &Path, file: &std::fs::File) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let what = if mode & 0o044 != 0 {
        "readable"
    } else {
        "writable"
    };
    Err(format!(
        "{p}: the dev signing key is {what} by group or others (mode {mode:04o}); whoever can read it can sign tokens the local server accepts. Run `chmod 600 {p}`, or delete the file to have a new key made",
        p = path.display()
    ))
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _file: &std::fs::File) -> Result<(), String> {
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The RSAPrivateKey (PKCS#1) inside aws-lc's PKCS#8 export, which is what
/// jsonwebtoken's `EncodingKey::from_rsa_der` takes. Read with RustCrypto's
/// `pkcs8` (RFC 5208) rather than by hand.
fn rsa_pkcs1_from_pkcs8(der: &[u8]) -> Result<Vec<u8>, pkcs8::Error> {
    /// rsaEncryption (RFC 8017 A.1).
    const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
        pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let info = pkcs8::PrivateKeyInfo::try_from(der)?;
    info.algorithm.assert_algorithm_oid(RSA_ENCRYPTION)?;
    Ok(info.private_key.to_vec())
}
