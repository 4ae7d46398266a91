//! The runtime-neutral half of every adapter's driver: the fixed order of
//! the steps around the session, with the session's events handed to the
//! [`Router`] (which pending reply each answers, which stream it goes
//! to). An adapter only moves bytes, runs one timer and carries out
//! [`Step`]s; the loop it writes is the same in every runtime:
//!
//! ```text
//! loop {
//!     match core.poll() {                        // 3. transmit, transport, 4. events
//!         Step::Write(bytes) => conn.write(bytes) or core.transport_closed(now, failure),
//!         Step::Open => start opening a transport (core.transport_opened / transport_closed later),
//!         Step::Close => close the transport,
//!         Step::Stopped => { core.finish(); break }
//!         Step::Wait(deadline) => {              // 5. timer
//!             publish core.status();
//!             wait for one of: bytes read       → core.handle_input     (1. inbound)
//!                              a command         → core.command / core.telemetry (2.)
//!                              the deadline      → core.timeout
//!         }
//!     }
//! }
//! ```
//!
//! Replies and streams are the adapter's own channels, wrapped in a
//! [`Reply`] or a [`Sink`] (a boxed closure), so this module needs no
//! runtime: a tokio `oneshot`, a `std::sync::mpsc` sender or an
//! `async-channel` all fit.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{
    AckToken, Config, ConfigError, ConnectionState, Event, InboundMessage, Message, MethodId,
    Session, TransportCommand, Twin,
};
use iothub_proto::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{DesiredUpdate, Error, Inbound, InputMessage, Status};
use crate::router::{Done, Outlet, Router, Subscriber};
use crate::transport::{Endpoint, Failure};
use crate::{ClientOptions, Clock, OptionsError};

/// Where the answer to one command goes: a one-shot channel of the
/// adapter, behind a closure that gives the value back when nobody waits
/// any more.
pub struct Reply<T>(Box<dyn FnOnce(Answer<T>) -> Option<Answer<T>> + Send>);

/// What a [`Reply`] carries.
pub type Answer<T> = Result<T, Error>;

impl<T> Reply<T> {
    /// A reply from a function that delivers the value, or returns it when
    /// the receiver is gone.
    pub fn new(f: impl FnOnce(Answer<T>) -> Option<Answer<T>> + Send + 'static) -> Reply<T> {
        Reply(Box::new(f))
    }

