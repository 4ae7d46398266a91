//! The driver around the hub engine: one [`Hub`] behind a mutex, the
//! clocks, the per-connection output channels, the method-call waiters,
//! the telemetry store and the write-through to storage.
//!
//! Every change to the hub goes through [`Core::step`], which afterwards
//! drains the engine's outputs in one place: bytes and closes for the
//! connections [`Hub::poll_ready`] names, the change journal to storage,
//! telemetry to the store, method results to their waiters. The DPS
//! engine ([`DpsState`]) lives behind the same lock, so that an
//! assignment creates its hub device in the step that answers the poll;
//! with storage, that answer is sent only once the device and the
//! registration record are committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iothub_hub::{Change, ConnId, Hub, MethodOutcome};
use iothub_proto::time::Instant as EngineInstant;
use rustls_pki_types::CertificateDer;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::dps::{DpsState, Held};
use crate::store::Store;
use crate::telemetry::ReceivedMessage;

/// The most telemetry messages kept in memory (oldest dropped first).
pub(crate) const TELEMETRY_KEPT: usize = 100_000;

/// What a connection task is told to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Write these bytes.
    Data(Bytes),
    /// The hub closed the connection: close the transport (after the
    /// bytes sent before).
    Close,
}

/// The bytes waiting to be written to one connection, and whether it went
/// over its limit (its task then closes it without writing more).
#[derive(Debug, Default)]
pub(crate) struct Budget {
    queued: AtomicUsize,
    over: AtomicBool,
}

impl Budget {
    /// Counts `n` more bytes; false once over `limit` (and from then on).
    fn charge(&self, n: usize, limit: usize) -> bool {
        let queued = self.queued.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        if queued > limit {
            self.over.store(true, Ordering::Release);
        }
        !self.over.load(Ordering::Acquire)
    }

    /// `n` bytes were written.
    pub(crate) fn written(&self, n: usize) {
        self.queued
            .fetch_sub(n.min(self.queued.load(Ordering::Acquire)), Ordering::AcqRel);
    }

    /// Whether the connection went over its limit.
    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }
}

/// The per-connection limits of the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) output_limit: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_pending: usize,
}

/// Connections open, and those without an accepted CONNECT yet, against
/// their limits.
#[derive(Debug)]
struct Admission {
    open: AtomicUsize,
    pending: AtomicUsize,
    max_open: usize,
    max_pending: usize,
}

/// One admitted connection's places in [`Admission`]; given back when
/// dropped (the pending one as soon as its CONNECT is accepted).
#[derive(Debug)]
pub(crate) struct Ticket {
    core: Arc<Core>,
    pending: bool,
}

impl Ticket {
    /// After input on `conn`: once its CONNECT was accepted, it no longer
    /// counts as pending.
    pub(crate) fn after_input(&mut self, conn: Link) {
        if self.pending && self.core.authenticated(conn) {
            self.pending = false;
            self.core.admission.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = &self.core.admission;
        a.open.fetch_sub(1, Ordering::AcqRel);
        if self.pending {
            a.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Which engine a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// The IoT hub.
    Hub,
    /// The Device Provisioning Service.
    Dps,
}

/// A connection of one of the engines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    service: Service,
    id: ConnId,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) hub: Hub,
    pub(crate) dps: DpsState,
    conns: HashMap<ConnId, (mpsc::UnboundedSender<Out>, Arc<Budget>)>,
    /// [`DEFAULT_OUTPUT_LIMIT`](crate::DEFAULT_OUTPUT_LIMIT) or the
    /// builder's.
    output_limit: usize,
    methods: HashMap<String, oneshot::Sender<MethodOutcome>>,
    /// Shutdown began: no new method call waits.
    methods_closed: bool,
    pub(crate) telemetry: VecDeque<ReceivedMessage>,
    /// How many telemetry messages were ever received (for waiters).
    pub(crate) telemetry_total: u64,
    pub(crate) store: Option<Store>,
}

/// The shared core of a running emulator.
#[derive(Debug)]
pub(crate) struct Core {
    state: Mutex<State>,
    start: Instant,
    /// Wakes the timer task when the engines' earliest deadline moved
    /// before the one it sleeps on.
    timer: Notify,
    /// The deadline (ms since start) the timer task sleeps on; `u64::MAX`
    /// when it sleeps until woken.
    armed: AtomicU64,
    /// Counts telemetry messages, for [`crate::EmulatorHandle::wait_for_telemetry`].
    pub(crate) telemetry_seen: watch::Sender<u64>,
    /// How long a write may block before the connection is closed.
    pub(crate) write_timeout: Option<Duration>,
    admission: Admission,
}

impl Core {
    pub(crate) fn new(hub: Hub, dps: DpsState, store: Option<Store>, limits: Limits) -> Arc<Core> {
        Arc::new(Core {
            write_timeout: limits.write_timeout,
            admission: Admission {
                open: AtomicUsize::new(0),
                pending: AtomicUsize::new(0),
                max_open: limits.max_connections,
                max_pending: limits.max_pending,
            },
            state: Mutex::new(State {
                hub,
                dps,
                conns: HashMap::new(),
                output_limit: limits.output_limit,
                methods: HashMap::new(),
                methods_closed: false,
                telemetry: VecDeque::new(),
                telemetry_total: 0,
                store,
            }),
            start: Instant::now(),
            timer: Notify::new(),
            armed: AtomicU64::new(u64::MAX),
            telemetry_seen: watch::Sender::new(0),
        })
    }

