//! The one blocking driver loop ([`run`], for a client and for
//! provisioning alike): one thread (yours, or one the client spawns) owns
//! the session — inside `iothub-client`'s [`Core`], which fixes the order of
//! the steps — and the connection's [`Link`]. It sleeps in
//! `recv_timeout(deadline − now)` on the one channel that carries
//! commands, bytes read by the connection thread and transport outcomes
//! (see the crate docs for why); what is not the transport's goes to the
//! application's [`Side`] (commands and telemetry for a client, nothing
//! for provisioning).
//!
//! ```text
//! loop {
//!     core.poll() until Wait or Done: write | open (a connection thread) | close, events
//!     side.before_wait (publish the status)
//!     recv_timeout(deadline − now):  bytes read → core.handle_input
//!                                    a command  → side.input (core.command)
//!                                    timed out  → core.timeout
//!     then every input already queued, then side.after_turn (telemetry while the session has room)
//! }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use iothub_client::clock::Now;
use iothub_client::driver::{Command, Core, Device, DriverCore, Machine, Ready, Step, Telemetry};
use iothub_client::transport::{Endpoint, Failure};
use iothub_client::watch::{self, StatusSender, StatusWatch};
use iothub_client::{ClientOptions, Clock, Error};
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

/// Whether the driver has been told that telemetry waits: a client sends
/// [`Input::Telemetry`] only when it rings the bell first (one wake-up per
/// batch, not one input per message); the driver clears it before it
/// takes telemetry, so a message queued after that rings again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bell(Arc<AtomicBool>);

impl Bell {
    /// Rings; `true` when the driver must be told (it was not yet).
    pub(crate) fn ring(&self) -> bool {
        !self.0.swap(true, Ordering::SeqCst)
    }

    fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Inputs taken per wake-up at most (then the loop transmits).
const INPUTS_PER_TURN: usize = 1024;

/// The driver of one client. [`build`](iothub_client::ClientBuilder::build)
/// runs it on a thread of its own;
/// [`build_with_driver`](iothub_client::ClientBuilder::build_with_driver)
/// hands it to you to [`run`](Self::run) on yours.
pub struct Driver {
    core: DriverCore,
    span: tracing::Span,
    inputs: Receiver<Input>,
    side: ClientSide,
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

/// The application's side of a blocking driver: what it does with the
/// inputs that are not the transport's, around a wait, and at the end.
pub(crate) trait Side<M: Machine> {
    /// A command or a note of the client's handles.
    fn input(&mut self, core: &mut Core<M>, now: Now, input: Input);

    /// After every turn: takes what waits in other channels.
    fn after_turn(&mut self, core: &mut Core<M>, clock: &Clock);

    /// Before every wait.
    fn before_wait(&mut self, core: &Core<M>);

