//! [`Router`]: the session's events, routed to whoever waits for them —
//! the same in every adapter, so it lives here. The adapter hands in its
//! completions and stream outlets as closures (a tokio oneshot, a std
//! channel, …); the router keeps them by message id and request token,
//! calls them when the session reports the outcome, feeds the inbound
//! streams, and logs the connection lifecycle with `tracing`.
//!
//! It makes no protocol decision: every outcome comes from the session's
//! events, every command goes to the session unchanged.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason, ReprovisionWatch};
use iothub_proto::session::{
    DisconnectReason, Event, Feature, InboundMessage, JsonError, Message, MessageId, MethodId,
    RequestError, RequestToken, Session, TokenFailure, Twin,
};
use iothub_proto::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{DesiredUpdate, Error, Inbound, InputMessage, Status, TokenRequestFailure};
use crate::edge::{TokenCommand, TokenSource};

/// Where the answer to one command goes: the async adapters' one-shot
/// channel, or any adapter's channel behind a closure that gives the value
/// back when nobody waits any more.
pub struct Reply<T>(ReplyTo<T>);

enum ReplyTo<T> {
    /// No allocation beyond the channel's own (the async adapters).
    Oneshot(futures_channel::oneshot::Sender<Answer<T>>),
    Fn(Box<dyn FnOnce(Answer<T>) -> Option<Answer<T>> + Send>),
}

/// What a [`Reply`] carries.
pub type Answer<T> = Result<T, Error>;

impl<T> Reply<T> {
    /// A reply from a function that delivers the value, or returns it when
    /// the receiver is gone.
    pub fn new(f: impl FnOnce(Answer<T>) -> Option<Answer<T>> + Send + 'static) -> Reply<T> {
        Reply(ReplyTo::Fn(Box::new(f)))
    }

    /// A reply on a `futures-channel` one-shot.
    pub fn oneshot(tx: futures_channel::oneshot::Sender<Answer<T>>) -> Reply<T> {
        Reply(ReplyTo::Oneshot(tx))
    }

    /// Delivers the answer; `Err` gives it back when nobody waits.
    pub fn send(self, value: Answer<T>) -> Result<(), Answer<T>> {
        match self.0 {
            ReplyTo::Oneshot(tx) => tx.send(value),
            ReplyTo::Fn(f) => match f(value) {
                None => Ok(()),
                Some(v) => Err(v),
            },
        }
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

/// Where one kind of inbound item goes: an adapter's stream, behind a
/// closure that gives the item back when the stream is gone.
pub struct Sink<T>(Box<dyn FnMut(T) -> Result<(), T> + Send>);

impl<T> Sink<T> {
    /// A sink from a function that delivers an item, or gives it back
    /// when its stream is gone.
    pub fn new(f: impl FnMut(T) -> Result<(), T> + Send + 'static) -> Sink<T> {
        Sink(Box::new(f))
    }

    /// Hands an item to the stream; the item back if the stream is gone.
    pub fn deliver(&mut self, item: T) -> Result<(), T> {
        (self.0)(item)
    }
}

impl<T> fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// A direct method call as the router hands it to the adapter, which
/// wraps it into its own responder type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MethodCall {
    /// Identifies the call for [`Session::respond_to_method`].
    pub id: MethodId,
    /// The method name.
    pub name: String,
    /// The request body (JSON or empty).
    pub payload: Bytes,
}

/// A stream the application asks for, and the feature it needs;
/// subscribing enables the feature.
#[derive(Debug)]
#[non_exhaustive]
pub enum Subscribe {
    /// Cloud-to-device messages.
    C2d(Sink<InboundMessage>),
    /// Module input messages.
    Inputs(Sink<InputMessage>),
    /// Direct method calls.
    Methods(Sink<MethodCall>),
    /// Desired-property updates.
    Desired(Sink<DesiredUpdate>),
}

/// A map keyed by the session's ids (counters it hands out: no peer
/// chooses them), hashed with one multiplication instead of SipHash.
type ById<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`ById`]: Fibonacci hashing of the one `u64` an id is.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The waiting completions and stream outlets of one client.
#[derive(Default)]
pub struct Router {
    messages: ById<MessageId, Reply<()>>,
    twins: ById<RequestToken, Reply<Twin>>,
    reported: ById<RequestToken, Reply<u64>>,
    c2d: Option<Sink<InboundMessage>>,
    inputs: Option<Sink<InputMessage>>,
    methods: Option<Sink<MethodCall>>,
    desired: Option<Sink<DesiredUpdate>>,
    /// Reads every event for a "provision again?" question.
    reprovision: Option<(ReprovisionWatch, Reply<ReprovisionReason>)>,
    last_disconnect: Option<DisconnectReason>,
    /// Where token requests go (an external signer), and one that came
    /// before it was installed.
    token_source: Option<TokenSource>,
    token_wanted: Option<std::time::Duration>,
    /// Why the signer's last answer was no token, until the session's
    /// [`Event::TokenRequestFailed`] takes it.
    token_detail: Option<String>,
    /// The status's [`last_token_failure`](Status::last_token_failure).
    last_token_failure: Option<TokenRequestFailure>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("messages", &self.messages.len())
            .field("requests", &(self.twins.len() + self.reported.len()))
            .field("last_disconnect", &self.last_disconnect)
            .field("last_token_failure", &self.last_token_failure)
            .finish_non_exhaustive()
    }
}

