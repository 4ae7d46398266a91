//! [`Config`]: everything a provisioning [`Session`](super::Session) is
//! built from, with every default in one place.

use alloc::string::String;
use core::time::Duration;

use serde_json::Value;

use crate::auth::{
    DEFAULT_DPS_API_VERSION, GLOBAL_DPS_ENDPOINT, HostName, IdScope, ProvisioningAttestation,
    ProvisioningUsername, RegistrationId,
};
use crate::connection::{ConfigError, Settings};
pub use crate::connection::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_PING_TIMEOUT, MAX_KEEP_ALIVE,
};

/// Default wait for the answer to a register or poll request: 30 s. No
/// answer counts as a transport failure (the connection is closed and
/// opened again).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default wait before polling when an answer carries no `retry-after`:
/// 3 s.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(3);
/// The shortest wait between two requests, whatever `retry-after` says
/// (a `retry-after=0` would otherwise poll in a tight loop): 1 s.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default limit of the whole registration, from
/// [`Session::new`](super::Session::new) to the result: 5 minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default number of reconnections after transport failures: 5.
pub const DEFAULT_MAX_TRANSPORT_RETRIES: u32 = 5;
/// Default number of requests retried after 429 or 5xx: 10.
pub const DEFAULT_MAX_THROTTLE_RETRIES: u32 = 10;
/// Default shortest reconnection delay: 1 s.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Default longest reconnection delay: 30 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default lifetime of a SAS token signed from a key: 3600 s.
pub const DEFAULT_SAS_LIFETIME: Duration = Duration::from_secs(3600);
/// Default largest packet accepted from DPS: 64 KiB.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 64 * 1024;

