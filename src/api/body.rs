//! Reading what a client sends: query strings, JSON bodies, and the checks
//! every route shares. Problems name a position or a field, never a value
//! (an escrow body holds a recovery password).

use super::error::HttpError;
use crate::domain::error::ApiError;
use http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub(crate) mod fields;
mod tree;
mod wire;

/// Longest `reason` a caller may give for a retrieval.
pub const MAX_REASON_CHARS: usize = 200;

/// Query parameters: known names only, each at most once.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                let unknown = match name(&k) {
                    Some(k) => format!("unknown query parameter {k:?}"),
                    None => "an unknown query parameter".into(),
                };
                return Err(ApiError::BadRequest(if allowed.is_empty() {
                    format!("{unknown}; this route takes none")
                } else {
                    format!("{unknown}; allowed: {}", allowed.join(", "))
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
fn is_json(headers: &HeaderMap) -> bool {
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
fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// Whether the first non-blank byte opens a JSON object: serde would also
/// read a struct from a JSON array, by position.
fn starts_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A request body type: how `parse` reads it and words its problems.
pub(crate) trait Body: DeserializeOwned {
    /// An example, quoted when the body is not a JSON object (checked
    /// before the syntax); `None`: a plain "must be a JSON object".
    const EXAMPLE: Option<&'static str> = None;
    /// Added to the problem of a body that is not JSON at all.
    const SYNTAX_HINT: &'static str = "";
    /// What a problem says, after the field's name, when `field` is
    /// absent; `None`: "is required".
    fn missing(_field: &str) -> Option<String> {
        None
    }
}

/// A JSON object body (`application/json` or `+json`) read as `T`.
pub(crate) fn parse<T: Body>(headers: &HeaderMap, body: &[u8]) -> Result<T, HttpError> {
    parse_with(headers, body, |_| None)
}

/// `parse`, for a body that may be omitted: blank means `T::default()`.
pub(crate) fn parse_optional<T: Body + Default>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, HttpError> {
    if is_blank(body) {
        return Ok(T::default());
    }
    parse(headers, body)
}

/// `parse`, where `reword` may give a field's problem in the route's own
/// words (from the field's path, such as `helpdesk.name`).
pub(crate) fn parse_with<T: Body>(
    headers: &HeaderMap,
    body: &[u8],
    reword: impl Fn(&str) -> Option<String>,
) -> Result<T, HttpError> {
    if !is_json(headers) {
        return Err(HttpError::UnsupportedMediaType);
    }
    let value = json_object::<T>(body)?;
    serde_path_to_error::deserialize(wire::Node(value)).map_err(|e| {
        let (field, detail) = problem::<T>(e);
        HttpError::bad_request(reword(&field).unwrap_or(detail))
    })
}

fn not_an_object<T: Body>() -> HttpError {
    HttpError::bad_request(match T::EXAMPLE {
        Some(example) => format!("the body must be a JSON object such as {example}"),
        None => "the request body must be a JSON object".into(),
    })
}

fn json_object<T: Body>(body: &[u8]) -> Result<Value, HttpError> {
    if T::EXAMPLE.is_some() && !starts_object(body) {
        return Err(not_an_object::<T>());
    }
    match tree::read(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(not_an_object::<T>()),
        Err(tree::Failure::Twice(_)) if !starts_object(body) => Err(not_an_object::<T>()),
        Err(tree::Failure::Twice(at)) => Err(HttpError::bad_request(match at {
            Some(at) => format!("{} is given more than once", field_name(&at)),
            None => "a field is given more than once".into(),
        })),
        // serde_json's syntax errors name a position, never the text there.
        Err(tree::Failure::Syntax(e)) => Err(HttpError::bad_request(format!(
            "invalid JSON body (line {}, column {}){}",
            e.line(),
            e.column(),
            T::SYNTAX_HINT
        ))),
    }
}

/// `key`, if it is a plain name that a problem may quote: 1 to 64 ASCII
/// letters, digits or underscores. Anything else may be a value typed as
/// a key (a recovery password), so problems do not repeat it.
fn name(key: &str) -> Option<&str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
    ((1..=64).contains(&key.len()) && key.chars().all(plain)).then_some(key)
}

/// The failing field's path (`reason`, `key_ids[3]`, `helpdesk.name`) and
/// the problem's detail: the field, and what it must be.
fn problem<T: Body>(e: serde_path_to_error::Error<wire::Wrong>) -> (String, String) {
    let at = dotted(e.path());
    match e.into_inner() {
        wire::Wrong::Unknown { key, allowed } => {
            let allowed: Vec<&str> = allowed.iter().map(|f| field_name(f)).collect();
            let unknown = match key {
                Some(key) => format!("unknown field {key:?}"),
                None => "an unknown field".into(),
            };
            let detail = format!("{unknown}; allowed: {}", allowed.join(", "));
            (at, detail)
        }
        wire::Wrong::Missing(field) => {
            let field = if at.is_empty() {
                field.to_owned()
            } else {
                format!("{at}.{field}")
            };
            let what = T::missing(&field).unwrap_or_else(|| "is required".into());
            let detail = format!("{} {what}", field_name(&field));
            (field, detail)
        }
        wire::Wrong::Must(what) if at.is_empty() => (at, format!("the request body {what}")),
        wire::Wrong::Must(what) => {
            let detail = format!("{} {what}", field_name(&at));
            (at, detail)
        }
    }
}

/// `a.b[2].c`; empty at the top.
fn dotted(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// How a problem names a field. The password field is named in words: a
/// problem document never carries the literal `recovery_password`, which
/// only a disclosure does.
fn field_name(f: &str) -> &str {
    if f == "recovery_password" {
        "the recovery password"
    } else {
        f
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

#[cfg(test)]
mod tests;
