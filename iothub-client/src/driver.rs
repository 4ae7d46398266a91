//! The runtime-neutral half of every driver: [`Core`], the fixed order of
//! the steps around a session's one output, generic over the kind of
//! session ([`Machine`]): the device client ([`Device`], whose events go
//! through the [`Router`] to pending replies and streams) and provisioning
//! ([`Provisioning`](crate::provision_driver::Provisioning), whose events
//! are logged). A driver loop only moves bytes, runs one timer, reads the
//! clocks ([`Clock::now`](crate::Clock::now)) and carries out [`Step`]s;
//! it is the same for every session kind:
//!
//! ```text
//! loop {
//!     match core.poll() {                     // the session's poll_output, in order
//!         Step::Write(bytes) => conn.write(bytes) or core.transport_closed(clock.now(), failure),
//!         Step::Open => start opening a transport (core.opened(clock.now(), result) later),
//!         Step::Close => close the transport,
//!         Step::Done(outcome) => { close; core.finish(); return outcome }
//!         Step::Wait(deadline) => {
//!             publish the status;
//!             wait for one of: bytes read   → core.handle_input(clock.now(), bytes)
//!                              a command    → core.command / core.telemetry (device)
//!                              the deadline → core.timeout(clock.now())
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
use iothub_proto::connection::{Driven, Output};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{
    AckToken, Config, ConfigError, ConnectionState, Event, Message, MethodId, Session,
    TransportCommand, Twin,
};
use iothub_proto::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{Error, Inbound, Status};
use crate::clock::Now;
use crate::router::Router;
use crate::transport::{Endpoint, Failure};
use crate::{ClientOptions, OptionsError};

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

/// A direct method call as the driver hands it out; the adapter's sink
/// wraps it into its own `MethodRequest` (which knows how to answer)
/// with [`Subscribe::methods`] and a [`Responder`].
pub use crate::router::{Answer, MethodCall, Reply, Sink, Subscribe};

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
        let mut sink = sink;
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
/// [`Core::take_ready`]).
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

/// What the driver loop does next; see the [module docs](self). The five
/// arms are the whole contract.
#[derive(Debug)]
pub enum Step<O> {
    /// Write these bytes (one write: whole packets, at most
    /// [`TRANSMIT_BATCH`](iothub_proto::connection::TRANSMIT_BATCH) bytes
    /// unless one packet is larger).
    /// Without an open transport, drop them: the session knows.
    Write(Bytes),
    /// Open a new transport (dropping any current one); report the
    /// outcome with [`Core::opened`] (or [`Core::transport_opened`] /
    /// [`Core::transport_closed`]).
    Open,
    /// Close the current transport (its last bytes were written); do not
    /// report its closure.
    Close,
    /// Nothing to do until input, a command, or this instant (`None`: no
    /// timer).
    Wait(Option<Instant>),
    /// The session is over: close the transport, call
    /// [`Core::finish`] and end with this.
    Done(O),
}

/// How long the driver drains when every client handle was dropped.
pub const DROP_DRAIN: Duration = Duration::from_secs(5);
/// Commands [`Core::take_ready`] takes per wake-up at most (then the loop
/// transmits).
pub const COMMANDS_PER_TURN: usize = 1024;

/// A kind of session a driver runs, and what the driver does with its
/// events: the device client ([`Device`]) or provisioning
/// ([`Provisioning`](crate::provision_driver::Provisioning)). [`Core`]
/// holds the step order for both.
pub trait Machine {
    /// The sans-IO session.
    type Session: Driven;
    /// What the driver ends with.
    type Outcome;

    /// The session.
    fn session(&mut self) -> &mut Self::Session;

    /// One event of the session: routed (to replies and streams) or logged.
    fn on_event(&mut self, event: <Self::Session as Driven>::Event);

    /// Once the session is over (asked when it has nothing else to do):
    /// what the driver ends with.
    fn outcome(&mut self) -> Option<Self::Outcome>;
}

