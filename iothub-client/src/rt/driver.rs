//! The one async driver loop, for every kind of session: it owns the
//! [`Core`] (the session and the order of the steps around it) and the
//! transport, and does only the waiting — one race of read, open, the
//! application's side ([`Side`]: commands and telemetry for a client,
//! nothing for provisioning) and the timer.
//!
//! ```text
//! loop {
//!     match core.poll() {
//!         Write(bytes) → conn.write     Open → start opening (a future of the loop)
//!         Close → conn.close            Done(outcome) → close, side.end, return outcome
//!         Wait(deadline) → side.before_wait (publish the status); the first of {
//!             bytes read | transport opened | the side's next input | the deadline
//!         }; then side.after_wake (take every command and message already waiting)
//!     }
//! }
//! ```

use std::convert::Infallible;
use std::future::{Future, pending};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::FutureExt as _;
use tracing::{Instrument as _, debug};

use super::Runtime;
use super::transport::{self, Conn};
use crate::clock::Now;
use crate::driver::{Command, Core, Device, DriverCore, Machine, Step, Telemetry};
use crate::handle::Inbox;
use crate::transport::{Endpoint, Failure};
use crate::watch::{self, StatusSender, StatusWatch};
use crate::{ClientOptions, Clock, Error};

/// A transport being opened.
type Opening = Pin<Box<dyn Future<Output = Result<Conn, Failure>> + Send>>;

/// The application's side of a driver: what else the loop waits on
/// besides the transport and the timer, and what it does around a wait
/// and at the end.
pub(super) trait Side<M: Machine>: Send {
    /// What the side's wait gives.
    type Wake: Send;

    /// Before a wait: notes what the core takes now (the futures of
    /// [`next`](Self::next) must not hold the core).
    fn arm(&mut self, core: &Core<M>);

    /// The side's next input (pending for ever when it has none to give).
    fn next(&mut self) -> impl Future<Output = Self::Wake> + Send;

    /// Hands a wake of the side to the core.
    fn handle(&mut self, core: &mut Core<M>, now: Now, wake: Self::Wake);

    /// After any wake-up: takes what else waits, without waiting.
    fn after_wake(&mut self, core: &mut Core<M>, now: Now);

    /// Before every wait.
    fn before_wait(&mut self, core: &Core<M>);

    /// The session is over and the transport closed.
    fn end(&mut self, core: &mut Core<M>);
}

/// A side with nothing to give: provisioning.
impl<M: Machine> Side<M> for () {
    type Wake = Infallible;

    fn arm(&mut self, _: &Core<M>) {}

    async fn next(&mut self) -> Infallible {
        pending().await
    }

    fn handle(&mut self, _: &mut Core<M>, _: Now, wake: Infallible) {
        match wake {}
    }

    fn after_wake(&mut self, _: &mut Core<M>, _: Now) {}

    fn before_wait(&mut self, _: &Core<M>) {}

    fn end(&mut self, _: &mut Core<M>) {}
}

/// What ended a wait.
enum Wake<W> {
    Read(Result<usize, Failure>),
    Opened(Result<Conn, Failure>),
    Side(W),
    Timer,
}

/// The loop of the module docs, on runtime `R`, for session kind `M`.
pub(super) struct Loop<R: Runtime, M: Machine, S> {
    core: Core<M>,
    side: S,
    clock: Clock,
    endpoint: Arc<Endpoint>,
    conn: Option<Conn>,
    opening: Option<Opening>,
    buf: Vec<u8>,
    /// The one timer, and the instant it is set to, while armed.
    timer: Option<(std::time::Instant, Pin<Box<R::Sleep>>)>,
    runtime: PhantomData<fn() -> R>,
}

