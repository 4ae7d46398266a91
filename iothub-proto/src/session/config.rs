//! [`Config`]: everything a [`Session`](super::Session) is built from, with
//! every default in one place.

use core::time::Duration;

use bytes::Bytes;

use super::error::PropertyProblem;
use super::event::Qos;
use crate::auth::{ConnectionString, Credential, HostName, Identity, UsernameOptions};
use crate::connection::{ConfigError, Settings};
pub use crate::connection::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_PING_TIMEOUT, MAX_KEEP_ALIVE,
    MIN_MAX_PACKET_SIZE,
};
use crate::properties::MessageProperties;

/// Default delay before retrying after the hub refused the credentials
/// (CONNACK 4 or 5): 5 minutes.
pub const DEFAULT_AUTH_RETRY_DELAY: Duration = Duration::from_secs(300);
/// Default number of QoS 1 telemetry messages awaiting their PUBACK at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// The largest in-flight window [`Config::max_in_flight`] may ask for.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1024;
/// Default capacity of the queue of telemetry messages waiting to be sent.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// Default time a telemetry message may take from acceptance to its PUBACK:
/// 60 s.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a twin request may take from acceptance to its answer: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries of a twin request answered 429 or 5xx.
pub const DEFAULT_REQUEST_RETRIES: u32 = 3;
/// Default number of twin requests (GET and PATCH) pending at once.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 32;
/// Default number of cloud-to-device and module input messages waiting for
/// the application at once (delivered and not yet taken or acknowledged,
/// or held for a feature not asked for): 50, the depth of the hub's own
/// cloud-to-device queue per device.
pub const DEFAULT_MAX_INBOUND_PENDING: usize = 50;
/// Default lifetime of a SAS token signed from a key: 3600 s.
pub const DEFAULT_SAS_LIFETIME: Duration = Duration::from_secs(3600);
/// Default [`Config::token_request_timeout`]: 30 s.
pub const DEFAULT_TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default point of renewal, in percent of the SAS lifetime: 80 %.
pub const DEFAULT_RENEWAL_PERCENT: u8 = 80;
/// Default shortest reconnection delay: 1 s.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Default longest reconnection delay: 60 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default time after which a connection counts as stable and the backoff
/// starts again from its minimum: 60 s.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(60);
/// Default largest packet accepted from the hub, fixed header included:
/// 512 KiB (room for 128 KB method payloads and 64 KB twins with their
/// topics).
pub const DEFAULT_MAX_PACKET_SIZE: usize = 512 * 1024;

/// What to do when the hub refuses the credentials (CONNACK return code 4,
/// bad user name or password, or 5, not authorized).
///
/// A refused key will be refused again a second later, so the session does
/// not retry in a tight loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthFailurePolicy {
    /// Wait this long (no jitter, no growth), then connect again with fresh
    /// credentials. The default, with [`DEFAULT_AUTH_RETRY_DELAY`].
    RetryAfter(Duration),
    /// Stop the session ([`Event::Stopped`](super::Event::Stopped)).
    Stop,
}

impl Default for AuthFailurePolicy {
    fn default() -> Self {
        AuthFailurePolicy::RetryAfter(DEFAULT_AUTH_RETRY_DELAY)
    }
}

/// A will message: published by the hub as telemetry (with the extra
/// property `iothub-MessageType=Will`) if the connection dies without a
/// DISCONNECT. Its topic is the identity's telemetry topic with
/// [`properties`](Self::properties) as the property bag.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Will {
    /// The message body (at most 65,535 bytes).
    pub payload: Bytes,
    /// The properties; must not name `iothub-MessageType` (the hub sets it)
    /// nor any application property starting with `$`.
    pub properties: MessageProperties,
    /// The QoS the hub publishes the will with.
    pub qos: Qos,
}

impl Will {
    /// A will with this body, no properties and QoS 1.
    #[must_use]
    pub fn new(payload: impl Into<Bytes>) -> Will {
        Will {
            payload: payload.into(),
            properties: MessageProperties::new(),
            qos: Qos::AtLeastOnce,
        }
    }

