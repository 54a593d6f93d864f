//! The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636, OIDC
//! Core §3.1), so the portal page can sign in against `portal serve` exactly
//! as it does against a real issuer: requests, sign-ins, codes and their
//! redemption. Loopback redirect URIs only (RFC 8252 §7.3, `loopback.rs`).

use super::*;

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

pub(super) struct PendingCode {
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
        check_grant_type(params)?;
        let code = required(params, "code").map_err(invalid)?;
        let redirect_uri = required(params, "redirect_uri").map_err(invalid)?;
        let client_id = required(params, "client_id").map_err(invalid)?;
        let verifier = required(params, "code_verifier").map_err(invalid)?;
        // Removed before any check: a code is tried once, right or wrong.
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
        let Some(p) = pending else {
            return Err(grant(
                "the authorization code is unknown or was already used",
            ));
        };
        self.check_redemption(&p, client_id, redirect_uri, verifier, now)?;
        Ok(self.issue_tokens(&p, now))
    }

    /// Whether `p` may be redeemed by `client_id` at `redirect_uri` with
    /// `verifier`, at `now`; the first failed check is the answer.
    fn check_redemption(
        &self,
        p: &PendingCode,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
        now: i64,
    ) -> Result<(), TokenError> {
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
        if !pkce_matches(verifier, &p.code_challenge) {
            return Err(grant("code_verifier does not match the code_challenge"));
        }
        Ok(())
    }

    /// The token endpoint's answer for a redeemed code: an access token and
    /// an ID token for the person who signed in.
    fn issue_tokens(&self, p: &PendingCode, now: i64) -> Value {
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
        json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": FLOW_TOKEN_TTL_SECS,
            "scope": p.scope,
            "id_token": self.sign(&id),
        })
    }
}

fn grant(description: &str) -> TokenError {
    TokenError::new("invalid_grant", description)
}

/// `grant_type` must be `authorization_code` (RFC 6749 §4.1.3).
fn check_grant_type(params: &[(String, String)]) -> Result<(), TokenError> {
    let invalid = |e: String| TokenError::new("invalid_request", e);
    match param(params, "grant_type").map_err(invalid)? {
        Some("authorization_code") => Ok(()),
        Some(_) => Err(TokenError::new(
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported",
        )),
        None => Err(invalid("grant_type is required".into())),
    }
}

/// RFC 7636 §4.1 and §4.6: a 43-128 character verifier whose base64url
/// SHA-256 is the challenge.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    well_formed && b64(digest.as_ref()) == challenge
}

#[cfg(test)]
mod tests {
    use super::pkce_matches;

    #[test]
    fn pkce_table() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        for (v, c, want) in [
            (verifier, challenge, true),
            (
                verifier,
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
                false,
            ),
            (&verifier[..42], challenge, false),
            (
                "a b c d e f g h i j k l m n o p q r s t u v w",
                challenge,
                false,
            ),
        ] {
            assert_eq!(pkce_matches(v, c), want, "{v}");
        }
    }
}