    /// A place for a new transport connection, or `None` (logged) when
    /// the emulator holds its most connections, or its most connections
    /// without an accepted CONNECT: the caller closes the socket at once.
    pub(crate) fn admit(self: &Arc<Core>) -> Option<Ticket> {
        let a = &self.admission;
        let open = a.open.fetch_add(1, Ordering::AcqRel);
        let pending = a.pending.fetch_add(1, Ordering::AcqRel);
        if open >= a.max_open || pending >= a.max_pending {
            a.open.fetch_sub(1, Ordering::AcqRel);
            a.pending.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(
                open,
                pending,
                "connection refused: at the limit of connections (or of those without CONNECT)"
            );
            return None;
        }
        Some(Ticket {
            core: self.clone(),
            pending: true,
        })
    }

    /// Whether `conn` has an accepted CONNECT (hub) or registration
    /// (DPS).
    fn authenticated(&self, conn: Link) -> bool {
        let st = self.lock();
        match conn.service {
            Service::Hub => st.hub.connection_identity(conn.id).is_some(),
            Service::Dps => st.dps.svc.connection_registration(conn.id).is_some(),
        }
    }

    /// Monotonic ms since the emulator started.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The engines' clock: [`now_ms`](Self::now_ms) as their `Instant`.
    pub(crate) fn now(&self) -> EngineInstant {
        EngineInstant::from_millis(self.now_ms())
    }

    fn unix_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The lock, even if a panic poisoned it (the hub itself never panics).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the state with the current clocks, drains the
    /// engines' outputs, and wakes the timer task if their earliest
    /// deadline is now before the one it sleeps on.
    pub(crate) fn step<R>(&self, f: impl FnOnce(&mut State, EngineInstant, u64) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st, self.now(), Self::unix_secs());
        let (new_telemetry, held) = st.flush();
        if st.next_deadline_ms() < self.armed.load(Ordering::Acquire) {
            self.timer.notify_one();
        }
        let total = st.telemetry_total;
        let flusher = if held.is_empty() {
            None
        } else {
            st.store.as_ref().map(Store::flusher)
        };
        drop(st);
        if new_telemetry {
            self.telemetry_seen.send_replace(total);
        }
        // DPS answers that announce an assignment leave once the device
        // and its registration are committed (without holding the lock).
        if let Some(f) = flusher {
            f.flush();
        }
        for h in held {
            h.send();
        }
        r
    }

