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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iothub_hub::{Change, ConnId, Hub, MethodOutcome};
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
    conns: HashMap<ConnId, mpsc::UnboundedSender<Out>>,
    methods: HashMap<String, oneshot::Sender<MethodOutcome>>,
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
    /// Wakes the timer task early (a new method deadline, a new delay).
    pub(crate) timer: Notify,
    /// Counts telemetry messages, for [`crate::EmulatorHandle::wait_for_telemetry`].
    pub(crate) telemetry_seen: watch::Sender<u64>,
}

impl Core {
    pub(crate) fn new(hub: Hub, dps: DpsState, store: Option<Store>) -> Arc<Core> {
        Arc::new(Core {
            state: Mutex::new(State {
                hub,
                dps,
                conns: HashMap::new(),
                methods: HashMap::new(),
                telemetry: VecDeque::new(),
                telemetry_total: 0,
                store,
            }),
            start: Instant::now(),
            timer: Notify::new(),
            telemetry_seen: watch::Sender::new(0),
        })
    }

    /// Monotonic ms since the emulator started.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
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

    /// Runs `f` on the state with the current clocks, then drains the
    /// engine's outputs.
    pub(crate) fn step<R>(&self, f: impl FnOnce(&mut State, u64, u64) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st, self.now_ms(), Self::unix_secs());
        let (new_telemetry, held) = st.flush();
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

    /// A new transport connection to `service`: its id and the channel
    /// of what to write to it. `chain` is the client's certificate chain (empty without one): the
    /// hub checks its thumbprint, DPS also its chain for X.509 CA groups.
    pub(crate) fn open(
        &self,
        service: Service,
        chain: Vec<CertificateDer<'static>>,
    ) -> (Link, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let thumbprint = chain.first().map(|c| crate::tls::thumbprint(c));
        let id = self.step(|st, now, _| match service {
            Service::Hub => {
                let conn = st.hub.accept_at(now, thumbprint);
                st.conns.insert(conn, tx);
                conn
            }
            Service::Dps => st.dps.open(now, thumbprint, &chain, tx),
        });
        (Link { service, id }, rx)
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
        st.methods.insert(request_id.to_owned(), tx);
        rx
    }

    /// Closes every connection (shutdown).
    pub(crate) fn close_all(&self) {
        let st = self.lock();
        for tx in st.conns.values() {
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

    /// The timer task: feeds [`Hub::handle_timeout`] at the engine's next
    /// deadline, and at least every 200 ms (so a deadline set by input or
    /// at accept, such as a token expiry at CONNECT or the CONNECT
    /// deadline of a new connection, is never late by more).
    pub(crate) async fn run_timer(self: Arc<Core>, mut stop: watch::Receiver<bool>) {
        const TICK: Duration = Duration::from_millis(200);
        loop {
            let next = {
                let st = self.lock();
                match (st.hub.next_timeout(), st.dps.svc.next_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let now = self.now_ms();
            let wait = next.map_or(TICK, |t| {
                Duration::from_millis(t.saturating_sub(now)).min(TICK)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.timer.notified() => {}
                _ = stop.changed() => return,
            }
            self.step(|st, now, unix| {
                st.hub.handle_timeout(now, unix);
                st.dps.svc.handle_timeout(now, unix);
            });
        }
    }
}

impl State {
    /// Drains the engine's outputs; whether telemetry arrived, and the
    /// DPS output to send once storage has committed.
    fn flush(&mut self) -> (bool, Vec<Held>) {
        // DPS first: an assignment adds a hub device, journaled below.
        let held = self.dps.flush(&mut self.hub, self.store.as_ref());
        while let Some(conn) = self.hub.poll_ready() {
            let data = self.hub.poll_transmit(conn);
            let closed = self.hub.is_closed(conn);
            if let Some(tx) = self.conns.get(&conn) {
                if let Some(data) = data {
                    let _ = tx.send(Out::Data(data));
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
