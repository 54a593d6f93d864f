use super::*;
use proptest::prelude::*;

/// The matcher before it compared bytes: both split at `/`, segment by
/// segment. `matches` must agree with it on every path.
fn reference<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut actual = path.split('/');
    for want in template.split('/') {
        let got = actual.next()?;
        if want.starts_with('{') && want.ends_with('}') {
            if got.is_empty() {
                return None;
            }
            params.push(got);
        } else if want != got {
            return None;
        }
    }
    actual.next().is_none().then_some(params)
}

/// `matches`' answer in `reference`'s shape.
fn matched<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = [""; MAX_PARAMS];
    matches(template, path, &mut params).map(|n| params[..n].to_vec())
}

/// The unit `path` belongs to, as `handle` sees it.
fn unit_of(path: &str) -> Option<Routes> {
    resolve(Routes::All, "GET", path).unit
}

/// A concrete path for `template`.
fn example(template: &str) -> String {
    template
        .replace("{device_id}", "PC-1")
        .replace("{key_id}", "K-1")
        .replace("{incident_id}", "I-1")
}

#[test]
fn every_route_resolves_to_itself_on_its_unit_and_on_all() {
    for r in ROUTES {
        let path = example(r.path);
        for serves in [r.unit, Routes::All] {
            let (found, params) = resolve(serves, r.method, &path)
                .route
                .unwrap_or_else(|e| panic!("{} {}: {e}", r.method, r.path));
            assert_eq!((found.method, found.path), (r.method, r.path));
            assert_eq!(params.len(), r.path.matches('{').count());
        }
        for other in [Routes::List, Routes::Key, Routes::Manage] {
            if other != r.unit {
                assert!(matches!(
                    resolve(other, r.method, &path).route,
                    Err(HttpError::RouteNotFound)
                ));
            }
        }
    }
}

#[test]
fn one_path_one_template_one_unit_and_unique_routes() {
    for r in ROUTES {
        let path = example(r.path);
        let templates: std::collections::BTreeSet<_> = ROUTES
            .iter()
            .filter(|o| matched(o.path, &path).is_some())
            .map(|o| (o.path, o.unit.function()))
            .collect();
        assert_eq!(templates.len(), 1, "{path} matches {templates:?}");
        let same = ROUTES
            .iter()
            .filter(|o| o.path == r.path && o.method == r.method)
            .count();
        assert_eq!(same, 1, "{} {} listed twice", r.method, r.path);
    }
}

