//! The one mapping from errors to HTTP answers: `application/problem+json`
//! (RFC 9457) with a `detail` that says what to do next.

use super::error::HttpError;
use super::{ApiResponse, UNAVAILABLE_RETRY_AFTER_SECS};
use crate::domain::error::{ApiError, AuthFailure};
use crate::domain::ids::KeyId;
use crate::domain::model::Helpdesk;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// An `application/problem+json` body (RFC 9457), with this API's
/// extension members where they apply.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    request_id: &'a str,
    #[serde(flatten)]
    extra: Extra<'a>,
}

/// The extension members; each appears only on the problems it belongs to
/// (`helpdesk` may be present and null: no helpdesk configured).
#[derive(Serialize, Default)]
struct Extra<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    required_permission: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    helpdesk: Option<Option<&'a Helpdesk>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<&'a [KeyId]>,
}

/// `Retry-After` of a 503 `identity-provider-misconfigured`.
const MISCONFIGURED_RETRY_AFTER_SECS: u64 = 30;

pub(crate) const PROBLEM_BASE: &str = "https://recovery-portal.dev/problems/";

/// One kind of problem: the status, `type` slug and title every answer
/// of the kind carries (the OpenAPI document's `*Problem` schemas quote
/// them from here).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
}

impl Kind {
    const fn new(status: StatusCode, slug: &'static str, title: &'static str) -> Self {
        Self {
            status,
            slug,
            title,
        }
    }

    /// The `type` URI.
    pub fn uri(&self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug)
    }
}

pub(crate) const UNAUTHENTICATED: Kind = Kind::new(
    StatusCode::UNAUTHORIZED,
    "unauthenticated",
    "Sign-in required",
);
pub(crate) const IDP_UNAVAILABLE: Kind = Kind::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "identity-provider-unavailable",
    "Sign-in service unreachable",
);
pub(crate) const IDP_MISCONFIGURED: Kind = Kind::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "identity-provider-misconfigured",
    "Portal misconfigured",
);
pub(crate) const INSUFFICIENT_SCOPE: Kind = Kind::new(
    StatusCode::FORBIDDEN,
    "insufficient-scope",
    "Permission required",
);
pub(crate) const SECOND_PERSON_REQUIRED: Kind = Kind::new(
    StatusCode::FORBIDDEN,
    "second-person-required",
    "Another person must do this",
);
pub(crate) const SELF_SERVICE_DISABLED: Kind = Kind::new(
    StatusCode::FORBIDDEN,
    "self-service-disabled",
    "Ask your helpdesk for this key",
);
pub(crate) const DEVICE_NOT_FOUND: Kind = Kind::new(
    StatusCode::NOT_FOUND,
    "device-not-found",
    "Device not found",
);
pub(crate) const NO_RECOVERY_KEY: Kind = Kind::new(
    StatusCode::NOT_FOUND,
    "no-recovery-key",
    "No recovery key stored",
);
pub(crate) const AMBIGUOUS_KEY_ID: Kind = Kind::new(
    StatusCode::CONFLICT,
    "ambiguous-key-id",
    "Key ID matches several keys",
);
pub(crate) const RATE_LIMITED: Kind = Kind::new(
    StatusCode::TOO_MANY_REQUESTS,
    "rate-limited",
    "Too many recovery keys requested",
);
pub(crate) const INCIDENT_REQUIRED: Kind = Kind::new(
    StatusCode::FORBIDDEN,
    "incident-required",
    "An incident must be open",
);
pub(crate) const INCIDENT_NOT_FOUND: Kind = Kind::new(
    StatusCode::NOT_FOUND,
    "incident-not-found",
    "Incident not found",
);
pub(crate) const INVALID_REQUEST: Kind = Kind::new(
    StatusCode::BAD_REQUEST,
    "invalid-request",
    "Invalid request",
);
pub(crate) const CONFLICT: Kind = Kind::new(
    StatusCode::CONFLICT,
    "conflict",
    "Conflicts with what is stored",
);
pub(crate) const UNAVAILABLE: Kind = Kind::new(
    StatusCode::SERVICE_UNAVAILABLE,
    "unavailable",
    "Temporarily unavailable",
);
pub(crate) const INTERNAL: Kind = Kind::new(
    StatusCode::INTERNAL_SERVER_ERROR,
    "internal",
    "Internal error",
);
pub(crate) const UNSUPPORTED_MEDIA_TYPE: Kind = Kind::new(
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    "unsupported-media-type",
    "Unsupported media type",
);
pub(crate) const PAYLOAD_TOO_LARGE: Kind = Kind::new(
    StatusCode::PAYLOAD_TOO_LARGE,
    "payload-too-large",
    "Request body too large",
);
pub(crate) const METHOD_NOT_ALLOWED: Kind = Kind::new(
    StatusCode::METHOD_NOT_ALLOWED,
    "method-not-allowed",
    "Method not allowed",
);
pub(crate) const NOT_FOUND: Kind = Kind::new(StatusCode::NOT_FOUND, "not-found", "Not found");

