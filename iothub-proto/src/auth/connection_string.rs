//! Device and module connection strings.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use super::credentials::{ConnectCredentials, UsernameOptions};
use super::host::{HostName, HostNameError};
use super::identity::{IdError, Identity};
use super::sas::{SasToken, SasTokenError, SharedAccessKey, SharedAccessKeyError};

/// A key that a connection string may hold. Keys are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionStringKey {
    /// `HostName`: the hub, e.g. `contoso.azure-devices.net` (required).
    HostName,
    /// `DeviceId` (required).
    DeviceId,
    /// `ModuleId`: makes the identity a module identity.
    ModuleId,
    /// `GatewayHostName`: the IoT Edge gateway to connect to instead of the hub.
    GatewayHostName,
    /// `SharedAccessKeyName`: the policy name of the key (`skn` in tokens).
    SharedAccessKeyName,
    /// `SharedAccessKey`: a base64 symmetric key.
    SharedAccessKey,
    /// `SharedAccessSignature`: a ready SAS token, which cannot be renewed.
    SharedAccessSignature,
    /// `x509`: `true` for X.509 client-certificate authentication.
    X509,
}

impl ConnectionStringKey {
    /// Every key, in the order the documentation lists them.
    pub const ALL: [Self; 8] = [
        Self::HostName,
        Self::DeviceId,
        Self::ModuleId,
        Self::GatewayHostName,
        Self::SharedAccessKeyName,
        Self::SharedAccessKey,
        Self::SharedAccessSignature,
        Self::X509,
    ];

    /// The key exactly as it must be written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HostName => "HostName",
            Self::DeviceId => "DeviceId",
            Self::ModuleId => "ModuleId",
            Self::GatewayHostName => "GatewayHostName",
            Self::SharedAccessKeyName => "SharedAccessKeyName",
            Self::SharedAccessKey => "SharedAccessKey",
            Self::SharedAccessSignature => "SharedAccessSignature",
            Self::X509 => "x509",
        }
    }

    fn from_exact(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn from_ignoring_case(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for ConnectionStringKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection string was refused.
///
/// No variant holds text from the connection string except ids and host
/// names (inside [`IdError`] and [`HostNameError`]): an unknown key or a
/// segment without `=` is reported by its position only, since it could be
/// a pasted secret. `Display` includes the message of a wrapped error, and
/// [`source`](core::error::Error::source) therefore returns `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// A `;`-separated segment has no `=` (an empty segment included).
    SegmentWithoutEquals {
        /// The segment number, counted from 1.
        segment: usize,
    },
    /// A segment's key is not one of [`ConnectionStringKey::ALL`].
    UnknownKey {
        /// The segment number, counted from 1.
        segment: usize,
        /// The known key it matches when case is ignored (keys are
        /// case-sensitive, so `hostname=` is unknown).
        did_you_mean: Option<ConnectionStringKey>,
    },
    /// A key occurs more than once.
    DuplicateKey {
        /// The repeated key.
        key: ConnectionStringKey,
    },
    /// A key has an empty value.
    EmptyValue {
        /// The key with the empty value.
        key: ConnectionStringKey,
    },
    /// A required key (`HostName` or `DeviceId`) is missing.
    MissingKey {
        /// The missing key.
        key: ConnectionStringKey,
    },
    /// None of `SharedAccessKey`, `SharedAccessSignature`, `x509=true`.
    MissingCredential,
    /// More than one of `SharedAccessKey`, `SharedAccessSignature`,
    /// `x509=true`.
    ConflictingCredentials {
        /// One of the credentials given.
        first: ConnectionStringKey,
        /// Another one.
        second: ConnectionStringKey,
    },
    /// `SharedAccessKeyName` without `SharedAccessKey`.
    KeyNameWithoutSharedAccessKey,
    /// `x509` is neither `true` nor `false` (ASCII case ignored).
    InvalidX509Value,
    /// `SharedAccessKey` is not a valid key.
    InvalidSharedAccessKey {
        /// Why.
        error: SharedAccessKeyError,
    },
    /// `SharedAccessSignature` is not a valid SAS token.
    InvalidSharedAccessSignature {
        /// Why.
        error: SasTokenError,
    },
    /// `DeviceId` or `ModuleId` is not a valid id ([`IdError::kind`] tells
    /// which).
    InvalidId {
        /// Why.
        error: IdError,
    },
    /// `HostName` or `GatewayHostName` is not a valid host name.
    InvalidHostName {
        /// Which key.
        key: ConnectionStringKey,
        /// Why.
        error: HostNameError,
    },
}

impl fmt::Display for ConnectionStringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SegmentWithoutEquals { segment } => write!(
                f,
                "connection string segment {segment} has no `=` (expected `Key=value` segments separated by `;`)"
            ),
            Self::UnknownKey {
                segment,
                did_you_mean,
            } => {
                write!(f, "connection string segment {segment} has an unknown key")?;
                if let Some(key) = did_you_mean {
                    write!(f, " (keys are case-sensitive: did you mean `{key}`?)")?;
                }
                Ok(())
            }
            Self::DuplicateKey { key } => {
                write!(f, "connection string has `{key}` more than once")
            }
            Self::EmptyValue { key } => write!(f, "connection string has an empty `{key}`"),
            Self::MissingKey { key } => write!(f, "connection string has no `{key}`"),
            Self::MissingCredential => f.write_str(
                "connection string has no credential: expected `SharedAccessKey`, `SharedAccessSignature` or `x509=true`",
            ),
            Self::ConflictingCredentials { first, second } => write!(
                f,
                "connection string has both `{first}` and `{second}`; give exactly one credential"
            ),
            Self::KeyNameWithoutSharedAccessKey => f.write_str(
                "connection string has `SharedAccessKeyName` but no `SharedAccessKey`",
            ),
            Self::InvalidX509Value => {
                f.write_str("connection string `x509` must be `true` or `false`")
            }
            Self::InvalidSharedAccessKey { error } => {
                write!(f, "connection string `SharedAccessKey` is invalid: {error}")
            }
            Self::InvalidSharedAccessSignature { error } => write!(
                f,
                "connection string `SharedAccessSignature` is invalid: {error}"
            ),
            Self::InvalidId { error } => {
                let key = match error.kind {
                    super::IdKind::Device => ConnectionStringKey::DeviceId,
                    super::IdKind::Module => ConnectionStringKey::ModuleId,
                };
                write!(f, "connection string `{key}` is invalid: {error}")
            }
            Self::InvalidHostName { key, error } => {
                write!(f, "connection string `{key}` is invalid: {error}")
            }
        }
    }
}

