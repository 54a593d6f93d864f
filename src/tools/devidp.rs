//! A development identity provider: signs tokens for `portal serve` when no
//! real issuer is configured, and for tests and benchmarks. Local use only.

use crate::adapters::jwt::{JwksSource, JwtSettings, JwtVerifier, KeySet};
use crate::domain::ids::{TenantId, UserId};
use crate::ports::Clock;
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
                let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref()).expect("RSA PKCS#8 layout");
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

// ---------------------------------------------------------------------------
// Authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636, OIDC Core
// §3.1), so the portal page can sign in against `portal serve` exactly as it
// does against a real issuer. Loopback redirect URIs only (RFC 8252 §7.3).
// ---------------------------------------------------------------------------

/// The one client the development provider knows: the portal page.
pub const DEV_CLIENT_ID: &str = "recovery-portal-web";
/// How long an authorization code may be redeemed after it was issued.
pub const CODE_TTL_SECS: i64 = 60;
/// Lifetime of the tokens the code flow issues.
pub const FLOW_TOKEN_TTL_SECS: i64 = 3600;
/// Permissions prefilled in the sign-in form when the request names none.
pub const DEFAULT_FORM_SCOPE: &str = "RecoveryKey.Read";
/// Unredeemed codes kept at most; expired ones are dropped first.
const MAX_PENDING_CODES: usize = 1024;
/// OIDC scopes that are not API permissions (left out of the form's default).
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    tenant: TenantId,
    user: UserId,
    scope: String,
    expires_at: i64,
}

/// A validated authorization request: the query of `GET /authorize`, or the
/// same fields carried through the sign-in form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// `scheme://host:port` of `redirect_uri` (the form's CSP `form-action`).
    pub redirect_origin: String,
    pub state: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    /// The requested scope, as sent.
    pub scope: String,
}

/// A bad authorization request or sign-in: shown to the person as a page,
/// never redirected (the redirect URI itself may be what is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlowError(pub String);

/// Who signs in through the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub tenant: TenantId,
    pub user: UserId,
    /// Space-separated permissions, normalised; the token's `scp`.
    pub scope: String,
}

/// An OAuth error answer of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub error: &'static str,
    pub description: String,
}

impl TokenError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

/// The single value of `name`; a repeated parameter is an error (RFC 6749 §3.1).
fn param<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, String> {
    let mut found = params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("{name} is given more than once"));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    param(params, name)?.ok_or_else(|| format!("{name} is required"))
}

/// 1 to `max` printable ASCII characters.
fn printable(value: &str, name: &str, max: usize) -> Result<String, String> {
    if value.len() <= max && value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{name} must be at most {max} printable ASCII characters"
        ))
    }
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The names of this machine a browser may address the development server
/// by. Any other name in `Host` may be a DNS rebinding (a web page whose
/// name was made to resolve to 127.0.0.1), so it is refused.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Paths of the portal page (`frontends::web`): the redirect URIs its
/// sign-in uses are its own address (`location.origin + location.pathname`).
pub const PAGE_PATHS: [&str; 2] = ["/", "/index.html"];

impl DevIdentityProvider {
    /// The port of the server this provider runs in: its issuer's.
    fn port(&self) -> Option<u16> {
        url::Url::parse(&self.issuer).ok()?.port_or_known_default()
    }

    /// Whether `authority` (a `Host` header, or a request target's
    /// authority) names this server: a loopback name with its port.
    pub fn is_own_authority(&self, authority: &str) -> bool {
        let Some(port) = self.port() else {
            return false;
        };
        let a = authority.to_ascii_lowercase();
        let (host, p) = match a.rsplit_once(':') {
            Some((h, p)) if !a.ends_with(']') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            ),
            _ => (a.as_str(), Some(80)),
        };
        LOOPBACK_NAMES.contains(&host) && p == Some(port)
    }

    /// Whether `uri` is the portal page's own redirect URI: `http://`, a
    /// loopback name with this server's port, the page's path, nothing else.
    pub fn is_own_redirect_uri(&self, uri: &str) -> bool {
        let Ok(url) = url::Url::parse(uri) else {
            return false;
        };
        let host_ok = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            None => false,
        };
        url.scheme() == "http"
            && host_ok
            && url.port_or_known_default() == self.port()
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
            && PAGE_PATHS.contains(&url.path())
    }
}

