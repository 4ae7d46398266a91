//! The values that cross the session's boundary: what commands take and
//! return ([`Message`], [`MessageId`], [`RequestToken`], [`MethodId`],
//! [`AckToken`], [`Feature`]) and what the session tells the adapter
//! ([`Event`]).

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::error::{JsonError, MessageFailure, RequestError, StopReason, TokenFailure};
use crate::connection::DisconnectReason;
use crate::mqtt::Pid;
use crate::properties::MessageProperties;
use crate::topic::{RequestId, TopicError};

/// The delivery guarantee of a telemetry message. QoS 2 does not exist
/// here: IoT Hub closes the connection on a QoS 2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Qos {
    /// Sent once, never acknowledged: [`Event::MessageSent`] when its bytes
    /// were handed to the transport.
    AtMostOnce,
    /// Acknowledged by a PUBACK ([`Event::MessageAcknowledged`]), re-sent
    /// after a reconnection until then. The default.
    #[default]
    AtLeastOnce,
}

impl Qos {
    pub(crate) fn to_mqtt(self) -> crate::mqtt::QoS {
        match self {
            Qos::AtMostOnce => crate::mqtt::QoS::AtMostOnce,
            Qos::AtLeastOnce => crate::mqtt::QoS::AtLeastOnce,
        }
    }
}

/// A device-to-cloud (telemetry) message.
///
/// ```
/// use core::time::Duration;
/// use iothub_proto::properties::MessageProperties;
/// use iothub_proto::session::{Message, Qos};
///
/// let mut props = MessageProperties::new();
/// props.content_type = Some("application/json".into());
/// let msg = Message::new(&br#"{"t":21.5}"#[..])
///     .with_properties(props)
///     .with_qos(Qos::AtLeastOnce)
///     .with_ttl(Duration::from_secs(600));
/// # let _ = msg;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The body.
    pub payload: Bytes,
    /// System and application properties (they travel in the topic).
    pub properties: MessageProperties,
    /// QoS 1 (default) or 0.
    pub qos: Qos,
    /// How long the message may wait to be sent, from acceptance. Past it,
    /// an unsent message fails with [`MessageFailure::Expired`]. Default
    /// none (only [`Config::message_timeout`](super::Config::message_timeout)
    /// applies).
    pub ttl: Option<Duration>,
}

impl Message {
    /// A QoS 1 message with this body, no properties and no time-to-live.
    #[must_use]
    pub fn new(payload: impl Into<Bytes>) -> Message {
        Message {
            payload: payload.into(),
            properties: MessageProperties::new(),
            qos: Qos::AtLeastOnce,
            ttl: None,
        }
    }

    /// Sets the properties.
    #[must_use]
    pub fn with_properties(mut self, properties: MessageProperties) -> Message {
        self.properties = properties;
        self
    }

    /// Sets the QoS.
    #[must_use]
    pub fn with_qos(mut self, qos: Qos) -> Message {
        self.qos = qos;
        self
    }

    /// Sets the time-to-live.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Message {
        self.ttl = Some(ttl);
        self
    }
}

/// Identifies an accepted telemetry message in the events about it.
/// Unique for the life of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub(crate) u64);

impl MessageId {
    /// The id as a number (1, 2, 3, … in order of acceptance).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Identifies an accepted twin request (GET or reported PATCH) in the event
/// that ends it. Unique for the life of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(pub(crate) u64);

impl RequestToken {
    /// The token as a number.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Identifies a direct method request, to answer it with
/// [`Session::respond_to_method`](super::Session::respond_to_method).
/// Carries the connection it arrived on: an answer is deliverable only on
/// that connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodId {
    pub(crate) generation: u64,
    pub(crate) request_id: RequestId,
}

impl MethodId {
    /// The hub's request id (`$rid`), echoed in the response topic.
    #[must_use]
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The connection the request arrived on (1 for the first connection,
    /// then 2, 3, …).
    #[must_use]
    pub fn connection(&self) -> u64 {
        self.generation
    }
}

/// Names one QoS 1 message from the hub that waits for its PUBACK: report
/// it taken by the application with
/// [`Session::taken`](super::Session::taken), or acknowledge it with
/// [`Session::ack`](super::Session::ack)
/// ([`Config::manual_ack`](super::Config::manual_ack) mode, or a message on
/// a topic the session cannot read). Valid on the connection the message
/// arrived on only: after a reconnection the hub sends the message again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub(crate) generation: u64,
    pub(crate) pid: Pid,
}

impl AckToken {
    /// The connection the message arrived on.
    #[must_use]
    pub fn connection(&self) -> u64 {
        self.generation
    }

