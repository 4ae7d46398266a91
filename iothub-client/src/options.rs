//! [`ClientOptions`]: everything an adapter needs to run a client — the
//! session [`Config`] (identity, credential, every protocol option) plus how
//! to reach the hub (transport, port, TLS trust, client certificate, proxy).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iothub_proto::auth::{
    ConnectionString, ConnectionStringError, Credential, HostNameError, ProvisioningIdError,
    SharedAccessKeyError,
};
use iothub_proto::provisioning::ConfigError as ProvisioningConfigError;
use iothub_proto::session::{Config, ConfigError};

use crate::proxy::Proxy;
use crate::tls::{self, ClientAuthPem, TlsError, TlsOptions};

/// How the bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Transport {
    /// MQTT over TLS, port 8883. The default.
    #[default]
    Mqtt,
    /// MQTT over WebSocket over TLS, port 443, path `/$iothub/websocket`,
    /// subprotocol `mqtt` (for networks that only let HTTPS out).
    WebSocket,
    /// MQTT over plain TCP, port 1883, no TLS. IoT Hub never offers it:
    /// only for local brokers, emulators and tests, and only when asked
    /// for explicitly.
    PlainTcp,
}

impl Transport {
    /// The port used when none is given: 8883, 443 or 1883.
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Mqtt => 8883,
            Transport::WebSocket => 443,
            Transport::PlainTcp => 1883,
        }
    }
}

/// Default time to open a transport (TCP, proxy, TLS and WebSocket
/// handshakes together): 30 s.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a write may block before the transport counts as failed:
/// 30 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a client is built from. Start from
/// [`from_connection_string`](Self::from_connection_string) or
/// [`new`](Self::new) and adjust with the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use iothub_client::{ClientOptions, Transport};
///
/// let options = ClientOptions::from_connection_string(
///     "HostName=contoso.azure-devices.net;DeviceId=dev1;\
///      SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
/// )?
/// .with_transport(Transport::WebSocket)
/// .with_model_id("dtmi:com:example:Thermostat;1")
/// .with_session(|c| c.with_keep_alive(Duration::from_secs(120)));
/// assert_eq!(options.port(), 443);
/// assert_eq!(options.host(), "contoso.azure-devices.net");
/// # Ok::<(), iothub_client::OptionsError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The session configuration: identity, hub, credential, api-version,
    /// model-id and every protocol option.
    pub config: Config,
    /// How the bytes travel. Default [`Transport::Mqtt`].
    pub transport: Transport,
    /// The port, if not the transport's default (emulators, local brokers).
    pub port: Option<u16>,
    /// TLS trust and client certificate.
    pub tls: TlsOptions,
    /// An HTTP `CONNECT` proxy to tunnel through (meant for
    /// [`Transport::WebSocket`], works for every transport).
    pub proxy: Option<Proxy>,
    /// Time to open a transport. Default [`DEFAULT_OPEN_TIMEOUT`].
    pub open_timeout: Duration,
    /// Time a write may block. Default [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Duration,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("identity", &self.config.identity)
            .field("host", &self.host())
            .field("port", &self.port())
            .field("transport", &self.transport)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Why options could not be made or used.
#[derive(Debug)]
#[non_exhaustive]
pub enum OptionsError {
    /// The connection string does not parse.
    ConnectionString(ConnectionStringError),
    /// A session option is impossible.
    Config(ConfigError),
    /// The TLS configuration cannot be built (bad PEM, no roots, bad host).
    Tls(TlsError),
    /// The credential is X.509 but no client certificate was given.
    MissingClientCertificate,
    /// An ID scope or registration id is not valid.
    ProvisioningId(ProvisioningIdError),
    /// A symmetric key is not valid base64 (or is empty).
    Key(SharedAccessKeyError),
    /// A host name is not valid.
    Host(HostNameError),
    /// A provisioning option is impossible.
    ProvisioningConfig(ProvisioningConfigError),
    /// The provisioning attestation is a fixed SAS token: it proves
    /// nothing to the hub, so no client can be made from the assignment.
    NoHubCredential,
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::ConnectionString(e) => fmt::Display::fmt(e, f),
            OptionsError::Config(e) => write!(f, "invalid session option: {e}"),
            OptionsError::Tls(e) => fmt::Display::fmt(e, f),
            OptionsError::MissingClientCertificate => f.write_str(
                "the credential is X.509 (x509=true) but no client certificate and key were given",
            ),
            OptionsError::ProvisioningId(e) => fmt::Display::fmt(e, f),
            OptionsError::Key(e) => write!(f, "symmetric key: {e}"),
            OptionsError::Host(e) => write!(f, "host name: {e}"),
            OptionsError::ProvisioningConfig(e) => write!(f, "invalid provisioning option: {e}"),
            OptionsError::NoHubCredential => f.write_str(
                "a fixed DPS SAS token gives no credential for the hub: provision with a key or a certificate",
            ),
        }
    }
}

impl std::error::Error for OptionsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OptionsError::ConnectionString(e) => Some(e),
            OptionsError::Config(e) => Some(e),
            OptionsError::Tls(e) => Some(e),
            OptionsError::ProvisioningId(e) => Some(e),
            OptionsError::Key(e) => Some(e),
            OptionsError::Host(e) => Some(e),
            OptionsError::ProvisioningConfig(e) => Some(e),
            OptionsError::MissingClientCertificate | OptionsError::NoHubCredential => None,
        }
    }
}

impl From<ConnectionStringError> for OptionsError {
    fn from(e: ConnectionStringError) -> Self {
        OptionsError::ConnectionString(e)
    }
}

impl From<TlsError> for OptionsError {
    fn from(e: TlsError) -> Self {
        OptionsError::Tls(e)
    }
}

