use super::*;

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
                .unwrap_or_else(|e| panic!("{} {}: {e}", r.method, r.path));
            assert_eq!((found.method, found.path), (r.method, r.path));
            assert_eq!(params.len(), r.path.matches('{').count());
        }
        for other in [Routes::List, Routes::Key, Routes::Manage] {
            if other != r.unit {
                assert!(matches!(
                    resolve(other, r.method, &path),
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
            .filter(|o| match_template(o.path, &path).is_some())
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
        match resolve(Routes::All, "OPTIONS", path) {
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
            resolve(Routes::All, "GET", unknown),
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