    /// A new transport connection to `service`: its id, the channel of
    /// what to write to it and the budget of bytes waiting in it. `chain` is the client's certificate chain (empty without one): the
    /// hub checks its thumbprint, DPS also its chain for X.509 CA groups.
    pub(crate) fn open(
        &self,
        service: Service,
        chain: Vec<CertificateDer<'static>>,
    ) -> (Link, mpsc::UnboundedReceiver<Out>, Arc<Budget>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Budget::default());
        let thumbprint = chain.first().map(|c| crate::tls::thumbprint(c));
        let id = self.step(|st, now, _| match service {
            Service::Hub => {
                let conn = st.hub.accept(now, thumbprint);
                st.conns.insert(conn, (tx, budget.clone()));
                conn
            }
            // DPS answers are small and one per request.
            Service::Dps => st.dps.open(now, thumbprint, &chain, tx),
        });
        (Link { service, id }, rx, budget)
    }

    /// Bytes from the client.
    pub(crate) fn input(&self, conn: Link, data: &[u8]) {
        self.step(|st, now, unix| match conn.service {
            Service::Hub => st.hub.handle_input(conn.id, now, unix, data),
            Service::Dps => st.dps.svc.handle_input(conn.id, now, unix, data),
        });
    }

    /// The transport is gone (or the task ended): the engine learns it
    /// (the hub publishes a will when due) and forgets the connection.
    pub(crate) fn closed(&self, conn: Link) {
        match conn.service {
            Service::Hub => {
                self.step(|st, _, _| {
                    st.hub.client_closed(conn.id);
                    st.conns.remove(&conn.id);
                });
                self.lock().hub.remove_connection(conn.id);
            }
            Service::Dps => self.step(|st, _, _| st.dps.closed(conn.id)),
        }
    }

    /// Registers a waiter for a deadline-tracked method call.
    pub(crate) fn await_method(
        st: &mut State,
        request_id: &str,
    ) -> oneshot::Receiver<MethodOutcome> {
        let (tx, rx) = oneshot::channel();
        // After shutdown began, the sender is dropped at once: the caller
        // gets `Shutdown`, not a wait the stopped timer would never end.
        if !st.methods_closed {
            st.methods.insert(request_id.to_owned(), tx);
        }
        rx
    }

    /// Shutdown: every pending direct-method call ends now (its caller
    /// gets [`EmulatorError::Shutdown`](crate::EmulatorError::Shutdown),
    /// HTTP 503), and calls made from now on end the same way.
    pub(crate) fn end_pending_methods(&self) {
        let mut st = self.lock();
        st.methods_closed = true;
        st.methods.clear();
    }

    /// Closes every connection (shutdown).
    pub(crate) fn close_all(&self) {
        let st = self.lock();
        for (tx, _) in st.conns.values() {
            let _ = tx.send(Out::Close);
        }
        st.dps.close_all();
    }

    /// Commits pending writes and closes the database.
    pub(crate) fn close_store(&self) {
        let store = self.lock().store.take();
        if let Some(mut s) = store {
            s.close();
        }
    }

    /// Waits until pending writes are committed (without holding the
    /// lock meanwhile). Service operations call this before they return,
    /// so what the service was told is done survives a crash.
    pub(crate) fn flush_store(&self) {
        let flusher = self.lock().store.as_ref().map(Store::flusher);
        if let Some(f) = flusher {
            f.flush();
        }
    }

    /// The timer task: sleeps until the engines' earliest deadline
    /// ([`Hub::poll_timeout`], [`DpsService::poll_timeout`](iothub_hub::dps::DpsService::poll_timeout)),
    /// or until [`step`](Self::step) finds an earlier one (a deadline set
    /// by input, at accept, by a service call), then feeds
    /// `handle_timeout`. No polling tick: with nothing due it sleeps until
    /// woken.
    pub(crate) async fn run_timer(self: Arc<Core>, mut stop: watch::Receiver<bool>) {
        loop {
            let next = self.lock().next_deadline_ms();
            self.armed.store(next, Ordering::Release);
            let sleep = async {
                if next == u64::MAX {
                    std::future::pending::<()>().await;
                } else {
                    let wait = Duration::from_millis(next.saturating_sub(self.now_ms()));
                    tokio::time::sleep(wait).await;
                }
            };
            tokio::select! {
                () = sleep => {}
                () = self.timer.notified() => continue,
                _ = stop.changed() => return,
            }
            self.armed.store(u64::MAX, Ordering::Release);
            self.step(|st, now, unix| {
                st.hub.handle_timeout(now, unix);
                st.dps.svc.handle_timeout(now, unix);
            });
        }
    }
}

impl State {
    /// The earliest deadline of either engine, in ms since start
    /// (`u64::MAX`: none).
    fn next_deadline_ms(&self) -> u64 {
        let hub = self.hub.poll_timeout().map(EngineInstant::as_millis);
        let dps = self.dps.svc.poll_timeout().map(EngineInstant::as_millis);
        hub.into_iter().chain(dps).min().unwrap_or(u64::MAX)
    }

    /// Drains the engine's outputs; whether telemetry arrived, and the
    /// DPS output to send once storage has committed.
    fn flush(&mut self) -> (bool, Vec<Held>) {
        // DPS first: an assignment adds a hub device, journaled below.
        let held = self.dps.flush(&mut self.hub, self.store.as_ref());
        while let Some(conn) = self.hub.poll_ready() {
            let data = self.hub.poll_transmit(conn);
            let closed = self.hub.is_closed(conn);
            if let Some((tx, budget)) = self.conns.get(&conn) {
                if let Some(data) = data {
                    if budget.charge(data.len(), self.output_limit) {
                        let _ = tx.send(Out::Data(data));
                    } else {
                        // Its task closes it: nothing more is queued.
                        tracing::warn!(
                            conn = ?conn,
                            limit = self.output_limit,
                            "connection closed: more output waiting than the limit (the peer does not read)"
                        );
                        let _ = tx.send(Out::Close);
                    }
                }
                if closed {
                    let _ = tx.send(Out::Close);
                }
            }
        }
        while let Some(change) = self.hub.poll_change() {
            let Some(store) = &self.store else { continue };
            match change {
                Change::Updated(identity) => {
                    if let Some(state) = self.hub.identity_state(&identity) {
                        store.put(&state);
                    }
                }
                Change::Removed(identity) => store.delete(&identity),
                _ => {}
            }
        }
        while let Some(result) = self.hub.poll_method_result() {
            if let Some(tx) = self.methods.remove(result.request_id.as_str()) {
                let _ = tx.send(result.outcome);
            }
        }
        for f in self.hub.take_route_failures() {
            tracing::warn!(
                route = %f.route, from = %f.from, to = %f.to,
                "a routed message was not queued: {}", f.error
            );
        }
        let received = self.hub.take_telemetry();
        let any = !received.is_empty();
        let now = SystemTime::now();
        for t in received {
            self.telemetry_total += 1;
            if self.telemetry.len() >= TELEMETRY_KEPT {
                self.telemetry.pop_front();
            }
            self.telemetry.push_back(ReceivedMessage::new(t, now));
        }
        (any, held)
    }
}
