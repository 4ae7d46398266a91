//! Device Provisioning Service (DPS) identities and CONNECT credentials:
//! validated [`IdScope`] and [`RegistrationId`], the typed DPS username
//! ([`ProvisioningUsername`], builder and parser), and
//! [`ProvisioningAttestation::connect_credentials`].
//!
//! A DPS username is `{idScope}/registrations/{registrationId}/api-version={v}`,
//! optionally followed by `&ClientVersion={user agent}` and other
//! parameters. A parser of IoT Hub usernames (`iothub_hub::username`)
//! cannot tell the two apart: it would take a DPS username for the legacy
//! module form, with the ID scope as host name, `registrations` as device
//! id and the registration id as module id (a device may really be called
//! `registrations`). A server that serves DPS reads its usernames with
//! [`ProvisioningUsername::parse`] instead.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::connection_string::Credential;
use super::credentials::ConnectCredentials;
use super::sas::{DPS_KEY_NAME, SasToken, SharedAccessKey, dps_resource_uri};
use crate::text::{impl_str_newtype, push_url_encoded, url_decode};

/// The DPS api-version sent by default (the newer SDKs'; the MQTT support
/// page shows `2019-03-31`).
pub const DEFAULT_DPS_API_VERSION: &str = "2021-06-01";

/// The global DPS device endpoint, the transport host of most devices.
pub const GLOBAL_DPS_ENDPOINT: &str = "global.azure-devices-provisioning.net";

/// The longest [`IdScope`] accepted, in characters.
pub const MAX_ID_SCOPE_LEN: usize = 64;

/// The longest [`RegistrationId`] DPS accepts, in characters.
pub const MAX_REGISTRATION_ID_LEN: usize = 128;

/// Which DPS id a [`ProvisioningIdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisioningIdKind {
    /// An [`IdScope`].
    IdScope,
    /// A [`RegistrationId`].
    RegistrationId,
}

impl fmt::Display for ProvisioningIdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProvisioningIdKind::IdScope => "ID scope",
            ProvisioningIdKind::RegistrationId => "registration id",
        })
    }
}

/// Why an [`IdScope`] or a [`RegistrationId`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProvisioningIdError {
    /// The id is empty.
    Empty(ProvisioningIdKind),
    /// The id is longer than its limit.
    TooLong {
        /// Which id.
        kind: ProvisioningIdKind,
        /// The length given, in bytes.
        len: usize,
    },
    /// The id holds a character outside its set.
    InvalidChar {
        /// Which id.
        kind: ProvisioningIdKind,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        index: usize,
    },
    /// A registration id must end with an ASCII letter, a digit or `-`.
    InvalidLastChar,
}

impl fmt::Display for ProvisioningIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty(kind) => write!(f, "{kind} is empty"),
            Self::TooLong { kind, len } => write!(f, "{kind} is {len} characters long"),
            Self::InvalidChar { kind, ch, index } => match kind {
                ProvisioningIdKind::IdScope => write!(
                    f,
                    "{kind} has the character {ch:?} at byte {index}; allowed are ASCII letters and digits"
                ),
                ProvisioningIdKind::RegistrationId => write!(
                    f,
                    "{kind} has the character {ch:?} at byte {index}; allowed are ASCII letters, digits and - . _ :"
                ),
            },
            Self::InvalidLastChar => {
                f.write_str("registration id must end with an ASCII letter, a digit or `-`")
            }
        }
    }
}

impl core::error::Error for ProvisioningIdError {}

/// The ID scope of a DPS instance, such as `0ne00000A0A`: 1 to
/// [`MAX_ID_SCOPE_LEN`] ASCII letters and digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdScope(String);

