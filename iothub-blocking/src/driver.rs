//! The driver: one thread (yours, or one the client spawns) that owns the
//! session — inside `iothub-net`'s [`DriverCore`], which fixes the order of
//! the steps and routes events — and the connection's [`Link`]. It
//! sleeps in `recv_timeout(deadline − now)` on the one channel that
//! carries commands, bytes read by the connection thread and transport
//! outcomes (see the crate docs for why).
//!
//! ```text
//! loop {
//!     core.poll() until Wait:  3. write | open (a connection thread) | close, 4. events
//!     publish the status
//!     recv_timeout(deadline − now):  1. bytes read → core.handle_input
//!                                    2. a command  → core.command
//!                                    5. timed out  → core.timeout
//!     then every input already queued, then telemetry while the session has room
//! }
//! ```

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use iothub_net::driver::{Command, DriverCore, Step, Telemetry};
use iothub_net::transport::{Endpoint, Failure};
use iothub_net::watch::StatusWatch;
use iothub_net::{ClientOptions, Clock, Error};
use iothub_proto::time::Instant;
use tracing::debug;

use crate::transport::{self, Link};

/// What wakes the driver.
pub(crate) enum Input {
    /// A command from a client handle.
    Command(Command),
    /// Telemetry is waiting in its (bounded) channel.
    Telemetry,
    /// Every client handle was dropped.
    HandlesDropped,
    /// Connection `id` is open (or failed to open).
    Opened(u64, Result<Box<Link>, Failure>),
    /// Raw bytes read on connection `id`.
    Read(u64, Vec<u8>),
    /// Connection `id` ended.
    Closed(u64, Failure),
}

/// Inputs taken per wake-up at most (then the loop transmits).
const INPUTS_PER_TURN: usize = 1024;

/// The driver of one client. [`Client::new`](crate::Client::new) runs it
/// on a thread of its own; [`Client::with_driver`](crate::Client::with_driver)
/// hands it to you to [`run`](Self::run) on yours.
pub struct Driver {
    core: DriverCore,
    clock: Clock,
    span: tracing::Span,
    inputs: Receiver<Input>,
    telemetry: Receiver<Telemetry>,
    status: Arc<StatusWatch>,
    conn: Connection,
}

/// The connection of a driver (the client's, or provisioning's): the one
/// open [`Link`], or the id of the one being opened by its thread, and
/// which of the [`Input`]s that connection threads send still matter.
pub(crate) struct Connection {
    endpoint: Arc<Endpoint>,
    /// Given to each connection thread.
    tx: Sender<Input>,
    link: Option<(u64, Box<Link>)>,
    /// The id of the connection being opened, if one is.
    opening: Option<u64>,
    next_id: u64,
}

/// What an input from a connection thread means for the session.
pub(crate) enum Transported {
    /// The transport asked for is open.
    Opened,
    /// MQTT bytes arrived.
    Data(Vec<u8>),
    /// The transport (or its opening) failed.
    Failed(Failure),
    /// Nothing: a connection the session no longer wants.
    Stale,
}

impl Connection {
    pub(crate) fn new(endpoint: Arc<Endpoint>, tx: Sender<Input>) -> Connection {
        Connection {
            endpoint,
            tx,
            link: None,
            opening: None,
            next_id: 0,
        }
    }