/// Hands a command's refusal to its completion.
fn refuse<T>(done: Reply<T>, e: iothub_proto::session::CommandError) {
    let _ = done.send(Err(Error::Command(e)));
}

impl Router {
    /// An empty router.
    #[must_use]
    pub fn new() -> Router {
        Router::default()
    }

    /// [`Session::send_telemetry`]; `done` gets the outcome (or the
    /// refusal at once).
    pub fn send_telemetry(&mut self, s: &mut Session, now: Instant, m: Message, done: Reply<()>) {
        match s.send_telemetry(now, m) {
            Ok(id) => {
                self.messages.insert(id, done);
            }
            Err(e) => refuse(done, e),
        }
    }

    /// [`Session::get_twin`]; `done` gets the twin.
    pub fn get_twin(&mut self, s: &mut Session, now: Instant, done: Reply<Twin>) {
        match s.get_twin(now) {
            Ok(token) => {
                self.twins.insert(token, done);
            }
            Err(e) => refuse(done, e),
        }
    }

    /// [`Session::update_reported`]; `done` gets the new reported version.
    pub fn update_reported(
        &mut self,
        s: &mut Session,
        now: Instant,
        json: Bytes,
        done: Reply<u64>,
    ) {
        match s.update_reported(now, json) {
            Ok(token) => {
                self.reported.insert(token, done);
            }
            Err(e) => refuse(done, e),
        }
    }

    /// [`Session::enable`]s the subscriber's feature and feeds it from now
    /// on, replacing (and so ending) an earlier subscriber of that kind.
    pub fn subscribe(
        &mut self,
        s: &mut Session,
        now: Instant,
        sub: Subscribe,
    ) -> Result<(), Error> {
        let feature = match &sub {
            Subscribe::C2d(_) => Feature::C2d,
            Subscribe::Inputs(_) => Feature::ModuleInputs,
            Subscribe::Methods(_) => Feature::Methods,
            Subscribe::Desired(_) => Feature::DesiredProperties,
        };
        s.enable(now, feature).map_err(Error::Command)?;
        match sub {
            Subscribe::C2d(o) => self.c2d = Some(o),
            Subscribe::Inputs(o) => self.inputs = Some(o),
            Subscribe::Methods(o) => self.methods = Some(o),
            Subscribe::Desired(o) => self.desired = Some(o),
        }
        Ok(())
    }