    /// Delivers the answer; `Err` gives it back when nobody waits.
    pub fn send(self, value: Answer<T>) -> Result<(), Answer<T>> {
        match (self.0)(value) {
            None => Ok(()),
            Some(v) => Err(v),
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
pub struct Sink<T>(Box<dyn Fn(T) -> Result<(), T> + Send>);

impl<T> Sink<T> {
    /// A sink from a function that delivers an item, or gives it back
    /// when its stream is gone.
    pub fn new(f: impl Fn(T) -> Result<(), T> + Send + 'static) -> Sink<T> {
        Sink(Box::new(f))
    }

    /// Hands an item to the stream; the item back if the stream is gone.
    pub fn deliver(&self, item: T) -> Result<(), T> {
        (self.0)(item)
    }
}

/// The part of a cloud-to-device or module input stream that tells the
/// driver what became of each message, so that the session
/// acknowledges only what the application has: the stream calls
/// [`taken`](Self::taken) for every message it hands out
/// ([`Command::Taken`]), and [`returned`](Self::returned) for every
/// message still inside it when it is dropped ([`Command::Return`]).
/// `send` puts a command on the adapter's channel; when it fails (the
/// client is gone), the message stays unacknowledged and the hub sends
/// it again.
pub struct Taken<T> {
    send: Box<dyn Fn(Command) -> bool + Send + Sync>,
    token: fn(&T) -> Option<AckToken>,
    event: fn(T) -> Event,
}

impl<T: Inbound> Taken<T> {
    /// The reports of one stream, sent with `send`.
    pub fn new(send: impl Fn(Command) -> bool + Send + Sync + 'static) -> Taken<T> {
        Taken {
            send: Box::new(send),
            token: T::ack_token,
            event: T::into_event,
        }
    }
}

impl<T> Taken<T> {
    /// The application took `item` from the stream.
    pub fn taken(&self, item: &T) {
        if let Some(token) = (self.token)(item) {
            if !(self.send)(Command::Taken(token)) {
                debug!("message taken after the client stopped: the hub sends it again");
            }
        }
    }

    /// `item` was left in the stream when it was dropped.
    pub fn returned(&self, item: T) {
        if !(self.send)(Command::Return(Box::new((self.event)(item)))) {
            debug!("message returned after the client stopped: the hub sends it again");
        }
    }
}

impl<T> fmt::Debug for Taken<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Taken")
    }
}

impl<T> fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// A direct method call as the driver hands it out; the adapter's sink
/// wraps it into its own `MethodRequest` (which knows how to answer)
/// with [`Subscribe::methods`] and a [`Responder`].
pub use crate::router::MethodCall;

/// The part of every adapter's `MethodRequest` that answers the call: its
/// id and the way back to the driver (`C`: the adapter's command sender,
/// `None` when the client is gone). Dropping it unanswered is logged.
#[derive(Debug)]
pub struct Responder<C> {
    name: String,
    id: Option<MethodId>,
    ctl: Option<C>,
}

impl<C> Responder<C> {
    /// The command that answers the call, and the sender to put it on;
    /// `None` when the client is gone (the caller reports
    /// [`Error::Closed`]). Only the first call yields it.
    pub fn respond(
        &mut self,
        status: i32,
        payload: Bytes,
        reply: Reply<()>,
    ) -> Option<(C, Command)> {
        let (id, ctl) = (self.id.take()?, self.ctl.take()?);
        Some((ctl, Command::Respond(id, status, payload, reply)))
    }
}

impl<C> Drop for Responder<C> {
    fn drop(&mut self) {
        if self.id.is_some() {
            warn!(method = %self.name, "method request dropped without an answer");
        }
    }
}

/// A stream the application asks for; enabling it subscribes.
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

impl Subscribe {
    /// Direct method calls: each is split into its name, its payload and
    /// a [`Responder`] over `ctl()` (the adapter's command sender, `None`
    /// once the client is gone), which `wrap` makes into the adapter's
    /// `MethodRequest` for `sink`.
    pub fn methods<R: 'static, C: 'static>(
        sink: Sink<R>,
        ctl: impl Fn() -> Option<C> + Send + 'static,
        wrap: fn(String, Bytes, Responder<C>) -> R,
    ) -> Subscribe {
        Subscribe::Methods(Sink::new(move |call: MethodCall| {
            let back = call.clone();
            let responder = Responder {
                name: call.name.clone(),
                id: Some(call.id),
                ctl: ctl(),
            };
            sink.deliver(wrap(call.name, call.payload, responder))
                .map_err(|_| back)
        }))
    }
}

/// What a look at a channel without waiting found (see
/// [`DriverCore::take_ready`]).
#[derive(Debug)]
pub enum Ready<T> {
    /// An item.
    Item(T),
    /// Nothing now.
    Empty,
    /// The channel is closed: every sender is gone.
    Closed,
}

/// What a client asks of its driver (telemetry travels separately, see
/// [`Telemetry`], so that adapters can apply backpressure to it alone).
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Read the full twin.
    GetTwin(Reply<Twin>),
    /// Patch reported properties (JSON object text); answered with the new
    /// version.
    UpdateReported(Bytes, Reply<u64>),
    /// Answer a method call with a status (any integer) and a body.
    Respond(MethodId, i32, Bytes, Reply<()>),
    /// Enable a feature and route its items to a stream.
    Enable(Subscribe, Reply<()>),
    /// Acknowledge a message (manual-ack mode).
    Ack(AckToken, Reply<()>),
    /// The application took a message from its stream
    /// ([`Session::taken`]).
    Taken(AckToken),
    /// A message left in a stream that was dropped
    /// ([`Session::return_inbound`]).
    Return(Box<Event>),
    /// Graceful shutdown within a drain time; answered when the driver
    /// has stopped.
    Shutdown(Duration, Reply<()>),
    /// Answer when the events say the device should be provisioned again
    /// ([`Router::watch_reprovision`]).
    WatchReprovision(ReprovisionPolicy, Reply<ReprovisionReason>),
    /// The token route of an external signer ([`Router::token`]).
    Token(crate::edge::TokenCommand),
}

/// A telemetry message and where its outcome goes. Boxed so that channel
/// slots stay small.
pub type Telemetry = Box<(Message, Reply<()>)>;