    /// The session is over and the transport closed.
    fn end(&mut self, core: &mut Core<M>);
}

/// A side with nothing to give: provisioning.
impl<M: Machine> Side<M> for () {
    fn input(&mut self, _: &mut Core<M>, _: Now, _: Input) {}
    fn after_turn(&mut self, _: &mut Core<M>, _: &Clock) {}
    fn before_wait(&mut self, _: &Core<M>) {}
    fn end(&mut self, _: &mut Core<M>) {}
}

/// The one blocking driver loop, for every kind of session (see the
/// [module docs](self)): runs `core` over `conn` until the session is
/// over, sleeping in `recv_timeout(deadline − now)` on `inputs`.
pub(crate) fn run<M: Machine, S: Side<M>>(
    mut core: Core<M>,
    side: &mut S,
    clock: &Clock,
    conn: &mut Connection,
    inputs: &Receiver<Input>,
) -> M::Outcome {
    loop {
        let deadline = match core.poll() {
            Step::Write(data) => {
                if let Err(f) = conn.write(data) {
                    core.transport_closed(clock.now(), &f);
                }
                continue;
            }
            Step::Open => {
                if let Err(f) = conn.open(core.attempts()) {
                    core.transport_closed(clock.now(), &f);
                }
                continue;
            }
            Step::Close => {
                conn.close();
                continue;
            }
            Step::Wait(deadline) => deadline,
            Step::Done(outcome) => {
                conn.close();
                side.end(&mut core);
                return outcome;
            }
        };
        side.before_wait(&core);
        let input = match deadline {
            Some(at) => {
                let wait = clock
                    .deadline(at)
                    .saturating_duration_since(std::time::Instant::now());
                inputs.recv_timeout(wait)
            }
            None => inputs.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match input {
            Ok(input) => on_input(&mut core, side, conn, clock.now(), input),
            Err(RecvTimeoutError::Timeout) => core.timeout(clock.now()),
            // Unreachable while `conn` holds a sender.
            Err(RecvTimeoutError::Disconnected) => {
                side.input(&mut core, clock.now(), Input::HandlesDropped);
            }
        }
        for _ in 0..INPUTS_PER_TURN {
            match inputs.try_recv() {
                Ok(input) => on_input(&mut core, side, conn, clock.now(), input),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        side.after_turn(&mut core, clock);
    }
}

/// One input: the transport's go to the core, the rest to the side.
fn on_input<M: Machine, S: Side<M>>(
    core: &mut Core<M>,
    side: &mut S,
    conn: &mut Connection,
    now: Now,
    input: Input,
) {
    match input {
        input @ (Input::Command(_) | Input::Telemetry | Input::HandlesDropped) => {
            side.input(core, now, input);
        }
        transport => match conn.transported(transport) {
            Transported::Opened => core.transport_opened(now),
            Transported::Data(mqtt) => core.handle_input(now, &mqtt),
            Transported::Failed(f) => core.transport_closed(now, &f),
            Transported::Stale => {}
        },
    }
}

/// A client's side: its telemetry channel and where its status goes.
struct ClientSide {
    telemetry: Receiver<Telemetry>,
    bell: Bell,
    status: StatusSender,
}

impl Side<Device> for ClientSide {
    fn input(&mut self, core: &mut DriverCore, now: Now, input: Input) {
        match input {
            Input::Command(c) => {
                // What the application queued before the command first
                // (its telemetry was in the channel before the command
                // was sent).
                let t = &self.telemetry;
                core.take_telemetry(now, || match t.try_recv() {
                    Ok(t) => Ready::Item(t),
                    Err(TryRecvError::Empty) => Ready::Empty,
                    Err(TryRecvError::Disconnected) => Ready::Closed,
                });
                core.command(now, c);
            }
            Input::HandlesDropped => core.handles_dropped(now),
            // Telemetry is taken after the inputs.
            _ => {}
        }
    }

    /// Backpressure: telemetry stays in its channel (whose senders block
    /// when it is full) while the session's queue is full.
    /// The clock is read once per turn: every message taken was waiting
    /// at that instant.
    fn after_turn(&mut self, core: &mut DriverCore, clock: &Clock) {
        self.bell.clear();
        let mut now = None;
        while core.accepts_telemetry() {
            let Ok(t) = self.telemetry.try_recv() else {
                break;
            };
            core.telemetry(*now.get_or_insert_with(|| clock.now()), t);
        }
    }

    fn before_wait(&mut self, core: &DriverCore) {
        self.status.set(core.status());
    }

    fn end(&mut self, core: &mut DriverCore) {
        self.status.set(core.status());
        core.finish();
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
        bell: Bell,
    ) -> Result<(Driver, StatusWatch), Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        let (sender, status) = watch::channel(core.status());
        let driver = Driver {
            core,
            span,
            inputs,
            side: ClientSide {
                telemetry,
                bell,
                status: sender,
            },
            conn: Connection::new(Arc::new(endpoint), tx),
        };
        Ok((driver, status))
    }

    /// Runs the client until it stops (after
    /// [`Client::shutdown`](crate::Client::shutdown), a stop of the
    /// session, or once every handle is dropped).
    pub fn run(self) {
        let Driver {
            core,
            span,
            inputs,
            mut side,
            mut conn,
        } = self;
        let _entered = span.enter();
        run(core, &mut side, &Clock::new(), &mut conn, &inputs);
    }
}
