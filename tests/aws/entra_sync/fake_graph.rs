//! A fake Microsoft Graph and Entra token endpoint on loopback, answering
//! in the shapes of Microsoft's published examples (bitlockerRecoveryKey
//! list and get, device with registeredOwners, the v2.0 token endpoint).
//! It pages the key list (`@odata.nextLink`), throttles the second page
//! once (429 with `Retry-After: 1`), and records every key read and every
//! request missing the headers the BitLocker API documents.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "fake-graph-access-token";
pub const CLIENT_ID: &str = "11111111-2222-4333-8444-555555555555";
pub const SECRET: &str = "fake-client-secret-value";
pub const ENTRA_TENANT: &str = "contoso.onmicrosoft.com";
const KEYS: &str = "/v1.0/informationProtection/bitlocker/recoveryKeys";

/// One key as Entra holds it.
#[derive(Clone)]
pub struct Key {
    pub id: &'static str,
    pub device_id: &'static str,
    /// As Graph sends it: `"1"`, `1` or `"fixedDataVolume"`.
    pub volume_type: Value,
    pub created: &'static str,
    pub password: String,
}

/// One device as Entra holds it.
#[derive(Clone)]
pub struct Device {
    pub device_id: &'static str,
    pub name: &'static str,
    pub owner: Option<&'static str>,
}

/// The certificate registered for the application: its DER and its RSA
/// public key (PKCS#1), to check client assertions with.
#[derive(Clone)]
pub struct Registered {
    pub der: Vec<u8>,
    pub public_key: Vec<u8>,
}

#[derive(Default)]
pub struct Graph {
    /// Set: the application authenticates with this certificate only.
    pub certificate: Option<Registered>,
    /// Client assertions accepted, and why others were refused.
    pub assertions_accepted: usize,
    pub assertion_failures: Vec<String>,
    pub jtis: HashSet<String>,
    pub keys: Vec<Key>,
    pub devices: Vec<Device>,
    /// Keys whose `$select=key` answer is wrapped in `value`.
    pub wrapped: HashSet<&'static str>,
    /// Every `$select=key` read, in order.
    pub key_reads: Vec<String>,
    /// Requests that lacked a documented header or the token.
    pub violations: Vec<String>,
    pub tokens_issued: usize,
    pub throttled: bool,
}

pub type Shared = Arc<Mutex<Graph>>;

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Records a request without the bearer token or the documented headers.
fn check(g: &mut Graph, what: &str, h: &HeaderMap) {
    let has = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.is_empty())
    };
    let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        g.violations.push(format!("{what}: no bearer token"));
    }
    for n in ["user-agent", "ocp-client-name", "ocp-client-version"] {
        if !has(n) {
            g.violations.push(format!("{what}: no {n}"));
        }
    }
}

fn b64(part: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "not base64url".to_owned())
}

/// Checks a client assertion as the Microsoft identity platform documents
/// it (certificate credentials), with aws-lc-rs rather than the client's
/// jsonwebtoken: PS256 over `header.payload` with the registered
/// certificate's key, `x5t#S256` its SHA-256 thumbprint, `aud` this token
/// endpoint, `iss` = `sub` = the client ID, a `jti` never seen before,
/// `nbf` not in the future, `exp` in the future and at most 10 minutes on.
fn check_assertion(g: &mut Graph, jwt: &str, audience: &str) -> Result<(), String> {
    let reg = g.certificate.clone().ok_or("no certificate registered")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, sig] = parts[..] else {
        return Err("not a JWS".into());
    };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&b64(p)?).map_err(|e| e.to_string())?;
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        &reg.public_key,
    );
    key.verify(format!("{h}.{p}").as_bytes(), &b64(sig)?)
        .map_err(|_| "bad signature".to_owned())?;
    let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &reg.der);
    let want_x5t = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb.as_ref())
    };
    if header["alg"] != "PS256" || header["typ"] != "JWT" || header["x5t#S256"] != want_x5t.as_str()
    {
        return Err(format!("header {header}"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let n = |c: &str| claims[c].as_i64().unwrap_or(i64::MIN);
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    let ok = claims["aud"] == audience
        && claims["iss"] == CLIENT_ID
        && claims["sub"] == CLIENT_ID
        && !jti.is_empty()
        && g.jtis.insert(jti)
        && n("nbf") <= now + 5
        && n("iat") <= now + 5
        && n("exp") > now
        && n("exp") - n("nbf") <= 600;
    if ok {
        Ok(())
    } else {
        Err(format!("claims {claims}"))
    }
}

/// The client authenticates as registered: with the certificate when one
/// is (and then never with a secret), else with the secret.
fn client_ok(g: &mut Graph, form: &BTreeMap<String, String>, audience: &str) -> bool {
    let get = |k: &str| form.get(k).map(String::as_str);
    if g.certificate.is_none() {
        return get("client_secret") == Some(SECRET) && get("client_assertion").is_none();
    }
    let checked = match (
        get("client_secret"),
        get("client_assertion_type"),
        get("client_assertion"),
    ) {
        (None, Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), Some(jwt)) => {
            check_assertion(g, jwt, audience)
        }
        _ => Err("no client assertion, or a secret as well".into()),
    };
    match checked {
        Ok(()) => {
            g.assertions_accepted += 1;
            true
        }
        Err(e) => {
            g.assertion_failures.push(e);
            false
        }
    }
}

async fn token(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    h: HeaderMap,
    body: String,
) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let audience = format!("http://{host}/{tenant}/oauth2/v2.0/token");
    let mut g = s.lock().unwrap();
    let ok = tenant == ENTRA_TENANT
        && form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("scope").is_some_and(|s| s.ends_with("/.default"))
        && client_ok(&mut g, &form, &audience);
    if !ok {
        // As Entra answers an unknown certificate (AADSTS700027).
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "AADSTS700027: Client assertion failed signature validation.", "error_codes": [700027]}),
        );
    }
    g.tokens_issued += 1;
    drop(g);
    answer(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN}),
    )
}

