//! The CONNECT client id, username and password.

use alloc::string::String;

use super::connection_string::Credential;
use super::host::HostName;
use super::identity::Identity;
use super::sas::SasToken;
use crate::text::push_url_encoded;

/// The api-version sent by default (current IoT Hub documentation).
pub const DEFAULT_API_VERSION: &str = "2021-04-12";

/// The api-version of the legacy username form that the original MQTT
/// support page shows: `{hostName}/{deviceId}/api-version=2016-11-14`.
pub const LEGACY_API_VERSION: &str = "2016-11-14";

/// How to write the CONNECT username.
///
/// `Default` gives `{hostName}/{deviceId}/?api-version=2021-04-12`.
/// Fields are public; the struct is `#[non_exhaustive]`, so start from
/// [`default`](Self::default) or [`legacy`](Self::legacy) and set fields or
/// use the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct UsernameOptions {
    /// The `api-version` value, e.g. [`DEFAULT_API_VERSION`] or the C SDKs'
    /// `2020-09-30`. URL-encoded when written.
    pub api_version: String,
    /// `DeviceClientType`: a user-agent string such as `iothub-rs/0.1.0`.
    /// URL-encoded when written.
    pub device_client_type: Option<String>,
    /// `model-id`: the IoT Plug and Play model DTMI, such as
    /// `dtmi:com:example:Thermostat;1`. URL-encoded when written.
    pub model_id: Option<String>,
    /// Write the legacy form `{hostName}/{deviceId}/api-version={v}` (no
    /// `?`) instead of `{hostName}/{deviceId}/?api-version={v}`. Extra
    /// parameters follow with `&` in both forms.
    pub legacy_form: bool,
}

impl Default for UsernameOptions {
    fn default() -> Self {
        Self {
            api_version: String::from(DEFAULT_API_VERSION),
            device_client_type: None,
            model_id: None,
            legacy_form: false,
        }
    }
}

impl UsernameOptions {
    /// The seed document's form: `{hostName}/{deviceId}/api-version=2016-11-14`.
    pub fn legacy() -> Self {
        Self {
            api_version: String::from(LEGACY_API_VERSION),
            legacy_form: true,
            ..Self::default()
        }
    }

    /// Sets [`api_version`](Self::api_version).
    #[must_use]
    pub fn with_api_version(mut self, api_version: impl Into<String>) -> Self {
        self.api_version = api_version.into();
        self
    }

    /// Sets [`device_client_type`](Self::device_client_type).
    #[must_use]
    pub fn with_device_client_type(mut self, user_agent: impl Into<String>) -> Self {
        self.device_client_type = Some(user_agent.into());
        self
    }

    /// Sets [`model_id`](Self::model_id).
    #[must_use]
    pub fn with_model_id(mut self, dtmi: impl Into<String>) -> Self {
        self.model_id = Some(dtmi.into());
        self
    }

    /// Sets [`legacy_form`](Self::legacy_form).
    #[must_use]
    pub fn with_legacy_form(mut self, legacy_form: bool) -> Self {
        self.legacy_form = legacy_form;
        self
    }

    /// The CONNECT username for `identity` at the hub `host_name` (the hub's
    /// `HostName`, never a gateway's):
    ///
    /// `{hostName}/{deviceId}[/{moduleId}]/?api-version={v}[&DeviceClientType={ua}][&model-id={dtmi}]`,
    /// or with [`legacy_form`](Self::legacy_form)
    /// `{hostName}/{deviceId}[/{moduleId}]/api-version={v}[&…]`.
    ///
    /// Ids and host are written as they are (their character sets need no
    /// encoding); the parameter values are URL-encoded.
    pub fn username(&self, identity: &Identity, host_name: &HostName) -> String {
        let mut s = String::with_capacity(host_name.as_str().len() + 96);
        s.push_str(host_name.as_str());
        s.push('/');
        s.push_str(identity.device_id().as_str());
        s.push('/');
        if let Some(m) = identity.module_id() {
            s.push_str(m.as_str());
            s.push('/');
        }
        if !self.legacy_form {
            s.push('?');
        }
        s.push_str("api-version=");
        push_url_encoded(&mut s, &self.api_version);
        if let Some(ua) = &self.device_client_type {
            s.push_str("&DeviceClientType=");
            push_url_encoded(&mut s, ua);
        }
        if let Some(dtmi) = &self.model_id {
            s.push_str("&model-id=");
            push_url_encoded(&mut s, dtmi);
        }
        s
    }
}

/// The three CONNECT fields that authenticate a device.
///
/// `Debug` shows the client id and the username, and the password only as
/// [`SasToken`]'s redacted `Debug`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectCredentials {
    /// The MQTT client id: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub client_id: String,
    /// The MQTT username (see [`UsernameOptions::username`]).
    pub username: String,
    /// The MQTT password: a SAS token, or `None` for X.509 authentication.
    pub password: Option<SasToken>,
}

impl ConnectCredentials {
    /// Builds the client id, username and password for `identity` at the
    /// hub `host_name` (the hub's `HostName`, never a gateway's).
    ///
    /// - [`Credential::SharedAccessKey`]: a token for
    ///   [`Identity::resource_uri`] that expires at `expiry_unix_secs`
    ///   (wall-clock seconds since the Unix epoch, chosen by the caller —
    ///   SDKs use now + 3600), with `skn` when the key has a name.
    /// - [`Credential::SharedAccessSignature`]: the fixed token, as is;
    ///   `expiry_unix_secs` is ignored.
    /// - [`Credential::X509`]: no password; `expiry_unix_secs` is ignored.
    /// - [`Credential::ExternalSigner`]: no password here; the session
    ///   puts in the token it was given.
    pub fn new(
        identity: &Identity,
        host_name: &HostName,
        credential: &Credential,
        options: &UsernameOptions,
        expiry_unix_secs: u64,
    ) -> Self {
        let password = match credential {
            Credential::SharedAccessKey { key, key_name } => Some(SasToken::generate(
                &identity.resource_uri(host_name.as_str()),
                key,
                expiry_unix_secs,
                key_name.as_deref(),
            )),
            Credential::SharedAccessSignature(token) => Some(token.clone()),
            Credential::X509 | Credential::ExternalSigner => None,
        };
        Self {
            client_id: identity.client_id(),
            username: options.username(identity, host_name),
            password,
        }
    }

