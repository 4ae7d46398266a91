//! [`StatusWatch`]: a client's connection [`Status`], watched the same way
//! in every adapter — [`get`](StatusWatch::get) the latest, wait for the
//! next change ([`changed`](StatusWatch::changed)`.await`, or blocking
//! [`wait_changed`](StatusWatch::wait_changed)), or for a condition
//! ([`wait_for`](StatusWatch::wait_for) /
//! [`wait_for_timeout`](StatusWatch::wait_for_timeout)). No runtime
//! inside (an `event-listener` event): the async waits run under tokio,
//! smol, async-std or any executor, the blocking ones on any thread.
//!
//! The driver holds the one [`StatusSender`]; when it ends (the driver is
//! done), waits that can no longer be satisfied fail with
//! [`Error::Closed`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener as _};

use crate::api::{Error, Status};

/// What the watches and the sender share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Event,
}

#[derive(Debug)]
struct State {
    status: Status,
    /// Incremented with every change.
    version: u64,
    /// The sender is gone: no change will come.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The latest status of a client, and a way to wait for it to change.
/// `Clone` (each clone remembers which version it has seen), `Send` and
/// `Sync`.
#[derive(Debug, Clone)]
pub struct StatusWatch {
    shared: Arc<Shared>,
    /// The version [`changed`](Self::changed) last returned (or the one
    /// current when the watch was made).
    seen: u64,
}

/// The driver's end of a [`StatusWatch`]: it publishes every status.
/// Dropping it closes the watches.
#[derive(Debug)]
pub struct StatusSender {
    shared: Arc<Shared>,
}

/// A sender holding `status`, and a watch of it.
#[must_use]
pub fn channel(status: Status) -> (StatusSender, StatusWatch) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            status,
            version: 0,
            closed: false,
        }),
        changed: Event::new(),
    });
    let watch = StatusWatch {
        shared: shared.clone(),
        seen: 0,
    };
    (StatusSender { shared }, watch)
}

impl StatusSender {
    /// Publishes `status`; wakes every waiter if it changed.
    pub fn set(&self, status: Status) {
        let mut state = self.shared.lock();
        if state.status != status {
            state.status = status;
            state.version += 1;
            drop(state);
            self.shared.changed.notify(usize::MAX);
        }
    }

    /// A new watch, as of now.
    #[must_use]
    pub fn watch(&self) -> StatusWatch {
        StatusWatch {
            shared: self.shared.clone(),
            seen: self.shared.lock().version,
        }
    }
}

impl Drop for StatusSender {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify(usize::MAX);
    }
}

/// What a look at the shared state found.
enum Look<T> {
    Ready(T),
    Wait,
    Closed,
}

impl StatusWatch {
    /// The latest status.
    #[must_use]
    pub fn get(&self) -> Status {
        self.shared.lock().status.clone()
    }

    /// Waits for a status this watch has not seen yet (any change since
    /// it was made, or since the last `changed`), and returns it.
    /// [`Error::Closed`] once the client's driver has ended and every
    /// change was seen.
    pub async fn changed(&mut self) -> Result<Status, Error> {
        let seen = self.seen;
        let (status, version) = self
            .wait(move |s: &State| (s.version > seen).then(|| (s.status.clone(), s.version)))
            .await?;
        self.seen = version;
        Ok(status)
    }

    /// [`changed`](Self::changed), blocking the thread for at most
    /// `timeout` ([`Error::Timeout`] then).
    pub fn wait_changed(&mut self, timeout: Duration) -> Result<Status, Error> {
        let seen = self.seen;
        let (status, version) = self.wait_blocking(
            move |s: &State| (s.version > seen).then(|| (s.status.clone(), s.version)),
            timeout,
        )?;
        self.seen = version;
        Ok(status)
    }

    /// Waits until the status satisfies `pred`, and returns it (at once
    /// if it already does). [`Error::Closed`] if the driver ends first.
    pub async fn wait_for(&self, mut pred: impl FnMut(&Status) -> bool) -> Result<Status, Error> {
        self.wait(move |s: &State| pred(&s.status).then(|| s.status.clone()))
            .await
    }

    /// [`wait_for`](Self::wait_for), blocking the thread for at most
    /// `timeout` ([`Error::Timeout`] then).
    pub fn wait_for_timeout(
        &self,
        mut pred: impl FnMut(&Status) -> bool,
        timeout: Duration,
    ) -> Result<Status, Error> {
        self.wait_blocking(
            move |s: &State| pred(&s.status).then(|| s.status.clone()),
            timeout,
        )
    }