/// The driver core: a [`Machine`] and the fixed order of the steps around
/// its session. Outputs come from the session's one
/// [`poll_output`](Driven::poll_output): bytes (one write each; the
/// session gathers what is queued), transport commands (an `Open` counts an attempt), events
/// (handed to the machine), and, once nothing else is pending, the wait
/// or the end. No I/O, no clock: every input carries a [`Now`] read by the
/// loop.
pub struct Core<M: Machine> {
    machine: M,
    attempts: u64,
}

impl<M: Machine + fmt::Debug> fmt::Debug for Core<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("machine", &self.machine)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> Core<M> {
    /// A core around `machine`.
    pub fn new(machine: M) -> Core<M> {
        Core {
            machine,
            attempts: 0,
        }
    }

    /// The machine (its session, its router), to observe.
    #[must_use]
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Transport attempts so far (for log spans).
    #[must_use]
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// The next step. Call after every input until it returns
    /// [`Step::Wait`] or [`Step::Done`].
    #[must_use]
    pub fn poll(&mut self) -> Step<M::Outcome> {
        loop {
            match self.machine.session().poll_output() {
                Output::Transmit(bytes) => return Step::Write(bytes),
                Output::Transport(TransportCommand::Open) => {
                    self.attempts += 1;
                    return Step::Open;
                }
                Output::Transport(TransportCommand::Close) => return Step::Close,
                Output::Event(event) => self.machine.on_event(event),
                Output::Timeout(at) => {
                    return match self.machine.outcome() {
                        Some(outcome) => Step::Done(outcome),
                        None => Step::Wait(at),
                    };
                }
            }
        }
    }

    /// Bytes were read from the transport.
    pub fn handle_input(&mut self, now: Now, data: &[u8]) {
        self.machine.session().handle_input(now.at, data);
    }

    /// The transport asked for by [`Step::Open`] is open.
    pub fn transport_opened(&mut self, now: Now) {
        debug!("transport open");
        self.machine
            .session()
            .handle_transport_connected(now.at, now.unix_secs);
    }

    /// The outcome of opening the transport asked for by [`Step::Open`]:
    /// reports it ([`transport_opened`](Self::transport_opened) or
    /// [`transport_closed`](Self::transport_closed)) and gives the open
    /// connection back to keep.
    pub fn opened<C>(&mut self, now: Now, r: Result<C, Failure>) -> Option<C> {
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
    pub fn transport_closed(&mut self, now: Now, failure: &Failure) {
        warn!(error = %failure, "transport closed");
        self.machine
            .session()
            .handle_transport_closed(now.at, failure.kind);
    }

    /// The deadline of [`Step::Wait`] has come.
    pub fn timeout(&mut self, now: Now) {
        self.machine.session().handle_timeout(now.at, now.unix_secs);
    }
}

/// The device client as a [`Machine`]: the session, the [`Router`] its
/// events go through, and the state of the client's channels.
pub struct Device {
    session: Session,
    router: Router,
    shutdown: Vec<Reply<()>>,
    handles: bool,
    telemetry_open: bool,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("state", &self.session.state())
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl Machine for Device {
    type Session = Session;
    type Outcome = ();

    fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    fn on_event(&mut self, event: Event) {
        self.router.dispatch(&mut self.session, event);
    }

    fn outcome(&mut self) -> Option<()> {
        (self.session.state() == ConnectionState::Stopped).then_some(())
    }
}

/// The driver core of a device client.
pub type DriverCore = Core<Device>;

impl Core<Device> {
    /// A driver core around a new session (which wants a transport at
    /// once).
    pub fn device(config: Config) -> Result<DriverCore, ConfigError> {
        Ok(Core::new(Device {
            session: Session::new(config)?,
            router: Router::new(),
            shutdown: Vec::new(),
            handles: true,
            telemetry_open: true,
        }))
    }

    /// What every adapter's driver starts from: the options checked, the
    /// TLS configuration built (errors come back at once, before any
    /// socket), the core, the endpoint, and the `iothub{client_id}` span
    /// to run the driver in.
    pub fn start(options: ClientOptions) -> Result<(DriverCore, Endpoint, tracing::Span), Error> {
        let endpoint = options.endpoint()?;
        let span = tracing::info_span!("iothub", client_id = %options.config.identity.client_id());
        let core =
            Core::device(options.config).map_err(|e| Error::Options(OptionsError::Config(e)))?;
        Ok((core, endpoint, span))
    }