/// The origin of an absolute http(s) redirect URI on this machine: a
/// loopback IP or `localhost`, no credentials, no fragment.
pub fn loopback_origin(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    let ok = matches!(url.scheme(), "http" | "https")
        && loopback
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && uri.len() <= 512;
    ok.then(|| url.origin().ascii_serialization())
}

impl AuthorizeRequest {
    /// Validates the parameters of an authorization request.
    pub fn parse(params: &[(String, String)]) -> Result<Self, FlowError> {
        Self::parse_inner(params).map_err(FlowError)
    }

    fn parse_inner(params: &[(String, String)]) -> Result<Self, String> {
        match param(params, "response_type")? {
            Some("code") => {}
            Some(_) => return Err(
                "response_type must be code: this provider only offers the authorization code flow"
                    .into(),
            ),
            None => return Err("response_type is required (code)".into()),
        }
        let client_id = required(params, "client_id")?;
        if client_id != DEV_CLIENT_ID {
            return Err(format!(
                "unknown client_id: the development identity provider knows only {DEV_CLIENT_ID}"
            ));
        }
        let redirect_uri = required(params, "redirect_uri")?;
        let redirect_origin = loopback_origin(redirect_uri).ok_or(
            "redirect_uri must be an absolute http(s) URL on this machine (localhost or a loopback address) without a fragment",
        )?;
        let state = printable(required(params, "state")?, "state", 512)?;
        let nonce = param(params, "nonce")?
            .map(|n| printable(n, "nonce", 512))
            .transpose()?;
        if param(params, "code_challenge_method")? != Some("S256") {
            return Err("code_challenge_method must be S256 (plain PKCE is not accepted)".into());
        }
        let code_challenge = required(params, "code_challenge")?;
        if code_challenge.len() != 43 || !is_b64url(code_challenge) {
            return Err(
                "code_challenge must be the base64url SHA-256 of the code verifier (43 characters)"
                    .into(),
            );
        }
        let scope = printable(param(params, "scope")?.unwrap_or(""), "scope", 1024)?;
        Ok(Self {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            redirect_origin,
            state,
            nonce,
            code_challenge: code_challenge.to_owned(),
            scope,
        })
    }

    /// The request's fields, to carry through the sign-in form.
    pub fn hidden_fields(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("state", self.state.as_str()),
            ("code_challenge", self.code_challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("scope", self.scope.as_str()),
        ];
        if let Some(n) = &self.nonce {
            v.push(("nonce", n.as_str()));
        }
        v
    }

    /// The permissions to prefill: those requested, without the OIDC scopes.
    pub fn form_scope(&self) -> String {
        let wanted: Vec<&str> = self
            .scope
            .split_whitespace()
            .filter(|s| !OIDC_SCOPES.contains(s))
            .collect();
        if wanted.is_empty() {
            DEFAULT_FORM_SCOPE.to_owned()
        } else {
            wanted.join(" ")
        }
    }
}

