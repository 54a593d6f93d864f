//! Why a request was refused: one closed vocabulary for the audit event's
//! `reason`, the `Denials` metric's `Reason` dimension and the domain's
//! refusals. The strings are pinned: stored audit records carry them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denied {
    /// The token lacks the permission the route needs.
    InsufficientScope,
    /// The sign-in is older than `PORTAL_WEB_MAX_AGE` allows.
    SignInTooOld,
    /// The request could not be read (a 400 before any lookup).
    InvalidRequest,
    /// The store could not be read: refused as unavailable (503).
    StoreUnavailable,
    /// No such device in the caller's tenant.
    NotFound,
    /// The device is in another tenant (defence in depth).
    OtherTenant,
    /// Another user's device, without helpdesk permission.
    NotOwner,
    /// The owner's own device, retired.
    Retired,
    /// The tenant has self-service off.
    SelfServiceDisabled,
    /// A retired device's key without key ID or reason, or past retention.
    RetiredDevice,
    /// The tenant requires a reason and none was given.
    ReasonRequired,
    /// The device encrypts with a personal key: the portal holds none.
    PersonallyEncrypted,
    /// The device has no readable key.
    NoKey,
    /// Only keys older than the caller's ownership match.
    KeyPredatesOwner,
    /// No operating-system key to default to.
    NoOsKey,
    /// No key matches the key ID.
    KeyIdNotFound,
    /// Several keys match the key ID prefix.
    AmbiguousKeyId,
    /// A client request id reused for another device or key.
    RequestIdReused,
    /// The caller's rate limit is reached.
    RateLimited,
    /// The rate window kept changing under concurrent retrievals.
    ConcurrentRetrievals,
    /// Batch retrieval outside an open incident.
    IncidentRequired,
    /// Batch retrieval by the agent who opened the incident.
    IncidentOpener,
    /// The one event listing a batch's refused items.
    BatchItemsDenied,
    /// The marker of a caller reaching the hourly cap of denied events.
    DenialsCapped,
    /// Another password is stored under the key ID.
    KeyConflict,
    /// An owner change naming the caller.
    SelfAssignment,
    /// Another incident is open.
    IncidentAlreadyOpen,
}

impl Denied {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientScope => "insufficient_scope",
            Self::SignInTooOld => "sign_in_too_old",
            Self::InvalidRequest => "invalid_request",
            Self::StoreUnavailable => "store_unavailable",
            Self::NotFound => "not_found",
            Self::OtherTenant => "other_tenant",
            Self::NotOwner => "not_owner",
            Self::Retired => "retired",
            Self::SelfServiceDisabled => "self_service_disabled",
            Self::RetiredDevice => "retired_device",
            Self::ReasonRequired => "reason_required",
            Self::PersonallyEncrypted => "personally_encrypted",
            Self::NoKey => "no_key",
            Self::KeyPredatesOwner => "key_predates_owner",
            Self::NoOsKey => "no_os_key",
            Self::KeyIdNotFound => "key_id_not_found",
            Self::AmbiguousKeyId => "ambiguous_key_id",
            Self::RequestIdReused => "request_id_reused",
            Self::RateLimited => "rate_limited",
            Self::ConcurrentRetrievals => "concurrent_retrievals",
            Self::IncidentRequired => "incident_required",
            Self::IncidentOpener => "incident_opener",
            Self::BatchItemsDenied => "batch_items_denied",
            Self::DenialsCapped => "denials_capped",
            Self::KeyConflict => "key_conflict",
            Self::SelfAssignment => "self_assignment",
            Self::IncidentAlreadyOpen => "incident_already_open",
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every reason, for tests that pin the vocabulary.
#[cfg(test)]
pub(crate) const ALL: [Denied; 27] = [
    Denied::InsufficientScope,
    Denied::SignInTooOld,
    Denied::InvalidRequest,
    Denied::StoreUnavailable,
    Denied::NotFound,
    Denied::OtherTenant,
    Denied::NotOwner,
    Denied::Retired,
    Denied::SelfServiceDisabled,
    Denied::RetiredDevice,
    Denied::ReasonRequired,
    Denied::PersonallyEncrypted,
    Denied::NoKey,
    Denied::KeyPredatesOwner,
    Denied::NoOsKey,
    Denied::KeyIdNotFound,
    Denied::AmbiguousKeyId,
    Denied::RequestIdReused,
    Denied::RateLimited,
    Denied::ConcurrentRetrievals,
    Denied::IncidentRequired,
    Denied::IncidentOpener,
    Denied::BatchItemsDenied,
    Denied::DenialsCapped,
    Denied::KeyConflict,
    Denied::SelfAssignment,
    Denied::IncidentAlreadyOpen,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored strings, byte for byte: stored audit records and
    /// CloudWatch alarms use them.
    #[test]
    fn reasons_keep_their_pinned_strings() {
        let got: Vec<&str> = ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            got,
            [
                "insufficient_scope",
                "sign_in_too_old",
                "invalid_request",
                "store_unavailable",
                "not_found",
                "other_tenant",
                "not_owner",
                "retired",
                "self_service_disabled",
                "retired_device",
                "reason_required",
                "personally_encrypted",
                "no_key",
                "key_predates_owner",
                "no_os_key",
                "key_id_not_found",
                "ambiguous_key_id",
                "request_id_reused",
                "rate_limited",
                "concurrent_retrievals",
                "incident_required",
                "incident_opener",
                "batch_items_denied",
                "denials_capped",
                "key_conflict",
                "self_assignment",
                "incident_already_open",
            ]
        );
        assert_eq!(Denied::NotOwner.to_string(), "not_owner");
    }
}