    /// The session, to observe.
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.machine.session
    }

    /// Whether the session takes telemetry now (backpressure: leave it in
    /// its channel while this is false), and the telemetry channel is
    /// still open ([`telemetry_closed`](Self::telemetry_closed)).
    #[must_use]
    pub fn accepts_telemetry(&self) -> bool {
        self.machine.telemetry_open && !self.machine.session.telemetry_queue_full()
    }

    /// The telemetry channel has closed: do not wait on it any more.
    pub fn telemetry_closed(&mut self) {
        self.machine.telemetry_open = false;
    }

    /// Whether the command channel is still worth waiting on: false once
    /// [`handles_dropped`](Self::handles_dropped).
    #[must_use]
    pub fn takes_commands(&self) -> bool {
        self.machine.handles
    }

    /// What a wait on the command channel gave: a command, or `None` when
    /// the channel has closed (every handle is gone).
    pub fn received_command(&mut self, now: Now, c: Option<Command>) {
        match c {
            Some(c) => self.command(now, c),
            None => self.handles_dropped(now),
        }
    }

    /// What a wait on the telemetry channel gave: a message, or `None`
    /// when the channel has closed.
    pub fn received_telemetry(&mut self, now: Now, t: Option<Telemetry>) {
        match t {
            Some(t) => self.telemetry(now, t),
            None => self.telemetry_closed(),
        }
    }

    /// After a wake-up, takes what already waits in the adapter's
    /// channels without waiting: telemetry while the session has room
    /// (`telemetry()` looks at the telemetry channel), then up to
    /// [`COMMANDS_PER_TURN`] commands (`command()` looks at the command
    /// channel). Telemetry first: a message the application queued before
    /// a command (a shutdown) is the session's before the command is. A
    /// closed channel counts as above.
    pub fn take_ready(
        &mut self,
        now: Now,
        mut command: impl FnMut() -> Ready<Box<Command>>,
        telemetry: impl FnMut() -> Ready<Telemetry>,
    ) {
        self.take_telemetry(now, telemetry);
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
    }

    /// Takes telemetry that already waits, while the session has room.
    /// Call before handing over a command that woke the driver, so the
    /// messages queued before it go first.
    pub fn take_telemetry(&mut self, now: Now, mut telemetry: impl FnMut() -> Ready<Telemetry>) {
        while self.accepts_telemetry() {
            match telemetry() {
                Ready::Item(t) => self.telemetry(now, t),
                Ready::Empty => break,
                Ready::Closed => self.telemetry_closed(),
            }
        }
    }

    /// A telemetry message from the application.
    pub fn telemetry(&mut self, now: Now, t: Telemetry) {
        let (message, reply) = *t;
        let m = &mut self.machine;
        m.router
            .send_telemetry(&mut m.session, now.at, message, reply);
    }

    /// Every client handle is gone: drain briefly ([`DROP_DRAIN`]) and
    /// stop. Only the first call counts.
    pub fn handles_dropped(&mut self, now: Now) {
        if std::mem::take(&mut self.machine.handles) {
            info!("every client handle dropped: shutting down");
            self.machine.session.disconnect(now.at, DROP_DRAIN);
        }
    }

    /// A command from the application.
    pub fn command(&mut self, now: Now, c: Command) {
        let Device {
            session, router, ..
        } = &mut self.machine;
        let at = now.at;
        match c {
            Command::GetTwin(reply) => router.get_twin(session, at, reply),
            Command::UpdateReported(json, reply) => {
                router.update_reported(session, at, json, reply);
            }
            Command::Respond(id, status, payload, reply) => {
                let r = session.respond_to_method(at, id, status, payload);
                let _ = reply.send(r.map_err(Error::Command));
            }
            Command::Enable(sub, reply) => {
                let _ = reply.send(router.subscribe(session, at, sub));
            }
            Command::Ack(token, reply) => {
                let _ = reply.send(session.ack(token).map_err(Error::Command));
            }
            Command::Taken(token) => session.taken(token),
            Command::Return(event) => session.return_inbound(*event),
            Command::Shutdown(timeout, done) => {
                info!(timeout_ms = millis(timeout), "shutdown requested");
                self.machine.shutdown.push(done);
                self.machine.session.disconnect(at, timeout);
            }
            Command::WatchReprovision(policy, reply) => {
                router.watch_reprovision(policy, reply);
            }
            Command::Token(t) => router.token(session, at, now.unix_secs, t),
        }
    }

