//! The driver task: owns the session (inside `iothub-net`'s
//! [`DriverCore`], which fixes the order of the steps and routes events to
//! replies and streams) and the transport. Only the waiting is tokio's.
//!
//! ```text
//! loop {
//!     core.poll() until Wait:   3. transmit (one write per 64 KiB batch), transport
//!                               (open: a task-local future; close), 4. events
//!     5. timer: arm the one sleep of the loop at the deadline
//!     wait for one of: 1. bytes read | transport opened | 2. a command | the timer
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iothub_net::driver::{Command, DriverCore, Step, Telemetry};
use iothub_net::transport::{Endpoint, Failure};
use iothub_net::{Clock, Status};
use iothub_proto::time::Instant;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument as _, debug, info, info_span};

use crate::transport::{self, Conn};

type Opening = Pin<Box<dyn Future<Output = Result<Conn, Failure>> + Send>>;

/// Commands taken per wake-up at most (then the loop transmits).
const COMMANDS_PER_TURN: usize = 1024;

pub(crate) struct Driver {
    core: DriverCore,
    clock: Clock,
    endpoint: Arc<Endpoint>,
    conn: Option<Conn>,
    opening: Option<Opening>,
    ctl: mpsc::UnboundedReceiver<Box<Command>>,
    ctl_open: bool,
    tel: mpsc::Receiver<Telemetry>,
    tel_open: bool,
    status: watch::Sender<Status>,
    rbuf: Vec<u8>,
}

impl Driver {
    pub(crate) fn new(
        core: DriverCore,
        endpoint: Endpoint,
        ctl: mpsc::UnboundedReceiver<Box<Command>>,
        tel: mpsc::Receiver<Telemetry>,
    ) -> (Driver, watch::Receiver<Status>) {
        let (status, status_rx) = watch::channel(core.status());
        let driver = Driver {
            core,
            clock: Clock::starting_at(tokio::time::Instant::now().into_std()),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            ctl,
            ctl_open: true,
            tel,
            tel_open: true,
            status,
            rbuf: Vec::new(),
        };
        (driver, status_rx)
    }

    fn now(&self) -> Instant {
        self.clock.instant(tokio::time::Instant::now().into_std())
    }

    /// The loop; ends when the session has stopped.
    pub(crate) async fn run(mut self) {
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        // The instant the sleep is set to, if it is armed.
        let mut armed: Option<tokio::time::Instant> = None;
        loop {
            let deadline = match self.core.poll() {
                Step::Write(data) => {
                    self.write(data).await;
                    continue;
                }
                Step::Open => {
                    self.open();
                    continue;
                }
                Step::Close => {
                    self.opening = None;
                    if let Some(conn) = self.conn.take() {
                        debug!("closing the transport");
                        conn.close().await;
                    }
                    continue;
                }
                Step::Wait(deadline) => deadline,
                // Step::Stopped
                _ => break,
            };
            self.publish_status();
            // 5. timer. Moved only when the session's next wake-up is
            // earlier: waking early is harmless (handle_timeout fires only
            // due timers, then the timer is set again), and the keep-alive
            // deadline moves later with every write, so resetting the
            // timer wheel on every turn would cost more than an early wake.
            match deadline {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(self.clock.deadline(at));
                    if armed.is_none_or(|current| at < current) {
                        sleep.as_mut().reset(at);
                        armed = Some(at);
                    }
                }
                None => armed = None,
            }
            // Backpressure: telemetry stays in its channel while the
            // session's queue is full.
            let room = self.tel_open && self.core.accepts_telemetry();
            tokio::select! {
                biased;
                // 1. inbound
                r = read(self.conn.as_mut(), &mut self.rbuf) => self.on_read(r),
                r = opened(self.opening.as_mut()) => self.on_opened(r),
                // 2. commands
                c = self.ctl.recv(), if self.ctl_open => self.on_control(c),
                t = self.tel.recv(), if room => self.on_telemetry(t),
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let now = self.now();
                    self.core.timeout(now);
                }
            }
            self.take_ready_commands();
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        self.publish_status();
        self.core.finish();
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

    fn on_opened(&mut self, r: Result<Conn, Failure>) {
        self.opening = None;
        let now = self.now();
        match r {
            Ok(conn) => {
                self.conn = Some(conn);
                self.core.transport_opened(now);
            }
            Err(f) => self.core.transport_closed(now, &f),
        }
    }

    fn take_ready_commands(&mut self) {
        for _ in 0..COMMANDS_PER_TURN {
            match self.ctl.try_recv() {
                Ok(c) => self.on_control(Some(c)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.ctl_open {
                        self.on_control(None);
                    }
                    break;
                }
            }
        }
        while self.tel_open && self.core.accepts_telemetry() {
            match self.tel.try_recv() {
                Ok(t) => self.on_telemetry(Some(t)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.tel_open = false,
            }
        }
    }

    fn on_telemetry(&mut self, t: Option<Telemetry>) {
        let now = self.now();
        match t {
            Some(t) => self.core.telemetry(now, t),
            None => self.tel_open = false,
        }
    }

    fn on_control(&mut self, c: Option<Box<Command>>) {
        let now = self.now();
        match c {
            Some(c) => self.core.command(now, *c),
            None => {
                // Every handle is gone: drain briefly and stop.
                self.ctl_open = false;
                self.core.handles_dropped(now);
            }
        }
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
        let ep = self.endpoint.clone();
        let span = info_span!(
            "connect",
            attempt = self.core.attempts(),
            host = %ep.host,
            port = ep.port,
            transport = ?ep.transport,
        );
        span.in_scope(|| info!("opening transport"));
        self.opening = Some(Box::pin(transport::open(ep).instrument(span)));
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

async fn read(conn: Option<&mut Conn>, buf: &mut Vec<u8>) -> Result<(), Failure> {
    match conn {
        Some(c) => c.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn opened(opening: Option<&mut Opening>) -> Result<Conn, Failure> {
    match opening {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
