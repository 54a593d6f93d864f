//! Property tests. The parsers (ids, key selectors, seed files, query
//! strings) accept exactly what they document and never panic; the HTTP
//! mapping, fed arbitrary requests, never panics, never answers 5xx and never
//! shows a recovery password to a caller who may not see it.
//!
//! Case counts are modest so the suite stays fast; `PROPTEST_CASES` raises
//! them for a deeper run.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use recovery_portal::api::{self, ApiRequest, Routes};
use recovery_portal::app;
use recovery_portal::domain::ids::{DeviceId, KeyId, KeyIdPrefix, KeySelector, TenantId, UserId};
use recovery_portal::domain::ports::Portal;
use recovery_portal::tools::devidp::{DevAlg, DevIdentityProvider};
use recovery_portal::tools::seed;
use serde_json::{Value, json};
use std::sync::Arc;

fn cases(n: u32) -> Config {
    // An explicit PROPTEST_CASES wins; otherwise `n`.
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    }
}

fn id_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Strings mostly from the id alphabet, with any character mixed in.
fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._-]{0,130}",
        1 => any::<String>(),
        1 => "[A-Za-z0-9._-]{0,10}[ /#%é\u{0}\u{202e}{}][A-Za-z0-9._-]{0,10}",
    ]
}

// ---------------------------------------------------------------- ids

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn opaque_ids_accept_exactly_1_to_128_alphabet_bytes(s in id_like()) {
        let valid = (1..=128).contains(&s.len()) && s.bytes().all(id_alphabet);
        for (ok, shown) in [
            (DeviceId::parse(&s).is_ok(), DeviceId::parse(&s).map(|d| d.to_string())),
            (TenantId::parse(&s).is_ok(), TenantId::parse(&s).map(|d| d.to_string())),
            (UserId::parse(&s).is_ok(), UserId::parse(&s).map(|d| d.as_str().to_owned())),
        ] {
            prop_assert_eq!(ok, valid);
            if let Ok(shown) = shown {
                prop_assert_eq!(&shown, &s);
            }
        }
        // Deserializing applies the same rule.
        let de = serde_json::from_value::<DeviceId>(json!(s));
        prop_assert_eq!(de.is_ok(), valid);
        if let Ok(d) = de {
            prop_assert_eq!(serde_json::to_value(&d).unwrap(), json!(s));
        }
    }

    #[test]
    fn key_ids_round_trip_in_every_accepted_form(n in any::<u128>(), lower in any::<bool>()) {
        let hex = format!("{n:032x}");
        let dashed = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
        let id = KeyId::parse(&dashed).unwrap();
        let canonical = id.to_string();
        prop_assert_eq!(&canonical, &dashed.to_ascii_uppercase());
        prop_assert_eq!(id.hex(), hex.clone());
        let variants = [
            canonical.clone(),
            if lower { canonical.to_ascii_lowercase() } else { canonical.clone() },
            format!("{{{canonical}}}"),
            hex.to_ascii_uppercase(),
        ];
        for v in variants {
            prop_assert_eq!(KeyId::parse(&v), Ok(id));
        }
        let back: KeyId = serde_json::from_value(serde_json::to_value(id).unwrap()).unwrap();
        prop_assert_eq!(back, id);
        // Its selector is exact and matches it alone among neighbours.
        let sel = KeySelector::parse(&canonical).unwrap();
        prop_assert_eq!(&sel, &KeySelector::Exact(id));
        prop_assert!(sel.matches(&id));
        let other = KeyId::parse(&format!("{:032x}", n ^ 1)).unwrap();
        prop_assert!(!sel.matches(&other));
    }

    #[test]
    fn key_id_parsing_never_panics_and_is_canonical(s in prop_oneof![
        any::<String>(),
        "[{]?[0-9a-fA-F-]{30,38}[}]?",
    ]) {
        if let Ok(id) = KeyId::parse(&s) {
            let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            prop_assert_eq!(hex.to_ascii_lowercase(), id.hex());
            prop_assert_eq!(KeyId::parse(&id.to_string()), Ok(id));
        }
    }

    #[test]
    fn prefixes_of_a_key_id_match_it_however_typed(
        n in any::<u128>(),
        len in 8usize..=32,
        upper in proptest::collection::vec(any::<bool>(), 32),
        dashes in proptest::collection::vec(any::<bool>(), 32),
    ) {
        let id = KeyId::parse(&format!("{n:032x}")).unwrap();
        let mut typed = String::new();
        for (i, c) in id.hex()[..len].chars().enumerate() {
            typed.push(if upper[i] { c.to_ascii_uppercase() } else { c });
            if dashes[i] {
                typed.push('-');
            }
        }
        let p = KeyIdPrefix::parse(&typed).unwrap();
        prop_assert_eq!(p.as_str(), &id.hex()[..len]);
        prop_assert!(p.matches(&id));
        let sel = KeySelector::parse(&typed).unwrap();
        prop_assert!(sel.matches(&id));
        // A key whose first digits differ is not matched.
        let flipped = KeyId::parse(&format!("{:032x}", n ^ (1u128 << 127))).unwrap();
        prop_assert!(!p.matches(&flipped));
    }

    #[test]
    fn prefixes_need_8_to_32_hex_digits(s in prop_oneof![
        any::<String>(),
        "[0-9a-fA-F-]{0,40}",
        "[0-9a-fA-F]{0,12}[g-zG-Z ]{1,2}[0-9a-fA-F]{0,12}",
    ]) {
        let digits: String = s.chars().filter(|&c| c != '-').collect();
        let valid = (8..=32).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_hexdigit());
        prop_assert_eq!(KeyIdPrefix::parse(&s).is_ok(), valid);
        // A selector is a full id or a valid prefix, nothing else.
        let sel = KeySelector::parse(&s);
        prop_assert_eq!(sel.is_ok(), valid || KeyId::parse(&s).is_ok());
    }
}

