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
    AckToken, Config, ConfigError, ConnectionState, InboundMessage, Message, MethodId, Session,
    TransportCommand, Twin,
};
use iothub_proto::time::Instant;
use tracing::{debug, info, warn};

use crate::api::{DesiredUpdate, Error, InputMessage, Status};
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
/// closure that says whether the stream still exists.
pub struct Sink<T>(Box<dyn Fn(T) -> bool + Send>);

impl<T> Sink<T> {
    /// A sink from a function that delivers an item and says whether its
    /// stream still exists.
    pub fn new(f: impl Fn(T) -> bool + Send + 'static) -> Sink<T> {
        Sink(Box::new(f))
    }

    /// Hands an item to the stream; `false` if the stream is gone.
    pub fn deliver(&self, item: T) -> bool {
        (self.0)(item)
    }
}

impl<T> fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// A direct method call as the driver hands it out; the adapter's sink
/// wraps it into its own `MethodRequest` (which knows how to answer).
pub use crate::router::MethodCall;

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
    /// Answer a method call.
    Respond(MethodId, u16, Bytes, Reply<()>),
    /// Enable a feature and route its items to a stream.
    Enable(Subscribe, Reply<()>),
    /// Acknowledge a message (manual-ack mode).
    Ack(AckToken, Reply<()>),
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

/// The session plus everything waiting on it: the steps of the driver
/// loop in their fixed order; the routing of events to replies and
/// streams is the [`Router`]'s. No I/O, no clock reads except Unix
/// seconds for SAS tokens.
pub struct DriverCore {
    session: Session,
    router: Router,
    shutdown: Vec<Reply<()>>,
    handles: bool,
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
        loop {
            let mut batch: Option<Vec<u8>> = None;
            while let Some(bytes) = self.session.poll_transmit() {
                let b = batch.get_or_insert_with(Vec::new);
                b.extend_from_slice(&bytes);
                if b.len() >= BATCH {
                    break;
                }
            }
            if let Some(b) = batch {
                return Step::Write(b.into());
            }
            match self.session.poll_transport() {
                Some(TransportCommand::Open) => {
                    self.attempts += 1;
                    return Step::Open;
                }
                Some(TransportCommand::Close) => return Step::Close,
                None => {}
            }
            let mut moved = false;
            while let Some(event) = self.session.poll_event() {
                moved = true;
                self.router.dispatch(&self.session, event);
            }
            // Taking a C2D event may have queued its PUBACK.
            if !moved {
                break;
            }
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
    /// its channel while this is false).
    #[must_use]
    pub fn accepts_telemetry(&self) -> bool {
        !self.session.telemetry_queue_full()
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
            Command::Enable(Subscribe::Inputs(Sink::new(|_| true)), r),
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
}
