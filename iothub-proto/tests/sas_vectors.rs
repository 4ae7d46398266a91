//! Our SAS tokens against tokens computed by an independent implementation
//! (`tests/data/sas_vectors.py`, Python standard library only), byte for byte.

use iothub_proto::auth::{
    ConnectCredentials, ConnectionString, Credential, DPS_KEY_NAME, HostName, IdScope, Identity,
    ProvisioningAttestation, ProvisioningUsername, RegistrationId, SasToken, SharedAccessKey,
    UsernameOptions, dps_resource_uri,
};
use serde_json::Value;

const VECTORS: &str = include_str!("data/sas_vectors.json");

fn cases() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTORS).expect("sas_vectors.json is JSON");
    let cases = doc["cases"].as_array().expect("cases").clone();
    assert!(cases.len() >= 8, "expected at least 8 vectors");
    cases
}

fn s<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {case}"))
}

fn opt<'a>(case: &'a Value, field: &str) -> Option<&'a str> {
    case[field].as_str()
}

#[test]
fn generate_matches_python() {
    for case in cases() {
        let name = s(&case, "name");
        let key = SharedAccessKey::from_base64(s(&case, "key_base64")).unwrap();
        let expiry = case["expiry_unix_secs"].as_u64().unwrap();
        let key_name = opt(&case, "key_name");
        let want = s(&case, "token");

        let resource_uri = match s(&case, "kind") {
            "hub" => {
                let identity =
                    Identity::parse(s(&case, "device_id"), opt(&case, "module_id")).unwrap();
                identity.resource_uri(s(&case, "host_name"))
            }
            "dps" => {
                assert_eq!(key_name, Some(DPS_KEY_NAME));
                // The device key of a group enrollment is derived from the group key.
                let group = SharedAccessKey::from_base64(s(&case, "group_key_base64")).unwrap();
                let derived = group.derive_for_registration(s(&case, "registration_id"));
                assert_eq!(derived.expose_secret(), key.expose_secret(), "{name}");
                dps_resource_uri(s(&case, "id_scope"), s(&case, "registration_id"))
            }
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(resource_uri, s(&case, "resource_uri"), "{name}");

        let token = SasToken::generate(&resource_uri, &key, expiry, key_name);
        assert_eq!(token.expose_secret(), want, "{name}");
        assert_eq!(token.expiry_unix_secs(), expiry);
        assert_eq!(token.resource_uri(), resource_uri);
        assert_eq!(token.key_name(), key_name);
    }
}

#[test]
fn parse_and_verify_python_tokens() {
    for case in cases() {
        let name = s(&case, "name");
        let key = SharedAccessKey::from_base64(s(&case, "key_base64")).unwrap();
        let token = SasToken::parse(s(&case, "token")).unwrap();
        assert_eq!(token.resource_uri(), s(&case, "resource_uri"), "{name}");
        assert_eq!(
            token.expiry_unix_secs(),
            case["expiry_unix_secs"].as_u64().unwrap()
        );
        assert_eq!(token.key_name(), opt(&case, "key_name"));
        assert!(token.verify(&key), "{name}");
        let other = SharedAccessKey::from_bytes(vec![0x55; 32]).unwrap();
        assert!(!token.verify(&other), "{name}");
    }
}

#[test]
fn connect_credentials_match_python() {
    for case in cases().iter().filter(|c| s(c, "kind") == "hub") {
        let name = s(case, "name");
        let mut text = format!(
            "HostName={};DeviceId={};SharedAccessKey={}",
            s(case, "host_name"),
            s(case, "device_id"),
            s(case, "key_base64")
        );
        if let Some(m) = opt(case, "module_id") {
            text.push_str(&format!(";ModuleId={m}"));
        }
        if let Some(k) = opt(case, "key_name") {
            text.push_str(&format!(";SharedAccessKeyName={k}"));
        }
        let cs: ConnectionString = text.parse().unwrap();
        let expiry = case["expiry_unix_secs"].as_u64().unwrap();
        let creds = cs.connect_credentials(&UsernameOptions::default(), expiry);
        assert_eq!(
            creds.password.as_ref().unwrap().expose_secret(),
            s(case, "token"),
            "{name}"
        );

        // The same through the explicit constructor.
        let Credential::SharedAccessKey { .. } = &cs.credential else {
            panic!("{name}: not a key credential");
        };
        let direct = ConnectCredentials::new(
            &cs.identity,
            &HostName::new(s(case, "host_name")).unwrap(),
            &cs.credential,
            &UsernameOptions::default(),
            expiry,
        );
        assert_eq!(direct.expose_password(), creds.expose_password());
    }
}

#[test]
fn signature_encoding_is_exercised() {
    let case = cases()
        .into_iter()
        .find(|c| s(c, "name") == "signature with + / =")
        .unwrap();
    let sig = s(&case, "signature_base64");
    for ch in ['+', '/', '='] {
        assert!(sig.contains(ch), "{sig}");
    }
    let token = s(&case, "token");
    for esc in ["%2B", "%2F", "%3D"] {
        assert!(
            token.split("&sig=").nth(1).unwrap().contains(esc),
            "{token}"
        );
    }
}

#[test]
fn group_key_derivation_matches_python() {
    let doc: Value = serde_json::from_str(VECTORS).expect("sas_vectors.json is JSON");
    let derivations = doc["derivations"].as_array().expect("derivations");
    assert!(derivations.len() >= 6);
    for d in derivations {
        let name = s(d, "name");
        let group = SharedAccessKey::from_base64(s(d, "group_key_base64")).unwrap();
        let want = SharedAccessKey::from_base64(s(d, "device_key_base64")).unwrap();
        let rid = s(d, "registration_id");
        let derived = group.derive_for_registration(rid);
        assert_eq!(derived.expose_secret(), want.expose_secret(), "{name}");
        assert_eq!(derived.expose_secret().len(), 32, "{name}");
        // The same through the typed attestation.
        let ProvisioningAttestation::SymmetricKey(k) =
            ProvisioningAttestation::group(&group, &RegistrationId::new(rid).unwrap())
        else {
            panic!("{name}: not a key attestation");
        };
        assert_eq!(k.expose_secret(), want.expose_secret(), "{name}");
    }
}

#[test]
fn dps_connect_credentials_match_python() {
    let dps: Vec<Value> = cases()
        .into_iter()
        .filter(|c| s(c, "kind") == "dps")
        .collect();
    assert!(dps.len() >= 2);
    for case in &dps {
        let name = s(case, "name");
        let rid = RegistrationId::new(s(case, "registration_id")).unwrap();
        let group = SharedAccessKey::from_base64(s(case, "group_key_base64")).unwrap();
        let mut username =
            ProvisioningUsername::new(IdScope::new(s(case, "id_scope")).unwrap(), rid.clone())
                .with_api_version(s(case, "api_version"));
        if let Some(ua) = opt(case, "client_version") {
            username = username.with_client_version(ua);
        }
        let expiry = case["expiry_unix_secs"].as_u64().unwrap();
        let creds =
            ProvisioningAttestation::group(&group, &rid).connect_credentials(&username, expiry);
        assert_eq!(creds.client_id, s(case, "client_id"), "{name}");
        assert_eq!(creds.username, s(case, "username"), "{name}");
        assert_eq!(
            creds.password.as_ref().unwrap().expose_secret(),
            s(case, "token"),
            "{name}"
        );
        // And the username reads back.
        let parsed = ProvisioningUsername::parse(s(case, "username")).unwrap();
        assert_eq!(parsed, username, "{name}");
    }
}