// ---------------------------------------------------------------- seed files

/// A recovery password that passes validation.
fn password() -> impl Strategy<Value = String> {
    proptest::collection::vec(0u32..65_536, 8).prop_map(|g| {
        g.iter()
            .map(|n| format!("{:06}", n * 11))
            .collect::<Vec<_>>()
            .join("-")
    })
}

#[derive(Debug, Clone)]
struct GenKey {
    key_id: u128,
    volume: &'static str,
    password: String,
    day: u8,
}

#[derive(Debug, Clone)]
struct GenDevice {
    tenant: usize,
    device_id: String,
    owner: String,
    keys: Vec<GenKey>,
}

fn gen_key() -> impl Strategy<Value = GenKey> {
    (
        any::<u128>(),
        prop::sample::select(vec!["operating_system", "fixed_data", "removable_data"]),
        password(),
        1u8..=28,
    )
        .prop_map(|(key_id, volume, password, day)| GenKey {
            key_id,
            volume,
            password,
            day,
        })
}

fn gen_seed() -> impl Strategy<Value = (Vec<String>, Vec<GenDevice>)> {
    let tenants = proptest::collection::hash_set("[A-Za-z0-9._-]{1,20}", 1..3)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    tenants.prop_flat_map(|tenants| {
        let n = tenants.len();
        let device = (
            0..n,
            "[A-Za-z0-9._-]{1,30}",
            "[A-Za-z0-9._-]{1,30}",
            proptest::collection::vec(gen_key(), 0..4),
        )
            .prop_map(|(tenant, device_id, owner, keys)| GenDevice {
                tenant,
                device_id,
                owner,
                keys,
            });
        (
            Just(tenants),
            proptest::collection::vec(device, 0..6).prop_map(|mut ds| {
                // Device ids are unique per tenant, key ids per tenant: keep
                // the first of each.
                let mut seen = std::collections::HashSet::new();
                let mut seen_keys = std::collections::HashSet::new();
                ds.retain(|d| seen.insert((d.tenant, d.device_id.clone())));
                for d in &mut ds {
                    let t = d.tenant;
                    d.keys.retain(|k| seen_keys.insert((t, k.key_id)));
                }
                ds
            }),
        )
    })
}

