//! The portal page: the static files of `web/`, compiled into the binary so
//! `portal serve` on a fresh clone needs nothing else; its `/config.json`;
//! and the headers it is served with (a strict CSP: scripts and styles from
//! the page's own origin only, network calls to the API and the issuer only).

/// One embedded file of `web/`.
pub struct Asset {
    /// Where it is served.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        Asset {
            path: concat!("/", $file),
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $file)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `web/` (a unit test checks none is missing), plus the page
/// itself at `/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_bytes!("../../web/index.html"),
    },
    asset!("index.html", HTML),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("oidc.js", JS),
    asset!("keyview.js", JS),
    asset!("dom.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Scopes the page asks for unless told otherwise: sign-in, and the
/// permission to list one's own devices and read their keys.
pub const DEFAULT_SCOPES: &str = "openid RecoveryKey.Read";

/// The page's default OIDC client id (`portal serve --web-client-id`): the
/// dev identity provider's client (`devidp::DEV_CLIENT_ID`, checked equal
/// in `server::idp`'s tests).
pub const DEFAULT_CLIENT_ID: &str = "recovery-portal-web";

/// What the page needs to sign in (served as `/config.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// The OIDC issuer; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The page's client id at the issuer (a public SPA client).
    pub client_id: String,
    /// Space-separated scopes to request.
    pub scopes: String,
    /// Extra authorization request parameters, form-encoded
    /// (`PORTAL_WEB_AUTH_PARAMS`, canonical from `parse_auth_params`);
    /// `resource` goes into the token request too (RFC 8707).
    pub auth_params: String,
    /// `PORTAL_WEB_MAX_AGE`: the `max_age` the page asks for, if any.
    pub max_age: Option<u64>,
}

/// Authorization request parameters the page sets itself: an extra
/// parameter may not override them.
pub const OWN_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "max_age",
];

/// A `--web-auth-params` (`PORTAL_WEB_AUTH_PARAMS`) value: form-encoded
/// `name=value` pairs such as `resource=api://recovery-portal` or
/// `audience=https://api.example`, returned canonically encoded. The
/// page's own parameters (`OWN_AUTH_PARAMS`) cannot be set here.
pub fn parse_auth_params(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(s.as_bytes()) {
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{s:?} is not form-encoded name=value pairs such as resource=api://recovery-portal"
            ));
        }
        if OWN_AUTH_PARAMS.contains(&name.as_ref()) {
            let instead = match name.as_ref() {
                "client_id" => " (set PORTAL_WEB_CLIENT_ID instead)",
                "scope" => " (set PORTAL_WEB_SCOPES instead)",
                "max_age" => " (set PORTAL_WEB_MAX_AGE instead)",
                _ => "",
            };
            return Err(format!(
                "must not set {name:?}: the page sets it itself{instead}"
            ));
        }
        out.append_pair(&name, &value);
    }
    Ok(out.finish())
}

impl WebConfig {
    /// `/config.json`: the API is served from `api_base_url`.
    pub fn config_json(&self, api_base_url: &str) -> String {
        serde_json::json!({
            "issuer": self.issuer,
            "client_id": self.client_id,
            "scopes": self.scopes,
            "api_base_url": api_base_url,
            "auth_params": self.auth_params,
            "max_age": self.max_age,
        })
        .to_string()
    }

    /// The page's Content-Security-Policy: nothing inline, nothing from
    /// elsewhere, network calls to this origin (the API) and the issuer.
    pub fn content_security_policy(&self) -> String {
        let mut connect = String::from("'self'");
        if let Some(issuer) = origin_of(&self.issuer) {
            connect.push(' ');
            connect.push_str(&issuer);
        }
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    }
}

/// `scheme://host[:port]` of an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    matches!(u.scheme(), "http" | "https")
        .then(|| u.origin().ascii_serialization())
        .filter(|o| o != "null")
}

/// A `--cors-origin` value: exactly an origin (`https://portal.example.com`,
/// no path, query or credentials), returned in its canonical form.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let err = || {
        format!(
            "{s:?} is not an origin such as https://portal.example.com (scheme, host and optional port; no path)"
        )
    };
    let u = url::Url::parse(s).map_err(|_| err())?;
    let bare = matches!(u.scheme(), "http" | "https")
        && u.host().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && u.path() == "/"
        && !s.trim_end_matches('/').ends_with(['?', '#'])
        && u.query().is_none()
        && u.fragment().is_none()
        && !s.ends_with("//");
    if !bare {
        return Err(err());
    }
    Ok(u.origin().ascii_serialization())
}

