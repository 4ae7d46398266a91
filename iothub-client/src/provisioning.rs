//! [`ProvisioningOptions`]: everything an adapter needs to provision a
//! device with the Device Provisioning Service (DPS) and then connect it —
//! the provisioning session's [`Config`] (ID scope, registration id,
//! attestation, DPS endpoint, every protocol option) plus how to reach DPS
//! (transport, port, TLS trust, client certificate, proxy) and how to turn
//! the [`Registration`] into [`ClientOptions`] for the assigned hub.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iothub_proto::auth::{
    Credential, HostName, IdScope, ProvisioningAttestation, RegistrationId, SharedAccessKey,
};
use iothub_proto::provisioning::{Config, Registration};

use crate::options::{DEFAULT_OPEN_TIMEOUT, DEFAULT_WRITE_TIMEOUT};
use crate::tls::{self, ClientAuthPem, TlsOptions};
use crate::{ClientOptions, OptionsError, Proxy, Transport};

/// A change applied to the [`ClientOptions`] made for the assigned hub.
pub type ClientCustomizer = Arc<dyn Fn(ClientOptions) -> ClientOptions + Send + Sync>;

/// How to provision, and how to connect afterwards. Start from
/// [`symmetric_key`](Self::symmetric_key), [`group_key`](Self::group_key),
/// [`x509`](Self::x509) or [`new`](Self::new) and adjust with the
/// `with_*` methods.
///
/// ```
/// use iothub_client::{ProvisioningOptions, Transport};
///
/// let options = ProvisioningOptions::group_key(
///     "0ne00000A0A",
///     "sensor-7",
///     "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
/// )?
/// .with_endpoint("localhost")?
/// .with_port(8884)
/// .with_hub_port(8883);
/// assert_eq!(options.host(), "localhost");
/// assert_eq!(options.port(), 8884);
/// assert_eq!(options.transport, Transport::Mqtt);
/// # Ok::<(), iothub_client::OptionsError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ProvisioningOptions {
    /// The provisioning session configuration: ID scope, registration id,
    /// attestation, DPS endpoint ([`Config::endpoint`], the global one by
    /// default), payload and every protocol option.
    pub config: Config,
    /// How the bytes travel, to DPS and then to the hub. Default
    /// [`Transport::Mqtt`].
    pub transport: Transport,
    /// The DPS port, if not the transport's default (emulators).
    pub port: Option<u16>,
    /// The hub's port, if not the transport's default (emulators).
    pub hub_port: Option<u16>,
    /// TLS trust and client certificate, for DPS and the hub.
    pub tls: TlsOptions,
    /// An HTTP `CONNECT` proxy, for DPS and the hub.
    pub proxy: Option<Proxy>,
    /// Time to open a transport. Default [`DEFAULT_OPEN_TIMEOUT`].
    pub open_timeout: Duration,
    /// Time a write may block. Default [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// Applied last to the options [`client_options`](Self::client_options)
    /// makes (keep-alive, backoff, model id, …). Default none.
    pub customize_client: Option<ClientCustomizer>,
}

impl fmt::Debug for ProvisioningOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningOptions")
            .field("id_scope", &self.config.id_scope)
            .field("registration_id", &self.config.registration_id)
            .field("host", &self.host())
            .field("port", &self.port())
            .field("hub_port", &self.hub_port)
            .field("transport", &self.transport)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Reads the three DPS values, with the error an adapter reports.
fn ids(id_scope: &str, registration_id: &str) -> Result<(IdScope, RegistrationId), OptionsError> {
    let scope = IdScope::new(id_scope).map_err(OptionsError::ProvisioningId)?;
    let rid = RegistrationId::new(registration_id).map_err(OptionsError::ProvisioningId)?;
    Ok((scope, rid))
}

fn key(base64: &str) -> Result<SharedAccessKey, OptionsError> {
    SharedAccessKey::from_base64(base64).map_err(OptionsError::Key)
}

impl ProvisioningOptions {
    /// Options with every default around a provisioning configuration.
    #[must_use]
    pub fn new(config: Config) -> ProvisioningOptions {
        ProvisioningOptions {
            config,
            transport: Transport::default(),
            port: None,
            hub_port: None,
            tls: TlsOptions::new(),
            proxy: None,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            customize_client: None,
        }
    }

    /// An individual enrollment's symmetric key (base64), or a key already
    /// derived from a group key for this registration id.
    pub fn symmetric_key(
        id_scope: &str,
        registration_id: &str,
        key_base64: &str,
    ) -> Result<ProvisioningOptions, OptionsError> {
        let (scope, rid) = ids(id_scope, registration_id)?;
        let attestation = ProvisioningAttestation::SymmetricKey(key(key_base64)?);
        Ok(ProvisioningOptions::new(Config::new(
            scope,
            rid,
            attestation,
        )))
    }

