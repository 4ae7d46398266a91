//! TLS: the emulator's own CA and server certificate (generated on first
//! start with rcgen, or the user's PEM files), a rustls server
//! configuration on the ring provider, and a client-certificate verifier
//! that checks the handshake signature but leaves identity to the hub's
//! thumbprint check.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::EmulatorError;

/// The certificate material the listeners serve.
#[derive(Debug)]
pub(crate) struct TlsMaterial {
    /// The server configuration shared by the MQTT and WebSocket listeners.
    pub(crate) config: Arc<ServerConfig>,
    /// The CA that signed the server certificate, as PEM (generated CA
    /// only).
    pub(crate) ca_pem: Option<String>,
    /// Where the CA PEM is on disk (generated CA only).
    pub(crate) ca_path: Option<PathBuf>,
}

/// The ring provider: the only one this crate uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Tls(format!("{what}: {e}"))
}

/// Loads `dir/ca.pem`, `dir/server.pem`, `dir/server.key`, generating
/// them first when any is missing.
pub(crate) fn generated(dir: &Path) -> Result<TlsMaterial, EmulatorError> {
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    if !(ca.exists() && cert.exists() && key.exists()) {
        fs::create_dir_all(dir)?;
        let (ca_pem, cert_pem, key_pem) = generate()?;
        write_file(&ca, ca_pem.as_bytes(), false)?;
        write_file(&cert, cert_pem.as_bytes(), false)?;
        write_file(&key, key_pem.as_bytes(), true)?;
    }
    let ca_pem = fs::read_to_string(&ca)?;
    let config = server_config(&cert, &key)?;
    Ok(TlsMaterial {
        config,
        ca_pem: Some(ca_pem),
        ca_path: Some(ca),
    })
}

/// The user's certificate chain and key (PEM files).
pub(crate) fn from_files(cert: &Path, key: &Path) -> Result<TlsMaterial, EmulatorError> {
    Ok(TlsMaterial {
        config: server_config(cert, key)?,
        ca_pem: None,
        ca_path: None,
    })
}

fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), EmulatorError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    options.open(path)?.write_all(data)?;
    Ok(())
}

/// A fresh CA and a server certificate it signed for `localhost`,
/// `127.0.0.1` and `::1`: (CA PEM, server certificate PEM, server key PEM).
pub(crate) fn generate() -> Result<(String, String, String), EmulatorError> {
    let err = |e: rcgen::Error| tls_error("generating certificates", e);
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "iothub-emulator local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, EmulatorError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error("reading the certificate PEM", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("reading the certificate PEM", e))?;
    if chain.is_empty() {
        return Err(EmulatorError::Tls(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error("reading the key PEM", e))?;
    let provider = provider();
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("server certificate", e))?;
    Ok(Arc::new(config))
}

/// The SHA-256 thumbprint of a certificate: lowercase hex of the digest of
/// its DER.
#[must_use]
pub fn thumbprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Accepts any client certificate, or none: the handshake signature is
/// verified (the client holds the certificate's key), and who the client
/// is comes from the certificate's thumbprint, which the hub engine checks
/// against the registry at CONNECT (as IoT Hub does for self-signed
/// X.509 devices).
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_lowercase_sha256_hex() {
        assert_eq!(
            thumbprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn generated_material_loads_and_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = generated(dir.path()).unwrap();
        let again = generated(dir.path()).unwrap();
        assert_eq!(first.ca_pem, again.ca_pem);
        assert!(
            first
                .ca_pem
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
}
