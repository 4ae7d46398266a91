//! The runtime-neutral half of every adapter's provisioning driver: the
//! fixed order of the steps around the core's provisioning
//! [`Session`], and its events logged with `tracing`. Every protocol
//! decision (register, poll after `retry-after`, retries, backoff, the
//! overall timeout) is the session's; an adapter moves bytes, runs one
//! timer and carries out [`Step`]s — the same shape as
//! [`DriverCore`](crate::driver::DriverCore):
//!
//! ```text
//! let (core, endpoint, span) = ProvisioningCore::start(&options, now)?;
//! loop {
//!     match core.poll() {                    // transmit, transport, events, outcome
//!         Step::Write(bytes) => conn.write(bytes) or core.transport_closed(now, failure),
//!         Step::Open => start opening endpoint (core.transport_opened / transport_closed later),
//!         Step::Close => close the transport,
//!         Step::Done(result) => { close the transport; return result }
//!         Step::Wait(deadline) => wait for one of:
//!             bytes read               → core.handle_input
//!             the transport opened     → core.transport_opened (or transport_closed)
//!             the deadline             → core.timeout
//!     }
//! }
//! ```
//!
//! Opening the transport is the adapter's one `open(&Endpoint)`, the same
//! code that opens a hub connection: [`ProvisioningOptions::endpoint`]
//! gives the DPS [`Endpoint`].

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use iothub_proto::provisioning::{Config, Event, Registration, Session, TransportCommand};
use iothub_proto::time::Instant;
use tracing::{debug, info, warn};

use crate::driver::{Output, Outputs, drain};
use crate::transport::{Endpoint, Failure};
use crate::{Clock, Error, OptionsError, ProvisioningOptions};

/// What the adapter does next; see the [module docs](self).
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Write these bytes (one write; at most [`BATCH`](crate::driver::BATCH) bytes gathered).
    /// Without an open transport, drop them: the session knows.
    Write(Bytes),
    /// Open a new transport to the [`Endpoint`] (dropping any current
    /// one); report the outcome with [`ProvisioningCore::transport_opened`]
    /// or [`ProvisioningCore::transport_closed`].
    Open,
    /// Close the current transport; do not report its closure.
    Close,
    /// Nothing to do until input, the transport opening, or this instant
    /// (`None`: no timer).
    Wait(Option<Instant>),
    /// Provisioning is over: close the transport and return this. Every
    /// later [`poll`](ProvisioningCore::poll) returns it again.
    Done(Result<Registration, Error>),
}

/// The provisioning session and the step order around it. No I/O, no
/// clock reads except Unix seconds for SAS tokens.
pub struct ProvisioningCore {
    session: Session,
    attempts: u64,
}

impl fmt::Debug for ProvisioningCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningCore")
            .field("attempts", &self.attempts)
            .field("done", &self.session.outcome().is_some())
            .finish_non_exhaustive()
    }
}

impl ProvisioningCore {
    /// A core around a new provisioning session (which wants a transport
    /// at once); [`Error::Options`] for a bad configuration.
    pub fn new(config: Config, now: Instant) -> Result<ProvisioningCore, Error> {
        let session = Session::new(config, now)
            .map_err(|e| Error::Options(OptionsError::ProvisioningConfig(e)))?;
        Ok(ProvisioningCore {
            session,
            attempts: 0,
        })
    }

    /// What every adapter's provisioning starts from: the options checked
    /// and the TLS configuration built (errors come back at once, before
    /// any socket), the core, the DPS endpoint, and the
    /// `dps{registration_id, id_scope}` span to run in.
    pub fn start(
        options: &ProvisioningOptions,
        now: Instant,
    ) -> Result<(ProvisioningCore, Endpoint, tracing::Span), Error> {
        let endpoint = options.endpoint()?;
        let span = tracing::info_span!(
            "dps",
            registration_id = %options.config.registration_id,
            id_scope = %options.config.id_scope,
        );
        let core = ProvisioningCore::new(options.config.clone(), now)?;
        Ok((core, endpoint, span))
    }

    /// The session, to observe.
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Transport attempts so far (for log spans).
    #[must_use]
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// The next step: bytes to write, then transport commands, then
    /// events (logged here), again while any of them produced; then the
    /// outcome if there is one, else the wait. Call after every input
    /// until it returns [`Step::Wait`] or [`Step::Done`].
    #[must_use]
    pub fn poll(&mut self) -> Step {
        match drain(&mut self.session, &mut self.attempts, |_, e| log(&e)) {
            Some(Output::Write(b)) => return Step::Write(b),
            Some(Output::Open) => return Step::Open,
            Some(Output::Close) => return Step::Close,
            None => {}
        }
        if let Some(outcome) = self.session.outcome() {
            return Step::Done(outcome.clone().map_err(Error::Provisioning));
        }
        Step::Wait(self.session.poll_timeout())
    }