    /// The packet id the PUBACK will carry.
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.pid
    }
}

/// Something the device can ask the hub to send it; each costs one
/// subscription, made only once enabled
/// ([`Session::enable`](super::Session::enable)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// Cloud-to-device messages (device identities only):
    /// `devices/{d}/messages/devicebound/#`.
    C2d,
    /// IoT Edge routed input messages (module identities only):
    /// `devices/{d}/modules/{m}/inputs/#`.
    ModuleInputs,
    /// Direct methods: `$iothub/methods/POST/#`.
    Methods,
    /// Desired-property notifications:
    /// `$iothub/twin/PATCH/properties/desired/#`, with the twin reads that
    /// keep them consistent ([`Event::DesiredState`]).
    DesiredProperties,
}

/// One of the (at most five) subscriptions a session makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Subscription {
    /// `devices/{d}/messages/devicebound/#` ([`Feature::C2d`]).
    C2d,
    /// `devices/{d}/modules/{m}/inputs/#` ([`Feature::ModuleInputs`]).
    ModuleInputs,
    /// `$iothub/methods/POST/#` ([`Feature::Methods`]).
    Methods,
    /// `$iothub/twin/PATCH/properties/desired/#`
    /// ([`Feature::DesiredProperties`]).
    DesiredProperties,
    /// `$iothub/twin/res/#`, made before the first twin request.
    TwinResponses,
}

impl Subscription {
    /// Every subscription, in the order of a SUBSCRIBE after a reconnect.
    pub(crate) const ALL: [Subscription; 5] = [
        Subscription::TwinResponses,
        Subscription::DesiredProperties,
        Subscription::Methods,
        Subscription::C2d,
        Subscription::ModuleInputs,
    ];

    pub(crate) fn bit(self) -> u8 {
        match self {
            Subscription::C2d => 1,
            Subscription::ModuleInputs => 2,
            Subscription::Methods => 4,
            Subscription::DesiredProperties => 8,
            Subscription::TwinResponses => 16,
        }
    }
}

impl From<Feature> for Subscription {
    fn from(f: Feature) -> Subscription {
        match f {
            Feature::C2d => Subscription::C2d,
            Feature::ModuleInputs => Subscription::ModuleInputs,
            Feature::Methods => Subscription::Methods,
            Feature::DesiredProperties => Subscription::DesiredProperties,
        }
    }
}

/// A twin read by [`Session::get_twin`](super::Session::get_twin).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Twin {
    /// The desired properties (an object, `$version` and `$metadata`
    /// included as sent).
    pub desired: Value,
    /// The reported properties (an object).
    pub reported: Value,
    /// `desired.$version`, if present.
    pub desired_version: Option<u64>,
    /// `reported.$version`, if present.
    pub reported_version: Option<u64>,
}

impl Twin {
    /// Parses a twin GET response body: the service's
    /// `{"desired":{…},"reported":{…}}` or the seed document's
    /// `{"properties":{"desired":{…},"reported":{…}}}`. A missing section
    /// is an empty object; a section that is not an object is
    /// [`JsonError::Shape`].
    pub fn from_json(body: &[u8]) -> Result<Twin, JsonError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| JsonError::from_serde(&e))?;
        let Value::Object(mut root) = value else {
            return Err(JsonError::Shape);
        };
        if let Some(props) = root.remove("properties") {
            let Value::Object(props) = props else {
                return Err(JsonError::Shape);
            };
            root = props;
        }
        let mut section = |name: &str| -> Result<Value, JsonError> {
            match root.remove(name) {
                None => Ok(Value::Object(serde_json::Map::new())),
                Some(v @ Value::Object(_)) => Ok(v),
                Some(_) => Err(JsonError::Shape),
            }
        };
        let desired = section("desired")?;
        let reported = section("reported")?;
        Ok(Twin {
            desired_version: version_of(&desired),
            reported_version: version_of(&reported),
            desired,
            reported,
        })
    }
}

