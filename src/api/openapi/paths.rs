//! Operations: what each route's module documents (`RouteDoc`, beside its
//! handler) joined with what the route table says (method, path, Lambda
//! function, permissions, body limit, whether it discloses keys).

use super::problems::{self, ProblemDoc, Shared};
use super::schemas::Schemas;
use crate::api::{MAX_BODY, Route, Routes};
use serde_json::{Map, Value, json};

/// A schema in the document: a `$ref` to a registered component (see
/// `schemas::of`), or an inline schema.
pub(crate) type SchemaFn = fn(&mut Schemas) -> Value;

/// A route's own documentation: everything about its operation that the
/// route table does not already say.
#[derive(Debug)]
pub(crate) struct RouteDoc {
    pub operation_id: &'static str,
    pub tags: &'static [&'static str],
    pub summary: &'static str,
    pub description: &'static str,
    /// Path and query parameters (`X-Request-Id` is added to every one).
    pub params: &'static [Param],
    pub body: Option<RequestBody>,
    /// Every answer but 401 and 413, which every route has (sign-in and the
    /// body limit come first, `api::dispatch`).
    pub answers: &'static [Answer],
}

#[derive(Debug)]
pub(crate) enum In {
    Path,
    Query,
}

#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub description: Option<&'static str>,
    pub schema: SchemaFn,
    /// Named examples (`examples` of the parameter object).
    pub examples: &'static [(&'static str, &'static str)],
}

impl Param {
    /// A path parameter with no more to say than its schema.
    pub const fn path(name: &'static str, schema: SchemaFn) -> Self {
        Self {
            name,
            location: In::Path,
            required: true,
            description: None,
            schema,
            examples: &[],
        }
    }

    /// An optional query parameter.
    pub const fn query(name: &'static str, description: &'static str, schema: SchemaFn) -> Self {
        Self {
            name,
            location: In::Query,
            required: false,
            description: Some(description),
            schema,
            examples: &[],
        }
    }
}

#[derive(Debug)]
pub(crate) struct RequestBody {
    pub required: bool,
    pub description: &'static str,
    pub schema: SchemaFn,
}

