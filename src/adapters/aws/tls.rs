//! Which root CAs the SDK's HTTPS client trusts.
//!
//! By default only the Amazon Trust Services roots compiled into the binary:
//! every AWS service endpoint this backend calls (DynamoDB, KMS, STS) has a
//! certificate issued under them. Loading the platform's trust store instead
//! costs several milliseconds of cold start (on Debian, one file per CA in
//! `/etc/ssl/certs`; BENCHMARKS.md §1) and trusts ~150 CAs that never sign
//! an AWS endpoint.
//!
//! Escape hatches, for endpoints that are not AWS's own (a TLS-inspecting
//! proxy, a local emulator behind HTTPS): `AWS_CA_BUNDLE=<PEM file>` adds
//! that file's certificates (the variable the AWS CLI and other SDKs read),
//! and `PORTAL_TLS_ROOTS=system` adds the platform's trust store.

use crate::config::ConfigError;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2 (which cross-signs
/// them for older clients), PEM.
pub const AMAZON_TRUST_SERVICES_ROOTS: &str = include_str!("amazon-trust-services-roots.pem");

/// The root CAs to trust, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRoots {
    /// Also the platform's trust store (`PORTAL_TLS_ROOTS=system`).
    pub system: bool,
    /// Extra PEM certificates (`AWS_CA_BUNDLE`), already checked.
    pub extra_pem: Option<Vec<u8>>,
}

impl TrustRoots {
    /// Reads `PORTAL_TLS_ROOTS` (`amazon`, the default, or `system`) and
    /// `AWS_CA_BUNDLE`. A bad value or an unreadable or certificate-free
    /// bundle is an error naming the variable, so it stops the process at
    /// init rather than failing every request.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let system = match var("PORTAL_TLS_ROOTS").as_deref().map(str::trim) {
            None | Some("amazon") => false,
            Some("system") => true,
            Some(other) => {
                return Err(ConfigError {
                    var: "PORTAL_TLS_ROOTS",
                    problem: format!("must be `amazon` or `system`, not {other:?}"),
                });
            }
        };
        let extra_pem = match var("AWS_CA_BUNDLE") {
            None => None,
            Some(path) => {
                let problem = |p: String| ConfigError {
                    var: "AWS_CA_BUNDLE",
                    problem: format!("{path}: {p}"),
                };
                let pem = std::fs::read(&path).map_err(|e| problem(e.to_string()))?;
                let usable = usable_roots(&pem).map_err(problem)?;
                if usable.rejected > 0 {
                    // As with the platform store: a bundle may carry a
                    // certificate no TLS library here accepts as a root.
                    tracing::warn!(
                        path,
                        rejected = usable.rejected,
                        kept = usable.kept,
                        "AWS_CA_BUNDLE: certificates skipped, not usable as roots"
                    );
                }
                Some(usable.pem.into_bytes())
            }
        };
        Ok(Self { system, extra_pem })
    }

    /// The trust store for the SDK's HTTPS client.
    pub fn trust_store(&self) -> TrustStore {
        let mut store = TrustStore::empty()
            .with_native_roots(self.system)
            .with_pem_certificate(AMAZON_TRUST_SERVICES_ROOTS.as_bytes());
        if let Some(pem) = &self.extra_pem {
            store = store.with_pem_certificate(pem.clone());
        }
        store
    }

    /// The HTTPS client every SDK client shares (rustls on aws-lc, as the
    /// SDK's default client, with this trust store). Builds no connector
    /// yet: that happens when a client is constructed, once per process.
    pub fn http_client(&self) -> SharedHttpClient {
        let context = TlsContext::builder()
            .with_trust_store(self.trust_store())
            .build()
            .expect("a TLS context without server-name overrides always builds");
        let client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(context)
            .build_https();
        if self.system {
            // Its warm-up loads the platform's certificates at init.
            client
        } else {
            SharedHttpClient::new(WithoutWarmUp(client))
        }
    }
}

/// The SDK's hyper client without the "validation" it runs when each SDK
/// client is constructed: that builds a connector (PEM parsing of the trust
/// store, a rustls configuration) and throws it away, only to load the
/// platform's certificates early, which the compiled-in roots do not use.
/// Two clients, two throwaway connectors: a fifth of the functions' init
/// (callgrind, BENCHMARKS.md §1). The connector that serves requests is
/// built on first use and cached by the SDK, as it always was.
#[derive(Debug)]
struct WithoutWarmUp(SharedHttpClient);

impl HttpClient for WithoutWarmUp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The certificates of a PEM bundle that can serve as trust anchors.
#[derive(Debug, PartialEq, Eq)]
pub struct UsableRoots {
    /// Those certificates, PEM-encoded again (the SDK's connector panics on
    /// a certificate it cannot use, so it only ever sees these).
    pub pem: String,
    pub kept: usize,
    pub rejected: usize,
}

/// Parses `pem` and keeps the certificates usable as roots; an error when
/// it is not PEM or none is usable.
pub fn usable_roots(pem: &[u8]) -> Result<UsableRoots, String> {
    use base64::Engine;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    let (mut out, mut rejected) = (String::new(), 0);
    for cert in certs {
        if roots.add(cert.clone()).is_err() {
            rejected += 1;
            continue;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    let kept = roots.len();
    if kept == 0 {
        return Err(format!(
            "none of its {rejected} certificates is usable as a root"
        ));
    }
    Ok(UsableRoots {
        pem: out,
        kept,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_hex(der: &[u8]) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        d.as_ref().iter().map(|b| format!("{b:02X}")).collect()
    }

    #[test]
    fn the_compiled_in_roots_are_exactly_amazon_trust_services() {
        // SHA-256 fingerprints published at https://www.amazontrust.com/repository/
        let expected = [
            "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E", // Amazon Root CA 1
            "1BA5B2AA8C65401A82960118F80BEC4F62304D83CEC4713A19C39C011EA46DB4", // Amazon Root CA 2
            "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4", // Amazon Root CA 3
            "E35D28419ED02025CFA69038CD623962458DA5C695FBDEA3C22B0BFB25897092", // Amazon Root CA 4
            "568D6905A2C88708A4B3025190EDCFEDB1974A606A13C6E5290FCB2AE63EDAB5", // Starfield Services G2
        ];
        let got: Vec<String> =
            CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES_ROOTS.as_bytes())
                .map(|c| sha256_hex(c.unwrap().as_ref()))
                .collect();
        assert_eq!(got, expected);
        let usable = usable_roots(AMAZON_TRUST_SERVICES_ROOTS.as_bytes()).unwrap();
        assert_eq!((usable.kept, usable.rejected), (5, 0));
        // Re-encoded, the same five certificates.
        let again: Vec<String> = CertificateDer::pem_slice_iter(usable.pem.as_bytes())
            .map(|c| sha256_hex(c.unwrap().as_ref()))
            .collect();
        assert_eq!(again, expected);
    }

    #[test]
    fn unusable_certificates_are_skipped_and_a_bundle_without_any_is_refused() {
        assert!(
            usable_roots(b"")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        assert!(
            usable_roots(b"just some text\n")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            usable_roots(broken.as_bytes())
                .unwrap_err()
                .contains("none of its 1 certificates")
        );
        let mixed = format!("{broken}{AMAZON_TRUST_SERVICES_ROOTS}");
        let usable = usable_roots(mixed.as_bytes()).unwrap();
        assert_eq!((usable.kept, usable.rejected), (5, 1));
        assert!(!usable.pem.contains("AAAA\n"));
    }
}