impl SignIn {
    /// The form's `tenant` and `user` (the id rules of the API) and `scope`
    /// (space-separated permissions).
    pub fn parse(tenant: &str, user: &str, scope: &str) -> Result<Self, FlowError> {
        let tenant =
            TenantId::parse(tenant.trim()).map_err(|e| FlowError(format!("Tenant {e}.")))?;
        let user = UserId::parse(user.trim()).map_err(|e| FlowError(format!("User {e}.")))?;
        let perms: Vec<&str> = scope.split_whitespace().collect();
        let valid = |p: &&str| {
            p.len() <= 128
                && p.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
                })
        };
        if perms.is_empty() || perms.len() > 20 || !perms.iter().all(valid) {
            return Err(FlowError(
                "Permissions must be 1 to 20 names separated by spaces, e.g. RecoveryKey.Read."
                    .into(),
            ));
        }
        Ok(Self {
            tenant,
            user,
            scope: perms.join(" "),
        })
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page of the provider: no script, the portal's stylesheet only.
fn idp_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n<link rel=\"stylesheet\" href=\"/style.css\">\n</head>\n<body>\n<main class=\"idp\">\n{body}</main>\n</body>\n</html>\n",
        title = html_escape(title)
    )
}

/// The page shown for a request that cannot go on.
pub fn error_page(error: &FlowError) -> String {
    idp_page(
        "Sign-in request refused",
        &format!(
            "<h1>This sign-in request cannot be completed</h1>\n<p class=\"alert\" role=\"alert\">{}</p>\n<p>Go back to the portal and sign in again from there.</p>\n",
            html_escape(&error.0)
        ),
    )
}

/// The sign-in form: inputs `tenant`, `user` and `scope` (the permissions
/// to put in the token), and the request's own parameters as hidden fields
/// (its `scope` as `requested_scope`, so the names do not clash).
pub fn sign_in_page(
    req: &AuthorizeRequest,
    tenant: &str,
    user: &str,
    scope: &str,
    error: Option<&FlowError>,
) -> String {
    let mut body = String::from(
        "<h1>Sign in</h1>\n<p class=\"notice\">Development identity provider of <code>portal serve</code>: anyone can sign in as anyone. For use on this machine only.</p>\n",
    );
    if let Some(e) = error {
        body.push_str(&format!(
            "<p class=\"alert\" role=\"alert\" id=\"form-error\">{}</p>\n",
            html_escape(&e.0)
        ));
    }
    body.push_str("<form method=\"post\" action=\"/authorize\" class=\"stack\">\n");
    for (name, value) in req.hidden_fields() {
        let name = if name == "scope" {
            "requested_scope"
        } else {
            name
        };
        body.push_str(&format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            html_escape(value)
        ));
    }
    let described = if error.is_some() {
        " aria-describedby=\"form-error\""
    } else {
        ""
    };
    body.push_str(&format!(
        "<label for=\"tenant\">Tenant</label>\n<input id=\"tenant\" name=\"tenant\" required maxlength=\"128\" autocomplete=\"organization\" value=\"{}\"{described}>\n\
         <label for=\"user\">User</label>\n<input id=\"user\" name=\"user\" required maxlength=\"128\" autocomplete=\"username\" value=\"{}\"{described}>\n\
         <label for=\"scope\">Permissions (separated by spaces)</label>\n<input id=\"scope\" name=\"scope\" required maxlength=\"1024\" value=\"{}\" aria-describedby=\"scope-hint\">\n\
         <p class=\"hint\" id=\"scope-hint\">RecoveryKey.Read: your own devices. RecoveryKey.Read.All: the helpdesk screen. AuditLog.Read.All: the audit screen.</p>\n\
         <button type=\"submit\" class=\"primary\">Sign in</button>\n</form>\n\
         <p class=\"hint\">Demo data: tenant contoso (users alice and bob), tenant fabrikam (user carol; self-service off).</p>\n",
        html_escape(tenant),
        html_escape(user),
        html_escape(scope),
    ));
    idp_page("Sign in · development identity provider", &body)
}