/// What the adapter does next; see the [module docs](self).
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Write these bytes (one write; at most [`BATCH`] bytes gathered).
    Write(Bytes),
    /// Open a new transport; report the outcome with
    /// [`DriverCore::transport_opened`] or [`DriverCore::transport_closed`].
    Open,
    /// Close the current transport (its last bytes were written); do not
    /// report its closure.
    Close,
    /// Nothing to do until input, a command, or this instant (`None`: no
    /// timer).
    Wait(Option<Instant>),
    /// The session has stopped: call [`DriverCore::finish`] and end.
    Stopped,
}

/// Bytes gathered into one write at most.
pub const BATCH: usize = 64 * 1024;
/// How long the driver drains when every client handle was dropped.
pub const DROP_DRAIN: Duration = Duration::from_secs(5);
/// Commands [`DriverCore::take_ready`] takes per wake-up at most (then
/// the loop transmits).
pub const COMMANDS_PER_TURN: usize = 1024;

/// The session plus everything waiting on it: the steps of the driver
/// loop in their fixed order; the routing of events to replies and
/// streams is the [`Router`]'s. No I/O, no clock reads except Unix
/// seconds for SAS tokens.
pub struct DriverCore {
    session: Session,
    router: Router,
    shutdown: Vec<Reply<()>>,
    handles: bool,
    telemetry_open: bool,
    attempts: u64,
}