    /// Sets the properties.
    #[must_use]
    pub fn with_properties(mut self, properties: MessageProperties) -> Will {
        self.properties = properties;
        self
    }

    /// Sets the QoS.
    #[must_use]
    pub fn with_qos(mut self, qos: Qos) -> Will {
        self.qos = qos;
        self
    }
}

/// Everything a [`Session`](super::Session) is built from.
///
/// Start from [`Config::new`] or [`Config::from_connection_string`]; every
/// other field has a default (the `DEFAULT_*` constants of this module) and
/// can be set directly or with its `with_*` method.
/// [`Session::new`](super::Session::new) checks the values and refuses
/// impossible ones with a [`ConfigError`].
///
/// ```
/// use core::time::Duration;
/// use iothub_proto::auth::ConnectionString;
/// use iothub_proto::session::{Config, Session};
///
/// let cs: ConnectionString = "HostName=contoso.azure-devices.net;DeviceId=dev1;\
///     SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
///     .parse()?;
/// let config = Config::from_connection_string(&cs)
///     .with_keep_alive(Duration::from_secs(120))
///     .with_seed(0x5eed);
/// let session = Session::new(config)?;
/// # let _ = session;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The device or module identity.
    pub identity: Identity,
    /// The hub's `HostName` (in the username and the SAS resource URI, even
    /// behind a gateway).
    pub host_name: HostName,
    /// The gateway to open the transport to, if any; see
    /// [`transport_host`](Self::transport_host). The session itself never
    /// uses it.
    pub gateway_host_name: Option<HostName>,
    /// How the device proves who it is.
    pub credential: Credential,
    /// The username's `api-version`, `DeviceClientType` and `model-id`.
    pub username: UsernameOptions,
    /// The CONNECT clean-session flag. Default `false`: subscriptions and
    /// queued cloud-to-device messages survive a reconnect, and
    /// unacknowledged telemetry is re-sent with DUP and its packet id.
    pub clean_session: bool,
    /// MQTT keep-alive: a PINGREQ goes out after this long without sending.
    /// At most [`MAX_KEEP_ALIVE`]; zero turns keep-alive off. Whole seconds
    /// (the fraction is dropped). Default [`DEFAULT_KEEP_ALIVE`].
    pub keep_alive: Duration,
    /// How long to wait for a PINGRESP before the connection counts as dead.
    /// Default [`DEFAULT_PING_TIMEOUT`].
    pub ping_timeout: Duration,
    /// How long to wait for the CONNACK. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// The will message, if any. Default none.
    pub will: Option<Will>,
    /// What to do when the hub refuses the credentials.
    /// Default: retry after [`DEFAULT_AUTH_RETRY_DELAY`].
    pub auth_failure: AuthFailurePolicy,
    /// How many QoS 1 telemetry messages may await their PUBACK at once
    /// (1 to [`MAX_IN_FLIGHT_LIMIT`]). Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// How many telemetry messages may wait (while disconnected, or while
    /// the window is full) before `send_telemetry` refuses new ones.
    /// Default [`DEFAULT_QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// How long a telemetry message may take from acceptance to its PUBACK
    /// (QoS 1) or to being handed out (QoS 0). Default
    /// [`DEFAULT_MESSAGE_TIMEOUT`].
    pub message_timeout: Duration,
    /// How long a twin request may take from acceptance to its answer,
    /// retries and reconnections included. Default
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// How many times a twin request answered 429 or 5xx is retried.
    /// Default [`DEFAULT_REQUEST_RETRIES`].
    pub request_retries: u32,
    /// How many twin requests may be pending at once.
    /// Default [`DEFAULT_MAX_PENDING_REQUESTS`].
    pub max_pending_requests: usize,
    /// Lifetime of each SAS token signed from a key, or asked of an
    /// external signer ([`Event::TokenRequested`](super::Event::TokenRequested)). Default
    /// [`DEFAULT_SAS_LIFETIME`].
    pub sas_lifetime: Duration,
    /// When to reconnect with a fresh token, in percent of
    /// [`sas_lifetime`](Self::sas_lifetime) (1 to 100). Default
    /// [`DEFAULT_RENEWAL_PERCENT`].
    pub renewal_percent: u8,
    /// [`Credential::ExternalSigner`]: how long an
    /// [`Event::TokenRequested`](super::Event::TokenRequested) may go
    /// unanswered before it counts as failed
    /// ([`Event::TokenRequestFailed`](super::Event::TokenRequestFailed))
    /// and is asked again after a backoff. Default
    /// [`DEFAULT_TOKEN_REQUEST_TIMEOUT`].
    pub token_request_timeout: Duration,
    /// Shortest reconnection delay. Default [`DEFAULT_BACKOFF_MIN`].
    pub backoff_min: Duration,
    /// Longest reconnection delay. Default [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// After a connection has lasted this long, the backoff starts again
    /// from [`backoff_min`](Self::backoff_min). Default
    /// [`DEFAULT_STABLE_AFTER`].
    pub stable_after: Duration,
    /// Largest packet accepted from the hub, fixed header included; a
    /// larger one is a protocol error. Default [`DEFAULT_MAX_PACKET_SIZE`].
    pub max_packet_size: usize,
    /// Cloud-to-device and module input messages are acknowledged only by
    /// [`Session::ack`](super::Session::ack), not when the application
    /// takes them ([`Session::taken`](super::Session::taken)).
    /// Default `false`.
    pub manual_ack: bool,
    /// How many cloud-to-device and module input messages may wait for the
    /// application at once: delivered but not yet taken (or, with
    /// [`manual_ack`](Self::manual_ack), not yet acknowledged), or held for
    /// a feature the application has not asked for. One more is neither
    /// delivered nor acknowledged
    /// ([`Event::InboundOverflow`](super::Event::InboundOverflow)): the hub
    /// keeps it and sends it again on a later connection. Default
    /// [`DEFAULT_MAX_INBOUND_PENDING`].
    pub max_inbound_pending: usize,
    /// The last desired-properties `$version` the application applied (for
    /// example persisted across restarts), if any. Default none: the first
    /// full twin read is always reported.
    pub initial_desired_version: Option<u64>,
    /// Seed of the jitter generator (any value; use a per-device random one
    /// so that a fleet does not reconnect in lockstep). Default 0.
    pub seed: u64,
}