impl DevIdentityProvider {
    /// Issues a one-time code for `who`, bound to the request, and returns
    /// where to send the browser: the redirect URI with `code` and `state`.
    pub fn issue_code(&self, req: &AuthorizeRequest, who: SignIn, now: i64) -> String {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::SecureRandom::fill(&SystemRandom::new(), &mut raw).expect("system random");
        let code = b64(&raw);
        let pending = PendingCode {
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            nonce: req.nonce.clone(),
            tenant: who.tenant,
            user: who.user,
            scope: who.scope,
            expires_at: now + CODE_TTL_SECS,
        };
        {
            let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
            codes.retain(|_, c| c.expires_at > now);
            if codes.len() >= MAX_PENDING_CODES {
                // Only reachable by a flood of sign-ins on this machine:
                // the oldest code goes.
                if let Some(oldest) = codes
                    .iter()
                    .min_by_key(|(_, c)| c.expires_at)
                    .map(|(k, _)| k.clone())
                {
                    codes.remove(&oldest);
                }
            }
            codes.insert(code.clone(), pending);
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &req.state)
            .finish();
        let sep = if req.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{query}", req.redirect_uri)
    }

    /// The token endpoint: redeems a code once, checking the client, the
    /// redirect URI and the PKCE verifier. Every attempt uses the code up,
    /// so a failed guess cannot be followed by another.
    pub fn redeem(&self, params: &[(String, String)], now: i64) -> Result<Value, TokenError> {
        let invalid = |e: String| TokenError::new("invalid_request", e);
        match param(params, "grant_type").map_err(invalid)? {
            Some("authorization_code") => {}
            Some(_) => {
                return Err(TokenError::new(
                    "unsupported_grant_type",
                    "only grant_type=authorization_code is supported",
                ));
            }
            None => return Err(invalid("grant_type is required".into())),
        }
        let code = required(params, "code").map_err(invalid)?;
        let redirect_uri = required(params, "redirect_uri").map_err(invalid)?;
        let client_id = required(params, "client_id").map_err(invalid)?;
        let verifier = required(params, "code_verifier").map_err(invalid)?;
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
        let grant = |d: &str| TokenError::new("invalid_grant", d);
        let Some(p) = pending else {
            return Err(grant(
                "the authorization code is unknown or was already used",
            ));
        };
        if p.expires_at <= now {
            return Err(grant("the authorization code has expired; sign in again"));
        }
        if p.client_id != client_id {
            return Err(grant("the authorization code was issued to another client"));
        }
        if p.redirect_uri != redirect_uri {
            return Err(grant(
                "redirect_uri differs from the one in the authorization request",
            ));
        }
        if !self.is_own_redirect_uri(redirect_uri) {
            return Err(grant("redirect_uri is not the portal page's own address"));
        }
        let verifier_ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        let challenge =
            b64(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
            );
        if !verifier_ok || challenge != p.code_challenge {
            return Err(grant("code_verifier does not match the code_challenge"));
        }
        let access_token = self.token(
            p.tenant.as_str(),
            p.user.as_str(),
            &p.scope,
            now,
            FLOW_TOKEN_TTL_SECS,
        );
        let mut id = json!({
            "iss": self.issuer,
            "aud": p.client_id,
            "azp": p.client_id,
            "sub": p.user.as_str(),
            "oid": p.user.as_str(),
            "tid": p.tenant.as_str(),
            "name": p.user.as_str(),
            "iat": now,
            "auth_time": now,
            "exp": now + FLOW_TOKEN_TTL_SECS,
        });
        if let Some(n) = &p.nonce {
            id["nonce"] = json!(n);
        }
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": FLOW_TOKEN_TTL_SECS,
            "scope": p.scope,
            "id_token": self.sign(&id),
        }))
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

/// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo:
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }.
fn pkcs1_from_pkcs8(der: &[u8]) -> Option<Vec<u8>> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&l0, rest) = rest.split_first()?;
        let (len, rest) = if l0 < 0x80 {
            (l0 as usize, rest)
        } else {
            let n = (l0 & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            (
                rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize),
                &rest[n..],
            )
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, body, _) = tlv(der)? else {
        return None;
    };
    let (0x02, _, rest) = tlv(body)? else {
        return None;
    };
    let (0x30, _, rest) = tlv(rest)? else {
        return None;
    };
    let (0x04, key, _) = tlv(rest)? else {
        return None;
    };
    Some(key.to_vec())
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
