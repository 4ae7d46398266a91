//! X.509 CA enrollment groups: a client certificate chain verified
//! against a group's CA certificate (rustls-webpki, the verifier rustls
//! uses: signatures, validity at the current time, CA basic constraints,
//! the client-authentication key usage when present), and the subject
//! common name that becomes the registration id. A group's certificate
//! must be a CA (basic constraints CA:TRUE) and is checked for validity at
//! each verification (webpki does not check trust anchors); certificates
//! are read with x509-parser.

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::EmulatorError;

/// Reads a CA certificate (PEM, or base64 of PEM or DER) and checks that
/// it can be a trust anchor; its DER.
pub(crate) fn ca_certificate(text: &str) -> Result<CertificateDer<'static>, EmulatorError> {
    use base64::Engine as _;
    let bad = |m: String| EmulatorError::BadRequest(format!("CA certificate: {m}"));
    let der = match CertificateDer::from_pem_slice(text.as_bytes()) {
        Ok(c) => c,
        Err(_) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| bad("neither PEM nor base64".into()))?;
            CertificateDer::from_pem_slice(&raw).unwrap_or_else(|_| CertificateDer::from(raw))
        }
    };
    webpki::anchor_from_trusted_cert(&der).map_err(|e| bad(format!("not a certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| bad(format!("not a certificate: {e}")))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| bad(format!("bad basic constraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(bad(
            "not a CA certificate (its basic constraints do not say CA:TRUE)".into(),
        ));
    }
    Ok(der)
}

/// Whether `ca` is within its validity period now.
fn valid_now(ca: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(ca.as_ref()).is_ok_and(|(_, c)| c.validity().is_valid())
}

/// The PEM form of a DER certificate.
pub(crate) fn pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Whether `chain` (the client's certificate, then the intermediates it
/// sent) verifies up to `ca` for client authentication now.
pub(crate) fn verifies(chain: &[CertificateDer<'static>], ca: &CertificateDer<'_>) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    if !valid_now(ca) {
        return false;
    }
    let (Ok(anchor), Ok(ee)) = (
        webpki::anchor_from_trusted_cert(ca),
        webpki::EndEntityCert::try_from(leaf),
    ) else {
        return false;
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        intermediates,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .is_ok()
}

/// The subject common name (OID 2.5.4.3) of a certificate, if it has one
/// as a string (the first, if several).
pub(crate) fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(cn: &str, issuer: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "org");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    #[test]
    fn chains_verify_only_up_to_their_own_ca() {
        let root = ca("root");
        let other = ca("other");
        let cert = leaf("cam-1", &root);
        let root_der = ca_certificate(&root.pem()).unwrap();
        let other_der = ca_certificate(&other.pem()).unwrap();
        assert!(verifies(std::slice::from_ref(&cert), &root_der));
        assert!(!verifies(std::slice::from_ref(&cert), &other_der));
        assert!(!verifies(&[], &root_der));
        assert_eq!(common_name(&cert).as_deref(), Some("cam-1"));
        // An intermediate CA sent by the client.
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "mid");
        let mid_key = KeyPair::generate().unwrap();
        let mid = CertifiedIssuer::signed_by(params, mid_key, &root).unwrap();
        let cert = leaf("cam-2", &mid);
        let chain = [cert.clone(), mid.der().clone()];
        assert!(verifies(&chain, &root_der));
        assert!(!verifies(std::slice::from_ref(&cert), &root_der));
        // PEM, base64 of the DER, and round trip through `pem`.
        assert_eq!(ca_certificate(&pem(&root_der)).unwrap(), root_der);
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(root_der.as_ref());
        assert_eq!(ca_certificate(&b64).unwrap(), root_der);
        assert!(matches!(
            ca_certificate("not a certificate"),
            Err(EmulatorError::BadRequest(_))
        ));
        assert!(matches!(
            ca_certificate("AAAA"),
            Err(EmulatorError::BadRequest(_))
        ));
    }

    #[test]
    fn a_group_certificate_must_be_a_ca_and_valid_now() {
        // A leaf is not a CA: refused as a group's certificate.
        let root = ca("root");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "not-a-ca");
        let not_ca = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        match ca_certificate(&not_ca.pem()) {
            Err(EmulatorError::BadRequest(m)) => assert!(m.contains("not a CA"), "{m}"),
            other => panic!("{other:?}"),
        }
        // An expired CA is read, but verifies nothing.
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "old");
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let old = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let old_der = ca_certificate(&old.pem()).unwrap();
        let cert = leaf("cam-3", &old);
        assert!(!verifies(std::slice::from_ref(&cert), &old_der));
        // The same shape under a valid CA verifies.
        let cert = leaf("cam-3", &root);
        let root_der = ca_certificate(&root.pem()).unwrap();
        assert!(verifies(std::slice::from_ref(&cert), &root_der));
    }
}