impl IdScope {
    /// Validates `id_scope`.
    pub fn new(id_scope: impl Into<String>) -> Result<Self, ProvisioningIdError> {
        let s = id_scope.into();
        let kind = ProvisioningIdKind::IdScope;
        if s.is_empty() {
            return Err(ProvisioningIdError::Empty(kind));
        }
        if let Some((index, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii_alphanumeric()) {
            return Err(ProvisioningIdError::InvalidChar { kind, ch, index });
        }
        if s.len() > MAX_ID_SCOPE_LEN {
            return Err(ProvisioningIdError::TooLong { kind, len: s.len() });
        }
        Ok(Self(s))
    }

    /// The ID scope as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl_str_newtype!(IdScope, ProvisioningIdError);

/// A DPS registration id: the MQTT client id when provisioning, and by
/// default the device id the device is created with.
///
/// DPS's rules: 1 to [`MAX_REGISTRATION_ID_LEN`] ASCII letters, digits and
/// `- . _ :`, ending with a letter, a digit or `-`. (DPS compares them
/// case-insensitively; this type keeps the spelling given.) Every valid
/// registration id is also a valid [`DeviceId`](super::DeviceId).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistrationId(String);

impl RegistrationId {
    /// Validates `registration_id`.
    pub fn new(registration_id: impl Into<String>) -> Result<Self, ProvisioningIdError> {
        let s = registration_id.into();
        let kind = ProvisioningIdKind::RegistrationId;
        if s.is_empty() {
            return Err(ProvisioningIdError::Empty(kind));
        }
        if let Some((index, ch)) = s
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')))
        {
            return Err(ProvisioningIdError::InvalidChar { kind, ch, index });
        }
        if s.len() > MAX_REGISTRATION_ID_LEN {
            return Err(ProvisioningIdError::TooLong { kind, len: s.len() });
        }
        if !s
            .bytes()
            .next_back()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ProvisioningIdError::InvalidLastChar);
        }
        Ok(Self(s))
    }

    /// The registration id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl_str_newtype!(RegistrationId, ProvisioningIdError);

/// Why a DPS CONNECT username could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProvisioningUsernameError {
    /// Not `{idScope}/registrations/{registrationId}/{query}`.
    Shape,
    /// The ID scope or registration id is not valid.
    InvalidId(ProvisioningIdError),
    /// No `api-version` parameter.
    MissingApiVersion,
    /// More than one `api-version` parameter.
    DuplicateApiVersion,
    /// `api-version` has an empty value.
    EmptyApiVersion,
    /// A parameter does not percent-decode to UTF-8 text.
    InvalidEncoding {
        /// The parameter number, counted from 1.
        param: usize,
    },
}

impl fmt::Display for ProvisioningUsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shape => f.write_str(
                "DPS username is not `{idScope}/registrations/{registrationId}/api-version=…`",
            ),
            Self::InvalidId(e) => write!(f, "DPS username: {e}"),
            Self::MissingApiVersion => f.write_str("DPS username has no `api-version`"),
            Self::DuplicateApiVersion => {
                f.write_str("DPS username has `api-version` more than once")
            }
            Self::EmptyApiVersion => f.write_str("DPS username has an empty `api-version`"),
            Self::InvalidEncoding { param } => write!(
                f,
                "DPS username parameter {param} does not percent-decode to UTF-8 text"
            ),
        }
    }
}

impl core::error::Error for ProvisioningUsernameError {}

/// A DPS CONNECT username:
/// `{idScope}/registrations/{registrationId}/api-version={v}[&ClientVersion={ua}][&name=value…]`.
///
/// Build one with [`new`](Self::new) and the `with_*` methods and write it
/// with `Display` / `to_string`; read one with [`parse`](Self::parse).
///
/// ```
/// use iothub_proto::auth::{IdScope, ProvisioningUsername, RegistrationId};
///
/// let u = ProvisioningUsername::new(IdScope::new("0ne00000A0A")?, RegistrationId::new("my-device")?)
///     .with_client_version("iothub-rs/0.1");
/// let text = u.to_string();
/// assert_eq!(text, "0ne00000A0A/registrations/my-device/api-version=2021-06-01&ClientVersion=iothub-rs%2F0.1");
/// assert_eq!(ProvisioningUsername::parse(&text)?, u);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProvisioningUsername {
    /// The ID scope (first part).
    pub id_scope: IdScope,
    /// The registration id (third part).
    pub registration_id: RegistrationId,
    /// The `api-version` value (URL-encoded when written). Default
    /// [`DEFAULT_DPS_API_VERSION`].
    pub api_version: String,
    /// `ClientVersion`: a user-agent string such as `iothub-rs/0.1.0`
    /// (URL-encoded when written). Default none.
    pub client_version: Option<String>,
    /// Every other parameter, in order (names and values decoded; encoded
    /// when written).
    pub params: Vec<(String, String)>,
}

impl ProvisioningUsername {
    /// The username for this registration with the default api-version and
    /// no other parameter.
    #[must_use]
    pub fn new(id_scope: IdScope, registration_id: RegistrationId) -> Self {
        Self {
            id_scope,
            registration_id,
            api_version: String::from(DEFAULT_DPS_API_VERSION),
            client_version: None,
            params: Vec::new(),
        }
    }

