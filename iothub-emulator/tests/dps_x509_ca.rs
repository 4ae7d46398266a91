//! X.509 CA enrollment groups at the emulator's DPS: a group holds a CA
//! certificate; a device presenting (over TLS) a certificate chained to
//! it — directly or through an intermediate it sends — registers as its
//! certificate's common name, is created at the hub as an X.509 device,
//! and connects to the hub with the same certificate. Certificates of
//! another CA, and a common name other than the registration id, are
//! refused.

mod common;

use common::{Client, dps_connect, http_json, tls_config};
use iothub_emulator::{
    DEFAULT_ID_SCOPE, DeviceAuthentication, Emulator, EmulatorError, EmulatorHandle,
    EnrollmentAttestation, EnrollmentSpec, thumbprint,
};
use iothub_proto::auth::ProvisioningAttestation;
use iothub_proto::mqtt::ConnectReturnCode;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate with common name `cn` signed by `issuer`: (chain
/// PEM — the certificate, then `extra` —, key PEM, thumbprint).
fn leaf(
    cn: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    extra: &str,
) -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (
        format!("{}{extra}", cert.pem()),
        key.serialize_pem(),
        thumbprint(cert.der()),
    )
}

/// Connects to DPS over TLS with a client certificate as `registration_id`
/// (no password); the CONNACK code and the client.
async fn dps_with_cert(
    emu: &EmulatorHandle,
    registration_id: &str,
    cert: &(String, String, String),
) -> (ConnectReturnCode, Client) {
    let config = tls_config(emu.ca_pem().unwrap(), Some((&cert.0, &cert.1)));
    let mut c = Client::tls_with(emu.dps_addr(), config).await;
    let ack = c
        .connect_packet(dps_connect(
            DEFAULT_ID_SCOPE,
            registration_id,
            &ProvisioningAttestation::X509,
        ))
        .await;
    (ack.code(), c)
}

#[tokio::test]
async fn a_certificate_chained_to_the_group_ca_provisions_and_connects() {
    let emu = Emulator::builder().in_memory().start().await.unwrap();
    let root = ca("fleet root");
    let r = http_json(
        emu.http_addr(),
        "PUT",
        "/enrollmentGroups/cams",
        json!({"enrollmentGroupId": "cams", "attestation": {"type": "x509", "x509": {
            "signingCertificates": {"primary": {"certificate": root.pem()}}}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["attestation"]["x509"]["signingCertificates"]["primary"]["info"]["sha256Thumbprint"],
        thumbprint(root.der()).as_str()
    );

    // Directly under the CA.
    let cam1 = leaf("cam-1", &root, "");
    let (code, mut c) = dps_with_cert(&emu, "cam-1", &cam1).await;
    assert_eq!(code, ConnectReturnCode::Accepted);
    c.dps_subscribe().await;
    let (_, last) = c.dps_provision("cam-1").await;
    assert_eq!(last.body["status"], "assigned", "{last:?}");
    assert_eq!(last.body["registrationState"]["deviceId"], "cam-1");
    let reg = emu.dps_registration("cam-1").unwrap();
    assert_eq!(reg.enrollment_group_id.as_deref(), Some("cams"));
    // At the hub: an X.509 device with the certificate's thumbprint, which
    // connects with the same certificate.
    let device = emu.device("cam-1").unwrap();
    assert_eq!(
        device.authentication,
        DeviceAuthentication::X509 {
            primary_thumbprint: cam1.2.clone(),
            secondary_thumbprint: None,
        }
    );
    let config = tls_config(emu.ca_pem().unwrap(), Some((&cam1.0, &cam1.1)));
    let mut hub = Client::tls_with(emu.mqtt_addr(), config).await;
    hub.connect(&device).await;

    // Through an intermediate CA the device sends with its certificate.
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "site 7");
    let mid = CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &root).unwrap();
    let cam2 = leaf("cam-2", &mid, &mid.pem());
    let (code, mut c) = dps_with_cert(&emu, "cam-2", &cam2).await;
    assert_eq!(code, ConnectReturnCode::Accepted);
    c.dps_subscribe().await;
    let (_, last) = c.dps_provision("cam-2").await;
    assert_eq!(last.body["status"], "assigned");
    // Without the intermediate, the chain does not reach the CA.
    let cam3 = leaf("cam-3", &mid, "");
    let (code, _) = dps_with_cert(&emu, "cam-3", &cam3).await;
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    emu.shutdown().await;
}

#[tokio::test]
async fn other_cas_and_other_names_are_refused() {
    let emu = Emulator::builder().in_memory().start().await.unwrap();
    let root = ca("fleet root");
    let info = emu
        .put_enrollment_group(
            "cams",
            EnrollmentSpec::default().with_x509_ca_pem(&root.pem()),
        )
        .unwrap();
    assert!(matches!(
        info.attestation,
        EnrollmentAttestation::X509Ca { .. }
    ));
    assert_eq!(info.device_key("cam-1"), None);

    // A certificate of another CA: not verified, and no password.
    let rogue = leaf("cam-1", &ca("rogue root"), "");
    let (code, _) = dps_with_cert(&emu, "cam-1", &rogue).await;
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    // A verified certificate registering under another name.
    let cam1 = leaf("cam-1", &root, "");
    let (code, _) = dps_with_cert(&emu, "cam-9", &cam1).await;
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    assert!(emu.device("cam-1").is_err());

    // A CA certificate attests groups only; garbage is refused.
    assert!(matches!(
        emu.put_enrollment(
            "cam-1",
            EnrollmentSpec::default().with_x509_ca_pem(&root.pem())
        ),
        Err(EmulatorError::BadRequest(_))
    ));
    assert!(matches!(
        emu.put_enrollment_group("bad", EnrollmentSpec::default().with_x509_ca_pem("junk")),
        Err(EmulatorError::BadRequest(_))
    ));
    let r = http_json(
        emu.http_addr(),
        "PUT",
        "/enrollmentGroups/bad",
        json!({"attestation": {"type": "x509", "x509": {
            "signingCertificates": {"primary": {"certificate": "junk"}}}}}),
    )
    .await;
    assert_eq!(r.status, 400);
    // Deleted: the CA admits nobody any more.
    emu.delete_enrollment_group("cams").unwrap();
    let (code, _) = dps_with_cert(&emu, "cam-1", &cam1).await;
    assert_ne!(code, ConnectReturnCode::Accepted);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_ca_group_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("fleet root");
    let emu = Emulator::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    emu.put_enrollment_group(
        "cams",
        EnrollmentSpec::default().with_x509_ca_pem(&root.pem()),
    )
    .unwrap();
    emu.shutdown().await;
    let emu = Emulator::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    let cam1 = leaf("cam-1", &root, "");
    let (code, mut c) = dps_with_cert(&emu, "cam-1", &cam1).await;
    assert_eq!(code, ConnectReturnCode::Accepted);
    c.dps_subscribe().await;
    let (_, last) = c.dps_provision("cam-1").await;
    assert_eq!(last.body["status"], "assigned");
    emu.shutdown().await;
}
