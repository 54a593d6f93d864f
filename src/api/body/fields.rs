//! How request fields read from JSON, for `#[serde(deserialize_with)]`:
//! each through the domain's own parse function, each failure a phrase
//! saying what the field must be ("must be a string"), never the value.
//! `parse` puts the field's name in front.

use super::MAX_REASON_CHARS;
use crate::domain::ids::{KeySelector, UserId};
use crate::domain::model::{ManagedBy, RecoveryPassword, VolumeType};
use serde::de::{Deserialize, Deserializer, Error};
use serde_json::Value;
use std::fmt::Display;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What a key selector must be.
pub(crate) const KEY_SELECTOR_RULE: &str =
    "must be a full key ID (GUID) or at least 8 of its leading hex digits";

/// What a field must be, as a deserialization error.
pub(crate) fn must<E: Error>(what: impl Display) -> E {
    E::custom(what)
}

/// What a `reason` must be (`domain::text::reason`).
pub(crate) fn reason_rule(max: usize) -> String {
    format!(
        "must be at most {max} characters of plain text, without control, format (zero-width, bidi, soft hyphen, tag), line-separator or filler characters and without a combining mark at the start of a word; retype it and retry"
    )
}

/// A `reason` as the trail stores it: at most `max`, nothing hidden, NFC.
pub(crate) fn reason<E: Error>(r: &str, max: usize) -> Result<String, E> {
    crate::domain::text::reason(r, max).map_err(|_| must(reason_rule(max)))
}

/// Any JSON value: for fields whose every wrong shape has one wording.
pub(crate) fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

/// A required string; `null` counts as absent.
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match value(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Err(must("is required")),
        _ => Err(must("must be a string")),
    }
}

/// An optional string; `null` counts as absent.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match value(d)? {
        Value::String(s) => Ok(Some(s)),
        Value::Null => Ok(None),
        _ => Err(must("must be a string")),
    }
}

/// A required string read by `parse`, else the field must be `rule`.
fn parsed<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&str) -> Option<T>,
    rule: &str,
) -> Result<T, D::Error> {
    parse(&string(d)?).ok_or_else(|| must(rule))
}

/// A whole number that fits `T`, if `v` is one.
pub(crate) fn whole<T: TryFrom<u64>>(v: &Value) -> Option<T> {
    v.as_u64().and_then(|n| T::try_from(n).ok())
}

/// A required one-line text of at most `max` characters.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D, max: usize) -> Result<String, D::Error> {
    let ok = |s: &str| {
        !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
    };
    parsed(
        d,
        |s| ok(s).then(|| s.to_owned()),
        &format!("must be 1 to {max} characters without control characters"),
    )
}

pub(crate) fn user_id<'de, D: Deserializer<'de>>(d: D) -> Result<UserId, D::Error> {
    UserId::parse(&string(d)?).map_err(must)
}

pub(crate) fn managed_by<'de, D: Deserializer<'de>>(d: D) -> Result<ManagedBy, D::Error> {
    parsed(d, ManagedBy::parse, "must be \"organization\" or \"user\"")
}

pub(crate) fn volume_type<'de, D: Deserializer<'de>>(d: D) -> Result<VolumeType, D::Error> {
    parsed(
        d,
        VolumeType::parse,
        "must be operating_system, fixed_data or removable_data",
    )
}

pub(crate) fn recovery_password<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<RecoveryPassword, D::Error> {
    RecoveryPassword::parse(&zeroize::Zeroizing::new(string(d)?)).map_err(must)
}

/// An optional RFC 3339 timestamp.
pub(crate) fn opt_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    let rule = "must be an RFC 3339 timestamp such as 2024-05-15T09:30:00Z";
    opt_string(d)?
        .map(|t| OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| must(rule)))
        .transpose()
}

/// An optional key ID or prefix of one.
pub(crate) fn opt_key_selector<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<KeySelector>, D::Error> {
    match value(d)? {
        Value::Null => Ok(None),
        Value::String(s) => KeySelector::parse(&s)
            .map(Some)
            .map_err(|_| must(KEY_SELECTOR_RULE)),
        _ => Err(must(KEY_SELECTOR_RULE)),
    }
}

/// An optional `reason` of a retrieval: blank counts as absent.
pub(crate) fn opt_reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let checked = opt_string(d)?
        .map(|r| reason(&r, MAX_REASON_CHARS))
        .transpose()?;
    Ok(checked.filter(|r| !r.trim().is_empty()))
}