impl fmt::Debug for DriverCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverCore")
            .field("state", &self.session.state())
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl DriverCore {
    /// A driver core around a new session (which wants a transport at
    /// once).
    pub fn new(config: Config) -> Result<DriverCore, ConfigError> {
        Ok(DriverCore {
            session: Session::new(config)?,
            router: Router::new(),
            shutdown: Vec::new(),
            handles: true,
            telemetry_open: true,
            attempts: 0,
        })
    }

    /// What every adapter's driver starts from: the options checked, the
    /// TLS configuration built (errors come back at once, before any
    /// socket), the core, the endpoint, and the `iothub{client_id}` span
    /// to run the driver in.
    pub fn start(options: ClientOptions) -> Result<(DriverCore, Endpoint, tracing::Span), Error> {
        let endpoint = options.endpoint()?;
        let span = tracing::info_span!("iothub", client_id = %options.config.identity.client_id());
        let core =
            DriverCore::new(options.config).map_err(|e| Error::Options(OptionsError::Config(e)))?;
        Ok((core, endpoint, span))
    }

    /// The session, to observe.
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Transport attempts so far (for log spans).
    #[must_use]
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// The next step: bytes to write, then transport commands, then
    /// events (dispatched here), again while any of them produced; then
    /// the wait. Call after every input until it returns
    /// [`Step::Wait`] or [`Step::Stopped`].
    #[must_use]
    pub fn poll(&mut self) -> Step {
        let router = &mut self.router;
        let output = drain(&mut self.session, &mut self.attempts, |session, event| {
            router.dispatch(session, event);
        });
        match output {
            Some(Output::Write(b)) => return Step::Write(b),
            Some(Output::Open) => return Step::Open,
            Some(Output::Close) => return Step::Close,
            None => {}
        }
        if self.session.state() == ConnectionState::Stopped {
            return Step::Stopped;
        }
        Step::Wait(self.session.poll_timeout())
    }

    /// 1. inbound: bytes were read.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.session.handle_input(now, data);
    }

    /// The transport asked for by [`Step::Open`] is open.
    pub fn transport_opened(&mut self, now: Instant) {
        debug!("transport open");
        self.session
            .handle_transport_connected(now, Clock::unix_secs());
    }

    /// The outcome of opening the transport asked for by [`Step::Open`]:
    /// reports it ([`transport_opened`](Self::transport_opened) or
    /// [`transport_closed`](Self::transport_closed)) and gives the open
    /// connection back to keep.
    pub fn opened<C>(&mut self, now: Instant, r: Result<C, Failure>) -> Option<C> {
        match r {
            Ok(conn) => {
                self.transport_opened(now);
                Some(conn)
            }
            Err(f) => {
                self.transport_closed(now, &f);
                None
            }
        }
    }

    /// The transport failed, the peer closed it, or opening it failed.
    pub fn transport_closed(&mut self, now: Instant, failure: &Failure) {
        warn!(error = %failure, "transport closed");
        self.session.handle_transport_closed(now, failure.kind);
    }

    /// 5. timer: the deadline of [`Step::Wait`] has come.
    pub fn timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now, Clock::unix_secs());
    }

    /// Whether the session takes telemetry now (backpressure: leave it in
    /// its channel while this is false), and the telemetry channel is
    /// still open ([`telemetry_closed`](Self::telemetry_closed)).
    #[must_use]
    pub fn accepts_telemetry(&self) -> bool {
        self.telemetry_open && !self.session.telemetry_queue_full()
    }

    /// The telemetry channel has closed: do not wait on it any more.
    pub fn telemetry_closed(&mut self) {
        self.telemetry_open = false;
    }

    /// Whether the command channel is still worth waiting on: false once
    /// [`handles_dropped`](Self::handles_dropped).
    #[must_use]
    pub fn takes_commands(&self) -> bool {
        self.handles
    }

    /// Step 2, what a wait on the command channel gave: a command, or
    /// `None` when the channel has closed (every handle is gone).
    pub fn received_command(&mut self, now: Instant, c: Option<Command>) {
        match c {
            Some(c) => self.command(now, c),
            None => self.handles_dropped(now),
        }
    }

    /// Step 2, what a wait on the telemetry channel gave: a message, or
    /// `None` when the channel has closed.
    pub fn received_telemetry(&mut self, now: Instant, t: Option<Telemetry>) {
        match t {
            Some(t) => self.telemetry(now, t),
            None => self.telemetry_closed(),
        }
    }

    /// After a wake-up, takes what already waits in the adapter's
    /// channels without waiting: up to [`COMMANDS_PER_TURN`] commands
    /// (`command()` looks at the command channel), then telemetry while
    /// the session has room (`telemetry()` looks at the telemetry
    /// channel). A closed channel counts as above.
    pub fn take_ready(
        &mut self,
        now: Instant,
        mut command: impl FnMut() -> Ready<Box<Command>>,
        mut telemetry: impl FnMut() -> Ready<Telemetry>,
    ) {
        for _ in 0..COMMANDS_PER_TURN {
            if !self.takes_commands() {
                break;
            }
            match command() {
                Ready::Item(c) => self.command(now, *c),
                Ready::Empty => break,
                Ready::Closed => self.handles_dropped(now),
            }
        }
        while self.accepts_telemetry() {
            match telemetry() {
                Ready::Item(t) => self.telemetry(now, t),
                Ready::Empty => break,
                Ready::Closed => self.telemetry_closed(),
            }
        }
    }

    /// 2. a telemetry message from the application.
    pub fn telemetry(&mut self, now: Instant, t: Telemetry) {
        let (message, reply) = *t;
        self.router
            .send_telemetry(&mut self.session, now, message, done(reply));
    }

    /// Every client handle is gone: drain briefly ([`DROP_DRAIN`]) and
    /// stop. Only the first call counts.
    pub fn handles_dropped(&mut self, now: Instant) {
        if std::mem::take(&mut self.handles) {
            info!("every client handle dropped: shutting down");
            self.session.disconnect(now, DROP_DRAIN);
        }
    }

    /// 2. a command from the application.
    pub fn command(&mut self, now: Instant, c: Command) {
        match c {
            Command::GetTwin(reply) => self.router.get_twin(&mut self.session, now, done(reply)),
            Command::UpdateReported(json, reply) => {
                let (s, r) = (&mut self.session, &mut self.router);
                r.update_reported(s, now, json, done(reply));
            }
            Command::Respond(id, status, payload, reply) => {
                let r = self.session.respond_to_method(now, id, status, payload);
                let _ = reply.send(r.map_err(Error::Command));
            }
            Command::Enable(sink, reply) => {
                let sub = match sink {
                    Subscribe::C2d(s) => Subscriber::C2d(outlet(s)),
                    Subscribe::Inputs(s) => Subscriber::Inputs(outlet(s)),
                    Subscribe::Methods(s) => Subscriber::Methods(outlet(s)),
                    Subscribe::Desired(s) => Subscriber::Desired(outlet(s)),
                };
                let _ = reply.send(self.router.subscribe(&mut self.session, now, sub));
            }
            Command::Ack(token, reply) => {
                let _ = reply.send(self.session.ack(token).map_err(Error::Command));
            }
            Command::Taken(token) => self.session.taken(token),
            Command::Return(event) => self.session.return_inbound(*event),
            Command::Shutdown(timeout, done) => {
                info!(timeout_ms = millis(timeout), "shutdown requested");
                self.shutdown.push(done);
                self.session.disconnect(now, timeout);
            }
            Command::WatchReprovision(policy, reply) => {
                self.router.watch_reprovision(policy, done(reply));
            }
            Command::Token(t) => self
                .router
                .token(&mut self.session, now, Clock::unix_secs(), t),
        }
    }

    /// The status to publish (after every [`Step::Wait`] and at the end).
    #[must_use]
    pub fn status(&self) -> Status {
        self.router.status(&self.session)
    }

    /// After [`Step::Stopped`]: answers every `shutdown` caller and logs
    /// what is left. Replies not answered are dropped, so their callers
    /// see [`Error::Closed`].
    pub fn finish(&mut self) {
        for done in self.shutdown.drain(..) {
            let _ = done.send(Ok(()));
        }
        self.router.drop_pending();
        info!("client stopped");
    }
}

