//! The problem answers (`application/problem+json`): one `*Problem`
//! schema per kind, whose constant `type`, `status` and `title` come from
//! `api::problem` (the one mapping from errors to answers), and the shared
//! `components/responses` the routes refer to.

use super::schemas::{PermissionName, Schemas};
use crate::api::MAX_BODY;
use crate::api::problem::{self, Kind};
use crate::domain::ids::KeyId;
use crate::domain::model::Helpdesk;
use serde_json::{Map, Value, json};

/// The document's schema of one problem kind.
#[derive(Debug)]
pub(crate) struct ProblemDoc {
    pub name: &'static str,
    /// `None` for a schema covering several kinds of one status.
    pub kind: Option<Kind>,
    pub status: u16,
    /// Extension members every answer of the kind carries.
    pub required: &'static [&'static str],
    /// Headers every answer of the kind carries (beyond the standard ones).
    pub headers: &'static [&'static str],
    pub description: &'static str,
}

const fn kind(name: &'static str, kind: Kind, description: &'static str) -> ProblemDoc {
    ProblemDoc {
        name,
        kind: Some(kind),
        status: kind.status.as_u16(),
        required: &[],
        headers: &[],
        description,
    }
}

pub(crate) const INVALID_REQUEST: ProblemDoc = kind(
    "InvalidRequestProblem",
    problem::INVALID_REQUEST,
    "Malformed JSON, an unknown body field or query parameter, an invalid ID or value, a key-ID prefix shorter than 8 hex digits, a `reason` too long, or missing where the tenant requires one (`require_reason`), or an `X-Request-Id` already used for a different request. `detail` names the field.",
);
pub(crate) const UNAUTHENTICATED: ProblemDoc = ProblemDoc {
    headers: &["WWW-Authenticate"],
    ..kind(
        "UnauthenticatedProblem",
        problem::UNAUTHENTICATED,
        "No token, or a malformed, expired, wrongly signed or wrongly addressed one: `WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"<reason>\"` names the reason (`wrong audience`, `expired`, `unknown signing key`, `not an access token`, `no tenant`, …), never token content. For a key disclosure with `PORTAL_WEB_MAX_AGE` set, also a sign-in older than that (`max_age`).",
    )
};
pub(crate) const INSUFFICIENT_SCOPE: ProblemDoc = ProblemDoc {
    required: &["required_permission"],
    headers: &["WWW-Authenticate"],
    ..kind(
        "InsufficientScopeProblem",
        problem::INSUFFICIENT_SCOPE,
        "The token lacks the permission the request needs; `required_permission` names it.",
    )
};
pub(crate) const SELF_SERVICE_DISABLED: ProblemDoc = ProblemDoc {
    required: &["helpdesk"],
    ..kind(
        "SelfServiceDisabledProblem",
        problem::SELF_SERVICE_DISABLED,
        "The tenant turned self-service off: owners get their key from the helpdesk.",
    )
};
pub(crate) const DEVICE_NOT_FOUND: ProblemDoc = kind(
    "DeviceNotFoundProblem",
    problem::DEVICE_NOT_FOUND,
    "The device is missing, another user's or another tenant's: one identical answer, so no existence oracle.",
);
pub(crate) const NO_RECOVERY_KEY: ProblemDoc = ProblemDoc {
    required: &["helpdesk"],
    ..kind(
        "NoRecoveryKeyProblem",
        problem::NO_RECOVERY_KEY,
        "No key is held for the device (personally encrypted, nothing escrowed, or no key matching `key_id`).",
    )
};
pub(crate) const NOT_FOUND: ProblemDoc =
    kind("NotFoundProblem", problem::NOT_FOUND, "No such route.");
