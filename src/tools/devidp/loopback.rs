//! Where the flow may send the browser: this machine only.

use super::*;

/// The names of this machine a browser may address the development server
/// by. Any other name in `Host` may be a DNS rebinding (a web page whose
/// name was made to resolve to 127.0.0.1), so it is refused.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Paths of the portal page (`frontends::web`): the redirect URIs its
/// sign-in uses are its own address (`location.origin + location.pathname`).
pub const PAGE_PATHS: [&str; 2] = ["/", "/index.html"];

impl DevIdentityProvider {
    /// The port of the server this provider runs in: its issuer's.
    fn port(&self) -> Option<u16> {
        url::Url::parse(&self.issuer).ok()?.port_or_known_default()
    }

    /// Whether `authority` (a `Host` header, or a request target's
    /// authority) names this server: a loopback name with its port.
    pub fn is_own_authority(&self, authority: &str) -> bool {
        let Some(port) = self.port() else {
            return false;
        };
        let a = authority.to_ascii_lowercase();
        let (host, p) = match a.rsplit_once(':') {
            Some((h, p)) if !a.ends_with(']') => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            ),
            _ => (a.as_str(), Some(80)),
        };
        LOOPBACK_NAMES.contains(&host) && p == Some(port)
    }

    /// Whether `uri` is the portal page's own redirect URI: `http://`, a
    /// loopback name with this server's port, the page's path, nothing else.
    pub fn is_own_redirect_uri(&self, uri: &str) -> bool {
        let Ok(url) = url::Url::parse(uri) else {
            return false;
        };
        let host_ok = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            None => false,
        };
        url.scheme() == "http"
            && host_ok
            && url.port_or_known_default() == self.port()
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
            && PAGE_PATHS.contains(&url.path())
    }
}

/// The origin of an absolute http(s) redirect URI on this machine: a
/// loopback IP or `localhost`, no credentials, no fragment.
pub fn loopback_origin(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    let ok = matches!(url.scheme(), "http" | "https")
        && loopback
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && uri.len() <= 512;
    ok.then(|| url.origin().ascii_serialization())
}