/// What a session hands out, as [`drain`] sees it: the device session
/// and the provisioning session alike.
pub(crate) trait Outputs {
    /// The session's event type.
    type Event;
    /// The next bytes to write.
    fn transmit(&mut self) -> Option<Bytes>;
    /// The next transport command: `Some(true)` open, `Some(false)`
    /// close.
    fn transport(&mut self) -> Option<bool>;
    /// The next event.
    fn event(&mut self) -> Option<Self::Event>;
}

impl Outputs for Session {
    type Event = iothub_proto::session::Event;
    fn transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit()
    }
    fn transport(&mut self) -> Option<bool> {
        self.poll_transport().map(|c| match c {
            TransportCommand::Open => true,
            TransportCommand::Close => false,
        })
    }
    fn event(&mut self) -> Option<Self::Event> {
        self.poll_event()
    }
}

/// The output [`drain`] found: carry it out, then drain again.
#[derive(Debug)]
pub(crate) enum Output {
    Write(Bytes),
    Open,
    Close,
}

/// Steps 3 and 4 of every driver: bytes to write first (gathered), then
/// a transport command (an open counts an attempt), then every event
/// (handed to `on_event`), again while events came (taking one may queue
/// bytes, such as a PUBACK); `None` once the session is quiet.
pub(crate) fn drain<S: Outputs>(
    session: &mut S,
    attempts: &mut u64,
    mut on_event: impl FnMut(&mut S, S::Event),
) -> Option<Output> {
    loop {
        if let Some(b) = gather(|| session.transmit()) {
            return Some(Output::Write(b));
        }
        match session.transport() {
            Some(true) => {
                *attempts += 1;
                return Some(Output::Open);
            }
            Some(false) => return Some(Output::Close),
            None => {}
        }
        let mut moved = false;
        while let Some(event) = session.event() {
            moved = true;
            on_event(session, event);
        }
        if !moved {
            return None;
        }
    }
}

/// The bytes `next` hands out, gathered into one write of at most about
/// [`BATCH`] bytes; `None` if it has none.
pub(crate) fn gather(mut next: impl FnMut() -> Option<Bytes>) -> Option<Bytes> {
    let first = next()?;
    if first.len() >= BATCH {
        return Some(first);
    }
    let Some(second) = next() else {
        return Some(first); // one packet: no copy
    };
    let mut batch = [first, second].concat();
    while batch.len() < BATCH {
        match next() {
            Some(bytes) => batch.extend_from_slice(&bytes),
            None => break,
        }
    }
    Some(batch.into())
}

/// The router's completion for a [`Reply`]: whether anyone still waits.
fn done<T: 'static>(reply: Reply<T>) -> Done<T> {
    Box::new(move |r| reply.send(r).is_ok())
}

