//! The driver future: owns the session (inside `iothub-net`'s
//! [`DriverCore`], which fixes the order of the steps and routes events to
//! replies and streams) and the transport. Only the waiting is
//! `async-io`'s: one race of read, open, command, telemetry and timer.

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_channel::{Receiver, TryRecvError};
use async_io::Timer;
use bytes::Bytes;
use futures_lite::FutureExt as _;
use iothub_net::driver::{Command, DriverCore, Step, Telemetry};
use iothub_net::transport::{Endpoint, Failure};
use iothub_net::watch::StatusWatch;
use iothub_net::{ClientOptions, Clock, Error};
use tracing::{Instrument as _, debug, info, info_span};

use crate::transport::{self, Conn};

/// Bytes read per call at most (stream transports).
pub(crate) const READ_CHUNK: usize = 8 * 1024;
/// Commands taken per wake-up at most (then the loop transmits).
const COMMANDS_PER_TURN: usize = 1024;

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
    ctl: Receiver<Box<Command>>,
    ctl_open: bool,
    tel: Receiver<Telemetry>,
    tel_open: bool,
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
        ctl: Receiver<Box<Command>>,
        tel: Receiver<Telemetry>,
    ) -> Result<(Driver, Arc<StatusWatch>), Error> {
        let (core, endpoint, span) = DriverCore::start(options)?;
        let status = Arc::new(StatusWatch::new(core.status()));
        let state = State {
            core,
            clock: Clock::new(),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            ctl,
            ctl_open: true,
            tel,
            tel_open: true,
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
                Step::Wait(deadline) => deadline.map(|at| self.clock.deadline(at)),
                // Step::Stopped
                _ => break,
            };
            self.status.set(self.core.status());
            // Backpressure: telemetry stays in its channel while the
            // session's queue is full.
            let room = self.tel_open && self.core.accepts_telemetry();
            let wake = self.wait(deadline, room).await;
            let now = self.now();
            match wake {
                Wake::Read(Ok(data)) => self.core.handle_input(now, &data),
                Wake::Read(Err(f)) => self.transport_failed(&f),
                Wake::Opened(r) => {
                    self.opening = None;
                    match r {
                        Ok(conn) => {
                            self.conn = Some(conn);
                            self.core.transport_opened(now);
                        }
                        Err(f) => self.core.transport_closed(now, &f),
                    }
                }
                Wake::Command(c) => self.on_command(c),
                Wake::Telemetry(Some(t)) => self.core.telemetry(now, t),
                Wake::Telemetry(None) => self.tel_open = false,
                Wake::Timer => self.core.timeout(now),
            }
            self.take_ready_commands();
        }
        self.refuse_late_commands();
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        self.status.set(self.core.status());
        self.core.finish();
    }

    /// Waits for the first ready of, in this order: inbound bytes, the
    /// opening transport, a command, telemetry, the timer.
    async fn wait(&mut self, deadline: Option<std::time::Instant>, room: bool) -> Wake {
        let State {
            conn,
            opening,
            ctl,
            ctl_open,
            tel,
            chunk,
            ..
        } = self;
        let command = async {
            match ctl_open {
                true => Wake::Command(ctl.recv().await.ok()),
                false => pending().await,
            }
        };
        let telemetry = async {
            match room {
                true => Wake::Telemetry(tel.recv().await.ok()),
                false => pending().await,
            }
        };
        transport(conn.as_mut(), opening.as_mut(), chunk)
            .or(command)
            .or(telemetry)
            .or(timer(deadline))
            .await
    }

    fn on_command(&mut self, c: Option<Box<Command>>) {
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

    fn take_ready_commands(&mut self) {
        for _ in 0..COMMANDS_PER_TURN {
            match self.ctl.try_recv() {
                Ok(c) => self.on_command(Some(c)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    if self.ctl_open {
                        self.on_command(None);
                    }
                    break;
                }
            }
        }
        while self.tel_open && self.core.accepts_telemetry() {
            match self.tel.try_recv() {
                Ok(t) => {
                    let now = self.now();
                    self.core.telemetry(now, t);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => self.tel_open = false,
            }
        }
    }

    /// Once stopped, no command or telemetry will be taken again: closes
    /// both channels, so later sends fail at once ([`Error::Closed`]), and
    /// drops what is already queued, so its replies end (also
    /// [`Error::Closed`]). Dropping the receivers is not enough: an
    /// `async_channel` keeps its queued items while any sender (the
    /// client's handles) lives, so a command sent after the stop but
    /// before the driver's end would wait for an answer forever.
    fn refuse_late_commands(&mut self) {
        self.ctl.close();
        self.tel.close();
        while let Ok(c) = self.ctl.try_recv() {
            debug!("command after the stop: refused");
            drop(c);
        }
        while let Ok(t) = self.tel.try_recv() {
            debug!("telemetry after the stop: refused");
            drop(t);
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
        self.opening = Some(open(&self.endpoint, self.core.attempts()));
    }
}

/// Starts opening a transport to `ep`, in a `connect` span: the hub's and
/// DPS's alike.
pub(crate) fn open(ep: &Arc<Endpoint>, attempt: u64) -> Opening {
    let ep = ep.clone();
    let span = info_span!(
        "connect",
        attempt,
        host = %ep.host,
        port = ep.port,
        transport = ?ep.transport,
    );
    span.in_scope(|| info!("opening transport"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::reply;

    const CS: &str = "HostName=hub.azure-devices.net;DeviceId=dev1;\
                      SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    /// The end of `every_api_over_tls`: a command sent after the stop but
    /// before the driver's end (the client's handles still alive) is
    /// answered with `Closed`, and later sends fail at once.
    #[test]
    fn a_command_queued_at_the_stop_is_answered_closed() {
        let (ctl_tx, ctl) = async_channel::bounded(8);
        let (tel_tx, tel) = async_channel::bounded(8);
        let (core, endpoint, _span) =
            DriverCore::start(ClientOptions::from_connection_string(CS).unwrap()).unwrap();
        let status = Arc::new(StatusWatch::new(core.status()));
        let mut state = State {
            core,
            clock: Clock::new(),
            endpoint: Arc::new(endpoint),
            conn: None,
            opening: None,
            ctl,
            ctl_open: true,
            tel,
            tel_open: true,
            status,
            chunk: Vec::new(),
        };
        let (tx, rx) = reply::<iothub_proto::session::Twin>();
        ctl_tx.try_send(Box::new(Command::GetTwin(tx))).unwrap();
        state.refuse_late_commands();
        assert!(matches!(
            futures_lite::future::block_on(crate::client::answer(rx)),
            Err(Error::Closed)
        ));
        let (tx, _rx) = reply::<iothub_proto::session::Twin>();
        assert!(ctl_tx.try_send(Box::new(Command::GetTwin(tx))).is_err());
        assert!(tel_tx.is_closed());
    }
}
