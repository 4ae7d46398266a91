//! The driver future: owns the session (inside `iothub-net`'s
//! [`DriverCore`], which fixes the order of the steps and routes events to
//! replies and streams) and the transport. Only the waiting is
//! `async-io`'s: one race of read, open, command, telemetry and timer.

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_io::Timer;
use bytes::Bytes;
use futures_lite::FutureExt as _;
use iothub_net::driver::{Command, DriverCore, Step, Telemetry};
use iothub_net::handle::Inbox;
use iothub_net::transport::{Endpoint, Failure};
use iothub_net::watch::StatusWatch;
use iothub_net::{ClientOptions, Clock, Error};
use tracing::{Instrument as _, debug};

use crate::transport::{self, Conn};

/// Bytes read per call at most (stream transports).
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// A transport being opened.
pub(crate) type Opening = Pin<Box<dyn Future<Output = Result<Conn, Failure>> + Send>>;

/// The driver of one client: a future to spawn on any executor (smol,
/// async-std, …). It ends when the client has stopped.
#[must_use = "the client does nothing until its driver is spawned"]
pub struct Driver {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driver")
    }
}

impl Future for Driver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.future.as_mut().poll(cx)
    }
}

struct State {
    core: DriverCore,
    clock: Clock,
    endpoint: Arc<Endpoint>,
    conn: Option<Conn>,
    opening: Option<Opening>,
    inbox: Inbox,
    status: Arc<StatusWatch>,
    chunk: Vec<u8>,
}

/// What ended a wait.
pub(crate) enum Wake {
    Read(Result<Bytes, Failure>),
    Opened(Result<Conn, Failure>),
    Command(Option<Box<Command>>),
    Telemetry(Option<Telemetry>),
    Timer,
}

impl Driver {
    pub(crate) fn new(
        options: ClientOptions,
        inbox: Inbox,
    ) -> Result<(Driver, Arc<StatusWatch>), Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        let status = Arc::new(StatusWatch::new(core.status()));
        let state = State {
            core,
            clock: Clock::new(),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            inbox,
            status: status.clone(),
            chunk: vec![0; READ_CHUNK],
        };
        let future = Box::pin(state.run().instrument(span));
        Ok((Driver { future }, status))
    }
}

impl State {
    fn now(&self) -> iothub_proto::time::Instant {
        self.clock.instant(std::time::Instant::now())
    }

    async fn run(mut self) {
        loop {
            match self.core.poll() {
                Step::Write(data) => self.write(data).await,
                Step::Open => self.open(),
                Step::Close => self.close().await,
                Step::Wait(deadline) => self.wait(deadline).await,
                // Step::Stopped
                _ => break,
            }
        }
        self.inbox.refuse_late();
        self.close().await;
        self.status.set(self.core.status());
        self.core.finish();
    }

    /// [`Step::Wait`]: publishes the status, waits, hands what woke the
    /// driver to the core, then takes what else is ready.
    async fn wait(&mut self, deadline: Option<iothub_proto::time::Instant>) {
        self.status.set(self.core.status());
        let deadline = deadline.map(|at| self.clock.deadline(at));
        let wake = self.next_wake(deadline).await;
        let now = self.now();
        match wake {
            Wake::Read(Ok(data)) => self.core.handle_input(now, &data),
            Wake::Read(Err(f)) => self.transport_failed(&f),
            Wake::Opened(r) => {
                self.opening = None;
                self.conn = self.core.opened(now, r);
            }
            Wake::Command(c) => self.core.received_command(now, c.map(|c| *c)),
            Wake::Telemetry(t) => self.core.received_telemetry(now, t),
            Wake::Timer => self.core.timeout(now),
        }
        let now = self.now();
        self.inbox.take_ready(&mut self.core, now);
    }

    /// [`Step::Close`], and the end: closes the transport if open.
    async fn close(&mut self) {
        self.opening = None;
        if let Some(conn) = self.conn.take() {
            debug!("closing the transport");
            conn.close().await;
        }
    }

    /// Waits for the first ready of, in this order: inbound bytes, the
    /// opening transport, a command, telemetry (only while the session
    /// has room: backpressure), the timer.
    async fn next_wake(&mut self, deadline: Option<std::time::Instant>) -> Wake {
        let commands = self.core.takes_commands();
        let room = self.core.accepts_telemetry();
        let State {
            conn,
            opening,
            inbox,
            chunk,
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
        transport(conn.as_mut(), opening.as_mut(), chunk)
            .or(command)
            .or(telemetry)
            .or(timer(deadline))
            .await
    }

    fn transport_failed(&mut self, f: &Failure) {
        self.conn = None;
        let now = self.now();
        self.core.transport_closed(now, f);
    }

    async fn write(&mut self, data: Bytes) {
        let Some(conn) = self.conn.as_mut() else {
            return; // the transport just failed; the session knows
        };
        if let Err(f) = conn.write(data, self.endpoint.write_timeout).await {
            self.transport_failed(&f);
        }
    }

    fn open(&mut self) {
        self.conn = None;
        self.opening = Some(open(&self.endpoint, self.core.attempts()));
    }
}

/// Starts opening a transport to `ep`, in a `connect` span: the hub's and
/// DPS's alike.
pub(crate) fn open(ep: &Arc<Endpoint>, attempt: u64) -> Opening {
    let ep = ep.clone();
    let span = ep.open_span(attempt);
    Box::pin(async move { transport::open(&ep).await }.instrument(span))
}

/// The first of: bytes read on `conn`, the transport being opened; never
/// without either.
pub(crate) async fn transport(
    conn: Option<&mut Conn>,
    opening: Option<&mut Opening>,
    chunk: &mut [u8],
) -> Wake {
    let read = async {
        match conn {
            Some(c) => Wake::Read(c.read(chunk).await),
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

/// [`Wake::Timer`] at `deadline`; never without one.
pub(crate) async fn timer(deadline: Option<std::time::Instant>) -> Wake {
    match deadline {
        Some(at) => {
            Timer::at(at).await;
            Wake::Timer
        }
        None => pending().await,
    }
}