    /// The status to publish (before every [`Step::Wait`] and at the end).
    #[must_use]
    pub fn status(&self) -> Status {
        self.machine.router.status(&self.machine.session)
    }

    /// After [`Step::Done`]: answers every `shutdown` caller and logs what
    /// is left. Replies not answered are dropped, so their callers see
    /// [`Error::Closed`].
    pub fn finish(&mut self) {
        for done in self.machine.shutdown.drain(..) {
            let _ = done.send(Ok(()));
        }
        self.machine.router.drop_pending();
        info!("client stopped");
    }
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
        Core::device(Config::from_connection_string(&cs)).unwrap()
    }

    fn at(ms: u64) -> Now {
        Now::new(Instant::from_millis(ms), 1_700_000_000 + ms / 1000)
    }

    #[test]
    // A sink gives a message back by value; its size does not matter here.
    #[allow(clippy::result_large_err)]
    fn steps_in_order_and_replies_routed() {
        let mut core = core();
        let now = at(0);
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
        // SUBSCRIBE to twin responses; the GET waits for the SUBACK.
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
        core.timeout(at(1));
        let mut stopped = false;
        for _ in 0..10 {
            match core.poll() {
                Step::Done(()) => {
                    stopped = true;
                    break;
                }
                Step::Wait(_) => core.timeout(at(2)),
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
        let now = at(0);
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
            core.timeout(at(t * 1_000));
            if matches!(core.poll(), Step::Done(())) {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the drain ends");
        core.finish();
        assert!(twin.try_recv().unwrap().is_err());
        assert!(sent.try_recv().unwrap().is_err());
    }

    /// Connects `core` and enables nothing: the session is up.
    fn connected() -> DriverCore {
        let mut core = core();
        assert!(matches!(core.poll(), Step::Open));
        core.transport_opened(at(0));
        assert!(matches!(core.poll(), Step::Write(_)));
        core.handle_input(at(0), &[0x20, 2, 0, 0]);
        assert!(matches!(core.poll(), Step::Wait(_)));
        core
    }

    fn send(core: &mut DriverCore, body: Vec<u8>) {
        let (r, _) = reply();
        core.telemetry(at(0), Box::new((Message::new(body), r)));
    }

    #[test]
    fn queued_packets_leave_in_one_write_up_to_the_limit() {
        use iothub_proto::connection::TRANSMIT_BATCH as BATCH;
        let mut core = connected();
        // One message: its PUBLISH alone.
        send(&mut core, vec![1; 10]);
        let Step::Write(one) = core.poll() else {
            panic!("a write")
        };
        assert_eq!(one[0] >> 4, 3);
        assert!(matches!(core.poll(), Step::Wait(_)));
        // Three of a little under half the limit: two in the first write
        // (the third would pass the limit), the third in the next.
        for _ in 0..3 {
            send(&mut core, vec![2; BATCH / 2 - 200]);
        }
        let Step::Write(first) = core.poll() else {
            panic!("a write")
        };
        assert!(first.len() > BATCH - 400 && first.len() <= BATCH);
        assert_eq!(first[first.len() / 2] >> 4, 3, "whole packets");
        let Step::Write(second) = core.poll() else {
            panic!("a second write")
        };
        assert!(second.len() > BATCH / 2 - 200 && second.len() < BATCH / 2);
        assert!(matches!(core.poll(), Step::Wait(_)));
        // A packet larger than the limit leaves alone, whole.
        send(&mut core, vec![3; 10]);
        send(&mut core, vec![4; BATCH * 2]);
        let Step::Write(small) = core.poll() else {
            panic!("a write")
        };
        assert!(small.len() < 200);
        let Step::Write(large) = core.poll() else {
            panic!("a write")
        };
        assert!(large.len() > BATCH * 2);
        assert!(matches!(core.poll(), Step::Wait(_)));
    }
}