fn seed_json(tenants: &[String], devices: &[GenDevice]) -> Value {
    json!({
        "tenants": tenants.iter().enumerate().map(|(i, t)| json!({
            "tenant_id": t, "self_service": i % 2 == 0,
            "helpdesk": {"name": "IT", "email": "it@example.test"}
        })).collect::<Vec<_>>(),
        "devices": devices.iter().map(|d| json!({
            "tenant_id": tenants[d.tenant],
            "device_id": d.device_id,
            "owner": d.owner,
            "display_name": format!("{} of {}", d.device_id, d.owner),
            "os": "Windows 11",
            "managed_by": "organization",
            "recovery_keys": d.keys.iter().map(|k| json!({
                "key_id": format!("{:032x}", k.key_id),
                "volume_type": k.volume,
                "recovery_password": k.password,
                "created_at": format!("2024-02-{:02}T10:00:00Z", k.day),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Breaks one field of a valid seed; returns the path the error must name.
fn break_one(v: &mut Value, which: usize, how: usize) -> Option<String> {
    let devices = v["devices"].as_array_mut()?;
    if devices.is_empty() {
        return None;
    }
    let i = which % devices.len();
    let d = &mut devices[i];
    let bad_text = ["", "a b", "x/y", "\u{202e}", "é"][how % 5];
    let field = ["device_id", "owner", "tenant_id", "managed_by", "os"][which % 5];
    d[field] = match field {
        "os" => json!("line\nbreak"),
        "managed_by" => json!("nobody"),
        "tenant_id" if bad_text.is_empty() => json!("undeclared-tenant"),
        _ => json!(bad_text),
    };
    Some(format!("devices[{i}]"))
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn a_valid_seed_loads_every_record_as_written((tenants, devices) in gen_seed()) {
        let text = seed_json(&tenants, &devices).to_string();
        let s = seed::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(s.tenants.len(), tenants.len());
        prop_assert_eq!(s.devices.len(), devices.len());
        prop_assert_eq!(s.key_count(), devices.iter().map(|d| d.keys.len()).sum::<usize>());
        for (got, want) in s.devices.iter().zip(&devices) {
            prop_assert_eq!(got.device.device_id.as_str(), want.device_id.as_str());
            prop_assert_eq!(got.device.owner.as_str(), want.owner.as_str());
            prop_assert_eq!(got.device.tenant.as_str(), tenants[want.tenant].as_str());
            for ((meta, pw), k) in got.passwords.iter().zip(&want.keys) {
                prop_assert_eq!(meta.key_id.hex(), format!("{:032x}", k.key_id));
                prop_assert_eq!(pw.expose(), k.password.as_str());
            }
        }
    }

    #[test]
    fn one_bad_field_rejects_the_file_naming_the_record_never_a_password(
        (tenants, devices) in gen_seed(),
        which in any::<usize>(),
        how in any::<usize>(),
    ) {
        let mut v = seed_json(&tenants, &devices);
        let Some(path) = break_one(&mut v, which, how) else {
            return Ok(());
        };
        let e = match seed::parse(&v.to_string()) {
            Ok(_) => return Err(TestCaseError::fail("a broken seed loaded")),
            Err(e) => e.to_string(),
        };
        prop_assert!(e.contains(&path), "{} not in {}", path, e);
        prop_assert!(e.contains("nothing was loaded"), "{}", e);
        for d in &devices {
            for k in &d.keys {
                prop_assert!(!e.contains(&k.password), "a password in: {}", e);
            }
        }
    }

    #[test]
    fn an_invalid_password_is_never_echoed(
        (tenants, mut devices) in gen_seed().prop_filter("a key", |(_, d)| d.iter().any(|d| !d.keys.is_empty())),
        bad in prop_oneof![
            "[0-9]{6}(-[0-9]{6}){7}",
            "[0-9-]{40,60}",
            "[0-9]{48}",
        ],
    ) {
        let d = devices.iter_mut().find(|d| !d.keys.is_empty()).unwrap();
        d.keys[0].password = bad.clone();
        let r = seed::parse(&seed_json(&tenants, &devices).to_string());
        if recovery_portal::domain::model::RecoveryPassword::parse(&bad).is_ok() {
            prop_assert!(r.is_ok());
        } else {
            let e = r.err().map(|e| e.to_string()).unwrap_or_default();
            prop_assert!(e.contains("recovery_password"), "{}", e);
            prop_assert!(!e.contains(&bad), "the password was echoed: {}", e);
        }
    }

    #[test]
    fn seed_parsing_never_panics_on_damaged_files(
        (tenants, devices) in gen_seed(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = seed_json(&tenants, &devices).to_string().into_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = seed::parse(&text);
    }

    #[test]
    fn seed_parsing_never_panics_on_any_text(s in any::<String>()) {
        let _ = seed::parse(&s);
    }
}

// ---------------------------------------------------------------- HTTP mapping

/// Who may see which password of the demo seed.
struct DemoKey {
    password: String,
    tenant: String,
    device: String,
    owner: String,
}

fn demo_keys() -> Vec<DemoKey> {
    let v: Value = serde_json::from_str(seed::DEMO_SEED).unwrap();
    let mut out = Vec::new();
    for d in v["devices"].as_array().unwrap() {
        for k in d["recovery_keys"].as_array().unwrap() {
            out.push(DemoKey {
                password: k["recovery_password"].as_str().unwrap().to_owned(),
                tenant: d["tenant_id"].as_str().unwrap().to_owned(),
                device: d["device_id"].as_str().unwrap().to_owned(),
                owner: d["owner"].as_str().unwrap().to_owned(),
            });
        }
    }
    out
}

/// A caller of the generated requests: its token, and what it may read.
#[derive(Debug, Clone)]
struct Who {
    tenant: &'static str,
    user: &'static str,
    scopes: &'static str,
}

const CALLERS: [Who; 6] = [
    Who {
        tenant: "contoso",
        user: "alice",
        scopes: "RecoveryKey.Read",
    },
    Who {
        tenant: "contoso",
        user: "bob",
        scopes: "Devices.Read",
    },
    Who {
        tenant: "contoso",
        user: "agent",
        scopes: "RecoveryKey.Read.All AuditLog.Read.All",
    },
    Who {
        tenant: "contoso",
        user: "auditor",
        scopes: "AuditLog.Read.All",
    },
    // Self-service is off in fabrikam: its owners never see keys themselves.
    Who {
        tenant: "fabrikam",
        user: "carol",
        scopes: "RecoveryKey.Read",
    },
    Who {
        tenant: "fabrikam",
        user: "desk",
        scopes: "RecoveryKey.Read.All",
    },
];

impl Who {
    fn may_see(&self, k: &DemoKey) -> bool {
        if self.tenant != k.tenant {
            return false;
        }
        let all = self.scopes.split(' ').any(|s| s == "RecoveryKey.Read.All");
        let own = self.scopes.split(' ').any(|s| s == "RecoveryKey.Read") && self.user == k.owner;
        all || (own && self.tenant == "contoso")
    }
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Caller(usize),
    Raw(Vec<u8>),
    Bearer(String),
}

#[derive(Debug, Clone)]
struct Gen {
    method: String,
    path: String,
    query: Option<String>,
    auth: Auth,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    source_ip: Option<String>,
    request_id: String,
}

fn device_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "DESKTOP-7Q2M4K1",
            "DESKTOP-3H8N2P5",
            "ALICE-HOME-PC",
            "LAPTOP-9X4B7C2",
            "DESKTOP-5K1L9M3",
            "FAB-LT-0042",
            "desktop-7q2m4k1",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
        "[A-Za-z0-9._%-]{0,20}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => device_segment().prop_map(|d| format!("/v1/devices/{d}/recovery-key")),
        1 => Just("/v1/devices".to_owned()),
        1 => Just("/v1/recovery-keys".to_owned()),
        1 => Just("/v1/audit-events".to_owned()),
        1 => any::<String>(),
        1 => "/v1/[a-z/-]{0,30}",
        1 => device_segment().prop_map(|d| format!("/v1/devices/{d}/recovery-key/{d}")),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => any::<String>().prop_map(Some),
        2 => proptest::collection::vec(
            (
                prop::sample::select(vec!["owner", "key_id_prefix", "device_id", "actor", "limit", "x", ""]),
                prop_oneof![
                    Just("alice".to_owned()), Just("bob".to_owned()), Just("3b8faa18".to_owned()),
                    Just("DESKTOP-7Q2M4K1".to_owned()), Just("10".to_owned()), "[ -~]{0,12}",
                ],
            ),
            0..4,
        )
        .prop_map(|kv| Some(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kv)
                .finish()
        )),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let key_id = prop_oneof![
        Just(json!(null)),
        Just(json!("3B8FAA18")),
        Just(json!("bdd640fb-0667-4ad1-9c80-317fa3b1799d")),
        Just(json!("a9488d99")),
        Just(json!("fd5166e6")),
        any::<String>().prop_map(|s| json!(s)),
        any::<i64>().prop_map(|n| json!(n)),
    ];
    let reason = prop_oneof![Just(json!(null)), any::<String>().prop_map(|s| json!(s))];
    prop_oneof![
        3 => Just(Vec::new()),
        3 => (key_id, reason).prop_map(|(k, r)| {
            let mut o = serde_json::Map::new();
            if !k.is_null() { o.insert("key_id".into(), k); }
            if !r.is_null() { o.insert("reason".into(), r); }
            serde_json::to_vec(&o).unwrap()
        }),
        2 => proptest::collection::vec(any::<u8>(), 0..600),
        1 => (4090usize..4200).prop_map(|n| vec![b' '; n]),
    ]
}

/// A request either arbitrary in every part, or close to a real one (a key
/// retrieval by a known caller for a known device, with a JSON body or none),
/// so that grants happen and the leak check has something to check.
fn request() -> impl Strategy<Value = Gen> {
    prop_oneof![1 => arbitrary_request(), 1 => plausible_request()]
}

fn plausible_request() -> impl Strategy<Value = Gen> {
    let device = prop::sample::select(vec![
        "DESKTOP-7Q2M4K1",
        "DESKTOP-3H8N2P5",
        "ALICE-HOME-PC",
        "LAPTOP-9X4B7C2",
        "DESKTOP-5K1L9M3",
        "FAB-LT-0042",
    ]);
    let json_body = body().prop_filter("JSON or nothing", |b| {
        b.is_empty() || serde_json::from_slice::<Value>(b).is_ok()
    });
    (
        device,
        0..CALLERS.len(),
        json_body,
        prop_oneof![4 => Just(None), 1 => query()],
        prop_oneof![Just(None), "[a-z0-9.-]{8,20}".prop_map(Some)],
    )
        .prop_map(|(device, caller, body, query, request_id)| {
            let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
            if let Some(id) = request_id {
                headers.push(("x-request-id".to_owned(), id.into_bytes()));
            }
            Gen {
                method: "POST".into(),
                path: format!("/v1/devices/{device}/recovery-key"),
                query,
                auth: Auth::Caller(caller),
                headers,
                body,
                source_ip: Some("192.0.2.7".into()),
                request_id: "gateway-id".into(),
            }
        })
}

fn arbitrary_request() -> impl Strategy<Value = Gen> {
    let method = prop_oneof![
        4 => Just("POST".to_owned()),
        4 => Just("GET".to_owned()),
        1 => prop::sample::select(vec!["PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "post"]).prop_map(str::to_owned),
        1 => "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}",
    ];
    let auth = prop_oneof![
        1 => Just(Auth::None),
        6 => (0..CALLERS.len()).prop_map(Auth::Caller),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Auth::Raw),
        1 => "[ -~]{0,80}".prop_map(Auth::Bearer),
    ];
    let header = (
        prop_oneof![
            Just("content-type".to_owned()),
            Just("x-request-id".to_owned()),
            Just("user-agent".to_owned()),
            Just("authorization".to_owned()),
            "[a-z][a-z0-9-]{0,15}",
        ],
        prop_oneof![
            Just(b"application/json".to_vec()),
            Just(b"application/problem+json; charset=utf-8".to_vec()),
            Just(b"text/plain".to_vec()),
            Just(b"retry-0001-abcdef".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ],
    );
    (
        method,
        path(),
        query(),
        auth,
        proptest::collection::vec(header, 0..4),
        body(),
        prop_oneof![Just(None), any::<String>().prop_map(Some)],
        any::<String>(),
    )
        .prop_map(
            |(method, path, query, auth, headers, body, source_ip, request_id)| Gen {
                method,
                path,
                query,
                auth,
                headers,
                body,
                source_ip,
                request_id,
            },
        )
}

struct Demo {
    rt: tokio::runtime::Runtime,
    portal: Portal,
    tokens: Vec<String>,
    keys: Vec<DemoKey>,
}

fn demo() -> Demo {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = DevIdentityProvider::generate(
        DevAlg::Es256,
        "https://idp.example.test/v2.0",
        "api://portal",
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tokens = CALLERS
        .iter()
        .map(|w| idp.token(w.tenant, w.user, w.scopes, now, 3600))
        .collect();
    let verifier = Arc::new(idp.verifier(Arc::new(recovery_portal::domain::ports::SystemClock)));
    let portal = rt.block_on(async {
        app::embedded(
            &seed::parse(seed::DEMO_SEED).unwrap(),
            verifier,
            app::RateLimits {
                key: 10_000,
                ..Default::default()
            },
        )
        .await
        .0
    });
    Demo {
        rt,
        portal,
        tokens,
        keys: demo_keys(),
    }
}

fn to_request(g: &Gen, tokens: &[String]) -> Option<ApiRequest> {
    let mut headers = http::HeaderMap::new();
    let auth: Option<Vec<u8>> = match &g.auth {
        Auth::None => None,
        Auth::Caller(i) => Some(format!("Bearer {}", tokens[*i]).into_bytes()),
        Auth::Raw(b) => Some(b.clone()),
        Auth::Bearer(s) => Some(format!("Bearer {s}").into_bytes()),
    };
    if let Some(a) = auth
        && let Ok(v) = http::HeaderValue::from_bytes(&a)
    {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    for (name, value) in &g.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    Some(ApiRequest {
        method: http::Method::from_bytes(g.method.as_bytes()).ok()?,
        path: g.path.clone(),
        query: g.query.clone(),
        headers,
        body: bytes::Bytes::from(g.body.clone()),
        source_ip: g.source_ip.clone(),
        request_id: g.request_id.clone(),
    })
}

/// Which caller the request authenticates as, if any: only a request whose
/// one Authorization header is that caller's token.
fn caller_of(req: &ApiRequest, tokens: &[String]) -> Option<usize> {
    let all: Vec<_> = req
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .collect();
    let [one] = all.as_slice() else { return None };
    let t = one.to_str().ok()?.strip_prefix("Bearer ")?;
    tokens.iter().position(|x| x == t)
}

#[test]
fn arbitrary_requests_never_panic_never_5xx_and_never_leak_a_key() {
    let demo = demo();
    let mut runner = TestRunner::new(cases(384));
    // The leak check below must see real disclosures, not only refusals.
    let disclosed = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&request(), |g| {
            let Some(req) = to_request(&g, &demo.tokens) else {
                return Ok(());
            };
            let caller = caller_of(&req, &demo.tokens);
            let path = req.path.clone();
            let resp = demo
                .rt
                .block_on(api::handle(&demo.portal, Routes::All, req));
            let status = resp.status().as_u16();
            prop_assert!(status < 500, "{} for {:?}", status, g);
            let body = String::from_utf8_lossy(resp.body());
            // Every answer is JSON.
            prop_assert!(serde_json::from_str::<Value>(&body).is_ok(), "{}", body);
            for k in &demo.keys {
                let shown =
                    body.contains(&k.password) || body.contains(&k.password.replace('-', ""));
                if !shown {
                    continue;
                }
                disclosed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let who = caller.map(|i| &CALLERS[i]);
                prop_assert!(
                    status == 200
                        && who.is_some_and(|w| w.may_see(k))
                        && path == format!("/v1/devices/{}/recovery-key", k.device)
                        && serde_json::from_str::<Value>(&body).unwrap()["recovery_password"]
                            == k.password.as_str(),
                    "{}'s key of {} shown to {:?} for {:?}: {}",
                    k.owner,
                    k.device,
                    who,
                    g,
                    body
                );
            }
            Ok(())
        })
        .unwrap();
    assert!(
        disclosed.into_inner() > 0,
        "no generated request was granted a key"
    );
}

#[test]
fn any_query_string_is_answered_200_or_400() {
    let demo = demo();
    let mut runner = TestRunner::new(cases(256));
    let routes = prop::sample::select(vec!["/v1/devices", "/v1/recovery-keys", "/v1/audit-events"]);
    runner
        .run(&(routes, query()), |(path, query)| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {}", demo.tokens[2]).parse().unwrap(),
            );
            let req = ApiRequest {
                method: http::Method::GET,
                path: path.to_owned(),
                query: query.clone(),
                headers,
                body: bytes::Bytes::new(),
                source_ip: None,
                request_id: "prop-query".into(),
            };
            let resp = demo
                .rt
                .block_on(api::handle(&demo.portal, Routes::All, req));
            let status = resp.status().as_u16();
            prop_assert!(
                status == 200 || status == 400,
                "{} {}?{:?}",
                status,
                path,
                query
            );
            Ok(())
        })
        .unwrap();
}