impl<R, M, S> Loop<R, M, S>
where
    R: Runtime,
    M: Machine + Send,
    M::Outcome: Send,
    <M::Session as iothub_proto::connection::Driven>::Event: Send,
    S: Side<M>,
{
    pub(super) fn new(core: Core<M>, side: S, clock: Clock, endpoint: Endpoint) -> Self {
        Loop {
            core,
            side,
            clock,
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            buf: Vec::new(),
            timer: None,
            runtime: PhantomData,
        }
    }

    /// Runs until the session is over.
    pub(super) async fn run(mut self) -> M::Outcome {
        loop {
            match self.core.poll() {
                Step::Write(data) => self.write(data).await,
                Step::Open => self.open(),
                Step::Close => self.close().await,
                Step::Wait(deadline) => {
                    self.side.before_wait(&self.core);
                    self.wait(deadline).await;
                }
                Step::Done(outcome) => {
                    self.close().await;
                    self.side.end(&mut self.core);
                    return outcome;
                }
            }
        }
    }

    /// [`Step::Wait`]: waits, hands what woke the loop to the core, then
    /// lets the side take what else is ready.
    async fn wait(&mut self, deadline: Option<iothub_proto::time::Instant>) {
        // The timer is moved only when the session's next wake-up is
        // earlier: waking early is harmless (the core fires only due
        // timers, then the timer is set again), and the keep-alive
        // deadline moves later with every write, so a new timer on every
        // turn would cost more than an early wake.
        match deadline.map(|at| self.clock.deadline(at)) {
            Some(at) => {
                if self.timer.as_ref().is_none_or(|(armed, _)| at < *armed) {
                    self.timer = Some((at, Box::pin(R::sleep_until(at))));
                }
            }
            None => self.timer = None,
        }
        self.side.arm(&self.core);
        let wake = self.next_wake().await;
        let now = self.clock.now();
        match wake {
            Wake::Read(Ok(n)) => self.core.handle_input(now, &self.buf[..n]),
            Wake::Read(Err(f)) => {
                self.conn = None;
                self.core.transport_closed(now, &f);
            }
            Wake::Opened(r) => {
                self.opening = None;
                self.conn = self.core.opened(now, r);
            }
            Wake::Side(w) => self.side.handle(&mut self.core, now, w),
            Wake::Timer => {
                self.timer = None;
                self.core.timeout(now);
            }
        }
        // The same instant: what the side takes was ready at the wake.
        self.side.after_wake(&mut self.core, now);
    }

    /// The first ready of, in this order: inbound bytes, the opening
    /// transport, the side, the timer.
    async fn next_wake(&mut self) -> Wake<S::Wake> {
        let Loop {
            side,
            conn,
            opening,
            buf,
            timer,
            ..
        } = self;
        let read = async {
            match conn {
                Some(c) => Wake::Read(c.read(buf).await),
                None => pending().await,
            }
        };
        let opened = async {
            match opening {
                Some(f) => Wake::Opened(f.await),
                None => pending().await,
            }
        };
        let side = async { Wake::Side(side.next().await) };
        let timer = async {
            match timer {
                Some((_, sleep)) => {
                    sleep.as_mut().await;
                    Wake::Timer
                }
                None => pending().await,
            }
        };
        read.or(opened).or(side).or(timer).await
    }

    /// [`Step::Close`], and the end: closes the transport if open.
    async fn close(&mut self) {
        self.opening = None;
        if let Some(conn) = self.conn.take() {
            debug!("closing the transport");
            conn.close::<R>().await;
        }
    }

    async fn write(&mut self, data: bytes::Bytes) {
        let Some(conn) = self.conn.as_mut() else {
            return; // the transport just failed; the session knows
        };
        if let Err(f) = conn.write::<R>(data, self.endpoint.write_timeout).await {
            self.conn = None;
            self.core.transport_closed(self.clock.now(), &f);
        }
    }

    /// [`Step::Open`]: drops the current transport and starts opening a
    /// new one, in a `connect` span.
    fn open(&mut self) {
        self.conn = None;
        let ep = self.endpoint.clone();
        let span = ep.open_span(self.core.attempts());
        self.opening = Some(Box::pin(
            async move { transport::open::<R>(&ep).await }.instrument(span),
        ));
    }
}

/// A client's side: the [`Inbox`] of its handles' commands and telemetry,
/// and where its status goes.
pub(super) struct ClientSide {
    inbox: Inbox,
    status: StatusSender,
    /// What the core takes now (set by `arm`).
    commands: bool,
    room: bool,
}

/// What the client's side gives.
pub(super) enum ClientWake {
    Command(Option<Box<Command>>),
    Telemetry(Option<Telemetry>),
}

impl Side<Device> for ClientSide {
    type Wake = ClientWake;

    fn arm(&mut self, core: &DriverCore) {
        self.commands = core.takes_commands();
        self.room = core.accepts_telemetry();
    }

    /// A command, or telemetry (only while the session has room:
    /// backpressure).
    async fn next(&mut self) -> ClientWake {
        let (commands, room) = (self.commands, self.room);
        let inbox = &self.inbox;
        let command = async {
            match commands {
                true => ClientWake::Command(inbox.commands.recv().await.ok()),
                false => pending().await,
            }
        };
        let telemetry = async {
            match room {
                true => ClientWake::Telemetry(inbox.telemetry.recv().await.ok()),
                false => pending().await,
            }
        };
        command.or(telemetry).await
    }

    fn handle(&mut self, core: &mut DriverCore, now: Now, wake: ClientWake) {
        match wake {
            ClientWake::Command(c) => {
                // What the application queued before the command first.
                self.inbox.take_telemetry(core, now);
                core.received_command(now, c.map(|c| *c));
            }
            ClientWake::Telemetry(t) => core.received_telemetry(now, t),
        }
    }

    fn after_wake(&mut self, core: &mut DriverCore, now: Now) {
        self.inbox.take_ready(core, now);
    }

    fn before_wait(&mut self, core: &DriverCore) {
        self.status.set(core.status());
    }

    /// The last status; the watches close when the side is dropped, with
    /// the loop.
    fn end(&mut self, core: &mut DriverCore) {
        self.inbox.refuse_late();
        self.status.set(core.status());
        core.finish();
    }
}

/// The driver of one async client on runtime `R`: [`new`](Self::new)
/// checks the options, [`run`](Self::run) is the future that runs the
/// client; [`watch`](Self::watch) its status.
pub struct Driver<R: Runtime> {
    core: DriverCore,
    endpoint: Endpoint,
    inbox: Inbox,
    status: StatusSender,
    span: tracing::Span,
    runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> std::fmt::Debug for Driver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("status", &self.core.status())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Driver<R> {
    /// A driver for `options` fed by `inbox` (the other end of the
    /// client's [`Handle`](crate::handle::Handle)); it connects once run.
    /// Fails on bad options, before any socket.
    pub fn new(options: ClientOptions, inbox: Inbox) -> Result<Driver<R>, Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        let (status, _) = watch::channel(core.status());
        Ok(Driver {
            core,
            endpoint,
            inbox,
            status,
            span,
            runtime: PhantomData,
        })
    }

    /// A watch of the client's status, which the driver publishes before
    /// every wait and at the end (then the watch closes).
    #[must_use]
    pub fn watch(&self) -> StatusWatch {
        self.status.watch()
    }

    /// The loop, in the driver's `iothub{client_id}` span; it ends when
    /// the session has stopped.
    pub fn run(self) -> impl Future<Output = ()> + Send + 'static {
        let side = ClientSide {
            inbox: self.inbox,
            status: self.status,
            commands: true,
            room: true,
        };
        Loop::<R, Device, _>::new(self.core, side, Clock::new(), self.endpoint)
            .run()
            .instrument(self.span)
    }
}