/// Everything a provisioning [`Session`](super::Session) is built from.
///
/// Start from [`Config::new`]; every other field has a default (the
/// `DEFAULT_*` constants of this module) and can be set directly or with
/// its `with_*` method. The CONNECT always has CleanSession 1: DPS keeps
/// no sessions.
///
/// ```
/// use iothub_proto::auth::{IdScope, ProvisioningAttestation, RegistrationId, SharedAccessKey};
/// use iothub_proto::provisioning::Config;
/// use serde_json::json;
///
/// let group_key = SharedAccessKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
/// let rid = RegistrationId::new("sensor-042")?;
/// let config = Config::new(
///     IdScope::new("0ne00000A0A")?,
///     rid.clone(),
///     ProvisioningAttestation::group(&group_key, &rid),
/// )
/// .with_payload(Some(json!({"site": "north"})))
/// .with_model_id("dtmi:com:example:Thermostat;1");
/// assert_eq!(config.transport_host().as_str(), "global.azure-devices-provisioning.net");
/// assert_eq!(config.payload, Some(json!({"site": "north", "modelId": "dtmi:com:example:Thermostat;1"})));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The DPS instance's ID scope.
    pub id_scope: IdScope,
    /// The registration id (also the MQTT client id).
    pub registration_id: RegistrationId,
    /// How the device proves who it is.
    pub attestation: ProvisioningAttestation,
    /// The host the adapter opens its TLS connection to. Default
    /// [`GLOBAL_DPS_ENDPOINT`]. The session itself never uses it.
    pub endpoint: HostName,
    /// The username's `api-version`. Default [`DEFAULT_DPS_API_VERSION`].
    pub api_version: String,
    /// The username's `ClientVersion` (a user agent). Default none.
    pub client_version: Option<String>,
    /// The custom payload of the registration request. Default none.
    pub payload: Option<Value>,
    /// MQTT keep-alive (whole seconds, at most [`MAX_KEEP_ALIVE`]; zero
    /// turns it off). Default [`DEFAULT_KEEP_ALIVE`].
    pub keep_alive: Duration,
    /// How long to wait for a PINGRESP. Default [`DEFAULT_PING_TIMEOUT`].
    pub ping_timeout: Duration,
    /// How long to wait for the CONNACK, and then for the SUBACK.
    /// Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// How long to wait for the answer to each request. Default
    /// [`DEFAULT_RESPONSE_TIMEOUT`].
    pub response_timeout: Duration,
    /// How long to wait before the next request when an answer that asks
    /// for one carries no `retry-after`. Default [`DEFAULT_RETRY_AFTER`].
    pub default_retry_after: Duration,
    /// The limit of the whole registration, from `Session::new` on.
    /// Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// How many times a failed transport (a connection that could not be
    /// opened, died, was refused with CONNACK 3, or went unanswered) is
    /// replaced, over the whole registration. Default
    /// [`DEFAULT_MAX_TRANSPORT_RETRIES`].
    pub max_transport_retries: u32,
    /// How many requests answered 429 or 5xx are retried, over the whole
    /// registration. Default [`DEFAULT_MAX_THROTTLE_RETRIES`].
    pub max_throttle_retries: u32,
    /// Shortest reconnection delay. Default [`DEFAULT_BACKOFF_MIN`].
    pub backoff_min: Duration,
    /// Longest reconnection delay. Default [`DEFAULT_BACKOFF_MAX`].
    pub backoff_max: Duration,
    /// Lifetime of each SAS token signed from a key. Default
    /// [`DEFAULT_SAS_LIFETIME`].
    pub sas_lifetime: Duration,
    /// Largest packet accepted from DPS. Default
    /// [`DEFAULT_MAX_PACKET_SIZE`].
    pub max_packet_size: usize,
    /// Seed of the backoff jitter. Default 0.
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
    /// A configuration with every default for this registration.
    #[must_use]
    pub fn new(
        id_scope: IdScope,
        registration_id: RegistrationId,
        attestation: ProvisioningAttestation,
    ) -> Config {
        Config {
            id_scope,
            registration_id,
            attestation,
            endpoint: HostName::from_trusted(GLOBAL_DPS_ENDPOINT),
            api_version: String::from(DEFAULT_DPS_API_VERSION),
            client_version: None,
            payload: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            default_retry_after: DEFAULT_RETRY_AFTER,
            timeout: DEFAULT_TIMEOUT,
            max_transport_retries: DEFAULT_MAX_TRANSPORT_RETRIES,
            max_throttle_retries: DEFAULT_MAX_THROTTLE_RETRIES,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            sas_lifetime: DEFAULT_SAS_LIFETIME,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            seed: 0,
        }
    }

    /// The host the adapter opens its TLS connection to:
    /// [`endpoint`](Self::endpoint).
    #[must_use]
    pub fn transport_host(&self) -> &HostName {
        &self.endpoint
    }

    /// The CONNECT username.
    #[must_use]
    pub fn username(&self) -> ProvisioningUsername {
        let mut u = ProvisioningUsername::new(self.id_scope.clone(), self.registration_id.clone())
            .with_api_version(self.api_version.clone());
        u.client_version.clone_from(&self.client_version);
        u
    }

    /// Adds `"modelId": dtmi` to the registration payload (making it an
    /// object if it is none), the IoT Plug and Play convention that lets a
    /// custom allocation policy see the model. A payload that is not an
    /// object is replaced.
    #[must_use]
    pub fn with_model_id(mut self, dtmi: &str) -> Config {
        let mut map = match self.payload.take() {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        map.insert("modelId".into(), Value::from(dtmi));
        self.payload = Some(Value::Object(map));
        self
    }

    with! {
        /// Sets [`endpoint`](Self::endpoint).
        with_endpoint: endpoint: HostName;
        /// Sets [`api_version`](Self::api_version).
        with_api_version: api_version: String;
        /// Sets [`client_version`](Self::client_version).
        with_client_version: client_version: Option<String>;
        /// Sets [`payload`](Self::payload).
        with_payload: payload: Option<Value>;
        /// Sets [`keep_alive`](Self::keep_alive).
        with_keep_alive: keep_alive: Duration;
        /// Sets [`ping_timeout`](Self::ping_timeout).
        with_ping_timeout: ping_timeout: Duration;
        /// Sets [`connect_timeout`](Self::connect_timeout).
        with_connect_timeout: connect_timeout: Duration;
        /// Sets [`response_timeout`](Self::response_timeout).
        with_response_timeout: response_timeout: Duration;
        /// Sets [`default_retry_after`](Self::default_retry_after).
        with_default_retry_after: default_retry_after: Duration;
        /// Sets [`timeout`](Self::timeout).
        with_timeout: timeout: Duration;
        /// Sets [`max_transport_retries`](Self::max_transport_retries).
        with_max_transport_retries: max_transport_retries: u32;
        /// Sets [`max_throttle_retries`](Self::max_throttle_retries).
        with_max_throttle_retries: max_throttle_retries: u32;
        /// Sets [`backoff_min`](Self::backoff_min).
        with_backoff_min: backoff_min: Duration;
        /// Sets [`backoff_max`](Self::backoff_max).
        with_backoff_max: backoff_max: Duration;
        /// Sets [`sas_lifetime`](Self::sas_lifetime).
        with_sas_lifetime: sas_lifetime: Duration;
        /// Sets [`max_packet_size`](Self::max_packet_size).
        with_max_packet_size: max_packet_size: usize;
        /// Sets [`seed`](Self::seed).
        with_seed: seed: u64;
    }

    /// Checks every value; see [`ConfigError`] for what is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.link_settings().validate()?;
        for (name, d) in [
            ("response_timeout", self.response_timeout),
            ("timeout", self.timeout),
            ("sas_lifetime", self.sas_lifetime),
        ] {
            if d < Duration::from_millis(1) {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.api_version.is_empty() {
            return Err(ConfigError::EmptyApiVersion);
        }
        Ok(())
    }

    /// What the connection layer is configured with (a registration is
    /// short: no stable-connection reset of the backoff).
    pub(crate) fn link_settings(&self) -> Settings {
        Settings {
            keep_alive: self.keep_alive,
            ping_timeout: self.ping_timeout,
            connect_timeout: self.connect_timeout,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            stable_after: None,
            max_packet_size: self.max_packet_size,
            seed: self.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SharedAccessKey;
    use alloc::string::ToString;
    use serde_json::json;

    fn config() -> Config {
        Config::new(
            IdScope::new("0ne00000A0A").unwrap(),
            RegistrationId::new("reg-1").unwrap(),
            ProvisioningAttestation::SymmetricKey(SharedAccessKey::from_bytes([1u8; 32]).unwrap()),
        )
    }

    #[test]
    fn defaults() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.transport_host().as_str(), GLOBAL_DPS_ENDPOINT);
        assert_eq!(
            c.username().to_string(),
            "0ne00000A0A/registrations/reg-1/api-version=2021-06-01"
        );
        let c = c
            .with_api_version("2019-03-31".into())
            .with_client_version(Some("ua/1".into()));
        assert_eq!(
            c.username().to_string(),
            "0ne00000A0A/registrations/reg-1/api-version=2019-03-31&ClientVersion=ua%2F1"
        );
    }

    #[test]
    fn model_id_goes_into_the_payload() {
        let c = config().with_model_id("dtmi:a;1");
        assert_eq!(c.payload, Some(json!({"modelId": "dtmi:a;1"})));
        let c = config()
            .with_payload(Some(json!([1])))
            .with_model_id("dtmi:a;1");
        assert_eq!(c.payload, Some(json!({"modelId": "dtmi:a;1"})));
    }

    #[test]
    fn impossible_values_are_refused() {
        assert_eq!(
            config()
                .with_keep_alive(Duration::from_secs(1178))
                .validate(),
            Err(ConfigError::KeepAliveTooLong(Duration::from_secs(1178)))
        );
        assert_eq!(
            config()
                .with_keep_alive(Duration::from_millis(500))
                .validate(),
            Err(ConfigError::KeepAliveTooShort(Duration::from_millis(500)))
        );
        assert_eq!(config().with_keep_alive(Duration::ZERO).validate(), Ok(()));
        assert_eq!(
            config().with_timeout(Duration::ZERO).validate(),
            Err(ConfigError::ZeroDuration("timeout"))
        );
        assert!(matches!(
            config()
                .with_backoff_min(Duration::from_secs(9))
                .with_backoff_max(Duration::from_secs(1))
                .validate(),
            Err(ConfigError::BackoffRange { .. })
        ));
        assert_eq!(
            config().with_max_packet_size(10).validate(),
            Err(ConfigError::MaxPacketSize(10))
        );
        assert_eq!(
            config().with_api_version(String::new()).validate(),
            Err(ConfigError::EmptyApiVersion)
        );
    }
}