    /// Sets [`api_version`](Self::api_version).
    #[must_use]
    pub fn with_api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = api_version.into();
        self
    }

    /// Sets [`client_version`](Self::client_version).
    #[must_use]
    pub fn with_client_version(mut self, user_agent: impl Into<String>) -> Self {
        self.client_version = Some(user_agent.into());
        self
    }

    /// Reads `{idScope}/registrations/{registrationId}/api-version={v}[&…]`.
    ///
    /// The rule: the text splits on `/` into exactly four parts (neither id
    /// can hold a `/`, so a `/` in a parameter value must be
    /// percent-encoded); the second is the literal `registrations`; the
    /// fourth is the query, optionally starting with `?` (the form the hub
    /// uses, accepted for leniency). The query splits on `&` (empty pieces
    /// skipped), each piece at its first `=`, names and values
    /// percent-decoded; exactly one non-empty `api-version` is required;
    /// `ClientVersion` fills [`client_version`](Self::client_version)
    /// (the last one wins), everything else [`params`](Self::params).
    pub fn parse(s: &str) -> Result<Self, ProvisioningUsernameError> {
        use ProvisioningUsernameError as E;
        let mut parts = s.split('/');
        let (Some(scope), Some("registrations"), Some(rid), Some(query), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(E::Shape);
        };
        let id_scope = IdScope::new(scope).map_err(E::InvalidId)?;
        let registration_id = RegistrationId::new(rid).map_err(E::InvalidId)?;
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut api_version = None;
        let mut client_version = None;
        let mut params = Vec::new();
        for (i, piece) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let decode = |t| url_decode(t).ok_or(E::InvalidEncoding { param: i + 1 });
            let (name, value) = (decode(name)?, decode(value)?);
            match &*name {
                "api-version" => {
                    if api_version.is_some() {
                        return Err(E::DuplicateApiVersion);
                    }
                    if value.is_empty() {
                        return Err(E::EmptyApiVersion);
                    }
                    api_version = Some(value.into_owned());
                }
                "ClientVersion" => client_version = Some(value.into_owned()),
                _ => params.push((name.into_owned(), value.into_owned())),
            }
        }
        Ok(Self {
            id_scope,
            registration_id,
            api_version: api_version.ok_or(E::MissingApiVersion)?,
            client_version,
            params,
        })
    }
}

impl fmt::Display for ProvisioningUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(96);
        s.push_str(self.id_scope.as_str());
        s.push_str("/registrations/");
        s.push_str(self.registration_id.as_str());
        s.push_str("/api-version=");
        push_url_encoded(&mut s, &self.api_version);
        if let Some(ua) = &self.client_version {
            s.push_str("&ClientVersion=");
            push_url_encoded(&mut s, ua);
        }
        for (name, value) in &self.params {
            s.push('&');
            push_url_encoded(&mut s, name);
            s.push('=');
            push_url_encoded(&mut s, value);
        }
        f.write_str(&s)
    }
}

impl core::str::FromStr for ProvisioningUsername {
    type Err = ProvisioningUsernameError;
    fn from_str(s: &str) -> Result<Self, ProvisioningUsernameError> {
        Self::parse(s)
    }
}

/// How a device proves who it is to DPS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProvisioningAttestation {
    /// A symmetric key: the individual enrollment's key, or the key derived
    /// from a group enrollment's key ([`group`](Self::group)). A fresh SAS
    /// token (`skn=registration`) is signed for every CONNECT.
    SymmetricKey(SharedAccessKey),
    /// A ready SAS token for `{idScope}/registrations/{registrationId}`,
    /// signed elsewhere (an HSM, a service). It cannot be renewed.
    SasToken(SasToken),
    /// An X.509 client certificate whose subject CN is the registration
    /// id, presented by the TLS layer; the CONNECT password stays empty.
    X509,
}

impl ProvisioningAttestation {
    /// The attestation of a device in a group enrollment: its key is
    /// HMAC-SHA256 of the registration id under the group's key
    /// ([`SharedAccessKey::derive_for_registration`]).
    #[must_use]
    pub fn group(group_key: &SharedAccessKey, registration_id: &RegistrationId) -> Self {
        Self::SymmetricKey(group_key.derive_for_registration(registration_id.as_str()))
    }

