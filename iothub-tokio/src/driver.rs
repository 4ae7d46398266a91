//! The driver task: owns the session and the transport, and runs one loop
//! in a fixed order. No protocol decision is made here.
//!
//! ```text
//! loop {
//!     wait for one of: bytes read | transport opened | command | timer
//!     1. inbound   read bytes        → session.handle_input
//!     2. commands  every ready one   → session.send_telemetry / get_twin / …
//!     3. transmit  poll_transmit     → one write per 64 KiB batch
//!        transport poll_transport    → open (a task-local future) / close
//!     4. events    poll_event        → iothub_net::Router: oneshots, streams, tracing; status
//!        (repeat 3–4 while they produce: taking a C2D event queues its PUBACK)
//!     5. timer     poll_timeout      → the one sleep of the loop
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iothub_net::{Clock, Error, Router, Subscriber};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{
    AckToken, Config, ConfigError, ConnectionState, Message, MethodId, Session, TransportCommand,
    Twin,
};
use iothub_proto::time::Instant;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::transport::{self, Conn, Endpoint, Failure};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;
/// Boxed so the channel's slots stay small: an idle client's channel
/// blocks hold pointers, not messages.
pub(crate) type Telemetry = Box<(Message, Reply<()>)>;

/// What a [`Client`](crate::Client) asks of the driver.
pub(crate) enum Command {
    GetTwin(Reply<Twin>),
    UpdateReported(Bytes, Reply<u64>),
    Respond(MethodId, u16, Bytes, Reply<()>),
    Subscribe(Subscriber, Reply<()>),
    Ack(AckToken, Reply<()>),
    Shutdown(Duration, oneshot::Sender<()>),
    WatchReprovision(ReprovisionPolicy, Reply<ReprovisionReason>),
    Token(iothub_net::edge::TokenCommand),
}

/// The router's completion for a oneshot: whether anyone still waits.
fn done<T: Send + 'static>(reply: Reply<T>) -> iothub_net::Done<T> {
    Box::new(move |r| reply.send(r).is_ok())
}

pub(crate) type Opening = Pin<Box<dyn Future<Output = Result<Conn, Failure>> + Send>>;

/// How long the driver drains when every handle was dropped.
const DROP_DRAIN: Duration = Duration::from_secs(5);
/// Bytes gathered into one write at most.
const BATCH: usize = 64 * 1024;
/// Commands taken per wake-up at most (then the loop transmits).
const COMMANDS_PER_TURN: usize = 1024;