/// Headers of every page file: its CSP, and no sniffing, referrer, framing
/// or caching (the page is tiny; nothing stale after an upgrade).
pub fn page_headers(csp: &str) -> [(&'static str, String); 7] {
    [
        ("content-security-policy", csp.to_owned()),
        ("x-content-type-options", "nosniff".into()),
        ("referrer-policy", "no-referrer".into()),
        ("x-frame-options", "DENY".into()),
        ("cross-origin-opener-policy", "same-origin".into()),
        ("cache-control", "no-store".into()),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()".into(),
        ),
    ]
}

/// The API base for `/config.json` from the request's `Host` (the local
/// server speaks plain HTTP); empty (the page's own origin) when absent or
/// not a plain `host[:port]`.
pub fn api_base_from_host(host: Option<&str>) -> String {
    match host {
        Some(h)
            if !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                }) =>
        {
            format!("http://{h}")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_web_is_embedded_with_a_content_type() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let asset = ASSETS
                .iter()
                .find(|a| a.path == format!("/{name}"))
                .unwrap_or_else(|| panic!("web/{name} is not in web::ASSETS"));
            let expected = match name.rsplit('.').next().unwrap() {
                "html" => HTML,
                "js" => JS,
                "css" => "text/css; charset=utf-8",
                "svg" => "image/svg+xml",
                other => panic!("web/{name}: no content type for .{other}"),
            };
            assert_eq!(asset.content_type, expected, "{name}");
            assert_eq!(
                asset.body,
                std::fs::read(dir.join(&name)).unwrap().as_slice(),
                "{name}"
            );
        }
    }

    #[test]
    fn config_and_csp() {
        let c = WebConfig {
            issuer: "https://login.example.com/tenant/v2.0".into(),
            client_id: "spa".into(),
            scopes: DEFAULT_SCOPES.into(),
            auth_params: parse_auth_params("resource=api://rp&audience=https://api.example")
                .unwrap(),
            max_age: Some(600),
        };
        let j: serde_json::Value =
            serde_json::from_str(&c.config_json("https://api.example.com")).unwrap();
        assert_eq!(j["issuer"], "https://login.example.com/tenant/v2.0");
        assert_eq!(j["client_id"], "spa");
        assert_eq!(j["scopes"], "openid RecoveryKey.Read");
        assert_eq!(j["api_base_url"], "https://api.example.com");
        assert_eq!(
            j["auth_params"],
            "resource=api%3A%2F%2Frp&audience=https%3A%2F%2Fapi.example"
        );
        assert_eq!(j["max_age"], 600);
        let csp = c.content_security_policy();
        assert!(csp.contains("connect-src 'self' https://login.example.com;"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"));
    }

    #[test]
    fn auth_params_cannot_override_the_pages_own() {
        assert_eq!(parse_auth_params("").unwrap(), "");
        assert_eq!(
            parse_auth_params("resource=api://a&resource=api://b").unwrap(),
            "resource=api%3A%2F%2Fa&resource=api%3A%2F%2Fb"
        );
        for own in OWN_AUTH_PARAMS {
            let e = parse_auth_params(&format!("resource=x&{own}=evil")).unwrap_err();
            assert!(e.contains(own), "{e}");
        }
        assert!(parse_auth_params("=x").is_err());
        assert!(parse_auth_params("a%20b=x").is_err());
    }

    #[test]
    fn origins() {
        assert_eq!(
            parse_origin("https://Portal.Example.com").unwrap(),
            "https://portal.example.com"
        );
        assert_eq!(
            parse_origin("http://localhost:5173/").unwrap(),
            "http://localhost:5173"
        );
        assert_eq!(
            parse_origin("https://example.com:443").unwrap(),
            "https://example.com"
        );
        for bad in [
            "*",
            "null",
            "example.com",
            "https://example.com/app",
            "https://example.com?x",
            "https://user@example.com",
            "ftp://example.com",
            "https://example.com#",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        assert_eq!(
            api_base_from_host(Some("127.0.0.1:8080")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(api_base_from_host(Some("evil/x")), "");
        assert_eq!(api_base_from_host(None), "");
    }
}