    /// Waits until the client is connected. [`Error::Refused`] when the
    /// hub refused the credentials (the client keeps retrying in the
    /// background), [`Error::Stopped`] when the session stopped.
    pub async fn connected(&self) -> Result<(), Error> {
        let status = self.wait_for(|s| s.connect_outcome().is_some()).await?;
        status.connect_outcome().unwrap_or(Err(Error::Closed))
    }

    /// [`connected`](Self::connected), blocking the thread for at most
    /// `timeout` ([`Error::Timeout`] then).
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let status = self.wait_for_timeout(|s| s.connect_outcome().is_some(), timeout)?;
        status.connect_outcome().unwrap_or(Err(Error::Closed))
    }

    fn look<T>(&self, f: &mut impl FnMut(&State) -> Option<T>) -> Look<T> {
        let state = self.shared.lock();
        match f(&state) {
            Some(v) => Look::Ready(v),
            None if state.closed => Look::Closed,
            None => Look::Wait,
        }
    }

    async fn wait<T>(&self, mut f: impl FnMut(&State) -> Option<T>) -> Result<T, Error> {
        loop {
            // Listen first, then look: a change in between still wakes us.
            let listener = self.shared.changed.listen();
            match self.look(&mut f) {
                Look::Ready(v) => return Ok(v),
                Look::Closed => return Err(Error::Closed),
                Look::Wait => listener.await,
            }
        }
    }

    fn wait_blocking<T>(
        &self,
        mut f: impl FnMut(&State) -> Option<T>,
        timeout: Duration,
    ) -> Result<T, Error> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let listener = self.shared.changed.listen();
            match self.look(&mut f) {
                Look::Ready(v) => return Ok(v),
                Look::Closed => return Err(Error::Closed),
                Look::Wait => {}
            }
            match deadline {
                None => listener.wait(),
                Some(d) => {
                    if listener.wait_deadline(d).is_none() {
                        return match self.look(&mut f) {
                            Look::Ready(v) => Ok(v),
                            Look::Closed => Err(Error::Closed),
                            Look::Wait => Err(Error::Timeout),
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::session::{ConnectionState, StopReason};

    fn status(state: ConnectionState) -> Status {
        Status {
            state,
            connection: 0,
            last_disconnect: None,
            stopped: None,
            last_token_failure: None,
        }
    }

    #[test]
    fn blocking_waits_see_a_change_a_deadline_or_the_end() {
        let (tx, watch) = channel(status(ConnectionState::Opening));
        let mut w = watch.clone();
        assert!(matches!(
            w.wait_changed(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            watch.wait_connected(Duration::from_millis(20)),
            Err(Error::Timeout)
        ));
        let setter = std::thread::spawn(move || {
            tx.set(status(ConnectionState::Connected));
            tx
        });
        let s = w.wait_changed(Duration::from_secs(10)).unwrap();
        assert_eq!(s.state, ConnectionState::Connected);
        watch.wait_connected(Duration::from_secs(10)).unwrap();
        // Seen: the next change is the end.
        let tx = setter.join().unwrap();
        tx.set(status(ConnectionState::Connected)); // unchanged: no wake
        drop(tx);
        assert!(matches!(
            w.wait_changed(Duration::from_secs(10)),
            Err(Error::Closed)
        ));
        // A condition already true is returned even after the end.
        assert_eq!(watch.get().state, ConnectionState::Connected);
        assert!(
            watch
                .wait_for_timeout(|s| s.state == ConnectionState::Connected, Duration::ZERO)
                .is_ok()
        );
    }

    #[test]
    fn async_waits_under_any_executor() {
        let (tx, watch) = channel(status(ConnectionState::Opening));
        let mut w = tx.watch();
        // Every change until the end: the last one seen is the last set.
        let waiter = std::thread::spawn(move || {
            futures_lite::future::block_on(async {
                let mut last = w.changed().await?;
                loop {
                    match w.changed().await {
                        Ok(s) => last = s,
                        Err(Error::Closed) => return Ok(last),
                        Err(e) => return Err(e),
                    }
                }
            })
        });
        tx.set(status(ConnectionState::Backoff));
        let mut stopped = status(ConnectionState::Stopped);
        stopped.stopped = Some(StopReason::Requested);
        tx.set(stopped);
        drop(tx);
        let last = waiter.join().unwrap().unwrap();
        assert_eq!(last.state, ConnectionState::Stopped);
        let outcome = futures_lite::future::block_on(watch.connected());
        assert!(matches!(
            outcome,
            Err(Error::Stopped(StopReason::Requested))
        ));
    }
}