#[derive(Debug)]
pub(crate) enum Answer {
    /// A success: status, description, and the body's schema (`None`: no body).
    Success(u16, &'static str, Option<SchemaFn>),
    /// A problem of one of these kinds (all of one status).
    Problem(&'static str, &'static [&'static ProblemDoc]),
    /// A problem answer routes share (`components/responses`).
    Shared(&'static Shared),
}

const STANDARD_HEADERS: [&str; 3] = ["X-Request-Id", "Cache-Control", "X-Content-Type-Options"];

/// `headers` of a response: the standard ones, `Pragma` on the key routes
/// (`api::with_standard_headers`), then `extra`.
fn headers(key_route: bool, extra: &[&str]) -> Value {
    let mut h = Map::new();
    let pragma: &[&str] = if key_route { &["Pragma"] } else { &[] };
    for name in STANDARD_HEADERS.iter().chain(pragma).chain(extra) {
        h.insert(
            (*name).into(),
            json!({ "$ref": format!("#/components/headers/{name}") }),
        );
    }
    Value::Object(h)
}

/// A problem response of `problems`: the headers all of them carry.
fn problem_response(description: &str, problems: &[&ProblemDoc], key_route: bool) -> Value {
    let common: Vec<&str> = problems[0]
        .headers
        .iter()
        .copied()
        .filter(|h| problems.iter().all(|p| p.headers.contains(h)))
        .collect();
    let schema = match problems {
        [one] => one.reference(),
        many => json!({ "oneOf": many.iter().map(|p| p.reference()).collect::<Vec<_>>() }),
    };
    json!({
        "description": description,
        "headers": headers(key_route, &common),
        "content": { "application/problem+json": { "schema": schema } },
    })
}

/// `components/responses`: every shared problem answer.
pub(crate) fn shared_responses() -> Value {
    let all = [
        &problems::SHARED_INVALID_REQUEST,
        &problems::SHARED_UNAUTHENTICATED,
        &problems::SHARED_INSUFFICIENT_SCOPE,
        &problems::SHARED_PAYLOAD_TOO_LARGE,
        &problems::SHARED_UNSUPPORTED_MEDIA_TYPE,
        &problems::SHARED_UNAVAILABLE,
        &problems::SHARED_UNAVAILABLE_WRITE,
        &problems::SHARED_UNAVAILABLE_READ,
    ];
    let mut m = Map::new();
    for s in all {
        m.insert(
            s.name.into(),
            problem_response(&s.description(), &[s.problem], false),
        );
    }
    Value::Object(m)
}

/// One answer of a route. A key route's answers carry `Pragma`, which the
/// shared responses do not list: there they are written out in full.
fn response(a: &Answer, key_route: bool, schemas: &mut Schemas) -> (u16, Value) {
    match a {
        Answer::Success(status, description, body) => {
            let mut r = json!({ "description": description, "headers": headers(key_route, &[]) });
            if let Some(schema) = body {
                r["content"] = json!({ "application/json": { "schema": schema(schemas) } });
            }
            (*status, r)
        }
        Answer::Problem(description, ps) => {
            (ps[0].status, problem_response(description, ps, key_route))
        }
        Answer::Shared(s) if key_route => (
            s.problem.status,
            problem_response(&s.description(), &[s.problem], true),
        ),
        Answer::Shared(s) => (
            s.problem.status,
            json!({ "$ref": format!("#/components/responses/{}", s.name) }),
        ),
    }
}

/// The answers of `route`: its own, then 401 and 413, which every route
/// has (sign-in and the body limit come first, `api::dispatch`).
fn responses(route: &Route, doc: &RouteDoc, schemas: &mut Schemas) -> Value {
    let key_route = route.unit == Routes::Key;
    let mut m = Map::new();
    let unauthenticated = Answer::Shared(&problems::SHARED_UNAUTHENTICATED);
    for a in doc.answers.iter().chain([&unauthenticated]) {
        let (status, r) = response(a, key_route, schemas);
        m.insert(status.to_string(), r);
    }
    let too_large = if route.max_body == MAX_BODY {
        response(
            &Answer::Shared(&problems::SHARED_PAYLOAD_TOO_LARGE),
            key_route,
            schemas,
        )
        .1
    } else {
        let description = problems::too_large(route.max_body);
        problem_response(&description, &[&problems::PAYLOAD_TOO_LARGE], key_route)
    };
    m.insert(problems::PAYLOAD_TOO_LARGE.status.to_string(), too_large);
    Value::Object(m)
}

fn parameter(p: &Param, schemas: &mut Schemas) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": match p.location { In::Path => "path", In::Query => "query" },
        "required": p.required,
        "schema": (p.schema)(schemas),
    });
    if let Some(d) = p.description {
        v["description"] = d.into();
    }
    if !p.examples.is_empty() {
        let examples: Map<String, Value> = p
            .examples
            .iter()
            .map(|(name, value)| ((*name).to_owned(), json!({ "value": value })))
            .collect();
        v["examples"] = Value::Object(examples);
    }
    v
}

/// The operation object of `route`.
pub(crate) fn operation(route: &Route, schemas: &mut Schemas) -> Value {
    let doc = route.doc;
    let permissions = route.permission.names();
    let security: Vec<Value> = permissions
        .iter()
        .map(|p| json!({ "bearerAuth": [p] }))
        .collect();
    let mut params: Vec<Value> = doc.params.iter().map(|p| parameter(p, schemas)).collect();
    params.push(json!({ "$ref": "#/components/parameters/RequestId" }));
    let mut op = json!({
        "operationId": doc.operation_id,
        "tags": doc.tags,
        "summary": doc.summary,
        "description": doc.description,
        "x-permissions": permissions,
        "x-lambda-function": route.unit.function(),
        "security": security,
        "parameters": params,
        "responses": responses(route, doc, schemas),
    });
    if let Some(b) = &doc.body {
        op["requestBody"] = json!({
            "required": b.required,
            "description": b.description,
            "content": { "application/json": { "schema": (b.schema)(schemas) } },
        });
    }
    op
}