impl core::error::Error for ConnectionStringError {}

/// How the device proves who it is.
///
/// Its `Debug` never shows the key or the token (see [`SharedAccessKey`]
/// and [`SasToken`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A symmetric key: a fresh SAS token is signed for every CONNECT.
    SharedAccessKey {
        /// The key.
        key: SharedAccessKey,
        /// The policy name (`SharedAccessKeyName`), sent as `skn`.
        key_name: Option<String>,
    },
    /// A ready SAS token. It cannot be renewed: once
    /// [`SasToken::expiry_unix_secs`] has passed, the hub refuses it.
    SharedAccessSignature(SasToken),
    /// An X.509 client certificate, presented by the TLS layer; the CONNECT
    /// password stays empty.
    X509,
    /// SAS tokens signed outside the session, by a key the device never
    /// holds (the IoT Edge workload API, a hardware security module). The
    /// session asks for each token with
    /// [`Event::TokenRequested`](crate::session::Event::TokenRequested)
    /// (before the first CONNECT and at every renewal point) and connects
    /// once [`Session::provide_token`](crate::session::Session::provide_token)
    /// hands it over.
    ExternalSigner,
}

impl Credential {
    /// Whether a fresh password can be made for a reconnection (a shared
    /// access key signs new tokens; an external signer is asked for them).
    pub fn is_renewable(&self) -> bool {
        matches!(self, Self::SharedAccessKey { .. } | Self::ExternalSigner)
    }
}