pub(crate) const METHOD_NOT_ALLOWED: ProblemDoc = kind(
    "MethodNotAllowedProblem",
    problem::METHOD_NOT_ALLOWED,
    "The route exists with another method (see the `Allow` header).",
);
pub(crate) const AMBIGUOUS_KEY_ID: ProblemDoc = ProblemDoc {
    required: &["candidates"],
    ..kind(
        "AmbiguousKeyIdProblem",
        problem::AMBIGUOUS_KEY_ID,
        "The key-ID prefix matched several keys of the device; `candidates` lists them.",
    )
};
pub(crate) const CONFLICT: ProblemDoc = kind(
    "ConflictProblem",
    problem::CONFLICT,
    "The request conflicts with what is stored (a different recovery password or volume type under the same key ID); `detail` says what to check.",
);
pub(crate) const PAYLOAD_TOO_LARGE: ProblemDoc = kind(
    "PayloadTooLargeProblem",
    problem::PAYLOAD_TOO_LARGE,
    "The request body exceeds the operation's limit (its 413 answer says which).",
);
pub(crate) const UNSUPPORTED_MEDIA_TYPE: ProblemDoc = kind(
    "UnsupportedMediaTypeProblem",
    problem::UNSUPPORTED_MEDIA_TYPE,
    "A body that is not `application/json`.",
);
pub(crate) const RATE_LIMITED: ProblemDoc = ProblemDoc {
    required: &["retry_after"],
    headers: &["Retry-After"],
    ..kind(
        "RateLimitedProblem",
        problem::RATE_LIMITED,
        "The caller has had `PORTAL_KEY_RATE_LIMIT` keys disclosed in the rolling hour.",
    )
};
pub(crate) const INTERNAL: ProblemDoc = kind(
    "InternalProblem",
    problem::INTERNAL,
    "Stored data that cannot be decrypted (e.g. a ciphertext moved to another row). Never caused by client input.",
);
/// Every 503: the dependency that failed decides the `type`.
pub(crate) const UNAVAILABLE: ProblemDoc = ProblemDoc {
    name: "UnavailableProblem",
    kind: None,
    status: 503,
    required: &[],
    headers: &["Retry-After"],
    description: "The store, the audit trail, KMS or the identity provider did not answer in time: nothing was disclosed. `type` is `https://recovery-portal.dev/problems/unavailable`, `https://recovery-portal.dev/problems/identity-provider-unavailable` (retry, do not sign in again), or `https://recovery-portal.dev/problems/identity-provider-misconfigured` (the issuer's discovery document contradicts the configuration, e.g. another `issuer`: retrying will not help until IT fixes it); other types may be added for specific dependencies.",
};
pub(crate) const INCIDENT_REQUIRED: ProblemDoc = kind(
    "IncidentRequiredProblem",
    problem::INCIDENT_REQUIRED,
    "Batch retrieval outside an open incident of the caller's tenant; `detail` says to ask the IT lead to open one (`POST /v1/incidents`) or to retrieve keys one at a time.",
);
pub(crate) const INCIDENT_NOT_FOUND: ProblemDoc = kind(
    "IncidentNotFoundProblem",
    problem::INCIDENT_NOT_FOUND,
    "No incident with this ID in the caller's tenant.",
);
pub(crate) const SECOND_PERSON_REQUIRED: ProblemDoc = kind(
    "SecondPersonRequiredProblem",
    problem::SECOND_PERSON_REQUIRED,
    "Separation of duties: an owner change naming the caller themselves, or a batch retrieval by the person who opened the incident. `detail` says who must do it instead. Audited (`self_assignment`, `incident_opener`).",
);

/// Every problem schema, including the two no operation lists (any path
/// can answer them).
pub(crate) const ALL: &[&ProblemDoc] = &[
    &INVALID_REQUEST,
    &UNAUTHENTICATED,
    &INSUFFICIENT_SCOPE,
    &SELF_SERVICE_DISABLED,
    &DEVICE_NOT_FOUND,
    &NO_RECOVERY_KEY,
    &NOT_FOUND,
    &METHOD_NOT_ALLOWED,
    &AMBIGUOUS_KEY_ID,
    &CONFLICT,
    &PAYLOAD_TOO_LARGE,
    &UNSUPPORTED_MEDIA_TYPE,
    &RATE_LIMITED,
    &INTERNAL,
    &UNAVAILABLE,
    &INCIDENT_REQUIRED,
    &INCIDENT_NOT_FOUND,
    &SECOND_PERSON_REQUIRED,
];

impl ProblemDoc {
    pub fn reference(&self) -> Value {
        json!({ "$ref": format!("#/components/schemas/{}", self.name) })
    }

    fn schema(&self) -> Value {
        let mut fixed = Map::new();
        if let Some(k) = &self.kind {
            fixed.insert("type".into(), json!({ "const": k.uri() }));
            fixed.insert("title".into(), json!({ "const": k.title }));
        }
        fixed.insert("status".into(), json!({ "const": self.status }));
        let mut own = json!({ "properties": fixed });
        if !self.required.is_empty() {
            own["required"] = json!(self.required);
        }
        json!({
            "allOf": [{ "$ref": "#/components/schemas/Problem" }, own],
            "description": self.description,
        })
    }
}

