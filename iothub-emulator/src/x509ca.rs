//! X.509 CA enrollment groups: a client certificate chain verified
//! against a group's CA certificate (rustls-webpki, the verifier rustls
//! uses: signatures, validity at the current time, CA basic constraints,
//! the client-authentication key usage when present), and the subject
//! common name that becomes the registration id.

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
    Ok(der)
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
/// in a string type.
pub(crate) fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(der).ok()?;
    // The contents of the subject Name: SETs of SEQUENCE { OID, value }.
    let mut sets = ee.subject();
    while !sets.is_empty() {
        let (tag, set, rest) = tlv(sets)?;
        sets = rest;
        if tag != 0x31 {
            return None;
        }
        let mut attrs = set;
        while !attrs.is_empty() {
            let (tag, attr, rest) = tlv(attrs)?;
            attrs = rest;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, value) = tlv(attr)?;
            if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (vtag, v, _) = tlv(value)?;
                // UTF8String, PrintableString, IA5String, T61String.
                if matches!(vtag, 0x0c | 0x13 | 0x16 | 0x14) {
                    return std::str::from_utf8(v).ok().map(str::to_owned);
                }
                return None;
            }
        }
    }
    None
}

/// One DER TLV: tag, value, and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, after) = rest.split_at(len);
    Some((tag, value, after))
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
}