    /// Bytes were read.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.session.handle_input(now, data);
    }

    /// The transport asked for by [`Step::Open`] is open.
    pub fn transport_opened(&mut self, now: Instant) {
        debug!("transport open");
        self.session
            .handle_transport_connected(now, Clock::unix_secs());
    }

    /// The transport failed, the peer closed it, or opening it failed.
    pub fn transport_closed(&mut self, now: Instant, failure: &Failure) {
        warn!(error = %failure, "transport closed");
        self.session.handle_transport_closed(now, failure.kind);
    }

    /// The deadline of [`Step::Wait`] has come.
    pub fn timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now, Clock::unix_secs());
    }
}

impl Outputs for Session {
    type Event = Event;
    fn transmit(&mut self) -> Option<Bytes> {
        self.poll_transmit()
    }
    fn transport(&mut self) -> Option<bool> {
        self.poll_transport().map(|c| match c {
            TransportCommand::Open => true,
            TransportCommand::Close => false,
        })
    }
    fn event(&mut self) -> Option<Event> {
        self.poll_event()
    }
}

fn log(event: &Event) {
    match event {
        Event::Connected => info!("connected to DPS"),
        Event::Disconnected { reason } => debug!(%reason, "DPS connection ended"),
        Event::ReconnectScheduled { delay } => {
            info!(
                delay_ms = millis(*delay),
                "reconnecting to DPS after a delay"
            );
        }
        Event::Assigning {
            operation_id,
            retry_after,
        } => debug!(%operation_id, retry_after_ms = millis(*retry_after), "assigning"),
        Event::Throttled {
            status,
            retry_after,
        } => warn!(
            status,
            retry_after_ms = millis(*retry_after),
            "DPS throttled the request"
        ),
        Event::UnexpectedPublish { topic, error } => {
            warn!(%topic, %error, "unexpected PUBLISH from DPS");
        }
        Event::Assigned(r) => info!(
            hub = %r.assigned_hub, device_id = %r.device_id, substatus = ?r.substatus,
            "assigned"
        ),
        Event::Failed(e) => warn!(error = %e, "provisioning failed"),
        _ => debug!(?event, "DPS event"),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use iothub_proto::provisioning::ProvisioningError;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn options() -> ProvisioningOptions {
        ProvisioningOptions::symmetric_key("0ne00000A0A", "dev-7", KEY)
            .unwrap()
            .with_endpoint("localhost")
            .unwrap()
            .with_port(18884)
            .with_webpki_roots(true)
    }

    #[test]
    fn the_endpoint_is_the_dps_one() {
        let ep = options().endpoint().unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("localhost", 18884));
        assert!(ep.tls.is_some());
        let plain = options()
            .with_transport(Transport::PlainTcp)
            .endpoint()
            .unwrap();
        assert!(plain.tls.is_none());
        let bad = options().with_session(|c| c.with_timeout(Duration::ZERO));
        assert!(matches!(
            ProvisioningCore::start(&bad, Instant::from_millis(0)),
            Err(Error::Options(_))
        ));
    }

    #[test]
    fn steps_in_order_then_done() {
        let (mut core, _, _) =
            ProvisioningCore::start(&options(), Instant::from_millis(0)).unwrap();
        let now = Instant::from_millis(0);
        assert!(matches!(core.poll(), Step::Open));
        assert_eq!(core.attempts(), 1);
        assert!(matches!(core.poll(), Step::Wait(_)));
        core.transport_opened(now);
        let Step::Write(connect) = core.poll() else {
            panic!("CONNECT first")
        };
        assert_eq!(connect[0] >> 4, 1);
        assert!(matches!(core.poll(), Step::Wait(Some(_))));
        // CONNACK 5 (not authorized): provisioning is refused, for good.
        core.handle_input(now, &[0x20, 2, 0, 5]);
        let mut done = None;
        for _ in 0..10 {
            match core.poll() {
                Step::Done(r) => {
                    done = Some(r);
                    break;
                }
                Step::Wait(_) => break,
                _ => {}
            }
        }
        match done {
            Some(Err(Error::Provisioning(ProvisioningError::Refused(_)))) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(core.poll(), Step::Done(Err(_))), "done stays done");
    }
}