/// The router's outlet for a [`Sink`].
fn outlet<T: 'static>(sink: Sink<T>) -> Outlet<T> {
    Box::new(move |item| sink.deliver(item))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const CS: &str = "HostName=hub.azure-devices.net;DeviceId=dev1;\
        SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn reply<T: Send + 'static>() -> (Reply<T>, mpsc::Receiver<Result<T, Error>>) {
        let (tx, rx) = mpsc::channel();
        (Reply::new(move |v| tx.send(v).err().map(|e| e.0)), rx)
    }

    fn core() -> DriverCore {
        let cs = CS.parse().unwrap();
        DriverCore::new(Config::from_connection_string(&cs)).unwrap()
    }

    #[test]
    // A sink gives a message back by value; its size does not matter here.
    #[allow(clippy::result_large_err)]
    fn steps_in_order_and_replies_routed() {
        let mut core = core();
        let now = Instant::from_millis(0);
        assert!(matches!(core.poll(), Step::Open));
        assert_eq!(core.attempts(), 1);
        assert!(matches!(core.poll(), Step::Wait(_)));
        core.transport_opened(now);
        let Step::Write(connect) = core.poll() else {
            panic!("CONNECT first")
        };
        assert_eq!(connect[0] >> 4, 1);
        // CONNACK accepted.
        core.handle_input(now, &[0x20, 2, 0, 0]);
        let (r, twin) = reply();
        core.command(now, Command::GetTwin(r));
        // SUBSCRIBE to twin responses, then the GET, gathered in one write.
        assert!(matches!(core.poll(), Step::Write(_)));
        assert!(matches!(core.poll(), Step::Wait(Some(_))));
        assert_eq!(core.status().state, ConnectionState::Connected);
        // A refused command answers at once.
        let (r, refused) = reply();
        core.command(
            now,
            Command::Enable(Subscribe::Inputs(Sink::new(|_| Ok(()))), r),
        );
        assert!(matches!(refused.try_recv(), Ok(Err(Error::Command(_)))));
        // Shutdown while a request waits: it fails, the caller is answered.
        let (r, done) = reply();
        core.command(now, Command::Shutdown(Duration::ZERO, r));
        core.timeout(Instant::from_millis(1));
        let mut stopped = false;
        for _ in 0..10 {
            match core.poll() {
                Step::Stopped => {
                    stopped = true;
                    break;
                }
                Step::Wait(_) => core.timeout(Instant::from_millis(2)),
                _ => {}
            }
        }
        assert!(stopped);
        core.finish();
        assert!(matches!(done.try_recv(), Ok(Ok(()))));
        assert!(matches!(twin.try_recv(), Ok(Err(Error::Request(_)))));
        assert_eq!(core.status().state, ConnectionState::Stopped);
    }

    #[test]
    fn take_ready_takes_what_waits_and_notices_closed_channels() {
        let mut core = core();
        let now = Instant::from_millis(0);
        let (r, twin) = reply();
        let mut commands = vec![Ready::Closed, Ready::Item(Box::new(Command::GetTwin(r)))];
        let (r, sent) = reply();
        let message = Box::new((Message::new(&b"x"[..]), r));
        let mut telemetry = vec![Ready::Empty, Ready::Item(message)];
        core.take_ready(now, || commands.pop().unwrap(), || telemetry.pop().unwrap());
        assert!(commands.is_empty() && telemetry.is_empty());
        // Every handle gone: a short drain, no more waiting on commands.
        assert!(!core.takes_commands());
        assert!(core.accepts_telemetry());
        core.received_telemetry(now, None);
        assert!(!core.accepts_telemetry());
        // Not connected: the drain ends, and with it the twin and the
        // telemetry fail.
        let mut stopped = false;
        for t in 1..100 {
            core.timeout(Instant::from_millis(t * 1_000));
            if matches!(core.poll(), Step::Stopped) {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the drain ends");
        core.finish();
        assert!(twin.try_recv().unwrap().is_err());
        assert!(sent.try_recv().unwrap().is_err());
    }

    #[test]
    fn gather_batches_up_to_the_limit_and_passes_one_packet_through() {
        let one = Bytes::from_static(b"ab");
        let mut q = vec![one.clone()];
        let got = gather(|| q.pop()).unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr(), "not copied");
        assert!(gather(|| None).is_none());
        let chunk = Bytes::from(vec![7u8; BATCH / 2 + 1]);
        let mut q = vec![chunk.clone(), chunk.clone(), chunk.clone()];
        let first = gather(|| q.pop()).unwrap();
        assert_eq!(first.len(), 2 * chunk.len(), "stops once over the limit");
        assert_eq!(q.len(), 1);
    }
}