    /// Watches the events for a reason to provision the device again
    /// (see [`ReprovisionPolicy`]); `done` gets the first such reason.
    /// Replaces an earlier watch (whose caller then sees its channel
    /// closed).
    pub fn watch_reprovision(&mut self, policy: ReprovisionPolicy, done: Reply<ReprovisionReason>) {
        self.reprovision = Some((ReprovisionWatch::new(policy), done));
    }

    /// The token route: installs the [`TokenSource`] (and hands it a
    /// request that came first), or gives a signer's answer to the session
    /// ([`Session::provide_token`] at `unix_secs`, or
    /// [`Session::token_unavailable`]; the signer's error becomes the
    /// detail of the status's [`last_token_failure`](Status::last_token_failure)).
    pub fn token(&mut self, s: &mut Session, now: Instant, unix_secs: u64, cmd: TokenCommand) {
        match cmd {
            TokenCommand::Source(mut source) => {
                if let Some(lifetime) = self.token_wanted.take() {
                    source(lifetime);
                }
                self.token_source = Some(source);
            }
            TokenCommand::Answer(Ok(token)) => {
                if let Err(e) = s.provide_token(now, unix_secs, token) {
                    warn!(error = %e, "the signed token was refused");
                    self.token_detail = Some(e.to_string());
                }
            }
            TokenCommand::Answer(Err(detail)) => {
                warn!(error = %detail, "the signer did not sign a token");
                self.token_detail = Some(detail);
                s.token_unavailable(now);
            }
        }
    }

    /// The client's status now.
    #[must_use]
    pub fn status(&self, s: &Session) -> Status {
        Status::of(s, self.last_disconnect.clone())
            .with_token_failure(self.last_token_failure.clone())
    }