pub(crate) struct Driver {
    session: Session,
    clock: Clock,
    endpoint: Arc<Endpoint>,
    conn: Option<Conn>,
    opening: Option<Opening>,
    attempts: u64,
    ctl: mpsc::UnboundedReceiver<Box<Command>>,
    ctl_open: bool,
    tel: mpsc::Receiver<Telemetry>,
    tel_open: bool,
    router: Router,
    status: watch::Sender<iothub_net::Status>,
    shutdown: Vec<oneshot::Sender<()>>,
    rbuf: Vec<u8>,
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        endpoint: Endpoint,
        ctl: mpsc::UnboundedReceiver<Box<Command>>,
        tel: mpsc::Receiver<Telemetry>,
    ) -> Result<(Driver, watch::Receiver<iothub_net::Status>), ConfigError> {
        let session = Session::new(config)?;
        let router = Router::new();
        let (status, status_rx) = watch::channel(router.status(&session));
        let driver = Driver {
            session,
            clock: Clock::starting_at(tokio::time::Instant::now().into_std()),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            attempts: 0,
            ctl,
            ctl_open: true,
            tel,
            tel_open: true,
            router,
            status,
            shutdown: Vec::new(),
            rbuf: Vec::new(),
        };
        Ok((driver, status_rx))
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
            self.transmit_and_dispatch().await;
            if self.session.state() == ConnectionState::Stopped {
                break;
            }
            // 5. timer. Moved only when the session's next wake-up is
            // earlier: waking early is harmless (handle_timeout fires only
            // due timers, then the timer is set again), and the keep-alive
            // deadline moves later with every write, so resetting the
            // timer wheel on every turn would cost more than an early wake.
            match self.session.poll_timeout() {
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
            let room = self.tel_open && !self.session.telemetry_queue_full();
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
                    self.session.handle_timeout(now, Clock::unix_secs());
                }
            }
            self.take_ready_commands();
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        self.publish_status();
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        info!("client stopped");
    }

    fn on_read(&mut self, r: Result<(), Failure>) {
        match r {
            Ok(()) => {
                let now = self.now();
                self.session.handle_input(now, &self.rbuf);
                // Released, not kept: an idle client holds no read buffer.
                self.rbuf = Vec::new();
            }
            Err(f) => self.transport_failed(f),
        }
    }

    fn transport_failed(&mut self, f: Failure) {
        warn!(error = %f, "transport closed");
        self.conn = None;
        let now = self.now();
        self.session.handle_transport_closed(now, f.kind);
    }

    fn on_opened(&mut self, r: Result<Conn, Failure>) {
        self.opening = None;
        let now = self.now();
        match r {
            Ok(conn) => {
                debug!("transport open");
                self.conn = Some(conn);
                self.session
                    .handle_transport_connected(now, Clock::unix_secs());
            }
            Err(f) => {
                warn!(error = %f, "could not open the transport");
                self.session.handle_transport_closed(now, f.kind);
            }
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
        while self.tel_open && !self.session.telemetry_queue_full() {
            match self.tel.try_recv() {
                Ok(t) => self.on_telemetry(Some(t)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.tel_open = false,
            }
        }
    }

    fn on_telemetry(&mut self, t: Option<Telemetry>) {
        let Some(t) = t else {
            self.tel_open = false;
            return;
        };
        let (message, reply) = *t;
        let now = self.now();
        self.router
            .send_telemetry(&mut self.session, now, message, done(reply));
    }

    fn on_control(&mut self, c: Option<Box<Command>>) {
        let now = self.now();
        let Some(c) = c else {
            // Every handle is gone: drain briefly and stop.
            self.ctl_open = false;
            info!("every client handle dropped: shutting down");
            self.session.disconnect(now, DROP_DRAIN);
            return;
        };
        match *c {
            Command::GetTwin(reply) => self.router.get_twin(&mut self.session, now, done(reply)),
            Command::UpdateReported(json, reply) => {
                let (s, r) = (&mut self.session, &mut self.router);
                r.update_reported(s, now, json, done(reply));
            }
            Command::Respond(id, status, payload, reply) => {
                let r = self.session.respond_to_method(now, id, status, payload);
                let _ = reply.send(r.map_err(Error::Command));
            }
            Command::Subscribe(subscriber, reply) => {
                let _ = reply.send(self.router.subscribe(&mut self.session, now, subscriber));
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

    /// Steps 3 and 4: write what the session has, carry out its transport
    /// commands, hand its events out; again while any of them produced.
    async fn transmit_and_dispatch(&mut self) {
        loop {
            let mut moved = self.transmit().await;
            while let Some(cmd) = self.session.poll_transport() {
                moved = true;
                match cmd {
                    TransportCommand::Open => self.open(),
                    TransportCommand::Close => {
                        self.opening = None;
                        if let Some(conn) = self.conn.take() {
                            debug!("closing the transport");
                            conn.close().await;
                        }
                    }
                }
            }
            while let Some(event) = self.session.poll_event() {
                moved = true;
                self.router.dispatch(&self.session, event);
            }
            if !moved {
                break;
            }
        }
        self.publish_status();
    }

    /// Gathers pending bytes into as few writes as possible (one per
    /// [`BATCH`] bytes).
    async fn transmit(&mut self) -> bool {
        let mut moved = false;
        let mut batch = Vec::new();
        while let Some(bytes) = self.session.poll_transmit() {
            moved = true;
            batch.extend_from_slice(&bytes);
            if batch.len() >= BATCH {
                self.write(std::mem::take(&mut batch).into()).await;
            }
        }
        if !batch.is_empty() {
            self.write(batch.into()).await;
        }
        moved
    }

    async fn write(&mut self, data: Bytes) {
        let Some(conn) = self.conn.as_mut() else {
            return; // the transport just failed; the session knows
        };
        if let Err(f) = conn.write(data, self.endpoint.write_timeout).await {
            self.transport_failed(f);
        }
    }

    fn open(&mut self) {
        self.attempts += 1;
        if let Some(old) = self.conn.take() {
            drop(old);
        }
        let ep = self.endpoint.clone();
        let span = info_span!(
            "connect",
            attempt = self.attempts,
            host = %ep.host,
            port = ep.port,
            transport = ?ep.transport,
        );
        span.in_scope(|| info!("opening transport"));
        self.opening = Some(Box::pin(transport::open(ep).instrument(span)));
    }

    fn publish_status(&self) {
        let status = self.router.status(&self.session);
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