/// A parsed device or module connection string:
/// `HostName=…;DeviceId=…[;ModuleId=…][;GatewayHostName=…]` and one
/// credential: `SharedAccessKey=…[;SharedAccessKeyName=…]`,
/// `SharedAccessSignature=…` or `x509=true`.
///
/// Grammar (see [`parse`](Self::parse)): segments separated by `;` (one
/// trailing `;` allowed), each split at its first `=` into a case-sensitive
/// key and a non-empty value (which may contain `=`). Nothing is trimmed.
///
/// `Debug` never shows the key or token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionString {
    /// The hub (`HostName`). This is the name that goes into the username
    /// and the SAS resource URI, even behind a gateway.
    pub host_name: HostName,
    /// The device or module identity (`DeviceId`, `ModuleId`).
    pub identity: Identity,
    /// The IoT Edge gateway to open the TCP/TLS connection to
    /// (`GatewayHostName`), if any.
    pub gateway_host_name: Option<HostName>,
    /// How the device authenticates.
    pub credential: Credential,
}

/// The raw values, one slot per key.
#[derive(Default)]
struct Slots<'a> {
    host_name: Option<&'a str>,
    device_id: Option<&'a str>,
    module_id: Option<&'a str>,
    gateway_host_name: Option<&'a str>,
    key_name: Option<&'a str>,
    key: Option<&'a str>,
    signature: Option<&'a str>,
    x509: Option<&'a str>,
}

impl<'a> Slots<'a> {
    fn slot(&mut self, key: ConnectionStringKey) -> &mut Option<&'a str> {
        match key {
            ConnectionStringKey::HostName => &mut self.host_name,
            ConnectionStringKey::DeviceId => &mut self.device_id,
            ConnectionStringKey::ModuleId => &mut self.module_id,
            ConnectionStringKey::GatewayHostName => &mut self.gateway_host_name,
            ConnectionStringKey::SharedAccessKeyName => &mut self.key_name,
            ConnectionStringKey::SharedAccessKey => &mut self.key,
            ConnectionStringKey::SharedAccessSignature => &mut self.signature,
            ConnectionStringKey::X509 => &mut self.x509,
        }
    }
}

fn host_name(key: ConnectionStringKey, value: &str) -> Result<HostName, ConnectionStringError> {
    HostName::new(value).map_err(|error| ConnectionStringError::InvalidHostName { key, error })
}

impl ConnectionString {
    /// Parses a connection string.
    ///
    /// Checks, in this order: each segment in turn (has `=`, known key, not
    /// repeated, non-empty value); then `HostName`, `DeviceId`, `ModuleId`,
    /// `GatewayHostName`; then the credential (exactly one of
    /// `SharedAccessKey`, `SharedAccessSignature`, `x509=true`;
    /// `SharedAccessKeyName` only with `SharedAccessKey`; the key must be
    /// base64 and the token well-formed). The first problem found is
    /// reported. `x509=false` counts as no credential.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        use ConnectionStringError as E;
        use ConnectionStringKey as K;

        let body = s.strip_suffix(';').unwrap_or(s);
        let mut slots = Slots::default();
        if !body.is_empty() {
            for (i, segment) in body.split(';').enumerate() {
                let index = i + 1;
                let (name, value) = segment
                    .split_once('=')
                    .ok_or(E::SegmentWithoutEquals { segment: index })?;
                let key = K::from_exact(name).ok_or_else(|| E::UnknownKey {
                    segment: index,
                    did_you_mean: K::from_ignoring_case(name),
                })?;
                let slot = slots.slot(key);
                if slot.is_some() {
                    return Err(E::DuplicateKey { key });
                }
                if value.is_empty() {
                    return Err(E::EmptyValue { key });
                }
                *slot = Some(value);
            }
        }

        let host = host_name(
            K::HostName,
            slots.host_name.ok_or(E::MissingKey { key: K::HostName })?,
        )?;
        let device_id = slots.device_id.ok_or(E::MissingKey { key: K::DeviceId })?;
        let identity =
            Identity::parse(device_id, slots.module_id).map_err(|error| E::InvalidId { error })?;
        let gateway_host_name = slots
            .gateway_host_name
            .map(|g| host_name(K::GatewayHostName, g))
            .transpose()?;

