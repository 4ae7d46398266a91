//! The driver around the hub engine: one [`Hub`] behind a mutex, the
//! clocks, the per-connection output channels, the method-call waiters,
//! the telemetry store and the write-through to storage.
//!
//! Every change to the hub goes through [`Core::step`], which afterwards
//! drains the engine's outputs in one place: bytes and closes for the
//! connections [`Hub::poll_ready`] names, the change journal to storage,
//! telemetry to the store, method results to their waiters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iothub_proto::hub::{Change, ConnId, Hub, MethodOutcome};
use tokio::sync::{Notify, mpsc, oneshot, watch};

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

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) hub: Hub,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Out>>,
    methods: HashMap<String, oneshot::Sender<MethodOutcome>>,
    pub(crate) telemetry: VecDeque<ReceivedMessage>,
    /// How many telemetry messages were ever received (for waiters).
    pub(crate) telemetry_total: u64,
    store: Option<Store>,
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
    pub(crate) fn new(hub: Hub, store: Option<Store>) -> Arc<Core> {
        Arc::new(Core {
            state: Mutex::new(State {
                hub,
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
        let new_telemetry = st.flush();
        let total = st.telemetry_total;
        drop(st);
        if new_telemetry {
            self.telemetry_seen.send_replace(total);
        }
        r
    }

    /// A new transport connection: its id and the channel of what to
    /// write to it.
    pub(crate) fn open(
        &self,
        thumbprint: Option<String>,
    ) -> (ConnId, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = self.step(|st, _, _| {
            let conn = st.hub.accept_with_thumbprint(thumbprint);
            st.conns.insert(conn, tx);
            conn
        });
        (conn, rx)
    }

    /// Bytes from the client.
    pub(crate) fn input(&self, conn: ConnId, data: &[u8]) {
        self.step(|st, now, unix| st.hub.handle_input(conn, now, unix, data));
    }

    /// The transport is gone (or the task ended): the hub learns it (will
    /// published when due) and forgets the connection.
    pub(crate) fn closed(&self, conn: ConnId) {
        self.step(|st, _, _| {
            st.hub.client_closed(conn);
            st.conns.remove(&conn);
        });
        self.lock().hub.remove_connection(conn);
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
    /// deadline, and at least every 200 ms (so a deadline set by input,
    /// such as a token expiry at CONNECT, is never late by more).
    pub(crate) async fn run_timer(self: Arc<Core>, mut stop: watch::Receiver<bool>) {
        const TICK: Duration = Duration::from_millis(200);
        loop {
            let next = self.lock().hub.next_timeout();
            let now = self.now_ms();
            let wait = next.map_or(TICK, |t| {
                Duration::from_millis(t.saturating_sub(now)).min(TICK)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.timer.notified() => {}
                _ = stop.changed() => return,
            }
            self.step(|st, now, unix| st.hub.handle_timeout(now, unix));
        }
    }
}

impl State {
    /// Drains the engine's outputs; whether telemetry arrived.
    fn flush(&mut self) -> bool {
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
        any
    }
}
