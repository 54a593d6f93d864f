//! Each body type's problems: the field's path and what it must be, in the
//! words the routes always used, never a value.

use super::{Body, Query, parse};
use crate::api::HttpError;
use crate::api::routes::batch_keys::BatchRequest;
use crate::api::routes::escrow::EscrowRequest;
use crate::api::routes::open_incident::IncidentRequest;
use crate::api::routes::patch_settings::TenantSettingsPatch;
use crate::api::routes::put_device::DeviceUpsertRequest;
use crate::api::routes::retire_device::RetireRequest;
use crate::api::routes::retrieve_key::RecoveryKeyRequest;
use crate::domain::error::ApiError;
use http::{HeaderMap, HeaderValue, header};

const PASSWORD: &str = "038258-286682-604857-317823-647658-401093-009361-230186";

fn detail<T: Body>(body: &str) -> String {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match parse::<T>(&h, body.as_bytes()) {
        Err(HttpError::Domain(ApiError::BadRequest(detail))) => detail,
        Err(e) => panic!("{body}: {e}"),
        Ok(_) => panic!("{body} was accepted"),
    }
}

#[test]
fn a_device_names_the_field_and_the_rule() {
    let ok = r#""display_name": "x", "os": "y", "managed_by": "user""#;
    for (body, want) in [
        (format!(r#"{{"owner": 5, {ok}}}"#), "owner must be a string"),
        (format!(r#"{{"owner": null, {ok}}}"#), "owner is required"),
        (format!("{{{ok}}}"), "owner is required"),
        (
            format!(r#"{{"owner": "a b", {ok}}}"#),
            "owner must be 1 to 128 characters from A-Z a-z 0-9 . _ -",
        ),
        (
            r#"{"owner": "alice", "display_name": "x", "os": "y", "managed_by": "me"}"#.into(),
            "managed_by must be \"organization\" or \"user\"",
        ),
        (
            format!(r#"{{"owner": "alice", {ok}, "colour": 1}}"#),
            "unknown field \"colour\"; allowed: owner, display_name, os, managed_by",
        ),
    ] {
        assert_eq!(detail::<DeviceUpsertRequest>(&body), want, "{body}");
    }
}

#[test]
fn an_escrow_problem_never_names_or_quotes_the_password() {
    let typed = format!(r#"{{"volume_type": "{PASSWORD}", "recovery_password": 1}}"#);
    let d = detail::<EscrowRequest>(&typed);
    assert!(!d.contains(PASSWORD), "{d}");
    assert_eq!(
        detail::<EscrowRequest>(r#"{"volume_type": "fixed_data"}"#),
        "the recovery password is required"
    );
    let d = detail::<EscrowRequest>(&format!(
        r#"{{"volume_type": "fixed_data", "recovery_password": "{}"}}"#,
        &PASSWORD[..54]
    ));
    assert!(
        d.starts_with("the recovery password must be 8 groups"),
        "{d}"
    );
    let d = detail::<EscrowRequest>(&format!(r#"{{"{PASSWORD}": 1}}"#));
    assert!(
        d.ends_with("allowed: volume_type, the recovery password, created_at"),
        "{d}"
    );
}

#[test]
fn a_list_item_and_a_nested_field_are_named_by_their_path() {
    assert_eq!(
        detail::<BatchRequest>(r#"{"key_ids": ["3B8FAA18", 77], "reason": "x"}"#),
        "key_ids[1] must be a full key ID (GUID) or at least 8 of its leading hex digits"
    );
    assert_eq!(
        detail::<BatchRequest>(r#"{"key_ids": [], "reason": "x"}"#),
        "key_ids must list 1 to 100 key IDs"
    );
    assert_eq!(
        detail::<BatchRequest>(r#"{"key_ids": ["3B8FAA18"]}"#),
        "reason is required for a batch retrieval: give the incident or ticket it is for"
    );
    assert_eq!(
        detail::<TenantSettingsPatch>(r#"{"helpdesk": {"name": "IT", "fax": "1"}}"#),
        "unknown field \"fax\"; allowed: name, email, phone, url"
    );
    assert_eq!(
        detail::<TenantSettingsPatch>(r#"{"helpdesk": ["IT"]}"#),
        "helpdesk must be an object {name, email, phone, url} or null"
    );
    assert_eq!(
        detail::<TenantSettingsPatch>(r#"{"helpdesk_rate_limit": "5"}"#),
        "helpdesk_rate_limit must be a whole number from 1 to 100000, or null for the deployment's default"
    );
}

#[test]
fn route_wordings_and_shapes_are_kept() {
    assert_eq!(
        detail::<IncidentRequest>(r#"{"duration_hours": 4}"#),
        "reason is required: say what the incident is (for example \"faulty agent update 2026-11-25\")"
    );
    assert_eq!(
        detail::<IncidentRequest>(r#"{"reason": "x"}"#),
        "duration_hours is required: a whole number of hours from 1 to 72"
    );
    assert_eq!(
        detail::<RetireRequest>("[]"),
        "the request body must be a JSON object"
    );
    assert!(detail::<RecoveryKeyRequest>(r#"["3B8FAA18"]"#).contains("JSON object such as"));
    assert_eq!(
        detail::<RecoveryKeyRequest>(r#"{"key_id": 12345678}"#),
        "key_id must be a full key ID (GUID) or at least 8 of its leading hex digits"
    );
    assert_eq!(
        detail::<RetireRequest>(r#"{"reason": "#),
        "invalid JSON body (line 1, column 11)"
    );
}

#[test]
fn a_key_given_twice_is_refused_at_any_depth_by_its_path() {
    assert_eq!(
        detail::<BatchRequest>(
            r#"{"key_ids": ["3B8FAA18"], "reason": "first", "reason": "second"}"#
        ),
        "reason is given more than once"
    );
    assert_eq!(
        detail::<RecoveryKeyRequest>(r#"{"key_id": "3B8FAA18", "key_id": "1F2E3D4C"}"#),
        "key_id is given more than once"
    );
    // The same key once escaped: serde_json reads both as `key_id`.
    assert_eq!(
        detail::<RecoveryKeyRequest>(r#"{"key_id": "3B8FAA18", "key_\u0069d": "1F2E3D4C"}"#),
        "key_id is given more than once"
    );
    assert_eq!(
        detail::<TenantSettingsPatch>(r#"{"helpdesk": {"name": "IT", "name": "IT"}}"#),
        "helpdesk.name is given more than once"
    );
    // In a list, under a field no type has: refused before the type reads.
    assert_eq!(
        detail::<BatchRequest>(r#"{"key_ids": [], "x": [1, {"a": {"b": 1, "b": 2}}]}"#),
        "x[1].a.b is given more than once"
    );
    assert_eq!(
        detail::<EscrowRequest>(&format!(
            r#"{{"volume_type": "fixed_data", "recovery_password": "{PASSWORD}", "recovery_password": "{PASSWORD}"}}"#
        )),
        "the recovery password is given more than once"
    );
    // A password typed as a key is not quoted.
    assert_eq!(
        detail::<EscrowRequest>(&format!(r#"{{"{PASSWORD}": 1, "{PASSWORD}": 2}}"#)),
        "a field is given more than once"
    );
    // The same key in two objects is no repetition; not an object stays so.
    assert_eq!(
        detail::<RetireRequest>(r#"[{"a": 1, "a": 2}]"#),
        "the request body must be a JSON object"
    );
    assert!(
        detail::<BatchRequest>(r#"{"key_ids": [], "x": [{"a": 1}, {"a": 1}]}"#)
            .starts_with("key_ids must list")
    );
}

#[test]
fn an_unknown_name_is_quoted_only_if_plain() {
    let d = detail::<EscrowRequest>(&format!(r#"{{"{PASSWORD}": 1}}"#));
    assert_eq!(
        d,
        "an unknown field; allowed: volume_type, the recovery password, created_at"
    );
    let long = "x".repeat(65);
    assert!(
        detail::<RetireRequest>(&format!(r#"{{"{long}": 1}}"#)).starts_with("an unknown field;")
    );
    let max = "y".repeat(64);
    assert_eq!(
        detail::<RetireRequest>(&format!(r#"{{"{max}": 1}}"#)),
        format!("unknown field \"{max}\"; allowed: reason")
    );
    let query = |raw: &str, allowed: &[&str]| match Query::parse(Some(raw), allowed) {
        Err(ApiError::BadRequest(d)) => d,
        Err(e) => panic!("{raw}: {e}"),
        Ok(_) => panic!("{raw} was accepted"),
    };
    assert_eq!(
        query("colour=1", &["limit"]),
        "unknown query parameter \"colour\"; allowed: limit"
    );
    assert_eq!(
        query(&format!("{PASSWORD}=1"), &["limit"]),
        "an unknown query parameter; allowed: limit"
    );
    assert_eq!(
        query(&format!("{long}=1"), &[]),
        "an unknown query parameter; this route takes none"
    );
    assert_eq!(
        query("a%22b=1", &[]),
        "an unknown query parameter; this route takes none"
    );
    assert_eq!(
        query(&format!("{max}=1"), &[]),
        format!("unknown query parameter \"{max}\"; this route takes none")
    );
}
