//! [`StatusWatch`]: the latest [`Status`] of a client, which the driver
//! sets and any number of threads or tasks wait on — blocking (with a
//! deadline) or async, under any runtime (it is an `event-listener`
//! event, no runtime inside). The blocking and smol adapters share it;
//! the tokio adapter hands out a `tokio::sync::watch` instead.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use event_listener::{Event, Listener as _};

use crate::api::Status;

/// The latest status and a wake-up for those waiting on a change.
#[derive(Debug)]
pub struct StatusWatch {
    status: Mutex<Status>,
    changed: Event,
}

impl StatusWatch {
    /// A watch holding `status`.
    #[must_use]
    pub fn new(status: Status) -> StatusWatch {
        StatusWatch {
            status: Mutex::new(status),
            changed: Event::new(),
        }
    }

    /// The latest status.
    #[must_use]
    pub fn get(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the status; wakes every waiter if it changed.
    pub fn set(&self, status: Status) {
        let mut current = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != status {
            *current = status;
            drop(current);
            self.changed.notify(usize::MAX);
        }
    }

    /// Blocks until the status satisfies `pred` (`Some`), or the deadline
    /// passes (`None`).
    pub fn wait_blocking(
        &self,
        mut pred: impl FnMut(&Status) -> bool,
        deadline: Option<Instant>,
    ) -> Option<Status> {
        loop {
            // Listen first, then look: a change in between still wakes us.
            let listener = self.changed.listen();
            let status = self.get();
            if pred(&status) {
                return Some(status);
            }
            match deadline {
                None => listener.wait(),
                Some(d) => {
                    if listener.wait_deadline(d).is_none() {
                        let status = self.get();
                        return pred(&status).then_some(status);
                    }
                }
            }
        }
    }

    /// Waits (async, any runtime) until the status satisfies `pred`.
    pub async fn wait(&self, mut pred: impl FnMut(&Status) -> bool) -> Status {
        loop {
            let listener = self.changed.listen();
            let status = self.get();
            if pred(&status) {
                return status;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::session::ConnectionState;
    use std::sync::Arc;
    use std::time::Duration;

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
    fn waits_blocking_for_a_change_or_a_deadline() {
        let w = Arc::new(StatusWatch::new(status(ConnectionState::Opening)));
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(
            w.wait_blocking(|s| s.state == ConnectionState::Connected, Some(soon))
                .is_none()
        );
        let setter = {
            let w = w.clone();
            std::thread::spawn(move || w.set(status(ConnectionState::Connected)))
        };
        let s = w.wait_blocking(|s| s.state == ConnectionState::Connected, None);
        assert_eq!(s.unwrap().state, ConnectionState::Connected);
        setter.join().unwrap();
    }
}