    /// A connection to `endpoint` and the channel its inputs arrive on
    /// (for a driver that takes nothing else: provisioning).
    pub(crate) fn channel(endpoint: Endpoint) -> (Connection, Receiver<Input>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Connection::new(Arc::new(endpoint), tx), rx)
    }

    /// Drops the current link and starts a connection thread for a new
    /// one; its outcome comes back as an [`Input::Opened`].
    pub(crate) fn open(&mut self, attempt: u64) -> Result<(), Failure> {
        self.link = None;
        self.next_id += 1;
        let id = self.next_id;
        let span = self.endpoint.open_span(attempt);
        transport::spawn(self.endpoint.clone(), id, self.tx.clone(), span)
            .map_err(|e| Failure::connect(format!("cannot start a connection thread: {e}")))?;
        self.opening = Some(id);
        Ok(())
    }

    /// Closes the transport (after its last bytes), or forgets the one
    /// being opened.
    pub(crate) fn close(&mut self) {
        self.opening = None;
        if let Some((_, link)) = self.link.take() {
            debug!("closing the transport");
            link.close();
        }
    }

    /// Writes MQTT bytes; without a link they are dropped (the session
    /// knows the transport is gone). On failure the link is dropped.
    pub(crate) fn write(&mut self, data: bytes::Bytes) -> Result<(), Failure> {
        let Some((_, link)) = &mut self.link else {
            return Ok(());
        };
        link.write(data).inspect_err(|_| self.link = None)
    }

    /// What an input of a connection thread means (`Stale` for one of a
    /// connection the session gave up).
    pub(crate) fn transported(&mut self, input: Input) -> Transported {
        let current = self.link.as_ref().map(|(id, _)| *id);
        match input {
            Input::Opened(id, r) if Some(id) == self.opening => {
                self.opening = None;
                match r {
                    Ok(link) => {
                        self.link = Some((id, link));
                        Transported::Opened
                    }
                    Err(f) => Transported::Failed(f),
                }
            }
            Input::Read(id, raw) if Some(id) == current => {
                let Some((_, link)) = &mut self.link else {
                    return Transported::Stale;
                };
                match link.input(&raw) {
                    Ok(mqtt) => Transported::Data(mqtt),
                    Err(f) => {
                        self.link = None;
                        Transported::Failed(f)
                    }
                }
            }
            Input::Closed(id, f) if Some(id) == current => {
                self.link = None;
                Transported::Failed(f)
            }
            // A connection the session no longer wants: dropping its link
            // shuts the socket down and ends its thread.
            _ => Transported::Stale,
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl Driver {
    pub(crate) fn new(
        options: ClientOptions,
        inputs: Receiver<Input>,
        tx: Sender<Input>,
        telemetry: Receiver<Telemetry>,
    ) -> Result<(Driver, Arc<StatusWatch>), Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        let status = Arc::new(StatusWatch::new(core.status()));
        let driver = Driver {
            core,
            clock: Clock::new(),
            span,
            inputs,
            telemetry,
            status: status.clone(),
            conn: Connection::new(Arc::new(endpoint), tx),
        };
        Ok((driver, status))
    }

    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    /// Runs the client until it stops (after
    /// [`Client::shutdown`](crate::Client::shutdown), a stop of the
    /// session, or once every handle is dropped).
    pub fn run(mut self) {
        let span = self.span.clone();
        let _entered = span.enter();
        loop {
            let deadline = match self.core.poll() {
                Step::Write(data) => {
                    if let Err(f) = self.conn.write(data) {
                        self.transport_failed(&f);
                    }
                    continue;
                }
                Step::Open => {
                    if let Err(f) = self.conn.open(self.core.attempts()) {
                        self.transport_failed(&f);
                    }
                    continue;
                }
                Step::Close => {
                    self.conn.close();
                    continue;
                }
                Step::Wait(deadline) => deadline,
                // Step::Stopped
                _ => break,
            };
            self.status.set(self.core.status());
            let input = match deadline {
                Some(at) => {
                    let wait = self
                        .clock
                        .deadline(at)
                        .saturating_duration_since(std::time::Instant::now());
                    self.inputs.recv_timeout(wait)
                }
                None => self
                    .inputs
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match input {
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {
                    let now = self.now();
                    self.core.timeout(now);
                }
                // Unreachable while the driver holds `tx`.
                Err(RecvTimeoutError::Disconnected) => self.on_input(Input::HandlesDropped),
            }
            for _ in 0..INPUTS_PER_TURN {
                match self.inputs.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            // Backpressure: telemetry stays in its channel (whose senders
            // block when it is full) while the session's queue is full.
            while self.core.accepts_telemetry() {
                let Ok(t) = self.telemetry.try_recv() else {
                    break;
                };
                let now = self.now();
                self.core.telemetry(now, t);
            }
        }
        self.conn.close();
        self.status.set(self.core.status());
        self.core.finish();
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Command(c) => self.core.command(now, c),
            Input::Telemetry => {} // taken after the inputs
            Input::HandlesDropped => self.core.handles_dropped(now),
            transport => match self.conn.transported(transport) {
                Transported::Opened => self.core.transport_opened(now),
                Transported::Data(mqtt) => self.core.handle_input(now, &mqtt),
                Transported::Failed(f) => self.core.transport_closed(now, &f),
                Transported::Stale => {}
            },
        }
    }

    fn transport_failed(&mut self, f: &Failure) {
        let now = self.now();
        self.core.transport_closed(now, f);
    }
}