        let x509 = match slots.x509 {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(E::InvalidX509Value),
        };
        let mut given = [
            slots.key.map(|_| K::SharedAccessKey),
            slots.signature.map(|_| K::SharedAccessSignature),
            x509.then_some(K::X509),
        ]
        .into_iter()
        .flatten();
        match (given.next(), given.next()) {
            (None, _) => return Err(E::MissingCredential),
            (Some(first), Some(second)) => {
                return Err(E::ConflictingCredentials { first, second });
            }
            (Some(_), None) => {}
        }
        let credential = if let Some(key) = slots.key {
            Credential::SharedAccessKey {
                key: SharedAccessKey::from_base64(key)
                    .map_err(|error| E::InvalidSharedAccessKey { error })?,
                key_name: slots.key_name.map(String::from),
            }
        } else if slots.key_name.is_some() {
            return Err(E::KeyNameWithoutSharedAccessKey);
        } else if let Some(token) = slots.signature {
            Credential::SharedAccessSignature(
                SasToken::parse(token)
                    .map_err(|error| E::InvalidSharedAccessSignature { error })?,
            )
        } else {
            Credential::X509
        };

        Ok(Self {
            host_name: host,
            identity,
            gateway_host_name,
            credential,
        })
    }

    /// The host to open the TCP/TLS connection to: the gateway when there is
    /// one, else the hub.
    pub fn transport_host(&self) -> &HostName {
        self.gateway_host_name.as_ref().unwrap_or(&self.host_name)
    }

    /// The CONNECT client id, username and password; see
    /// [`ConnectCredentials::new`]. `expiry_unix_secs` is used only for a
    /// shared access key.
    pub fn connect_credentials(
        &self,
        options: &UsernameOptions,
        expiry_unix_secs: u64,
    ) -> ConnectCredentials {
        ConnectCredentials::new(
            &self.identity,
            &self.host_name,
            &self.credential,
            options,
            expiry_unix_secs,
        )
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;
    fn from_str(s: &str) -> Result<Self, ConnectionStringError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{IdErrorReason, IdKind, SasField};
    use alloc::format;
    use alloc::string::ToString;

    /// A distinctive key: 32 bytes, base64 with one `=` of padding.
    const KEY: &str = "U0VDUkVUS0VZU0VDUkVUS0VZU0VDUkVUS0VZU0VDUks=";
    const TOKEN: &str =
        "SharedAccessSignature sr=h.net%2Fdevices%2Fd&sig=U0VDUkVUU0lHTkFUVVJF%3D&se=1700000000";

    fn assert_silent(text: &str, secrets: &[&str]) {
        for s in secrets {
            assert!(!text.contains(s), "{s:?} leaked in {text:?}");
        }
    }

    #[test]
    fn device_with_key() {
        let cs: ConnectionString = format!("HostName=h.net;DeviceId=dev1;SharedAccessKey={KEY}")
            .parse()
            .unwrap();
        assert_eq!(cs.host_name.as_str(), "h.net");
        assert_eq!(cs.identity, Identity::parse("dev1", None).unwrap());
        assert_eq!(cs.gateway_host_name, None);
        assert_eq!(cs.transport_host().as_str(), "h.net");
        let Credential::SharedAccessKey { key, key_name } = &cs.credential else {
            panic!("{cs:?}")
        };
        assert_eq!(key.expose_secret(), b"SECRETKEYSECRETKEYSECRETKEYSECRK");
        assert_eq!(key_name, &None);
        assert!(cs.credential.is_renewable());
        assert_silent(&format!("{cs:?} {cs:#?}"), &[KEY, "SECRETKEY"]);
    }

    #[test]
    fn module_gateway_key_name_any_order_trailing_semicolon() {
        let s = format!(
            "SharedAccessKeyName=device;GatewayHostName=edge.local;SharedAccessKey={KEY};ModuleId=m=1;DeviceId=d=1?;HostName=h.net;"
        );
        let cs = ConnectionString::parse(&s).unwrap();
        assert_eq!(cs.identity, Identity::parse("d=1?", Some("m=1")).unwrap());
        assert_eq!(
            cs.gateway_host_name.as_ref().unwrap().as_str(),
            "edge.local"
        );
        assert_eq!(cs.transport_host().as_str(), "edge.local");
        let Credential::SharedAccessKey { key_name, .. } = &cs.credential else {
            panic!("{cs:?}")
        };
        assert_eq!(key_name.as_deref(), Some("device"));
        assert_silent(&format!("{cs:?}"), &[KEY]);
    }

    #[test]
    fn signature_with_equals_inside() {
        let cs = ConnectionString::parse(&format!(
            "HostName=h.net;DeviceId=d;SharedAccessSignature={TOKEN}"
        ))
        .unwrap();
        let Credential::SharedAccessSignature(t) = &cs.credential else {
            panic!("{cs:?}")
        };
        assert_eq!(t.expose_secret(), TOKEN);
        assert_eq!(t.expiry_unix_secs(), 1_700_000_000);
        assert_eq!(t.resource_uri(), "h.net/devices/d");
        assert!(!cs.credential.is_renewable());
        assert_silent(&format!("{cs:?}"), &[TOKEN, "U0VDUkVUU0lHTkFUVVJF"]);
    }

    #[test]
    fn x509() {
        for v in ["true", "True", "TRUE"] {
            let cs =
                ConnectionString::parse(&format!("HostName=h.net;DeviceId=d;x509={v}")).unwrap();
            assert!(matches!(cs.credential, Credential::X509));
            assert!(!cs.credential.is_renewable());
        }
        // x509=false is no credential, and so does not conflict.
        let cs = ConnectionString::parse(&format!(
            "HostName=h;DeviceId=d;x509=false;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert!(matches!(cs.credential, Credential::SharedAccessKey { .. }));
    }

    #[test]
    fn every_error() {
        use ConnectionStringError as E;
        use ConnectionStringKey as K;
        let ok_tail = format!("SharedAccessKey={KEY}");
        let cases: &[(alloc::string::String, ConnectionStringError)] = &[
            ("".into(), E::MissingKey { key: K::HostName }),
            (";".into(), E::MissingKey { key: K::HostName }),
            (";;".into(), E::SegmentWithoutEquals { segment: 1 }),
            (format!("HostName=h;;DeviceId=d;{ok_tail}"), E::SegmentWithoutEquals { segment: 2 }),
            (format!("HostName=h;DeviceId=d;{ok_tail};;"), E::SegmentWithoutEquals { segment: 4 }),
            (format!("HostName=h;DeviceId=d;{KEY}"), E::UnknownKey { segment: 3, did_you_mean: None }),
            ("HostName=h;DeviceId=d;SECRETSEGMENT".into(), E::SegmentWithoutEquals { segment: 3 }),
            (
                format!("hostname=h;DeviceId=d;{ok_tail}"),
                E::UnknownKey { segment: 1, did_you_mean: Some(K::HostName) },
            ),
            (
                "HostName=h;DeviceId=d;X509=true".into(),
                E::UnknownKey { segment: 3, did_you_mean: Some(K::X509) },
            ),
            (
                format!("HostName=h;DeviceId=d;Foo=bar;{ok_tail}"),
                E::UnknownKey { segment: 3, did_you_mean: None },
            ),
            (
                format!(" HostName=h;DeviceId=d;{ok_tail}"),
                E::UnknownKey { segment: 1, did_you_mean: None },
            ),
            (format!("HostName=h;HostName=h;DeviceId=d;{ok_tail}"), E::DuplicateKey { key: K::HostName }),
            (format!("HostName=h;DeviceId=d;{ok_tail};{ok_tail}"), E::DuplicateKey { key: K::SharedAccessKey }),
            (format!("HostName=;DeviceId=d;{ok_tail}"), E::EmptyValue { key: K::HostName }),
            ("HostName=h;DeviceId=d;SharedAccessKey=".into(), E::EmptyValue { key: K::SharedAccessKey }),
            (format!("HostName=h;DeviceId=d;ModuleId=;{ok_tail}"), E::EmptyValue { key: K::ModuleId }),
            (format!("DeviceId=d;{ok_tail}"), E::MissingKey { key: K::HostName }),
            (format!("HostName=h;{ok_tail}"), E::MissingKey { key: K::DeviceId }),
            ("HostName=h;DeviceId=d".into(), E::MissingCredential),
            ("HostName=h;DeviceId=d;x509=false".into(), E::MissingCredential),
            ("HostName=h;DeviceId=d;SharedAccessKeyName=p".into(), E::MissingCredential),
            (
                format!("HostName=h;DeviceId=d;{ok_tail};x509=true"),
                E::ConflictingCredentials { first: K::SharedAccessKey, second: K::X509 },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessSignature={TOKEN};{ok_tail}"),
                E::ConflictingCredentials { first: K::SharedAccessKey, second: K::SharedAccessSignature },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessSignature={TOKEN};x509=true"),
                E::ConflictingCredentials { first: K::SharedAccessSignature, second: K::X509 },
            ),
            (
                format!("HostName=h;DeviceId=d;SharedAccessSignature={TOKEN};SharedAccessKeyName=p"),
                E::KeyNameWithoutSharedAccessKey,
            ),
            ("HostName=h;DeviceId=d;x509=yes".into(), E::InvalidX509Value),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=SECRET-NOT-BASE64".into(),
                E::InvalidSharedAccessKey { error: SharedAccessKeyError::NotBase64 },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=a&sig=SECRETSIG".into(),
                E::InvalidSharedAccessSignature { error: SasTokenError::MissingField(SasField::Expiry) },
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessSignature=SECRETSIG".into(),
                E::InvalidSharedAccessSignature { error: SasTokenError::MissingPrefix },
            ),
            (
                format!("HostName=h;DeviceId=a/b;{ok_tail}"),
                E::InvalidId {
                    error: IdError { kind: IdKind::Device, reason: IdErrorReason::InvalidChar { ch: '/', index: 1 } },
                },
            ),
            (
                format!("HostName=h;DeviceId=d;ModuleId=m#;{ok_tail}"),
                E::InvalidId {
                    error: IdError { kind: IdKind::Module, reason: IdErrorReason::InvalidChar { ch: '#', index: 1 } },
                },
            ),
            (
                format!("HostName=h.net:8883;DeviceId=d;{ok_tail}"),
                E::InvalidHostName { key: K::HostName, error: HostNameError::InvalidChar { ch: ':', index: 5 } },
            ),
            (
                format!("HostName=h;DeviceId=d;GatewayHostName=a..b;{ok_tail}"),
                E::InvalidHostName { key: K::GatewayHostName, error: HostNameError::EmptyLabel },
            ),
        ];
        for (text, want) in cases {
            let err = ConnectionString::parse(text).unwrap_err();
            assert_eq!(&err, want, "{text}");
            let shown = format!("{err} | {err:?} | {err:#?}");
            assert_silent(
                &shown,
                &[
                    KEY,
                    "U0VDUkVU",
                    "SECRET",
                    "sig=",
                    "SharedAccessSignature sr",
                ],
            );
            // Every message names the problem key or the segment.
            assert!(shown.contains("connection string"), "{shown}");
        }
        let shown = cases
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<alloc::vec::Vec<_>>()
            .join("\n");
        for needle in [
            "segment 2 has no `=`",
            "segment 1 has an unknown key (keys are case-sensitive: did you mean `HostName`?)",
            "segment 3 has an unknown key (keys are case-sensitive: did you mean `x509`?)",
            "`HostName` more than once",
            "empty `ModuleId`",
            "has no `DeviceId`",
            "has no credential",
            "both `SharedAccessKey` and `x509`",
            "`SharedAccessKeyName` but no `SharedAccessKey`",
            "`x509` must be `true` or `false`",
            "`SharedAccessKey` is invalid: shared access key is not valid base64",
            "`SharedAccessSignature` is invalid: SAS token has no `se` field",
            "`DeviceId` is invalid: device id has the character '/'",
            "`ModuleId` is invalid: module id",
            "`GatewayHostName` is invalid: host name has an empty label",
        ] {
            assert!(shown.contains(needle), "{needle:?} not in\n{shown}");
        }
    }

    #[test]
    fn keys_round_trip_through_as_str() {
        for k in ConnectionStringKey::ALL {
            assert_eq!(ConnectionStringKey::from_exact(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
    }
}