/// `Allow` lists the path's methods in table order: what the hand-written
/// routers answered before the table.
#[test]
fn allow_is_derived_from_the_table() {
    for (path, allow) in [
        ("/v1/devices", "GET"),
        ("/v1/devices/PC-1", "PUT, DELETE"),
        ("/v1/devices/PC-1/restore", "POST"),
        ("/v1/devices/PC-1/recovery-key", "POST"),
        ("/v1/devices/PC-1/recovery-keys/K-1", "PUT"),
        ("/v1/tenant/settings", "GET, PATCH"),
        ("/v1/incidents", "GET, POST"),
        ("/v1/incidents/I-1", "DELETE"),
        ("/v1/recovery-keys/batch", "POST"),
    ] {
        match resolve(Routes::All, "OPTIONS", path).route {
            Err(HttpError::MethodNotAllowed { allow: got }) => assert_eq!(got, allow, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn unknown_paths_are_not_routed() {
    for unknown in [
        "",
        "/",
        "/v1",
        "/v1/devices/",
        "/v1/devices//recovery-key",
        "/v1/devices/a/b/recovery-key",
        "/v1/devices/a/recovery-key/",
        "/v1/devices/a/recovery-keys",
        "/v1/incidents/",
        "/v1/incidents/a/b",
        "//v1/devices",
        "/v2/devices",
    ] {
        assert!(unit_of(unknown).is_none(), "{unknown:?} must not be routed");
        assert!(matches!(
            resolve(Routes::All, "GET", unknown).route,
            Err(HttpError::RouteNotFound)
        ));
    }
}

/// Every disclosure and write audits a refusal; reads do not.
#[test]
fn refusals_of_disclosures_and_writes_are_audited() {
    for r in ROUTES {
        let writes = r.method != "GET";
        assert_eq!(r.audit.is_some(), writes, "{} {}", r.method, r.path);
    }
}

/// The matcher's edges, each against what splitting answered.
#[test]
fn matcher_edges_agree_with_splitting() {
    let dev = "/v1/devices/{device_id}";
    let key = "/v1/devices/{device_id}/recovery-keys/{key_id}";
    for (template, path, want) in [
        (dev, "/v1/devices/PC-1", Some(vec!["PC-1"])),
        (dev, "/v1/devices/", None),
        (dev, "/v1/devices", None),
        (dev, "/v1/devices/PC-1/", None),
        (dev, "/v1/devices//", None),
        (dev, "/v1/devices/PC%2F1", Some(vec!["PC%2F1"])),
        (
            dev,
            "/v1/devices/%7Bdevice_id%7D",
            Some(vec!["%7Bdevice_id%7D"]),
        ),
        (dev, "/v1/devices/{device_id}", Some(vec!["{device_id}"])),
        (dev, "/v1/Devices/PC-1", None),
        (dev, "v1/devices/PC-1", None),
        (key, "/v1/devices/a/recovery-keys/b", Some(vec!["a", "b"])),
        (key, "/v1/devices/a/recovery-keys/", None),
        (key, "/v1/devices//recovery-keys/b", None),
        (key, "/v1/devices/a/recovery-keys/b/", None),
        (key, "/v1/devices/a/recovery-keysb", None),
        ("/v1/devices", "/v1/devices", Some(vec![])),
        ("/v1/devices", "/v1/devices/", None),
        ("/v1/devices", "/v1/device", None),
        ("/v1/devices", "/v1/devicess", None),
        ("/v1/devices", "", None),
    ] {
        assert_eq!(matched(template, path), want, "{template} {path:?}");
        assert_eq!(reference(template, path), want, "{template} {path:?}");
    }
}

/// Resolution of a path outside the unit: 404 (not 405), yet the unit is
/// still named, so a key path's 404 on list-devices keeps `Pragma`.
#[test]
fn another_units_path_is_404_but_keeps_its_unit() {
    let r = resolve(Routes::List, "OPTIONS", "/v1/devices/PC-1/recovery-key");
    assert_eq!(r.unit, Some(Routes::Key));
    assert!(matches!(r.route, Err(HttpError::RouteNotFound)));
    let r = resolve(Routes::Key, "GET", "/v1/devices/PC-1/recovery-key");
    assert_eq!(r.unit, Some(Routes::Key));
    assert!(matches!(r.route, Err(HttpError::MethodNotAllowed { allow }) if allow == "POST"));
}

/// Paths built from the templates' own pieces, so that near misses are
/// common: empty segments, extra or missing ones, braces, percent signs.
fn near_paths() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "",
        "v1",
        "v2",
        "devices",
        "device",
        "recovery-key",
        "recovery-keys",
        "batch",
        "restore",
        "tenant",
        "settings",
        "incidents",
        "audit-events",
        "rotation-requests",
        "PC-1",
        "{device_id}",
        "%7B",
        "%2F",
        "{",
        "}",
        "a/b",
        "é",
    ]);
    (any::<bool>(), prop::collection::vec(piece, 0..7)).prop_map(|(lead, parts)| {
        let p = parts.join("/");
        if lead { format!("/{p}") } else { p }
    })
}

/// A route's template with its `{name}`s filled in by pieces (empty ones
/// too), maybe with a trailing slash: matches and near misses.
fn template_paths() -> impl Strategy<Value = String> {
    let fill = prop::sample::select(vec!["PC-1", "", "a%2Fb", "{key_id}", "x/y"]);
    (
        prop::sample::select(ROUTES.iter().map(|r| r.path).collect::<Vec<_>>()),
        prop::collection::vec(fill, MAX_PARAMS),
        any::<bool>(),
    )
        .prop_map(|(template, fills, slash)| {
            let mut fills = fills.into_iter();
            let mut p: Vec<String> = template
                .split('/')
                .map(|s| match s.starts_with('{') {
                    true => fills.next().unwrap_or_default().to_owned(),
                    false => s.to_owned(),
                })
                .collect();
            if slash {
                p.push(String::new());
            }
            p.join("/")
        })
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![near_paths(), template_paths()]
}

proptest! {
    #[test]
    fn matcher_agrees_with_splitting(path in any_path()) {
        for r in ROUTES {
            prop_assert_eq!(matched(r.path, &path), reference(r.path, &path), "{}", r.path);
        }
    }

    #[test]
    fn matcher_agrees_on_any_text(path in "[/a-z{}%1-]{0,40}") {
        for r in ROUTES {
            prop_assert_eq!(matched(r.path, &path), reference(r.path, &path), "{}", r.path);
        }
    }

    /// `resolve` answers what the old two scans answered: the first
    /// matching route's unit, the method's route, 404 or 405 with `Allow`.
    #[test]
    fn resolve_agrees_with_scanning(
        path in any_path(),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        serves in prop::sample::select(vec![Routes::List, Routes::Key, Routes::Manage, Routes::All]),
    ) {
        let hits: Vec<_> = ROUTES.iter().filter_map(|r| Some((r, reference(r.path, &path)?))).collect();
        let got = resolve(serves, method, &path);
        prop_assert_eq!(got.unit, hits.first().map(|(r, _)| r.unit));
        let own = hits.first().is_some_and(|(r, _)| serves == Routes::All || serves == r.unit);
        match (got.route, hits.iter().find(|(r, _)| r.method == method)) {
            (Ok((r, params)), Some((want, p))) if own => {
                prop_assert_eq!((r.method, r.path), (want.method, want.path));
                prop_assert_eq!(&params, p);
            }
            (Err(HttpError::MethodNotAllowed { allow }), None) if own => {
                let want: Vec<_> = hits.iter().map(|(r, _)| r.method).collect();
                prop_assert_eq!(allow, want.join(", "));
            }
            (Err(HttpError::RouteNotFound), _) if !own => {}
            (other, _) => prop_assert!(false, "{method} {path:?} on {serves:?}: {other:?}"),
        }
    }
}
