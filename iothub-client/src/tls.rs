//! rustls client configuration: the ring provider, the webpki roots (the
//! public roots IoT Hub's certificates chain to) plus any extra CA in PEM,
//! and an optional X.509 client certificate for certificate authentication.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What to trust and what to present.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Trust the webpki (Mozilla) roots. Default `true`.
    pub webpki_roots: bool,
    /// Extra trust anchors, PEM (one or more `CERTIFICATE` blocks): an
    /// emulator's CA, a gateway's, a sovereign cloud's.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key, PEM, for X.509
    /// authentication.
    pub client_auth: Option<ClientAuthPem>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("webpki_roots", &self.webpki_roots)
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(Vec::len))
            .field("client_auth", &self.client_auth.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// The webpki roots, no extra CA, no client certificate.
    #[must_use]
    pub fn new() -> TlsOptions {
        TlsOptions {
            webpki_roots: true,
            extra_ca_pem: None,
            client_auth: None,
        }
    }
}

/// A client certificate chain (leaf first) and its private key, both PEM.
/// `Debug` does not show the key.
#[derive(Clone)]
pub struct ClientAuthPem {
    /// One or more `CERTIFICATE` blocks, the device's certificate first.
    pub cert_chain_pem: Vec<u8>,
    /// A `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientAuthPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuthPem")
            .field("cert_chain_pem", &self.cert_chain_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The extra CA PEM holds no certificate, or one that does not parse.
    InvalidCa(String),
    /// The client certificate PEM holds no certificate or does not parse.
    InvalidClientCert(String),
    /// The client key PEM holds no private key or does not parse.
    InvalidClientKey(String),
    /// No root at all: webpki roots off and no extra CA.
    NoTrustAnchors,
    /// The host name cannot be a TLS server name.
    InvalidServerName(String),
    /// rustls refused the configuration (for example a key that does not
    /// match the certificate).
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::InvalidCa(e) => write!(f, "extra CA certificate (PEM): {e}"),
            TlsError::InvalidClientCert(e) => write!(f, "client certificate (PEM): {e}"),
            TlsError::InvalidClientKey(e) => write!(f, "client private key (PEM): {e}"),
            TlsError::NoTrustAnchors => {
                f.write_str("no trust anchors: webpki roots are off and no CA was given")
            }
            TlsError::InvalidServerName(h) => write!(f, "`{h}` is not a valid TLS server name"),
            TlsError::Rustls(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// The crypto provider every adapter uses: ring.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every `CERTIFICATE` block of a PEM text.
fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// Configurations without a client certificate, shared by every client
/// with the same trust settings while one of them lives: a copy of the
/// webpki roots alone is about 17 KB per client.
type Shared = Vec<((bool, Option<Vec<u8>>), Weak<ClientConfig>)>;
static SHARED: Mutex<Shared> = Mutex::new(Vec::new());

/// The rustls client configuration (TLS 1.2 and 1.3, ring). Clients with
/// the same trust settings and no client certificate share one
/// configuration (and so its root store and session-resumption cache).
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    if options.client_auth.is_some() {
        return build(options);
    }
    let key = (options.webpki_roots, options.extra_ca_pem.clone());
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    shared.retain(|(_, config)| config.strong_count() > 0);
    if let Some(config) = shared
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, c)| c.upgrade())
    {
        return Ok(config);
    }
    let config = build(options)?;
    shared.push((key, Arc::downgrade(&config)));
    Ok(config)
}

fn build(options: &TlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    if options.webpki_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(pem) = &options.extra_ca_pem {
        for cert in certs(pem).map_err(TlsError::InvalidCa)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::InvalidCa(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoTrustAnchors);
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots);
    let config = match &options.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let chain = certs(&auth.cert_chain_pem).map_err(TlsError::InvalidClientCert)?;
            let key = PrivateKeyDer::from_pem_slice(&auth.key_pem)
                .map_err(|e| TlsError::InvalidClientKey(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsError::Rustls)?
        }
    };
    Ok(Arc::new(config))
}

/// The TLS server name for a host (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::InvalidServerName(host.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_roots_build() {
        let c = client_config(&TlsOptions::new()).expect("default config");
        assert!(c.alpn_protocols.is_empty());
        assert!(server_name("contoso.azure-devices.net").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("bad host").is_err());
    }

    #[test]
    fn configurations_are_shared_while_alive() {
        let a = client_config(&TlsOptions::new()).unwrap();
        let b = client_config(&TlsOptions::new()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = TlsOptions {
            webpki_roots: false,
            extra_ca_pem: Some(include_bytes!("../tests/data/ca.pem").to_vec()),
            ..TlsOptions::new()
        };
        let c = client_config(&other).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let opts = TlsOptions {
            extra_ca_pem: Some(b"not a pem".to_vec()),
            ..TlsOptions::new()
        };
        let e = client_config(&opts).unwrap_err();
        assert!(matches!(e, TlsError::InvalidCa(_)), "{e}");
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let opts = TlsOptions {
            webpki_roots: false,
            ..TlsOptions::new()
        };
        assert!(matches!(
            client_config(&opts),
            Err(TlsError::NoTrustAnchors)
        ));
        let opts = TlsOptions {
            client_auth: Some(ClientAuthPem {
                cert_chain_pem: Vec::new(),
                key_pem: Vec::new(),
            }),
            ..TlsOptions::new()
        };
        assert!(matches!(
            client_config(&opts),
            Err(TlsError::InvalidClientCert(_))
        ));
    }
}