/// The `$version` member of a twin section, if it is a `u64`.
pub(crate) fn version_of(section: &Value) -> Option<u64> {
    section.get("$version").and_then(Value::as_u64)
}

/// A cloud-to-device or module input message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundMessage {
    /// The properties decoded from the topic's property bag.
    pub properties: MessageProperties,
    /// The body, a zero-copy slice of the received bytes.
    pub payload: Bytes,
    /// For a QoS 1 message, the token of its PUBACK: pass it to
    /// [`Session::taken`](super::Session::taken) once the application has
    /// the message (that acknowledges it, unless
    /// [`Config::manual_ack`](super::Config::manual_ack)), and in manual-ack
    /// mode to [`Session::ack`](super::Session::ack). `None` for QoS 0.
    pub ack: Option<AckToken>,
    /// Arrival order in the session: a message given back
    /// ([`Session::return_inbound`](super::Session::return_inbound)) is held
    /// in its place among the messages that came after it.
    pub(crate) seq: u64,
}

/// What the session tells the application. Drain with
/// [`Session::poll_output`](super::Session::poll_output).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The hub accepted the CONNECT.
    Connected {
        /// The CONNACK's session-present flag.
        session_present: bool,
    },
    /// A connection (or a connection attempt) ended. What follows is an
    /// [`Event::ReconnectScheduled`], an immediate new transport (token
    /// renewal), or [`Event::Stopped`].
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The session will ask for a new transport after this delay
    /// (backoff, or the credential-refusal delay).
    ReconnectScheduled {
        /// The delay.
        delay: Duration,
    },
    /// The session stopped for good: no more transports, every pending
    /// message and request has been reported failed.
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// The fixed SAS token of a `SharedAccessSignature` credential has
    /// expired. The hub will close the connection; the session will not
    /// reconnect with it.
    TokenExpired {
        /// The token's `se=` expiry, Unix seconds.
        expiry_unix_secs: u64,
    },
    /// [`Credential::ExternalSigner`](crate::auth::Credential::ExternalSigner):
    /// the session needs a token valid for `lifetime` from now. Sign one
    /// (expiry = Unix seconds now + `lifetime`) and hand it to
    /// [`Session::provide_token`](super::Session::provide_token), or report
    /// failure with [`Session::token_unavailable`](super::Session::token_unavailable).
    /// Asked before the first CONNECT, at the renewal point of every token
    /// ([`Config::renewal_percent`](super::Config::renewal_percent) of its
    /// lifetime, while the connection goes on with the old token) and,
    /// after a failure, again after a backoff. At most one request is open
    /// at a time.
    TokenRequested {
        /// How long the token should be valid
        /// ([`Config::sas_lifetime`](super::Config::sas_lifetime)).
        lifetime: Duration,
    },
    /// A token request failed; the session asks again after `retry_in`
    /// (exponential backoff with jitter between
    /// [`Config::backoff_min`](super::Config::backoff_min) and
    /// [`Config::backoff_max`](super::Config::backoff_max)).
    TokenRequestFailed {
        /// What went wrong.
        reason: TokenFailure,
        /// When the next [`Event::TokenRequested`] comes.
        retry_in: Duration,
    },
    /// The hub refused a subscription (SUBACK 0x80). It is tried again
    /// after the next reconnection.
    SubscriptionFailed {
        /// Which one.
        subscription: Subscription,
    },
    /// The hub acknowledged a QoS 1 telemetry message (PUBACK).
    MessageAcknowledged {
        /// The id `send_telemetry` returned.
        id: MessageId,
    },
    /// A QoS 0 telemetry message was handed to the transport by
    /// `poll_output`.
    MessageSent {
        /// The id `send_telemetry` returned.
        id: MessageId,
    },
    /// A telemetry message failed.
    MessageFailed {
        /// The id `send_telemetry` returned.
        id: MessageId,
        /// Why.
        reason: MessageFailure,
    },
    /// The answer to [`Session::get_twin`](super::Session::get_twin).
    TwinReceived {
        /// The token `get_twin` returned.
        token: RequestToken,
        /// The twin.
        twin: Twin,
    },
    /// The answer to [`Session::update_reported`](super::Session::update_reported).
    ReportedUpdated {
        /// The token `update_reported` returned.
        token: RequestToken,
        /// The new reported-properties `$version` from the response topic.
        version: Option<u64>,
    },
    /// A twin request failed.
    RequestFailed {
        /// The token the command returned.
        token: RequestToken,
        /// Why.
        error: RequestError,
    },
    /// The full desired properties, read after a (re)connection or after a
    /// missed notification, reported only when their `$version` differs
    /// from the last one applied. Replace your state with it; it is not a
    /// patch.
    DesiredState {
        /// The desired section (an object).
        desired: Value,
        /// Its `$version`, now the last applied.
        version: u64,
    },
    /// A desired-properties notification, exactly one version after the
    /// last applied (stale ones are dropped, gaps trigger a full read).
    /// Merge it: a `null` member deletes.
    DesiredPatch {
        /// The patch (an object).
        patch: Value,
        /// Its `$version`, now the last applied.
        version: u64,
    },
    /// Reading the full desired properties failed; the next notification
    /// triggers another read.
    DesiredSyncFailed {
        /// Why.
        error: RequestError,
    },
    /// A desired-properties notification whose body is not a JSON object.
    /// A full read follows.
    InvalidDesiredPatch {
        /// Its `$version`.
        version: u64,
        /// What is wrong.
        error: JsonError,
    },
    /// A direct method call. Answer it with
    /// [`Session::respond_to_method`](super::Session::respond_to_method)
    /// before the caller's timeout.
    MethodRequest {
        /// Identifies the call for the answer.
        id: MethodId,
        /// The method name.
        name: String,
        /// The request body (JSON or empty).
        payload: Bytes,
    },
    /// A cloud-to-device message. Not acknowledged until the application
    /// has it: see [`InboundMessage::ack`]. (Boxed: a message with its
    /// properties is ten times the size of any other event, and every
    /// event is moved a few times on its way out.)
    C2dMessage(Box<InboundMessage>),
    /// An IoT Edge routed module input message.
    InputMessage {
        /// The input name.
        input: String,
        /// The message (boxed, as for [`C2dMessage`](Self::C2dMessage)).
        message: Box<InboundMessage>,
    },
    /// A PUBLISH on a topic the session does not handle, or cannot read
    /// (it breaks a rule of the topic grammar the device must rely on).
    /// Not fatal, and **not acknowledged**: the hub keeps a QoS 1 message
    /// and sends it again on a later connection, unless the application
    /// acknowledges it ([`Session::ack`](super::Session::ack) with `ack`).
    UnexpectedPublish {
        /// The topic.
        topic: String,
        /// The body, as received.
        payload: Bytes,
        /// What [`topic::parse`](crate::topic::parse) said (or
        /// [`TopicError::NoMatch`] for a topic of another identity).
        error: TopicError,
        /// For a QoS 1 message, the token to acknowledge it with; `None`
        /// for QoS 0, or when [`Config::max_inbound_pending`](super::Config::max_inbound_pending)
        /// messages already wait.
        ack: Option<AckToken>,
    },
    /// A cloud-to-device or module input message arrived while
    /// [`Config::max_inbound_pending`](super::Config::max_inbound_pending)
    /// messages were already waiting for the application. It was neither
    /// delivered nor acknowledged: the hub keeps a QoS 1 message and sends
    /// it again on a later connection (a QoS 0 message is lost).
    InboundOverflow {
        /// The message's topic.
        topic: String,
        /// The limit that was reached.
        limit: usize,
    },
}