macro_rules! with {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Config {
            self.$field = value;
            self
        }
    )*};
}

impl Config {
    /// A configuration with every default, for this identity at this hub.
    #[must_use]
    pub fn new(identity: Identity, host_name: HostName, credential: Credential) -> Config {
        Config {
            identity,
            host_name,
            gateway_host_name: None,
            credential,
            username: UsernameOptions::default(),
            clean_session: false,
            keep_alive: DEFAULT_KEEP_ALIVE,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            will: None,
            auth_failure: AuthFailurePolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            request_retries: DEFAULT_REQUEST_RETRIES,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            sas_lifetime: DEFAULT_SAS_LIFETIME,
            renewal_percent: DEFAULT_RENEWAL_PERCENT,
            token_request_timeout: DEFAULT_TOKEN_REQUEST_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            stable_after: DEFAULT_STABLE_AFTER,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            manual_ack: false,
            max_inbound_pending: DEFAULT_MAX_INBOUND_PENDING,
            initial_desired_version: None,
            seed: 0,
        }
    }

    /// A configuration with every default, from a parsed connection string
    /// (host, gateway, identity and credential).
    #[must_use]
    pub fn from_connection_string(cs: &ConnectionString) -> Config {
        let mut config = Config::new(
            cs.identity.clone(),
            cs.host_name.clone(),
            cs.credential.clone(),
        );
        config.gateway_host_name = cs.gateway_host_name.clone();
        config
    }