    /// The credential the provisioned device uses at its IoT hub: DPS
    /// creates symmetric-key devices with the attestation key, and X.509
    /// devices with the same certificate. `None` for a SAS token, which is
    /// good for DPS only.
    #[must_use]
    pub fn hub_credential(&self) -> Option<Credential> {
        match self {
            Self::SymmetricKey(key) => Some(Credential::SharedAccessKey {
                key: key.clone(),
                key_name: None,
            }),
            Self::X509 => Some(Credential::X509),
            Self::SasToken(_) => None,
        }
    }

    /// Whether a fresh password can be made for a reconnection.
    #[must_use]
    pub fn is_renewable(&self) -> bool {
        matches!(self, Self::SymmetricKey(_))
    }

    /// The CONNECT client id (the registration id), username and password
    /// for DPS. A symmetric key signs a token for
    /// [`dps_resource_uri`] with `skn=`[`DPS_KEY_NAME`] expiring at
    /// `expiry_unix_secs` (wall-clock seconds, chosen by the caller); a
    /// ready token is used as is; X.509 sends no password.
    #[must_use]
    pub fn connect_credentials(
        &self,
        username: &ProvisioningUsername,
        expiry_unix_secs: u64,
    ) -> ConnectCredentials {
        let resource_uri = dps_resource_uri(
            username.id_scope.as_str(),
            username.registration_id.as_str(),
        );
        let password = match self {
            Self::SymmetricKey(key) => Some(SasToken::generate(
                &resource_uri,
                key,
                expiry_unix_secs,
                Some(DPS_KEY_NAME),
            )),
            Self::SasToken(token) => Some(token.clone()),
            Self::X509 => None,
        };
        ConnectCredentials {
            client_id: String::from(username.registration_id.as_str()),
            username: alloc::string::ToString::to_string(username),
            password,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn scope() -> IdScope {
        IdScope::new("0ne00000A0A").unwrap()
    }

    fn rid(s: &str) -> RegistrationId {
        RegistrationId::new(s).unwrap()
    }

    #[test]
    fn id_rules() {
        use ProvisioningIdError as E;
        use ProvisioningIdKind as K;
        assert_eq!(IdScope::new(""), Err(E::Empty(K::IdScope)));
        assert_eq!(
            IdScope::new("0ne/1"),
            Err(E::InvalidChar {
                kind: K::IdScope,
                ch: '/',
                index: 3
            })
        );
        assert!(matches!(
            IdScope::new("a".repeat(65)),
            Err(E::TooLong { len: 65, .. })
        ));
        assert!(IdScope::new("a".repeat(64)).is_ok());

        for ok in ["my-device", "a", "a.b_c:d-", "A1", "x-"] {
            assert_eq!(rid(ok).as_str(), ok);
            // Every registration id is a valid device id.
            assert!(crate::auth::DeviceId::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(RegistrationId::new(""), Err(E::Empty(K::RegistrationId)));
        for bad in ["a.", "a_", "a:"] {
            assert_eq!(RegistrationId::new(bad), Err(E::InvalidLastChar), "{bad}");
        }
        for bad in ["a b", "a/b", "a$", "é"] {
            assert!(
                matches!(RegistrationId::new(bad), Err(E::InvalidChar { .. })),
                "{bad}"
            );
        }
        assert!(RegistrationId::new("a".repeat(128)).is_ok());
        assert!(matches!(
            RegistrationId::new("a".repeat(129)),
            Err(E::TooLong { len: 129, .. })
        ));
        assert!(E::InvalidLastChar.to_string().contains("registration id"));
        assert!(E::Empty(K::IdScope).to_string().contains("ID scope"));
    }

    #[test]
    fn username_builds_the_documented_form() {
        let u = ProvisioningUsername::new(scope(), rid("my-device"));
        assert_eq!(
            u.to_string(),
            "0ne00000A0A/registrations/my-device/api-version=2021-06-01"
        );
        let old = u.clone().with_api_version("2019-03-31");
        assert_eq!(
            old.to_string(),
            "0ne00000A0A/registrations/my-device/api-version=2019-03-31"
        );
        let mut ua = u
            .with_client_version("iothub-rs/0.1 (linux)")
            .with_api_version("2019-03-31");
        ua.params.push(("x y".into(), "a&b".into()));
        assert_eq!(
            ua.to_string(),
            "0ne00000A0A/registrations/my-device/api-version=2019-03-31&ClientVersion=iothub-rs%2F0.1%20%28linux%29&x%20y=a%26b"
        );
        assert_eq!(ProvisioningUsername::parse(&ua.to_string()), Ok(ua));
    }

    #[test]
    fn username_parsing() {
        use ProvisioningUsernameError as E;
        let u = ProvisioningUsername::parse(
            "0ne00000A0A/registrations/dev:1/?&model=x&api-version=v&ClientVersion=a%2Fb&",
        )
        .unwrap();
        assert_eq!(u.id_scope, scope());
        assert_eq!(u.registration_id, rid("dev:1"));
        assert_eq!(u.api_version, "v");
        assert_eq!(u.client_version.as_deref(), Some("a/b"));
        assert_eq!(u.params, vec![("model".to_string(), "x".to_string())]);
        let cases = [
            ("", E::Shape),
            ("s/registrations/r", E::Shape),
            ("s/registration/r/api-version=1", E::Shape),
            ("s/registrations/r/x/api-version=1", E::Shape),
            ("s/registrations/r/api-version=1&ua=a/b", E::Shape),
            (
                "s-1/registrations/r/api-version=1",
                E::InvalidId(ProvisioningIdError::InvalidChar {
                    kind: ProvisioningIdKind::IdScope,
                    ch: '-',
                    index: 1,
                }),
            ),
            (
                "s/registrations/r./api-version=1",
                E::InvalidId(ProvisioningIdError::InvalidLastChar),
            ),
            ("s/registrations/r/", E::MissingApiVersion),
            ("s/registrations/r/ClientVersion=1", E::MissingApiVersion),
            (
                "s/registrations/r/api-version=1&api-version=2",
                E::DuplicateApiVersion,
            ),
            ("s/registrations/r/api-version=", E::EmptyApiVersion),
            (
                "s/registrations/r/api-version=1&a=%FF",
                E::InvalidEncoding { param: 2 },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ProvisioningUsername::parse(text), Err(want), "{text}");
            assert!(want.to_string().contains("DPS username"));
        }
        let parsed: ProvisioningUsername = "s/registrations/r/api-version=1".parse().unwrap();
        assert_eq!(parsed.api_version, "1");
    }

    #[test]
    fn a_hub_username_is_no_dps_username() {
        assert_eq!(
            ProvisioningUsername::parse("h.net/dev1/?api-version=2021-04-12"),
            Err(ProvisioningUsernameError::Shape)
        );
    }

    #[test]
    fn credentials_for_each_attestation() {
        let username = ProvisioningUsername::new(scope(), rid("reg-1"));
        let key = SharedAccessKey::from_bytes([9u8; 32]).unwrap();
        let creds =
            ProvisioningAttestation::SymmetricKey(key.clone()).connect_credentials(&username, 77);
        assert_eq!(creds.client_id, "reg-1");
        assert_eq!(
            creds.username,
            "0ne00000A0A/registrations/reg-1/api-version=2021-06-01"
        );
        let token = creds.password.clone().unwrap();
        assert_eq!(token.resource_uri(), "0ne00000A0A/registrations/reg-1");
        assert_eq!(token.key_name(), Some("registration"));
        assert_eq!(token.expiry_unix_secs(), 77);
        assert!(token.verify(&key));
        assert!(
            token
                .expose_secret()
                .starts_with("SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Freg-1&sig=")
        );

        let group = ProvisioningAttestation::group(&key, &rid("reg-1"));
        let ProvisioningAttestation::SymmetricKey(derived) = &group else {
            panic!()
        };
        assert_eq!(
            derived.expose_secret(),
            key.derive_for_registration("reg-1").expose_secret()
        );
        assert!(group.is_renewable());
        assert!(matches!(
            group.hub_credential(),
            Some(Credential::SharedAccessKey { key_name: None, .. })
        ));

        let fixed = ProvisioningAttestation::SasToken(token.clone());
        assert!(!fixed.is_renewable());
        assert!(fixed.hub_credential().is_none());
        let c = fixed.connect_credentials(&username, 1);
        assert_eq!(c.expose_password(), Some(token.expose_secret().as_bytes()));

        let x509 = ProvisioningAttestation::X509;
        assert!(x509.connect_credentials(&username, 1).password.is_none());
        assert!(matches!(x509.hub_credential(), Some(Credential::X509)));
    }
}
