//! The one domain error type. Every failure the domain can meet is a
//! variant here (transport failures, such as no route or a body too large,
//! are `api::HttpError`'s); `api::problem` turns each into exactly one HTTP
//! answer.

use crate::domain::ids::KeyId;
use crate::domain::model::Helpdesk;

/// Why a token was not accepted. Only for logs and tests: clients get one
/// generic 401 so the answer leaks nothing about the verifier, except for
/// `IssuerUnavailable`, an outage (503) rather than a sign-in error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("unsupported critical header")]
    Critical,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("invalid claims: {0}")]
    Claims(&'static str),
    #[error("no tenant")]
    NoTenant,
    /// `typ` or `token_use` says this is not an access token (e.g. an ID token).
    #[error("not an access token")]
    TokenType,
    /// The token could not be checked: the issuer's keys could not be
    /// fetched (refused, timed out, 5xx, malformed, or contradicting the
    /// configuration).
    #[error("identity provider unavailable")]
    IssuerUnavailable { retry_after_secs: u64 },
    /// The token could not be checked because the issuer's documents
    /// contradict the configuration (e.g. discovery names another issuer):
    /// an operator must fix it; retrying will not help.
    #[error("identity provider misconfigured")]
    IssuerMisconfigured,
}

impl AuthFailure {
    /// The RFC 6750 `error_description` of a 401: a short reason for the
    /// operator setting up an issuer, never any token content.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "no access token",
            Self::Malformed => "not a JWT",
            Self::Algorithm => "signature algorithm not accepted",
            Self::UnknownKey => "unknown signing key",
            Self::Critical => "unsupported critical header",
            Self::Signature => "bad signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not yet valid",
            Self::Issuer => "wrong issuer",
            Self::Audience => "wrong audience",
            Self::Claims(_) => "a claim is missing or has the wrong type",
            Self::NoTenant => "no tenant",
            Self::TokenType => "not an access token",
            Self::IssuerUnavailable { .. } => "identity provider unavailable",
            Self::IssuerMisconfigured => "identity provider misconfigured",
        }
    }
}

/// What could not be reached, or not in time: the one vocabulary of
/// [`Unavailable`] errors (and so of their log lines), of the
/// `Unavailable` metric's `Cause` dimension (`metrics::Metric`) and of the
/// 503s the audit trail records (`store_unavailable` is `Store`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The store (a read, or a write other than an audit event's).
    Store,
    /// The audit write failed: the key was withheld.
    Audit,
    /// KMS could not encrypt or decrypt (throttled or unreachable).
    Kms,
    /// The identity provider could not be reached to check a token.
    Idp,
    /// The embedded cipher (`portal serve`'s).
    Cipher,
    /// DynamoDB, as the AWS adapter names its failures.
    DynamoDb,
    /// The caller's rate window kept changing (concurrent retrievals).
    RateLimit,
    /// The request itself ran out of time (the Lambda deadline).
    Request,
}

impl Cause {
    /// As logs, metrics and error messages write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Audit => "audit",
            Self::Kms => "kms",
            Self::Idp => "idp",
            Self::Cipher => "cipher",
            Self::DynamoDb => "dynamodb",
            Self::RateLimit => "rate limit",
            Self::Request => "request",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of a backing service (store or cipher) after its own retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cause} unavailable: {detail}")]
pub struct Unavailable {
    pub cause: Cause,
    pub detail: String,
}

impl Unavailable {
    pub fn new(cause: Cause, detail: impl std::fmt::Display) -> Self {
        Self {
            cause,
            detail: detail.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(AuthFailure),
    /// Allowed to a second person only (separation of duties): the detail
    /// says who.
    #[error("second person required: {0}")]
    SecondPersonRequired(String),
    /// The token could not be checked because the identity provider cannot
    /// be reached: retry, do not sign in again.
    #[error("identity provider unavailable")]
    IdentityProviderUnavailable { retry_after_secs: u64 },
    /// The identity provider answers, but not as configured (its discovery
    /// document names another issuer): tell IT; retrying will not help.
    #[error("identity provider misconfigured")]
    IdentityProviderMisconfigured,
    /// The person signed in longer ago than `PORTAL_WEB_MAX_AGE` allows
    /// for a disclosure: sign in again.
    #[error("sign-in too old")]
    SignInTooOld { max_age: u64 },
    /// The token is valid but lacks the permission the route needs.
    #[error("missing permission {needed}")]
    InsufficientScope { needed: &'static str },
    /// The tenant turned self-service off: owners must ask the helpdesk.
    #[error("self-service disabled")]
    SelfServiceDisabled { helpdesk: Option<Helpdesk> },
    /// Missing, another user's, or another tenant's: deliberately one answer.
    #[error("device not found")]
    DeviceNotFound,
    /// The device is the caller's but no escrowed key exists for it.
    #[error("no recovery key held")]
    NoKeyHeld { helpdesk: Option<Helpdesk> },
    #[error("key id prefix is ambiguous")]
    AmbiguousKey { candidates: Vec<KeyId> },
    /// The write contradicts what is stored (an escrow of another password
    /// under a key ID already held).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// Batch retrieval outside an open incident.
    #[error("no incident open")]
    IncidentRequired,
    #[error("incident not found")]
    IncidentNotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// Stored data that cannot be used (e.g. a ciphertext that fails its
    /// integrity check). Never caused by client input.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::IssuerUnavailable { retry_after_secs } => {
                Self::IdentityProviderUnavailable { retry_after_secs }
            }
            AuthFailure::IssuerMisconfigured => Self::IdentityProviderMisconfigured,
            other => Self::Unauthenticated(other),
        }
    }
}