    /// The host the adapter opens its TCP/TLS connection to: the gateway if
    /// there is one, else the hub.
    #[must_use]
    pub fn transport_host(&self) -> &HostName {
        self.gateway_host_name.as_ref().unwrap_or(&self.host_name)
    }

    with! {
        /// Sets [`gateway_host_name`](Self::gateway_host_name).
        with_gateway_host_name: gateway_host_name: Option<HostName>;
        /// Sets [`username`](Self::username).
        with_username: username: UsernameOptions;
        /// Sets [`clean_session`](Self::clean_session).
        with_clean_session: clean_session: bool;
        /// Sets [`keep_alive`](Self::keep_alive).
        with_keep_alive: keep_alive: Duration;
        /// Sets [`ping_timeout`](Self::ping_timeout).
        with_ping_timeout: ping_timeout: Duration;
        /// Sets [`connect_timeout`](Self::connect_timeout).
        with_connect_timeout: connect_timeout: Duration;
        /// Sets [`will`](Self::will).
        with_will: will: Option<Will>;
        /// Sets [`auth_failure`](Self::auth_failure).
        with_auth_failure: auth_failure: AuthFailurePolicy;
        /// Sets [`max_in_flight`](Self::max_in_flight).
        with_max_in_flight: max_in_flight: usize;
        /// Sets [`queue_capacity`](Self::queue_capacity).
        with_queue_capacity: queue_capacity: usize;
        /// Sets [`message_timeout`](Self::message_timeout).
        with_message_timeout: message_timeout: Duration;
        /// Sets [`request_timeout`](Self::request_timeout).
        with_request_timeout: request_timeout: Duration;
        /// Sets [`request_retries`](Self::request_retries).
        with_request_retries: request_retries: u32;
        /// Sets [`max_pending_requests`](Self::max_pending_requests).
        with_max_pending_requests: max_pending_requests: usize;
        /// Sets [`sas_lifetime`](Self::sas_lifetime).
        with_sas_lifetime: sas_lifetime: Duration;
        /// Sets [`renewal_percent`](Self::renewal_percent).
        with_renewal_percent: renewal_percent: u8;
        /// Sets [`token_request_timeout`](Self::token_request_timeout).
        with_token_request_timeout: token_request_timeout: Duration;
        /// Sets [`backoff_min`](Self::backoff_min).
        with_backoff_min: backoff_min: Duration;
        /// Sets [`backoff_max`](Self::backoff_max).
        with_backoff_max: backoff_max: Duration;
        /// Sets [`stable_after`](Self::stable_after).
        with_stable_after: stable_after: Duration;
        /// Sets [`max_packet_size`](Self::max_packet_size).
        with_max_packet_size: max_packet_size: usize;
        /// Sets [`manual_ack`](Self::manual_ack).
        with_manual_ack: manual_ack: bool;
        /// Sets [`max_inbound_pending`](Self::max_inbound_pending).
        with_max_inbound_pending: max_inbound_pending: usize;
        /// Sets [`initial_desired_version`](Self::initial_desired_version).
        with_initial_desired_version: initial_desired_version: Option<u64>;
        /// Sets [`seed`](Self::seed).
        with_seed: seed: u64;
    }

    /// Checks every value; see [`ConfigError`] for what is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.link_settings().validate()?;
        for (field, value) in [
            ("message_timeout", self.message_timeout),
            ("request_timeout", self.request_timeout),
            ("sas_lifetime", self.sas_lifetime),
            ("token_request_timeout", self.token_request_timeout),
        ] {
            if value < Duration::from_millis(1) {
                return Err(ConfigError::ZeroDuration(field));
            }
        }
        if let AuthFailurePolicy::RetryAfter(d) = self.auth_failure {
            if d < Duration::from_millis(1) {
                return Err(ConfigError::ZeroDuration("auth_failure"));
            }
        }
        if !(1..=100).contains(&self.renewal_percent) {
            return Err(ConfigError::RenewalPercent(self.renewal_percent));
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT_LIMIT {
            return Err(ConfigError::MaxInFlight(self.max_in_flight));
        }
        if self.max_pending_requests == 0 {
            return Err(ConfigError::MaxPendingRequests);
        }
        if self.max_inbound_pending == 0 {
            return Err(ConfigError::MaxInboundPending);
        }
        if let Some(will) = &self.will {
            check_will_properties(&will.properties).map_err(ConfigError::WillProperties)?;
            if will.payload.len() > crate::mqtt::MAX_STRING_LEN {
                return Err(ConfigError::WillTooLarge(will.payload.len()));
            }
        }
        Ok(())
    }