/// `Problem` and every `*Problem` schema.
pub(crate) fn add_schemas(s: &mut Schemas) {
    let helpdesk = s.add::<Helpdesk>();
    let key_id = s.add::<KeyId>();
    let permission = s.add::<PermissionName>();
    s.0.insert("Problem".into(), base(helpdesk, key_id, permission));
    for p in ALL {
        s.0.insert(p.name.into(), p.schema());
    }
}

/// The members every problem has, and the extension members some have.
fn base(helpdesk: Value, key_id: Value, permission: Value) -> Value {
    json!({
        "type": "object",
        "description": "An error (RFC 9457 `application/problem+json`). `detail` says what to do next. Clients must ignore members they do not know.",
        "required": ["type", "title", "status", "detail", "request_id"],
        "properties": {
            "type": {"type": "string", "format": "uri", "description": format!("Identifies the problem type: `{}<slug>`.", problem::PROBLEM_BASE)},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "minLength": 1},
            "request_id": {"type": "string", "minLength": 1, "description": "As in the `X-Request-Id` header: quote it to the helpdesk."},
            "helpdesk": {"oneOf": [helpdesk, {"type": "null"}], "description": "Who to contact, where the user should (self-service off, no key held)."},
            "candidates": {"type": "array", "items": key_id, "minItems": 2, "description": "The key IDs an ambiguous prefix matched."},
            "required_permission": permission,
            "retry_after": {"type": "integer", "minimum": 1, "description": "Seconds until a retry can succeed (as the `Retry-After` header)."},
            "max_age": {"type": "integer", "minimum": 1, "description": "On a 401 for a key disclosure with `PORTAL_WEB_MAX_AGE` set: the sign-in (the token's `auth_time`) must be at most this many seconds old; sign in again (`WWW-Authenticate: Bearer error=\"insufficient_user_authentication\", max_age=...`, RFC 9470)."},
        }
    })
}

/// A problem answer every route of some kind shares (`components/responses`).
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: &'static str,
    pub description: &'static str,
    pub problem: &'static ProblemDoc,
}

pub(crate) const SHARED_INVALID_REQUEST: Shared = Shared {
    name: "InvalidRequest",
    description: "Invalid input; `detail` names the field.",
    problem: &INVALID_REQUEST,
};
/// Every route signs its caller in first (`api::dispatch`).
pub(crate) const SHARED_UNAUTHENTICATED: Shared = Shared {
    name: "Unauthenticated",
    description: "Not signed in: no token, or one that is malformed, expired, wrongly signed or for another issuer or audience.",
    problem: &UNAUTHENTICATED,
};
pub(crate) const SHARED_INSUFFICIENT_SCOPE: Shared = Shared {
    name: "InsufficientScope",
    description: "The token lacks the permission this request needs (`required_permission`, and a `WWW-Authenticate: Bearer error=\"insufficient_scope\"` header).",
    problem: &INSUFFICIENT_SCOPE,
};
/// Described by `too_large(MAX_BODY)` (`Shared::description`).
pub(crate) const SHARED_PAYLOAD_TOO_LARGE: Shared = Shared {
    name: "PayloadTooLarge",
    description: "",
    problem: &PAYLOAD_TOO_LARGE,
};
pub(crate) const SHARED_UNSUPPORTED_MEDIA_TYPE: Shared = Shared {
    name: "UnsupportedMediaType",
    description: "The body is not `application/json`.",
    problem: &UNSUPPORTED_MEDIA_TYPE,
};
pub(crate) const SHARED_UNAVAILABLE: Shared = Shared {
    name: "Unavailable",
    description: "A dependency (store, audit trail, KMS, identity provider) did not answer: nothing was disclosed; retry after `Retry-After` seconds.",
    problem: &UNAVAILABLE,
};
pub(crate) const SHARED_UNAVAILABLE_WRITE: Shared = Shared {
    name: "UnavailableWrite",
    description: "A dependency (store, audit trail, KMS, identity provider) did not answer: nothing was changed; retry after `Retry-After` seconds.",
    problem: &UNAVAILABLE,
};
pub(crate) const SHARED_UNAVAILABLE_READ: Shared = Shared {
    name: "UnavailableRead",
    description: "A dependency (store, audit trail, KMS, identity provider) did not answer: nothing was read; retry after `Retry-After` seconds.",
    problem: &UNAVAILABLE,
};

impl Shared {
    pub fn description(&self) -> String {
        if self.problem.status == PAYLOAD_TOO_LARGE.status {
            too_large(MAX_BODY)
        } else {
            self.description.to_owned()
        }
    }
}

/// A 413's description, from the route's body limit.
pub(crate) fn too_large(max_body: usize) -> String {
    format!("The request body exceeds {} KiB.", max_body / 1024)
}
