//! Identities, connection strings, SAS tokens and CONNECT credentials.
//!
//! Everything here is pure computation: the caller passes the wall-clock
//! time in (as Unix seconds, the SAS `se=` expiry), exactly like the Azure
//! Embedded C SDK's signing calls. Nothing reads a clock.
//!
//! ```text
//!   "HostName=…;DeviceId=…;SharedAccessKey=…"
//!        │ ConnectionString::from_str
//!        ▼
//!   ConnectionString { host_name, identity, gateway_host_name, credential }
//!        │ ConnectionString::connect_credentials(&options, expiry_unix_secs)
//!        ▼
//!   ConnectCredentials { client_id, username, password: Option<SasToken> }
//! ```
//!
//! ```
//! use iothub_proto::auth::{ConnectionString, UsernameOptions};
//!
//! let cs: ConnectionString = "HostName=contoso.azure-devices.net;DeviceId=dev1;\
//!     SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
//!     .parse()?;
//! let now_unix_secs = 1_700_000_000; // read by the caller, never by this crate
//! let creds = cs.connect_credentials(&UsernameOptions::default(), now_unix_secs + 3600);
//! assert_eq!(creds.client_id, "dev1");
//! assert_eq!(creds.username, "contoso.azure-devices.net/dev1/?api-version=2021-04-12");
//! let token = creds.password.as_ref().expect("a key credential signs a token");
//! assert_eq!(token.expiry_unix_secs(), 1_700_003_600);
//! # Ok::<(), iothub_proto::auth::ConnectionStringError>(())
//! ```
//!
//! The server side (an emulator, a gateway) reads the CONNECT username back
//! with `iothub_hub::username::Username` and checks a password with
//! [`SasToken::parse`] and [`SasToken::verify`].
//!
//! # Device Provisioning Service
//!
//! DPS has its own ids ([`IdScope`], [`RegistrationId`]), its own username
//! form (`{idScope}/registrations/{registrationId}/api-version=…`, built and
//! read by [`ProvisioningUsername`]; a hub username parser would misread it)
//! and its own SAS resource URI ([`dps_resource_uri`], `skn=`[`DPS_KEY_NAME`]).
//! [`ProvisioningAttestation::connect_credentials`] puts them together; a
//! group enrollment's device key comes from
//! [`SharedAccessKey::derive_for_registration`].
//!
//! # Secrets
//!
//! [`SharedAccessKey`] and [`SasToken`] never show their secret in `Debug`,
//! have no `Display`, and no error type of this module ever contains text
//! taken from a key, a token or an unrecognised connection-string segment.
//! The secret is reachable only through the explicit `expose_secret`
//! accessors.
//!
//! # URL encoding
//!
//! Wherever the protocol says "url-encoded", this module keeps exactly the
//! RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) and writes every
//! other byte of the UTF-8 text as `%XX` with uppercase hex, like Python's
//! `urllib.parse.quote(s, safe="")`.

mod connection_string;
mod credentials;
mod host;
mod identity;
mod provisioning;
mod sas;

pub use connection_string::{
    ConnectionString, ConnectionStringError, ConnectionStringKey, Credential,
};
pub use credentials::{
    ConnectCredentials, DEFAULT_API_VERSION, LEGACY_API_VERSION, UsernameOptions,
};
pub use host::{HostName, HostNameError, MAX_HOST_NAME_LEN};
pub use identity::{DeviceId, IdError, IdErrorReason, IdKind, Identity, MAX_ID_LEN, ModuleId};
pub use provisioning::{
    DEFAULT_DPS_API_VERSION, GLOBAL_DPS_ENDPOINT, IdScope, MAX_ID_SCOPE_LEN,
    MAX_REGISTRATION_ID_LEN, ProvisioningAttestation, ProvisioningIdError, ProvisioningIdKind,
    ProvisioningUsername, ProvisioningUsernameError, RegistrationId,
};
pub use sas::{
    DPS_KEY_NAME, SasField, SasToken, SasTokenError, SharedAccessKey, SharedAccessKeyError,
    dps_resource_uri,
};