impl ClientOptions {
    /// Options with every default around a session configuration.
    #[must_use]
    pub fn new(config: Config) -> ClientOptions {
        ClientOptions {
            config,
            transport: Transport::default(),
            port: None,
            tls: TlsOptions::new(),
            proxy: None,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }

    /// Options from a device or module connection string
    /// (`HostName=…;DeviceId=…[;ModuleId=…][;GatewayHostName=…];SharedAccessKey=…`,
    /// or `SharedAccessSignature=…`, or `x509=true` followed by
    /// [`with_client_certificate`](Self::with_client_certificate)).
    pub fn from_connection_string(cs: &str) -> Result<ClientOptions, OptionsError> {
        let cs: ConnectionString = cs.parse()?;
        let mut config = Config::from_connection_string(&cs);
        config.username.device_client_type =
            Some(concat!("iothub-rs/", env!("CARGO_PKG_VERSION")).into());
        Ok(ClientOptions::new(config))
    }

    /// Changes the session configuration (keep-alive, windows, timeouts,
    /// backoff, SAS lifetime, will, …).
    #[must_use]
    pub fn with_session(mut self, f: impl FnOnce(Config) -> Config) -> ClientOptions {
        self.config = f(self.config);
        self
    }

    /// Sets the transport.
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> ClientOptions {
        self.transport = transport;
        self
    }

    /// Sets the port (instead of the transport's default).
    #[must_use]
    pub fn with_port(mut self, port: u16) -> ClientOptions {
        self.port = Some(port);
        self
    }

    /// Trusts this CA (PEM) in addition to the webpki roots.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> ClientOptions {
        self.tls.extra_ca_pem = Some(pem.into());
        self
    }

    /// Whether to trust the webpki roots (default `true`).
    #[must_use]
    pub fn with_webpki_roots(mut self, on: bool) -> ClientOptions {
        self.tls.webpki_roots = on;
        self
    }

    /// Authenticates with an X.509 client certificate (chain and key, PEM);
    /// the credential becomes [`Credential::X509`] (no password).
    #[must_use]
    pub fn with_client_certificate(
        mut self,
        cert_chain_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> ClientOptions {
        self.tls.client_auth = Some(ClientAuthPem {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
        });
        self.config.credential = Credential::X509;
        self
    }

    /// Tunnels through an HTTP `CONNECT` proxy.
    #[must_use]
    pub fn with_proxy(mut self, proxy: Proxy) -> ClientOptions {
        self.proxy = Some(proxy);
        self
    }

    /// Sets the username's `api-version` (default `2021-04-12`).
    #[must_use]
    pub fn with_api_version(mut self, api_version: impl Into<String>) -> ClientOptions {
        self.config.username.api_version = api_version.into();
        self
    }

    /// Sets the IoT Plug and Play `model-id` (a DTMI).
    #[must_use]
    pub fn with_model_id(mut self, dtmi: impl Into<String>) -> ClientOptions {
        self.config.username.model_id = Some(dtmi.into());
        self
    }

    /// Sets the time to open a transport.
    #[must_use]
    pub fn with_open_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.open_timeout = timeout;
        self
    }

    /// The host the transport connects to: the gateway if any, else the
    /// hub ([`Config::transport_host`]). The username keeps the hub's name.
    #[must_use]
    pub fn host(&self) -> &str {
        self.config.transport_host().as_str()
    }

    /// The port: the one set, or the transport's default.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.transport.default_port())
    }

    /// Checks the options and builds the TLS configuration (`None` for
    /// [`Transport::PlainTcp`]). Adapters call it once, when the client is
    /// made, so a bad PEM or option is reported at once.
    pub fn prepare(&self) -> Result<Option<Arc<rustls::ClientConfig>>, OptionsError> {
        self.config.validate().map_err(OptionsError::Config)?;
        if matches!(self.config.credential, Credential::X509) && self.tls.client_auth.is_none() {
            return Err(OptionsError::MissingClientCertificate);
        }
        if self.transport == Transport::PlainTcp {
            return Ok(None);
        }
        tls::server_name(self.host())?;
        Ok(Some(tls::client_config(&self.tls)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: &str = "HostName=hub.azure-devices.net;DeviceId=dev1;\
        SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn defaults_and_ports() {
        let o = ClientOptions::from_connection_string(CS).unwrap();
        assert_eq!(o.port(), 8883);
        assert_eq!(o.with_transport(Transport::WebSocket).port(), 443);
        let o = ClientOptions::from_connection_string(CS)
            .unwrap()
            .with_transport(Transport::PlainTcp)
            .with_port(11883);
        assert_eq!(o.port(), 11883);
        assert!(o.prepare().unwrap().is_none());
    }

    #[test]
    fn gateway_is_the_transport_host() {
        let o = ClientOptions::from_connection_string(&format!("{CS};GatewayHostName=edge.local"))
            .unwrap();
        assert_eq!(o.host(), "edge.local");
        assert_eq!(o.config.host_name.as_str(), "hub.azure-devices.net");
        assert!(o.prepare().unwrap().is_some());
    }

    #[test]
    fn clear_errors() {
        let e = ClientOptions::from_connection_string("HostName=h;DeviceId=d").unwrap_err();
        assert!(e.to_string().contains("no credential"), "{e}");
        let e = ClientOptions::from_connection_string("HostName=h.net;DeviceId=d;x509=true")
            .unwrap()
            .prepare()
            .unwrap_err();
        assert!(matches!(e, OptionsError::MissingClientCertificate), "{e}");
        let e = ClientOptions::from_connection_string(CS)
            .unwrap()
            .with_session(|c| c.with_max_in_flight(0))
            .prepare()
            .unwrap_err();
        assert!(e.to_string().contains("in-flight"), "{e}");
    }
}
