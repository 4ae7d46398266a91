//! Property tests of the `auth` module: no panics on arbitrary input, no
//! secret in any error or `Debug`, and build → parse round trips.

use iothub_hub::username::Username;
use iothub_proto::auth::{
    ConnectionString, HostName, Identity, SasToken, SharedAccessKey, UsernameOptions,
};
use proptest::prelude::*;

/// Text that stands for a secret; it must never show up in an error or a
/// `Debug`.
const MARK: &str = "Zq9SECRET";

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9\\-.%_*?!(),:=@$']{1,24}"
}

fn host() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9][a-z0-9_\\-]{0,10}", 1..4).prop_map(|labels| labels.join("."))
}

/// A segment that may or may not be valid. The secret mark appears only
/// where a secret may be: in key and token values, as a bare segment, or as
/// an unknown key (a pasted key before its `=` padding).
fn segment() -> impl Strategy<Value = String> {
    let public_key = prop_oneof![
        Just("HostName"),
        Just("DeviceId"),
        Just("ModuleId"),
        Just("GatewayHostName"),
        Just("SharedAccessKeyName"),
        Just("x509"),
        Just("hostname"),
        Just(""),
    ];
    let public_value = prop_oneof![
        Just(String::new()),
        Just("true".to_string()),
        Just("False".to_string()),
        id(),
        host(),
        "[^;]*",
    ];
    let secret_key = prop_oneof![Just("SharedAccessKey"), Just("SharedAccessSignature")];
    let secret_value = prop_oneof![
        Just(String::new()),
        Just(MARK.to_string()),
        Just(format!("{MARK}AAA=")),
        Just(format!("SharedAccessSignature sr=a&sig={MARK}&se=1")),
        Just(format!("SharedAccessSignature sr=a&sig={MARK}&se=1&skn=p")),
        Just(format!("SharedAccessSignature sr=a&sig={MARK}")),
        Just(format!("SharedAccessSignature sr=a&sig={MARK}&se=x")),
        Just(format!("SharedAccessSignature sr=a&sig={MARK}&se=1&se=2")),
        Just(format!("SharedAccessSignature {MARK}")),
        Just(format!("SharedAccessSignature sr=%FF&sig={MARK}&se=1")),
        Just("U0VDUkVUS0VZU0VDUkVUS0VZU0VDUkVUS0VZU0VDUks=".to_string()),
    ];
    prop_oneof![
        (public_key, public_value).prop_map(|(k, v)| format!("{k}={v}")),
        (secret_key, secret_value).prop_map(|(k, v)| format!("{k}={v}")),
        Just(MARK.to_string()),
        Just(format!("{MARK}=")),
        Just(format!("{MARK}==")),
        "[^;]*",
    ]
}

fn connection_string() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..8), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut s = segments.join(";");
        if trailing {
            s.push(';');
        }
        s
    })
}

fn assert_no_mark(text: &str) {
    assert!(!text.contains(MARK), "secret leaked: {text:?}");
}

proptest! {
    #[test]
    fn connection_string_never_panics(s in ".*") {
        let _ = s.parse::<ConnectionString>();
    }

    #[test]
    fn connection_string_never_leaks(s in connection_string()) {
        match s.parse::<ConnectionString>() {
            Ok(cs) => assert_no_mark(&format!("{cs:?} {cs:#?}")),
            Err(e) => assert_no_mark(&format!("{e} {e:?} {e:#?}")),
        }
    }

    #[test]
    fn valid_connection_strings_parse(
        host in host(),
        device in id(),
        module in prop::option::of(id()),
        key in prop::collection::vec(any::<u8>(), 1..80),
        key_name in prop::option::of("[a-zA-Z0-9 ]{1,10}"),
    ) {
        use base64::Engine as _;
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        let mut s = format!("HostName={host};DeviceId={device};SharedAccessKey={key_b64}");
        if let Some(m) = &module {
            s.push_str(&format!(";ModuleId={m}"));
        }
        if let Some(k) = &key_name {
            s.push_str(&format!(";SharedAccessKeyName={k}"));
        }
        let cs: ConnectionString = s.parse().unwrap();
        prop_assert_eq!(cs.host_name.as_str(), host.as_str());
        prop_assert_eq!(cs.identity, Identity::parse(&device, module.as_deref()).unwrap());
        let debug = format!("{:?}", cs.credential);
        prop_assert!(!debug.contains(&key_b64));
    }

    #[test]
    fn sas_token_parse_never_panics(s in ".*") {
        if let Err(e) = SasToken::parse(&s) {
            let _ = format!("{e} {e:?}");
        }
        let _ = SasToken::parse(&format!("SharedAccessSignature {s}"));
    }

    #[test]
    fn sas_token_round_trip(
        resource in ".+",
        key in prop::collection::vec(any::<u8>(), 1..100),
        expiry in any::<u64>(),
        key_name in prop::option::of(".+"),
    ) {
        let key = SharedAccessKey::from_bytes(key).unwrap();
        let token = SasToken::generate(&resource, &key, expiry, key_name.as_deref());
        let parsed = SasToken::parse(token.expose_secret()).unwrap();
        prop_assert_eq!(parsed.resource_uri(), resource.as_str());
        prop_assert_eq!(parsed.expiry_unix_secs(), expiry);
        prop_assert_eq!(parsed.key_name(), key_name.as_deref());
        prop_assert!(parsed.verify(&key));
        let sig = token.expose_secret().split("&sig=").nth(1).unwrap().split('&').next().unwrap();
        let debug = format!("{token:?} {parsed:?}");
        prop_assert!(!debug.contains(sig));
        prop_assert!(!debug.contains(token.expose_secret()));
    }

    #[test]
    fn username_round_trip(
        host in host(),
        device in id(),
        module in prop::option::of(id()),
        api_version in ".+",
        device_client_type in prop::option::of(".*"),
        model_id in prop::option::of(".*"),
        legacy_form in any::<bool>(),
    ) {
        let host = HostName::new(host).unwrap();
        let identity = Identity::parse(&device, module.as_deref()).unwrap();
        let mut options = UsernameOptions::default()
            .with_api_version(api_version.clone())
            .with_legacy_form(legacy_form);
        options.device_client_type = device_client_type.clone();
        options.model_id = model_id.clone();
        let text = options.username(&identity, &host);
        let u = Username::parse(&text).unwrap();
        prop_assert_eq!(&u.host_name, &host);
        prop_assert_eq!(&u.identity, &identity);
        prop_assert_eq!(&u.api_version, &api_version);
        prop_assert_eq!(u.legacy_form, legacy_form);
        prop_assert_eq!(u.device_client_type(), device_client_type.as_deref());
        prop_assert_eq!(u.model_id(), model_id.as_deref());
        let expected = usize::from(device_client_type.is_some()) + usize::from(model_id.is_some());
        prop_assert_eq!(u.params.len(), expected);
    }

    #[test]
    fn username_parse_never_panics(s in ".*") {
        let _ = Username::parse(&s);
    }
}
