//! The driver loop of the async adapters: owns the session (inside
//! [`DriverCore`], which fixes the order of the steps and routes events
//! to replies and streams) and the transport. Only the waiting is done
//! here: one race of read, open, command, telemetry and timer.
//!
//! ```text
//! loop {
//!     match core.poll() {
//!         Write(bytes) → conn.write     Open → start opening (a future of the loop)
//!         Close → conn.close            Stopped → finish
//!         Wait(deadline) → publish the status; the first of {
//!             bytes read | transport opened | a command
//!             | telemetry (only while core.accepts_telemetry()) | the deadline
//!         }; then take every command and message already waiting
//!     }
//! }
//! ```

use std::future::{Future, pending};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use futures_lite::FutureExt as _;
use tracing::{Instrument as _, debug};

use super::Runtime;
use super::transport::{self, Conn};
use crate::driver::{Command, DriverCore, Step, Telemetry};
use crate::handle::Inbox;
use crate::transport::{Endpoint, Failure};
use crate::{ClientOptions, Clock, Error, Status};

/// A transport being opened.
pub(super) type Opening = Pin<Box<dyn Future<Output = Result<Conn, Failure>> + Send>>;

/// The driver of one async client on runtime `R`: [`new`](Self::new)
/// checks the options, [`run`](Self::run) is the future the adapter
/// spawns (tokio) or hands out (smol).
pub struct Driver<R: Runtime> {
    core: DriverCore,
    clock: Clock,
    endpoint: Arc<Endpoint>,
    conn: Option<Conn>,
    opening: Option<Opening>,
    inbox: Inbox,
    buf: Vec<u8>,
    /// The one timer, and the instant it is set to, while armed.
    timer: Option<(std::time::Instant, Pin<Box<R::Sleep>>)>,
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

/// What ended a wait.
pub(super) enum Wake {
    Read(Result<usize, Failure>),
    Opened(Result<Conn, Failure>),
    Command(Option<Box<Command>>),
    Telemetry(Option<Telemetry>),
    Timer,
}

impl<R: Runtime> Driver<R> {
    /// A driver for `options` fed by `inbox` (the other end of the
    /// client's [`Handle`](crate::handle::Handle)); it connects once run.
    /// Fails on bad options, before any socket.
    pub fn new(options: ClientOptions, inbox: Inbox) -> Result<Driver<R>, Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        Ok(Driver {
            core,
            clock: Clock::new(),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            inbox,
            buf: Vec::new(),
            timer: None,
            span,
            runtime: PhantomData,
        })
    }

    /// The status before the driver runs (the first value of the
    /// adapter's status watch).
    #[must_use]
    pub fn status(&self) -> Status {
        self.core.status()
    }

    /// The loop, in the driver's `iothub{client_id}` span; it ends when
    /// the session has stopped. `publish` gets the status before every
    /// wait and at the end (it may be unchanged).
    pub fn run<P>(self, publish: P) -> impl Future<Output = ()> + Send + 'static
    where
        P: FnMut(Status) + Send + 'static,
    {
        let span = self.span.clone();
        self.run_in(publish).instrument(span)
    }

    async fn run_in<P: FnMut(Status) + Send>(mut self, mut publish: P) {
        loop {
            match self.core.poll() {
                Step::Write(data) => self.write(data).await,
                Step::Open => self.open(),
                Step::Close => self.close().await,
                Step::Wait(deadline) => {
                    publish(self.core.status());
                    self.wait(deadline).await;
                }
                // Step::Stopped
                _ => break,
            }
        }
        self.inbox.refuse_late();
        self.close().await;
        publish(self.core.status());
        self.core.finish();
    }

    fn now(&self) -> iothub_proto::time::Instant {
        self.clock.instant(std::time::Instant::now())
    }

    /// [`Step::Wait`]: waits, hands what woke the driver to the core,
    /// then takes what else is ready.
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
        let wake = self.next_wake().await;
        let now = self.now();
        match wake {
            Wake::Read(Ok(n)) => self.core.handle_input(now, &self.buf[..n]),
            Wake::Read(Err(f)) => self.transport_failed(&f),
            Wake::Opened(r) => {
                self.opening = None;
                self.conn = self.core.opened(now, r);
            }
            Wake::Command(c) => self.core.received_command(now, c.map(|c| *c)),
            Wake::Telemetry(t) => self.core.received_telemetry(now, t),
            Wake::Timer => {
                self.timer = None;
                self.core.timeout(now);
            }
        }
        let now = self.now();
        self.inbox.take_ready(&mut self.core, now);
    }

    /// [`Step::Close`], and the end: closes the transport if open.
    async fn close(&mut self) {
        self.opening = None;
        if let Some(conn) = self.conn.take() {
            debug!("closing the transport");
            conn.close::<R>().await;
        }
    }

    /// Waits for the first ready of, in this order: inbound bytes, the
    /// opening transport, a command, telemetry (only while the session
    /// has room: backpressure), the timer.
    async fn next_wake(&mut self) -> Wake {
        let commands = self.core.takes_commands();
        let room = self.core.accepts_telemetry();
        let Driver {
            conn,
            opening,
            inbox,
            buf,
            timer,
            ..
        } = self;
        let command = async {
            match commands {
                true => Wake::Command(inbox.commands.recv().await.ok()),
                false => pending().await,
            }
        };
        let telemetry = async {
            match room {
                true => Wake::Telemetry(inbox.telemetry.recv().await.ok()),
                false => pending().await,
            }
        };
        let timer = async {
            match timer {
                Some((_, sleep)) => {
                    sleep.as_mut().await;
                    Wake::Timer
                }
                None => pending().await,
            }
        };
        transport(conn.as_mut(), opening.as_mut(), buf)
            .or(command)
            .or(telemetry)
            .or(timer)
            .await
    }

    fn transport_failed(&mut self, f: &Failure) {
        self.conn = None;
        let now = self.now();
        self.core.transport_closed(now, f);
    }

    async fn write(&mut self, data: bytes::Bytes) {
        let Some(conn) = self.conn.as_mut() else {
            return; // the transport just failed; the session knows
        };
        if let Err(f) = conn.write::<R>(data, self.endpoint.write_timeout).await {
            self.transport_failed(&f);
        }
    }

    fn open(&mut self) {
        self.conn = None;
        self.opening = Some(open::<R>(&self.endpoint, self.core.attempts()));
    }
}

/// Starts opening a transport to `ep`, in a `connect` span: the hub's and
/// DPS's alike.
pub(super) fn open<R: Runtime>(ep: &Arc<Endpoint>, attempt: u64) -> Opening {
    let ep = ep.clone();
    let span = ep.open_span(attempt);
    Box::pin(async move { transport::open::<R>(&ep).await }.instrument(span))
}

/// The first of: bytes read on `conn` into `buf`, the transport being
/// opened; never without either.
pub(super) async fn transport(
    conn: Option<&mut Conn>,
    opening: Option<&mut Opening>,
    buf: &mut Vec<u8>,
) -> Wake {
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
    read.or(opened).await
}