    /// An enrollment group's key (base64): the device key is derived from
    /// it for the registration id
    /// ([`SharedAccessKey::derive_for_registration`]).
    pub fn group_key(
        id_scope: &str,
        registration_id: &str,
        group_key_base64: &str,
    ) -> Result<ProvisioningOptions, OptionsError> {
        let (scope, rid) = ids(id_scope, registration_id)?;
        let attestation = ProvisioningAttestation::group(&key(group_key_base64)?, &rid);
        Ok(ProvisioningOptions::new(Config::new(
            scope,
            rid,
            attestation,
        )))
    }

    /// An X.509 enrollment: the client certificate (chain and key, PEM)
    /// authenticates to DPS and then to the hub.
    pub fn x509(
        id_scope: &str,
        registration_id: &str,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Result<ProvisioningOptions, OptionsError> {
        let (scope, rid) = ids(id_scope, registration_id)?;
        let mut o =
            ProvisioningOptions::new(Config::new(scope, rid, ProvisioningAttestation::X509));
        o.tls.client_auth = Some(ClientAuthPem {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
        });
        Ok(o)
    }

    /// Changes the provisioning configuration (payload, timeouts, retries,
    /// api-version, …).
    #[must_use]
    pub fn with_session(mut self, f: impl FnOnce(Config) -> Config) -> ProvisioningOptions {
        self.config = f(self.config);
        self
    }

    /// Sets the DPS host (default the global endpoint,
    /// `global.azure-devices-provisioning.net`).
    pub fn with_endpoint(mut self, host: &str) -> Result<ProvisioningOptions, OptionsError> {
        let host = HostName::new(host).map_err(OptionsError::Host)?;
        self.config = self.config.with_endpoint(host);
        Ok(self)
    }

    /// Sets the transport (for DPS and the hub).
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> ProvisioningOptions {
        self.transport = transport;
        self
    }

    /// Sets the DPS port (instead of the transport's default).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> ProvisioningOptions {
        self.port = Some(port);
        self
    }

    /// Sets the hub's port (instead of the transport's default).
    #[must_use]
    pub fn with_hub_port(mut self, port: u16) -> ProvisioningOptions {
        self.hub_port = Some(port);
        self
    }