/// The one mapping from domain errors to HTTP answers.
pub fn problem(e: &HttpError, request_id: &str) -> ApiResponse {
    match e {
        HttpError::Domain(e) => domain_problem(e, request_id),
        transport => transport_problem(transport, request_id),
    }
}

fn domain_problem(e: &ApiError, request_id: &str) -> ApiResponse {
    let mut extra = Extra::default();
    let mut headers: Vec<(header::HeaderName, String)> = Vec::new();
    let (kind, detail) = match e {
        ApiError::Unauthenticated(f) => {
            // RFC 6750 §3: a short reason for whoever sets the issuer up;
            // the body stays the person's.
            let challenge = if *f == AuthFailure::Missing {
                "Bearer".to_owned()
            } else {
                format!(r#"Bearer error="invalid_token", error_description="{}""#, f.description())
            };
            headers.push((header::WWW_AUTHENTICATE, challenge));
            (UNAUTHENTICATED, "Sign in to the company portal again, then retry.".to_owned())
        }
        ApiError::IdentityProviderUnavailable { retry_after_secs } => {
            headers.push((header::RETRY_AFTER, retry_after_secs.to_string()));
            extra.retry_after = Some(*retry_after_secs);
            (IDP_UNAVAILABLE, format!("The portal cannot reach your organization's sign-in service to check your token right now. Nothing was disclosed, and you do not need to sign in again: try again in {retry_after_secs} second{}.", if *retry_after_secs == 1 { "" } else { "s" }))
        }
        ApiError::IdentityProviderMisconfigured => {
            // When the check runs again (the fetch back-off's ceiling): the
            // answer changes only once someone fixes the configuration.
            headers.push((header::RETRY_AFTER, MISCONFIGURED_RETRY_AFTER_SECS.to_string()));
            extra.retry_after = Some(MISCONFIGURED_RETRY_AFTER_SECS);
            (IDP_MISCONFIGURED, "The portal is misconfigured: its sign-in settings do not match your organization's sign-in service, so it cannot check anyone's sign-in. Nothing was disclosed. Tell your IT support; trying again will not help until they fix it.".to_owned())
        }
        ApiError::SignInTooOld { max_age } => {
            // RFC 9470 (step-up authentication): sign in again, recently.
            headers.push((header::WWW_AUTHENTICATE, format!(r#"Bearer error="insufficient_user_authentication", error_description="sign-in too old", max_age={max_age}"#)));
            extra.max_age = Some(*max_age);
            let minutes = max_age.div_ceil(60);
            (UNAUTHENTICATED, format!("To see a recovery key you must have signed in within the last {minutes} minute{}. Sign in again, then retry.", if minutes == 1 { "" } else { "s" }))
        }
        ApiError::InsufficientScope { needed } => {
            headers.push((header::WWW_AUTHENTICATE, format!(r#"Bearer error="insufficient_scope", scope="{needed}""#)));
            extra.required_permission = Some(needed);
            (INSUFFICIENT_SCOPE, format!("Your account lacks the {needed} permission. Ask your IT administrator for access."))
        }
        ApiError::SecondPersonRequired(d) => (SECOND_PERSON_REQUIRED, d.clone()),
        ApiError::SelfServiceDisabled { helpdesk } => {
            extra.helpdesk = Some(helpdesk.as_ref());
            (SELF_SERVICE_DISABLED, "Your organization does not let users retrieve recovery keys themselves. Contact your IT support; they can read the key to you.".to_owned())
        }
        ApiError::DeviceNotFound => (
            DEVICE_NOT_FOUND, "No device with this ID is registered to you. Check the device in your device list, or contact your IT support.".to_owned(),
        ),
        ApiError::NoKeyHeld { helpdesk } => {
            extra.helpdesk = Some(helpdesk.as_ref());
            (NO_RECOVERY_KEY, "No recovery key is stored for this device. If your organization encrypted it, contact your IT support for help; keys of devices you encrypted yourself are not kept here.".to_owned())
        }
        ApiError::AmbiguousKey { candidates } => {
            extra.candidates = Some(candidates.as_slice());
            (AMBIGUOUS_KEY_ID, "Several keys on this device start with that key ID. Enter more digits of the key ID shown on the recovery screen.".to_owned())
        }
        ApiError::RateLimited { retry_after_secs } => {
            headers.push((header::RETRY_AFTER, retry_after_secs.to_string()));
            extra.retry_after = Some(*retry_after_secs);
            (RATE_LIMITED, format!("You have retrieved the maximum number of recovery keys for now. Try again in {} minutes, or contact your IT support.", retry_after_secs.div_ceil(60)))
        }
        ApiError::IncidentRequired => (INCIDENT_REQUIRED, "Batch retrieval is available only while an incident is open in your organization. Ask your IT lead to open one (POST /v1/incidents), or retrieve keys one at a time.".to_owned()),
        ApiError::IncidentNotFound => (INCIDENT_NOT_FOUND, "No incident with this ID exists in your organization. List the incidents with GET /v1/incidents.".to_owned()),
        ApiError::BadRequest(d) => (INVALID_REQUEST, d.clone()),
        ApiError::Conflict(d) => (CONFLICT, d.clone()),
        ApiError::Unavailable(_) => {
            headers.push((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.to_string()));
            (UNAVAILABLE, "The service could not complete the request safely and disclosed nothing. Try again in a few seconds.".to_owned())
        }
        ApiError::Internal(_) => (INTERNAL, "Something went wrong on our side. Try again, or contact your IT support.".to_owned()),
    };
    answer(kind, &detail, request_id, extra, headers)
}

/// The answers of the transport errors (no route, another method, a body
/// too large or not JSON).
fn transport_problem(e: &HttpError, request_id: &str) -> ApiResponse {
    let no_extra = Extra::default();
    let (kind, detail, headers) = match e {
        HttpError::UnsupportedMediaType => (
            UNSUPPORTED_MEDIA_TYPE,
            "Send the request body as application/json.".to_owned(),
            vec![],
        ),
        HttpError::PayloadTooLarge { max } => (
            PAYLOAD_TOO_LARGE,
            format!("The request body must be at most {max} bytes."),
            vec![],
        ),
        HttpError::MethodNotAllowed { allow } => (
            METHOD_NOT_ALLOWED,
            format!("This resource only supports {allow}."),
            vec![(header::ALLOW, allow.clone())],
        ),
        HttpError::RouteNotFound => (
            NOT_FOUND,
            "There is no such API resource. See the API documentation for the routes.".to_owned(),
            vec![],
        ),
        HttpError::Domain(e) => return domain_problem(e, request_id),
    };
    answer(kind, &detail, request_id, no_extra, headers)
}

/// The problem document and headers of one answer.
fn answer(
    kind: Kind,
    detail: &str,
    request_id: &str,
    extra: Extra<'_>,
    headers: Vec<(header::HeaderName, String)>,
) -> ApiResponse {
    let status = kind.status;
    let body = Problem {
        kind: kind.uri(),
        title: kind.title,
        status: status.as_u16(),
        detail,
        request_id,
        extra,
    };
    let mut r = Response::new(serde_json::to_vec(&body).unwrap_or_default());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}
