//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus
//! replay test below. Not a public API: enabled by the `fuzzing` feature.
//!
//! Each function takes arbitrary bytes, must never panic on its own input
//! handling, and asserts the round-trip property of its layer: whatever is
//! accepted re-encodes to something that is accepted again as the same value.
//! A failed assertion is a bug the fuzzer reports.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::auth::{
    ConnectionString, Credential, DeviceId, ModuleId, SasToken, Username, UsernameOptions,
};
use crate::properties::{self, MessageProperties};
use crate::topic::{self, HubTopic, RequestId};

/// Parses `data` as a hub→device topic; anything accepted is rebuilt with
/// [`topic::hub`] and must parse back to the same value.
pub fn topic_parse(data: &[u8]) {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = topic::parse(s) else {
        return;
    };
    let rebuilt = rebuild_topic(&parsed);
    let reparsed = topic::parse(&rebuilt)
        .unwrap_or_else(|e| panic!("rebuilt topic {rebuilt:?} of {s:?} does not parse: {e}"));
    assert_eq!(parsed, reparsed, "topic {s:?} rebuilt as {rebuilt:?}");
}

fn rid(s: &str) -> RequestId {
    RequestId::new(s).expect("a parsed request id is a valid RequestId")
}

fn rebuild_topic(t: &HubTopic<'_>) -> String {
    match t {
        HubTopic::C2d {
            device_id,
            properties,
        } => topic::hub::c2d(&DeviceId::new(*device_id).expect("parsed id"), properties),
        HubTopic::ModuleInput {
            device_id,
            module_id,
            input,
            properties,
        } => topic::hub::module_input(
            &DeviceId::new(*device_id).expect("parsed id"),
            &ModuleId::new(*module_id).expect("parsed id"),
            input,
            properties,
        )
        .expect("parsed input name"),
        HubTopic::TwinResponse {
            status,
            request_id,
            version,
        } => topic::hub::twin_response(*status, &rid(request_id), *version),
        HubTopic::DesiredPatch { version } => topic::hub::desired_patch(*version),
        HubTopic::MethodRequest { name, request_id } => {
            topic::hub::method_request(name, &rid(request_id)).expect("parsed method name")
        }
        HubTopic::DpsResponse {
            status,
            request_id,
            retry_after,
        } => topic::hub::dps_response(*status, &rid(request_id), *retry_after),
    }
}

/// Decodes `data` as a property bag; anything accepted re-encodes to a bag
/// that decodes to the same properties.
pub fn property_bag(data: &[u8]) {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(props) = properties::decode(s) else {
        return;
    };
    let bag = props.to_bag();
    assert_eq!(bag.len(), props.encoded_len(), "encoded_len of {s:?}");
    let again: MessageProperties = properties::decode(&bag)
        .unwrap_or_else(|e| panic!("re-encoded bag {bag:?} of {s:?} does not decode: {e}"));
    assert_eq!(props, again, "bag {s:?} re-encoded as {bag:?}");
}

/// Parses `data` as a connection string. Whatever is accepted yields CONNECT
/// credentials whose username parses back to the same identity and whose
/// token parses; no secret of the input ever shows in `Debug` or in an error.
pub fn connection_string(data: &[u8]) {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    let secrets: Vec<&str> = s
        .split(';')
        .filter_map(|seg| {
            seg.strip_prefix("SharedAccessKey=")
                .or_else(|| seg.strip_prefix("SharedAccessSignature="))
        })
        // Long values with a digit (short or digit-free ones could occur in
        // the fixed English text of an error by chance) that occur nowhere
        // else in the input (a non-secret value may legitimately hold them).
        .filter(|v| {
            v.len() >= 12 && v.bytes().any(|b| b.is_ascii_digit()) && s.matches(*v).count() == 1
        })
        .collect();
    let shown = match ConnectionString::parse(s) {
        Ok(cs) => {
            let creds = cs.connect_credentials(&UsernameOptions::default(), 1_700_000_000);
            let username = Username::parse(&creds.username).unwrap_or_else(|e| {
                panic!("username {:?} of {s:?} does not parse: {e}", creds.username)
            });
            assert_eq!(username.identity, cs.identity);
            assert_eq!(username.host_name, cs.host_name);
            match (&cs.credential, &creds.password) {
                (Credential::X509, None) => {}
                (Credential::X509, Some(_)) => panic!("x509 credentials with a password"),
                (_, Some(token)) => {
                    let again = SasToken::parse(token.expose_secret())
                        .unwrap_or_else(|e| panic!("token of {s:?} does not parse: {e}"));
                    assert_eq!(again.expiry_unix_secs(), token.expiry_unix_secs());
                }
                (_, None) => panic!("a SAS credential without a password"),
            }
            format!("{cs:?} {creds:?}")
        }
        Err(e) => format!("{e} {e:?}"),
    };
    for secret in secrets {
        assert!(!shown.contains(secret), "secret shown: {shown}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::vec::Vec;

    type Target = (&'static str, fn(&[u8]));

    /// Every target with the function the cargo-fuzz binary calls.
    const TARGETS: &[Target] = &[
        ("topic_parse", super::topic_parse),
        ("property_bag", super::property_bag),
        ("connection_string", super::connection_string),
    ];

    fn corpus_dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
    }

    /// Replays every committed corpus file through its target, so corpus
    /// regressions show up in `cargo test` as well as under `cargo fuzz`.
    #[test]
    fn replay_fuzz_corpora() {
        for (target, run) in TARGETS {
            let dir = corpus_dir(target);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "corpus of {target} is empty");
            for f in files {
                let data = std::fs::read(&f).unwrap();
                run(&data);
            }
        }
    }
}