    /// Trusts this CA (PEM) in addition to the webpki roots, for DPS and
    /// the hub.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ProvisioningOptions {
        self.tls.extra_ca_pem = Some(pem.into());
        self
    }

    /// Whether to trust the webpki roots (default `true`).
    #[must_use]
    pub fn with_webpki_roots(mut self, on: bool) -> ProvisioningOptions {
        self.tls.webpki_roots = on;
        self
    }

    /// Tunnels through an HTTP `CONNECT` proxy.
    #[must_use]
    pub fn with_proxy(mut self, proxy: Proxy) -> ProvisioningOptions {
        self.proxy = Some(proxy);
        self
    }

    /// Sets the time to open a transport.
    #[must_use]
    pub fn with_open_timeout(mut self, timeout: Duration) -> ProvisioningOptions {
        self.open_timeout = timeout;
        self
    }

    /// Sets [`customize_client`](Self::customize_client): a change to the
    /// hub client's options, applied every time they are made.
    #[must_use]
    pub fn with_client(
        mut self,
        f: impl Fn(ClientOptions) -> ClientOptions + Send + Sync + 'static,
    ) -> ProvisioningOptions {
        self.customize_client = Some(Arc::new(f));
        self
    }

    /// The DPS host the transport connects to.
    #[must_use]
    pub fn host(&self) -> &str {
        self.config.transport_host().as_str()
    }

    /// The DPS port: the one set, or the transport's default.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.transport.default_port())
    }

    /// Checks the options and builds the TLS configuration (`None` for
    /// [`Transport::PlainTcp`]), once, before provisioning starts.
    pub fn prepare(&self) -> Result<Option<Arc<rustls::ClientConfig>>, OptionsError> {
        self.config
            .validate()
            .map_err(OptionsError::ProvisioningConfig)?;
        if matches!(self.config.attestation, ProvisioningAttestation::X509)
            && self.tls.client_auth.is_none()
        {
            return Err(OptionsError::MissingClientCertificate);
        }
        if self.transport == Transport::PlainTcp {
            return Ok(None);
        }
        tls::server_name(self.host())?;
        Ok(Some(tls::client_config(&self.tls)?))
    }

    /// The options of a client for the hub DPS assigned: the registration's
    /// hub and device id, the attestation's key (the device key; DPS
    /// creates symmetric-key devices with it) or the client certificate,
    /// and this transport, hub port, TLS trust and proxy; then
    /// [`customize_client`](Self::customize_client).
    /// [`OptionsError::NoHubCredential`] for a fixed-token attestation,
    /// which proves nothing to the hub.
    pub fn client_options(
        &self,
        registration: &Registration,
    ) -> Result<ClientOptions, OptionsError> {
        let credential = self
            .config
            .attestation
            .hub_credential()
            .ok_or(OptionsError::NoHubCredential)?;
        let mut config = registration.device_config(credential);
        config.username.device_client_type =
            Some(concat!("iothub-rs/", env!("CARGO_PKG_VERSION")).into());
        let mut options = ClientOptions::new(config).with_transport(self.transport);
        options.port = self.hub_port;
        options.tls = self.tls.clone();
        options.proxy.clone_from(&self.proxy);
        options.open_timeout = self.open_timeout;
        options.write_timeout = self.write_timeout;
        if matches!(options.config.credential, Credential::X509)
            && options.tls.client_auth.is_none()
        {
            return Err(OptionsError::MissingClientCertificate);
        }
        Ok(match &self.customize_client {
            Some(f) => f(options),
            None => options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::auth::DeviceId;
    use iothub_proto::auth::GLOBAL_DPS_ENDPOINT;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn registration() -> Registration {
        Registration::new(
            HostName::new("assigned.azure-devices.net").unwrap(),
            DeviceId::new("dev-7").unwrap(),
        )
    }

    #[test]
    fn defaults_and_the_hub_client() {
        let o = ProvisioningOptions::symmetric_key("0ne00000A0A", "dev-7", KEY).unwrap();
        assert_eq!(o.host(), GLOBAL_DPS_ENDPOINT);
        assert_eq!(o.port(), 8883);
        assert!(o.prepare().unwrap().is_some());
        let c = o
            .clone()
            .with_hub_port(18883)
            .with_transport(Transport::WebSocket)
            .with_client(|c| c.with_model_id("dtmi:x;1"))
            .client_options(&registration())
            .unwrap();
        assert_eq!(c.host(), "assigned.azure-devices.net");
        assert_eq!(c.port(), 18883);
        assert_eq!(c.transport, Transport::WebSocket);
        assert_eq!(c.config.identity.client_id(), "dev-7");
        assert_eq!(c.config.username.model_id.as_deref(), Some("dtmi:x;1"));
        match &c.config.credential {
            Credential::SharedAccessKey { key, key_name } => {
                assert_eq!(
                    key.expose_secret(),
                    SharedAccessKey::from_base64(KEY).unwrap().expose_secret()
                );
                assert!(key_name.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            o.with_transport(Transport::WebSocket).port(),
            443,
            "the transport's default"
        );
    }

    #[test]
    fn a_group_key_is_derived_for_the_registration() {
        let o = ProvisioningOptions::group_key("0ne00000A0A", "dev-7", KEY).unwrap();
        let derived = SharedAccessKey::from_base64(KEY)
            .unwrap()
            .derive_for_registration("dev-7");
        let c = o.client_options(&registration()).unwrap();
        assert!(matches!(
            &c.config.credential,
            Credential::SharedAccessKey { key, .. } if key.expose_secret() == derived.expose_secret()
        ));
    }

    #[test]
    fn clear_errors() {
        let e = ProvisioningOptions::symmetric_key("0ne 0", "dev-7", KEY).unwrap_err();
        assert!(e.to_string().contains("ID scope"), "{e}");
        let e = ProvisioningOptions::symmetric_key("0ne00000A0A", "dev 7", KEY).unwrap_err();
        assert!(e.to_string().contains("registration id"), "{e}");
        let e =
            ProvisioningOptions::symmetric_key("0ne00000A0A", "dev-7", "not base64!").unwrap_err();
        assert!(e.to_string().contains("key"), "{e}");
        let e = ProvisioningOptions::symmetric_key("0ne00000A0A", "dev-7", KEY)
            .unwrap()
            .with_endpoint("bad host/")
            .unwrap_err();
        assert!(e.to_string().contains("host"), "{e}");
        let e = ProvisioningOptions::symmetric_key("0ne00000A0A", "dev-7", KEY)
            .unwrap()
            .with_session(|c| c.with_timeout(Duration::ZERO))
            .prepare()
            .unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
        let mut x = ProvisioningOptions::x509("0ne00000A0A", "cam", "", "").unwrap();
        x.tls.client_auth = None;
        assert!(matches!(
            x.prepare().unwrap_err(),
            OptionsError::MissingClientCertificate
        ));
        let token = ProvisioningOptions::new(Config::new(
            IdScope::new("0ne00000A0A").unwrap(),
            RegistrationId::new("dev-7").unwrap(),
            ProvisioningAttestation::SasToken(
                iothub_proto::auth::SasToken::parse(
                    "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fdev-7&sig=AAAA&se=1&skn=registration",
                )
                .unwrap(),
            ),
        ));
        assert!(matches!(
            token.client_options(&registration()).unwrap_err(),
            OptionsError::NoHubCredential
        ));
    }
}