fn list_item(k: &Key) -> Value {
    json!({"@odata.type": "#microsoft.graph.bitlockerRecoveryKey", "id": k.id,
           "createdDateTime": k.created, "volumeType": k.volume_type, "deviceId": k.device_id})
}

/// Two keys on the first page; the rest on the second, throttled once.
async fn list_keys(State(s): State<Shared>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    let base = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut g = s.lock().unwrap();
    check(&mut g, "list keys", &h);
    let items: Vec<Value> = g.keys.iter().map(list_item).collect();
    let ctx =
        "https://graph.microsoft.com/v1.0/$metadata#informationProtection/bitlocker/recoveryKeys";
    if q.as_deref().is_some_and(|q| q.contains("skiptoken=page2")) {
        if !g.throttled {
            g.throttled = true;
            let body =
                json!({"error": {"code": "TooManyRequests", "message": "Too many requests"}});
            let mut r = answer(StatusCode::TOO_MANY_REQUESTS, body);
            r.headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().unwrap());
            return r;
        }
        return answer(
            StatusCode::OK,
            json!({"@odata.context": ctx, "value": items[2.min(items.len())..]}),
        );
    }
    let next = format!("http://{base}{KEYS}?$skiptoken=page2");
    let first = &items[..2.min(items.len())];
    answer(
        StatusCode::OK,
        json!({"@odata.context": ctx, "@odata.nextLink": next, "value": first}),
    )
}

async fn get_key(
    State(s): State<Shared>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
) -> Response {
    let mut g = s.lock().unwrap();
    check(&mut g, "get key", &h);
    let Some(k) = g.keys.iter().find(|k| k.id == id).cloned() else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "NotFound"}}),
        );
    };
    if !q.as_deref().is_some_and(|q| q.contains("$select=key")) {
        return answer(StatusCode::OK, list_item(&k));
    }
    g.key_reads.push(id);
    let ctx = "https://graph.microsoft.com/v1.0/$metadata#informationProtection/bitlocker/recoveryKeys(key)/$entity";
    if g.wrapped.contains(k.id) {
        return answer(
            StatusCode::OK,
            json!({"value": {"id": k.id, "key": k.password}}),
        );
    }
    let mut body = list_item(&k);
    body["@odata.context"] = json!(ctx);
    body["key"] = json!(k.password);
    answer(StatusCode::OK, body)
}

async fn devices(State(s): State<Shared>, RawQuery(q): RawQuery, h: HeaderMap) -> Response {
    let mut g = s.lock().unwrap();
    check(&mut g, "list devices", &h);
    if !q.as_deref().is_some_and(|q| q.contains("registeredOwners")) {
        g.violations
            .push("devices listed without registeredOwners".into());
    }
    let value: Vec<Value> = g
        .devices
        .iter()
        .map(|d| {
            let owners: Vec<Value> = d
                .owner
                .iter()
                .map(|o| json!({"@odata.type": "#microsoft.graph.user", "id": o}))
                .collect();
            json!({"id": format!("0b{}", &d.device_id[2..]), "deviceId": d.device_id, "displayName": d.name,
                   "operatingSystem": "Windows", "operatingSystemVersion": "10.0.22631.4317",
                   "registeredOwners": owners})
        })
        .collect();
    answer(
        StatusCode::OK,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#devices", "value": value}),
    )
}

/// Serves `graph` on a loopback port; answers its base URL.
pub async fn spawn(graph: Shared) -> String {
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(KEYS, get(list_keys))
        .route(&format!("{KEYS}/{{id}}"), get(get_key))
        .route("/v1.0/devices", get(devices))
        .with_state(graph);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}
