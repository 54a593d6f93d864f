//! The OpenAPI document (`openapi.json`) as a test oracle: an answer must be
//! one its operation documents — status, required headers, media type and
//! body schema (JSON Schema 2020-12, `$ref`s resolved into `components`).
//! Paths that are no route, and other methods, must get the documented
//! `not-found` and `method-not-allowed` problems.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub const DOCUMENT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"));

pub fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(DOCUMENT).expect("openapi.json is JSON"))
}

/// `(METHOD, path template)` of every operation in the document.
pub fn operations() -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc()["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops.sort();
    ops
}

/// The value a local `$ref` (`#/a/b`) points to.
pub fn resolve(reference: &str) -> Option<&'static Value> {
    doc().pointer(reference.strip_prefix('#')?)
}

/// `v`, or what it refers to when it is a `{"$ref": ...}`.
fn deref(v: &'static Value) -> &'static Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(r).unwrap_or_else(|| panic!("unresolvable $ref {r}")),
        None => v,
    }
}

/// The documented path template `path` matches (`{name}`: one non-empty segment).
pub fn template_of(path: &str) -> Option<&'static str> {
    doc()["paths"]
        .as_object()?
        .keys()
        .find(|t| {
            let (t, p): (Vec<&str>, Vec<&str>) =
                (t.split('/').collect(), path.split('/').collect());
            t.len() == p.len()
                && t.iter().zip(&p).all(|(t, p)| {
                    if t.starts_with('{') && t.ends_with('}') {
                        !p.is_empty()
                    } else {
                        t == p
                    }
                })
        })
        .map(String::as_str)
}

/// A validator of `schema`, whose `$ref`s resolve against the document's
/// components; compiled once per schema.
pub fn validator(schema: &Value) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache
        .entry(key)
        .or_insert_with(|| {
            let mut root = schema.clone();
            root["components"] = doc()["components"].clone();
            Arc::new(
                jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}")),
            )
        })
        .clone()
}

/// Every way `instance` violates `schema`, or `Ok`.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), String> {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Checks one answer against the document. `Ok(Some((METHOD, template,
/// status)))` names the documented response it matched; `Ok(None)` an answer
/// to a path outside the API (`/openapi.json`, the dev identity provider's
/// documents), which the document does not describe.
pub fn check(
    method: &str,
    path_and_query: &str,
    status: u16,
    headers: &http::HeaderMap,
    body: &str,
) -> Result<Option<(String, String, u16)>, String> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    if path == "/openapi.json" && method == "GET" || path.starts_with("/.well-known/") {
        return Ok(None);
    }
    let media_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let template = template_of(path);
    let operation = template
        .map(|t| &doc()["paths"][t][method.to_ascii_lowercase()])
        .filter(|op| op.is_object());
    let Some(operation) = operation else {
        // No route, or another method: the two generic problems.
        let schema = match (template, status) {
            (None, 404) => "NotFoundProblem",
            (Some(_), 405) => "MethodNotAllowedProblem",
            _ => {
                return Err(format!(
                    "{status} for {method} {path}, which the document does not describe"
                ));
            }
        };
        if media_type.as_deref() != Some("application/problem+json") {
            return Err(format!("content type {media_type:?} is not a problem"));
        }
        let body: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        validate(
            &serde_json::json!({"$ref": format!("#/components/schemas/{schema}")}),
            &body,
        )?;
        return Ok(None);
    };
    let template = template.unwrap_or_default();
    let response = &operation["responses"][status.to_string()];
    if !response.is_object() {
        return Err(format!(
            "status {status} is not documented for {method} {template}"
        ));
    }
    let response = deref(response);
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let header = deref(header);
        match headers.get(name.as_str()).map(|v| v.to_str()) {
            None if header["required"] == true => {
                return Err(format!("required header {name} is missing"));
            }
            None => {}
            Some(Err(_)) => return Err(format!("header {name} is not text")),
            Some(Ok(value)) => validate(&header["schema"], &Value::from(value))
                .map_err(|e| format!("header {name}: {e}"))?,
        }
    }
    match response["content"].as_object() {
        None => {
            if !body.is_empty() {
                return Err("a body where none is documented".into());
            }
        }
        Some(content) => {
            let media_type = media_type.ok_or("no content type")?;
            let Some(media) = content.get(&media_type) else {
                return Err(format!(
                    "content type {media_type} is not documented (only {:?})",
                    content.keys().collect::<Vec<_>>()
                ));
            };
            let body: Value =
                serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
            validate(&media["schema"], &body).map_err(|e| format!("body: {e}"))?;
        }
    }
    Ok(Some((method.to_owned(), template.to_owned(), status)))
}