    /// Routes one event from [`Session::poll_output`] (and logs the
    /// connection lifecycle). A cloud-to-device or module input message
    /// whose stream is gone goes back to the session, which holds it and
    /// the feature's later messages unacknowledged until a stream is asked
    /// for again ([`Session::hold_inbound`], [`Session::return_inbound`]).
    pub fn dispatch(&mut self, s: &mut Session, event: Event) {
        self.watch(&event);
        match event {
            Event::Connected { session_present } => {
                info!(connection = s.connection(), session_present, "connected");
                self.last_token_failure = None;
            }
            Event::Disconnected { reason } => {
                match &reason {
                    DisconnectReason::TokenRenewal => info!("renewing the SAS token: reconnecting"),
                    DisconnectReason::Requested => info!("disconnected on request"),
                    other => warn!(reason = %other, "disconnected"),
                }
                self.last_disconnect = Some(reason);
            }
            Event::ReconnectScheduled { delay } => {
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                info!(delay_ms, "reconnecting after a delay");
            }
            Event::Stopped { reason } => info!(%reason, "session stopped"),
            Event::TokenExpired { expiry_unix_secs } => {
                warn!(expiry_unix_secs, "the fixed SAS token has expired");
            }
            Event::TokenRequested { lifetime } => match self.token_source.as_mut() {
                Some(source) => {
                    debug!(lifetime_secs = lifetime.as_secs(), "signing a token");
                    source(lifetime);
                }
                None => self.token_wanted = Some(lifetime),
            },
            Event::TokenRequestFailed { reason, retry_in } => {
                let retry_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                warn!(%reason, retry_ms, "no token from the signer");
                // A detail belongs to the signer's answer, not to a timeout.
                let detail = self
                    .token_detail
                    .take()
                    .filter(|_| reason != TokenFailure::TimedOut);
                self.last_token_failure = Some(TokenRequestFailure::new(reason, detail));
            }
            Event::SubscriptionFailed { subscription } => {
                warn!(?subscription, "the hub refused a subscription");
            }
            Event::MessageAcknowledged { id } | Event::MessageSent { id } => {
                self.message_done(id, Ok(()));
            }
            Event::MessageFailed { id, reason } => {
                self.message_done(id, Err(Error::Message(reason)));
            }
            Event::TwinReceived { token, twin } => {
                if let Some(done) = self.twins.remove(&token) {
                    let _ = done.send(Ok(twin));
                }
            }
            Event::ReportedUpdated { token, version } => {
                if let Some(done) = self.reported.remove(&token) {
                    let missing = RequestError::MalformedResponse(JsonError::MissingVersion);
                    let _ = done.send(version.ok_or(Error::Request(missing)));
                }
            }
            Event::RequestFailed { token, error } => {
                if let Some(done) = self.twins.remove(&token) {
                    let _ = done.send(Err(Error::Request(error)));
                } else if let Some(done) = self.reported.remove(&token) {
                    let _ = done.send(Err(Error::Request(error)));
                }
            }
            Event::DesiredState { desired, version } => {
                let update = DesiredUpdate::Full { desired, version };
                if feed(&mut self.desired, update).is_err() {
                    warn!(version, "desired state dropped: its stream is gone");
                }
            }
            Event::DesiredPatch { patch, version } => {
                let update = DesiredUpdate::Patch { patch, version };
                if feed(&mut self.desired, update).is_err() {
                    warn!(version, "desired patch dropped: its stream is gone");
                }
            }
            Event::DesiredSyncFailed { error } => warn!(%error, "desired properties sync failed"),
            Event::InvalidDesiredPatch { version, error } => {
                warn!(version, %error, "invalid desired-properties patch");
            }
            Event::MethodRequest { id, name, payload } => {
                if let Err(call) = feed(&mut self.methods, MethodCall { id, name, payload }) {
                    warn!(method = %call.name, "method request left unanswered: its stream is gone");
                }
            }
            Event::C2dMessage(message) => {
                if let Err(message) = feed(&mut self.c2d, *message) {
                    debug!("cloud-to-device message held: its stream is gone");
                    s.hold_inbound(Feature::C2d);
                    s.return_inbound(Event::C2dMessage(Box::new(message)));
                }
            }
            Event::InputMessage { input, message } => {
                if let Err(m) = feed(&mut self.inputs, InputMessage::new(input, *message)) {
                    debug!(input = %m.input, "input message held: its stream is gone");
                    s.hold_inbound(Feature::ModuleInputs);
                    s.return_inbound(m.into_event());
                }
            }
            Event::UnexpectedPublish {
                topic,
                payload,
                error,
                ack,
            } => {
                warn!(
                    %topic,
                    %error,
                    len = payload.len(),
                    qos1 = ack.is_some(),
                    "a publish the session cannot read: not acknowledged (the hub keeps it)"
                );
            }
            Event::InboundOverflow { topic, limit } => {
                warn!(
                    %topic,
                    limit,
                    "too many messages wait for the application: one left to the hub"
                );
            }
            other => debug!(event = ?other, "event"),
        }
    }

    /// Drops every waiting completion (their callers see the adapter's
    /// channel closed), warning for each telemetry message left without
    /// an outcome. The streams stay.
    pub fn drop_pending(&mut self) {
        for (id, _) in self.messages.drain() {
            warn!(%id, "telemetry message left without an outcome");
        }
        self.twins.clear();
        self.reported.clear();
    }

    /// Feeds the re-provisioning watch, if any; answers it when it fires.
    fn watch(&mut self, event: &Event) {
        let fired = self
            .reprovision
            .as_mut()
            .and_then(|(watch, _)| watch.observe(event));
        if let Some(reason) = fired {
            if let Some((_, done)) = self.reprovision.take() {
                info!(%reason, "provisioning again is due");
                let _ = done.send(Ok(reason));
            }
        }
    }

