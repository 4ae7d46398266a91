//! The driver task: owns the session (inside `iothub-net`'s
//! [`DriverCore`], which fixes the order of the steps and routes events to
//! replies and streams) and the transport. Only the waiting is tokio's:
//! one `select!` over read, open, command, telemetry and the timer.
//!
//! ```text
//! loop {
//!     match core.poll() {
//!         Write(bytes) → conn.write     Open → start opening (a task-local future)
//!         Close → conn.close            Stopped → finish
//!         Wait(deadline) → publish the status; select! {
//!             bytes read | transport opened | a command
//!             | telemetry (only while core.accepts_telemetry()) | the deadline
//!         }; then take every command and message already waiting
//!     }
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iothub_net::driver::{DriverCore, Step};
use iothub_net::handle::Inbox;
use iothub_net::transport::{Endpoint, Failure};
use iothub_net::{ClientOptions, Clock, Error, Status};
use iothub_proto::time::Instant;
use tokio::sync::watch;
use tracing::{Instrument as _, debug};

use crate::transport::{self, Conn};

pub(crate) type Opening = Pin<Box<dyn Future<Output = Result<Conn, Failure>> + Send>>;

pub(crate) struct Driver {
    core: DriverCore,
    clock: Clock,
    endpoint: Arc<Endpoint>,
    conn: Option<Conn>,
    opening: Option<Opening>,
    inbox: Inbox,
    status: watch::Sender<Status>,
    rbuf: Vec<u8>,
    /// The one timer, and the instant it is set to if it is armed.
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<tokio::time::Instant>,
}

impl Driver {
    /// The driver, the receiver of its status, and the span to run it in.
    pub(crate) fn new(
        options: ClientOptions,
        inbox: Inbox,
    ) -> Result<(Driver, watch::Receiver<Status>, tracing::Span), Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        let (status, status_rx) = watch::channel(core.status());
        let driver = Driver {
            core,
            clock: Clock::starting_at(tokio::time::Instant::now().into_std()),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            inbox,
            status,
            rbuf: Vec::new(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        };
        Ok((driver, status_rx, span))
    }

    fn now(&self) -> Instant {
        self.clock.instant(tokio::time::Instant::now().into_std())
    }

    /// The loop; ends when the session has stopped.
    pub(crate) async fn run(mut self) {
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
        self.publish_status();
        self.core.finish();
    }

    /// [`Step::Wait`]: publishes the status, waits for one of read, open,
    /// command, telemetry (only while the core accepts it: backpressure)
    /// and the timer, then takes what else is ready.
    async fn wait(&mut self, deadline: Option<Instant>) {
        self.publish_status();
        // The timer. Moved only when the session's next wake-up is
        // earlier: waking early is harmless (the core fires only due
        // timers, then the timer is set again), and the keep-alive
        // deadline moves later with every write, so resetting the timer
        // wheel on every turn would cost more than an early wake.
        match deadline {
            Some(at) => {
                let at = tokio::time::Instant::from_std(self.clock.deadline(at));
                if self.armed.is_none_or(|current| at < current) {
                    self.sleep.as_mut().reset(at);
                    self.armed = Some(at);
                }
            }
            None => self.armed = None,
        }
        let commands = self.core.takes_commands();
        let room = self.core.accepts_telemetry();
        tokio::select! {
            biased;
            r = read(self.conn.as_mut(), &mut self.rbuf) => self.on_read(r),
            r = opened(self.opening.as_mut()) => {
                self.opening = None;
                let now = self.now();
                self.conn = self.core.opened(now, r);
            }
            c = self.inbox.commands.recv(), if commands => {
                let now = self.now();
                self.core.received_command(now, c.ok().map(|c| *c));
            }
            t = self.inbox.telemetry.recv(), if room => {
                let now = self.now();
                self.core.received_telemetry(now, t.ok());
            }
            () = &mut self.sleep, if self.armed.is_some() => {
                self.armed = None;
                let now = self.now();
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
            conn.close().await;
        }
    }

    fn on_read(&mut self, r: Result<(), Failure>) {
        match r {
            Ok(()) => {
                let now = self.now();
                self.core.handle_input(now, &self.rbuf);
                // Released, not kept: an idle client holds no read buffer.
                self.rbuf = Vec::new();
            }
            Err(f) => self.transport_failed(&f),
        }
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
        let span = self.endpoint.open_span(self.core.attempts());
        let opening = transport::open(self.endpoint.clone()).instrument(span);
        self.opening = Some(Box::pin(opening));
    }

    fn publish_status(&self) {
        let status = self.core.status();
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            if changed {
                *s = status;
            }
            changed
        });
    }
}

/// Reads into `buf` from the transport, or waits forever without one.
pub(crate) async fn read(conn: Option<&mut Conn>, buf: &mut Vec<u8>) -> Result<(), Failure> {
    match conn {
        Some(c) => c.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The transport being opened, or forever without one.
pub(crate) async fn opened(opening: Option<&mut Opening>) -> Result<Conn, Failure> {
    match opening {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
