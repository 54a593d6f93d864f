//! Reading what a client sends: query strings, JSON bodies, and the checks
//! every route shares. Problems name a position or a field, never a value
//! (an escrow body holds a recovery password).

use super::error::HttpError;
use crate::domain::error::ApiError;
use http::{HeaderMap, header};
use serde_json::{Map, Value};

/// Longest `reason` a caller may give for a retrieval.
pub const MAX_REASON_CHARS: usize = 200;

/// Query parameters: known names only, each at most once.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::BadRequest(if allowed.is_empty() {
                    format!("unknown query parameter {k:?}; this route takes none")
                } else {
                    format!(
                        "unknown query parameter {k:?}; allowed: {}",
                        allowed.join(", ")
                    )
                }));
            }
            if out.iter().any(|(x, _)| x == &k) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {k} given more than once"
                )));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(out))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A 400 naming the field whose value `e` describes.
pub(crate) fn bad(field: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{field} {e}"))
}

/// `application/json` or any `+json` media type.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json") || m.to_ascii_lowercase().ends_with("+json")
        })
}

/// Whether a body holds only white space (an omitted optional body).
pub(crate) fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// Whether the first non-blank byte opens a JSON object: serde would also
/// read a struct from a JSON array, by position.
pub(crate) fn starts_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A JSON object body (`application/json` or `+json`).
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, HttpError> {
    if !is_json(headers) {
        return Err(HttpError::UnsupportedMediaType);
    }
    // serde_json's syntax errors name a position, never the text there.
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(HttpError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(HttpError::bad_request(format!(
            "invalid JSON body (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// How a problem names a field. The password field is named in words: a
/// problem document never carries the literal `recovery_password`, which
/// only a disclosure does.
pub(crate) fn field_name(f: &str) -> &str {
    if f == "recovery_password" {
        "the recovery password"
    } else {
        f
    }
}

/// Rejects fields other than `allowed`.
pub(crate) fn only(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    for k in body.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown field {:?}; allowed: {}",
                k.chars().take(64).collect::<String>(),
                allowed
                    .iter()
                    .map(|f| field_name(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn string<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{} must be a string",
            field_name(field)
        ))),
    }
}

pub(crate) fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    string(body, field)?
        .ok_or_else(|| ApiError::BadRequest(format!("{} is required", field_name(field))))
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// A required one-line text field of at most `max` characters.
pub(crate) fn text(body: &Map<String, Value>, field: &str, max: usize) -> Result<String, ApiError> {
    let v = required(body, field)?;
    if text_ok(v, max) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {max} characters without control characters"
        )))
    }
}

/// A `limit` query parameter: `default` when absent, else 1 to `max`.
pub(crate) fn limit(q: &Query, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be a whole number from 1 to {max}"))
            }),
    }
}

/// A `reason` as the trail stores it (`domain::text::reason`): at most
/// `MAX_REASON_CHARS`, nothing hidden, NFC.
pub(crate) fn check_reason(r: &str) -> Result<String, ApiError> {
    check_reason_max(r, MAX_REASON_CHARS)
}

pub(crate) fn check_reason_max(r: &str, max: usize) -> Result<String, ApiError> {
    crate::domain::text::reason(r, max).map_err(|_| {
        ApiError::BadRequest(format!(
            "reason must be at most {max} characters of plain text, without control, format (zero-width, bidi, soft hyphen, tag), line-separator or filler characters and without a combining mark at the start of a word; retype it and retry"
        ))
    })
}