    fn message_done(&mut self, id: MessageId, outcome: Result<(), Error>) {
        let Some(done) = self.messages.remove(&id) else {
            return;
        };
        let failure = outcome.as_ref().err().map(ToString::to_string);
        if done.send(outcome).is_err() {
            match failure {
                None => debug!(%id, "message delivered (its future was dropped)"),
                Some(e) => warn!(%id, error = %e, "message failed (its future was dropped)"),
            }
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        for id in self.messages.keys() {
            warn!(%id, "telemetry message left without an outcome");
        }
    }
}

/// Feeds a stream; the item back if there is none (any more).
fn feed<T>(outlet: &mut Option<Sink<T>>, item: T) -> Result<(), T> {
    match outlet.as_mut() {
        Some(o) => o.deliver(item),
        None => Err(item),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use iothub_proto::auth::ConnectionString;
    use iothub_proto::session::{CommandError, Config, MessageFailure, StopReason};

    use super::*;

    fn session(cs: &str) -> Session {
        let cs: ConnectionString = cs.parse().unwrap();
        Session::new(Config::from_connection_string(&cs)).unwrap()
    }

    const DEVICE: &str = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn done<T: Send + 'static>(tx: mpsc::Sender<Result<T, Error>>) -> Reply<T> {
        Reply::new(move |r| tx.send(r).err().map(|e| e.0))
    }

    #[test]
    fn outcomes_reach_their_completions() {
        let mut s = session(DEVICE);
        let mut r = Router::new();
        let now = Instant::ZERO;
        let (msg_tx, msg_rx) = mpsc::channel();
        let (twin_tx, twin_rx) = mpsc::channel();
        // Accepted while offline: they wait in the session.
        r.send_telemetry(&mut s, now, Message::new(&b"x"[..]), done(msg_tx.clone()));
        r.get_twin(&mut s, now, done(twin_tx));
        // Refused at once: not a JSON object.
        let (rep_tx, rep_rx) = mpsc::channel();
        r.update_reported(&mut s, now, Bytes::from_static(b"[1]"), done(rep_tx));
        assert!(matches!(
            rep_rx.try_recv().unwrap(),
            Err(Error::Command(CommandError::NotJsonObject))
        ));
        // A stop fails what is pending; the router hands each failure over.
        s.disconnect(now, Duration::ZERO);
        loop {
            match s.poll_output() {
                iothub_proto::session::Output::Event(e) => r.dispatch(&mut s, e),
                iothub_proto::session::Output::Timeout(_) => break,
                _ => {}
            }
        }
        assert!(matches!(
            msg_rx.try_recv().unwrap(),
            Err(Error::Message(MessageFailure::SessionClosed))
        ));
        assert!(matches!(
            twin_rx.try_recv().unwrap(),
            Err(Error::Request(RequestError::SessionClosed))
        ));
        assert_eq!(r.status(&s).stopped, Some(StopReason::Requested));
        // After the stop, commands are refused with a typed error.
        r.send_telemetry(&mut s, now, Message::new(&b"y"[..]), done(msg_tx));
        assert!(matches!(
            msg_rx.try_recv().unwrap(),
            Err(Error::Command(CommandError::SessionClosed))
        ));
    }

    #[test]
    // A sink gives a message back by value; its size does not matter here.
    #[allow(clippy::result_large_err)]
    fn subscribing_checks_the_identity_kind() {
        let mut s = session(DEVICE);
        let mut r = Router::new();
        let inputs = Subscribe::Inputs(Sink::new(|_| Ok(())));
        assert!(matches!(
            r.subscribe(&mut s, Instant::ZERO, inputs),
            Err(Error::Command(CommandError::FeatureNotAvailable(
                Feature::ModuleInputs
            )))
        ));
        let c2d = Subscribe::C2d(Sink::new(|_| Ok(())));
        assert!(r.subscribe(&mut s, Instant::ZERO, c2d).is_ok());
        assert!(s.is_enabled(Feature::C2d));
    }
}