    /// What the connection layer is configured with.
    pub(crate) fn link_settings(&self) -> Settings {
        Settings {
            keep_alive: self.keep_alive,
            ping_timeout: self.ping_timeout,
            connect_timeout: self.connect_timeout,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            stable_after: Some(self.stable_after),
            max_packet_size: self.max_packet_size,
            seed: self.seed,
        }
    }
}

/// The property rules of outgoing messages: no application property whose
/// name starts with `$` (the hub reads `$.`-names as system properties) and
/// none called `iothub-MessageType` (the hub sets it on will messages).
pub(crate) fn check_message_properties(p: &MessageProperties) -> Result<(), PropertyProblem> {
    for (name, _) in p.application_iter() {
        if name.starts_with('$') {
            return Err(PropertyProblem::ReservedPrefix);
        }
        if name.eq_ignore_ascii_case("iothub-MessageType") {
            return Err(PropertyProblem::MessageType);
        }
    }
    Ok(())
}

fn check_will_properties(p: &MessageProperties) -> Result<(), PropertyProblem> {
    check_message_properties(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SharedAccessKey;

    fn config() -> Config {
        Config::new(
            Identity::parse("dev1", None).unwrap(),
            HostName::new("hub.azure-devices.net").unwrap(),
            Credential::SharedAccessKey {
                key: SharedAccessKey::from_bytes([7u8; 32]).unwrap(),
                key_name: None,
            },
        )
    }

    #[test]
    fn defaults_are_valid() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert!(!c.clean_session);
        assert_eq!(c.keep_alive, Duration::from_secs(60));
        assert_eq!(c.renewal_percent, 80);
        assert_eq!(c.transport_host().as_str(), "hub.azure-devices.net");
    }

    #[test]
    fn impossible_values_are_refused() {
        let long = config().with_keep_alive(Duration::from_secs(1178));
        assert_eq!(
            long.validate(),
            Err(ConfigError::KeepAliveTooLong(Duration::from_secs(1178)))
        );
        assert_eq!(
            config()
                .with_keep_alive(Duration::from_secs(1177))
                .validate(),
            Ok(())
        );
        assert_eq!(config().with_keep_alive(Duration::ZERO).validate(), Ok(()));
        assert!(matches!(
            config()
                .with_backoff_min(Duration::from_secs(10))
                .with_backoff_max(Duration::from_secs(1))
                .validate(),
            Err(ConfigError::BackoffRange { .. })
        ));
        assert_eq!(
            config().with_renewal_percent(0).validate(),
            Err(ConfigError::RenewalPercent(0))
        );
        assert_eq!(
            config().with_max_in_flight(0).validate(),
            Err(ConfigError::MaxInFlight(0))
        );
        assert_eq!(
            config().with_ping_timeout(Duration::ZERO).validate(),
            Err(ConfigError::ZeroDuration("ping_timeout"))
        );
        assert_eq!(
            config().with_max_packet_size(10).validate(),
            Err(ConfigError::MaxPacketSize(10))
        );
        let mut props = MessageProperties::new();
        props.add_application("iothub-messagetype", "x").unwrap();
        let will = Will::new(&b"bye"[..]).with_properties(props);
        assert_eq!(
            config().with_will(Some(will)).validate(),
            Err(ConfigError::WillProperties(PropertyProblem::MessageType))
        );
    }
}