    /// The password bytes for the CONNECT packet (the token text), if any.
    /// Named so that every use stands out in review.
    pub fn expose_password(&self) -> Option<&[u8]> {
        self.password.as_ref().map(|t| t.expose_secret().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ConnectionString, SharedAccessKey};
    use alloc::format;

    const KEY: &str = "U0VDUkVUS0VZU0VDUkVUS0VZU0VDUkVUS0VZU0VDUks=";

    fn host() -> HostName {
        HostName::new("contoso.azure-devices.net").unwrap()
    }

    fn dev() -> Identity {
        Identity::parse("MyDevice01", None).unwrap()
    }

    fn module() -> Identity {
        Identity::parse("MyDevice01", Some("module1")).unwrap()
    }

    #[test]
    fn usernames_of_protocol_md() {
        let d = UsernameOptions::default();
        assert_eq!(
            d.username(&dev(), &host()),
            "contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12"
        );
        assert_eq!(
            d.username(&module(), &host()),
            "contoso.azure-devices.net/MyDevice01/module1/?api-version=2021-04-12"
        );
        assert_eq!(
            d.clone()
                .with_model_id("dtmi:com:example:Thermostat;1")
                .username(&dev(), &host()),
            "contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"
        );
        assert_eq!(
            d.clone()
                .with_device_client_type("iothub-rs/0.1.0 (linux; x86_64)")
                .username(&dev(), &host()),
            "contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12&DeviceClientType=iothub-rs%2F0.1.0%20%28linux%3B%20x86_64%29"
        );
        assert_eq!(
            d.clone()
                .with_api_version("2020-09-30")
                .with_model_id("dtmi:com:example:Thermostat;1")
                .with_device_client_type("iothub-rs/0.1.0")
                .username(&module(), &host()),
            "contoso.azure-devices.net/MyDevice01/module1/?api-version=2020-09-30&DeviceClientType=iothub-rs%2F0.1.0&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"
        );
        // The seed document's example, exactly.
        assert_eq!(
            UsernameOptions::legacy().username(&dev(), &host()),
            "contoso.azure-devices.net/MyDevice01/api-version=2016-11-14"
        );
        assert_eq!(
            UsernameOptions::legacy()
                .with_model_id("dtmi:a;1")
                .username(&module(), &host()),
            "contoso.azure-devices.net/MyDevice01/module1/api-version=2016-11-14&model-id=dtmi%3Aa%3B1"
        );
    }

    #[test]
    fn credentials_for_each_kind() {
        let cs: ConnectionString =
            format!("HostName=contoso.azure-devices.net;DeviceId=MyDevice01;ModuleId=module1;GatewayHostName=edge;SharedAccessKey={KEY}")
                .parse()
                .unwrap();
        let c = cs.connect_credentials(&UsernameOptions::default(), 1_700_003_600);
        assert_eq!(c.client_id, "MyDevice01/module1");
        assert_eq!(
            c.username,
            "contoso.azure-devices.net/MyDevice01/module1/?api-version=2021-04-12"
        );
        let key = SharedAccessKey::from_base64(KEY).unwrap();
        let want = SasToken::generate(
            "contoso.azure-devices.net/devices/MyDevice01/modules/module1",
            &key,
            1_700_003_600,
            None,
        );
        let token = c.password.as_ref().unwrap();
        assert_eq!(token.expose_secret(), want.expose_secret());
        assert_eq!(c.expose_password(), Some(want.expose_secret().as_bytes()));
        // The hub's name, never the gateway's, is signed.
        assert!(token.expose_secret().starts_with(
            "SharedAccessSignature sr=contoso.azure-devices.net%2Fdevices%2FMyDevice01%2Fmodules%2Fmodule1&sig="
        ));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(token.expose_secret()), "{dbg}");
        assert!(!dbg.contains(KEY), "{dbg}");
        assert!(dbg.contains("MyDevice01/module1"));

        let with_name: ConnectionString =
            format!("HostName=h.net;DeviceId=d;SharedAccessKeyName=device;SharedAccessKey={KEY}")
                .parse()
                .unwrap();
        let c = with_name.connect_credentials(&UsernameOptions::default(), 42);
        let t = c.password.unwrap();
        assert!(t.expose_secret().ends_with("&se=42&skn=device"));
        assert_eq!(t.key_name(), Some("device"));

        let fixed = SasToken::generate("h.net/devices/d", &key, 7, None);
        let c = ConnectCredentials::new(
            &Identity::parse("d", None).unwrap(),
            &HostName::new("h.net").unwrap(),
            &Credential::SharedAccessSignature(fixed.clone()),
            &UsernameOptions::default(),
            999,
        );
        assert_eq!(c.password.unwrap().expose_secret(), fixed.expose_secret());

        let c = ConnectCredentials::new(
            &dev(),
            &host(),
            &Credential::X509,
            &UsernameOptions::default(),
            999,
        );
        assert!(c.password.is_none());
        assert!(c.expose_password().is_none());
        assert_eq!(c.client_id, "MyDevice01");
    }
}
