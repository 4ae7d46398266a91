//! Provisioning as a kind of session the drivers run
//! ([`Provisioning`], a [`Machine`]): the core's provisioning
//! [`Session`], its events logged with `tracing`, its result the driver's
//! outcome. Every protocol decision (register, poll after `retry-after`,
//! retries, backoff, the overall timeout) is the session's; the step order
//! is [`Core`]'s, the same as a device client's, and so are the driver
//! loops: every adapter runs provisioning on the loop its client runs on.
//!
//! Opening the transport is the adapter's one `open(&Endpoint)`, the same
//! code that opens a hub connection: [`ProvisioningOptions::endpoint`]
//! gives the DPS [`Endpoint`].

use std::time::Duration;

use iothub_proto::provisioning::{Config, Event, Registration, Session};
use iothub_proto::time::Instant;
use tracing::{debug, info, warn};

use crate::driver::{Core, Machine};
use crate::transport::Endpoint;
use crate::{Error, OptionsError, ProvisioningOptions};

/// Provisioning as a [`Machine`]: the DPS session, its events logged, and
/// its result once over.
#[derive(Debug)]
pub struct Provisioning {
    session: Session,
}

impl Machine for Provisioning {
    type Session = Session;
    type Outcome = Result<Registration, Error>;

    fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    fn on_event(&mut self, event: Event) {
        log(&event);
    }

    fn outcome(&mut self) -> Option<Result<Registration, Error>> {
        let outcome = self.session.outcome()?;
        Some(outcome.clone().map_err(Error::Provisioning))
    }
}

/// The driver core of provisioning.
pub type ProvisioningCore = Core<Provisioning>;

impl Core<Provisioning> {
    /// A core around a new provisioning session started at `now` (it
    /// wants a transport at once); [`Error::Options`] for a bad
    /// configuration.
    pub fn provisioning(config: Config, now: Instant) -> Result<ProvisioningCore, Error> {
        let session = Session::new(config, now)
            .map_err(|e| Error::Options(OptionsError::ProvisioningConfig(e)))?;
        Ok(Core::new(Provisioning { session }))
    }

    /// What every adapter's provisioning starts from: the options checked
    /// and the TLS configuration built (errors come back at once, before
    /// any socket), the core, the DPS endpoint, and the
    /// `dps{registration_id, id_scope}` span to run in.
    pub fn start_provisioning(
        options: &ProvisioningOptions,
        now: Instant,
    ) -> Result<(ProvisioningCore, Endpoint, tracing::Span), Error> {
        let endpoint = options.endpoint()?;
        let span = tracing::info_span!(
            "dps",
            registration_id = %options.config.registration_id,
            id_scope = %options.config.id_scope,
        );
        let core = Core::provisioning(options.config.clone(), now)?;
        Ok((core, endpoint, span))
    }

    /// The session, to observe.
    #[must_use]
    pub fn dps_session(&self) -> &Session {
        &self.machine().session
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
    use crate::clock::Now;
    use crate::driver::Step;
    use iothub_proto::provisioning::ProvisioningError;
    use iothub_proto::time::Instant;

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
            ProvisioningCore::start_provisioning(&bad, Instant::from_millis(0)),
            Err(Error::Options(_))
        ));
    }

    #[test]
    fn steps_in_order_then_done() {
        let (mut core, _, _) =
            ProvisioningCore::start_provisioning(&options(), Instant::from_millis(0)).unwrap();
        let now = Now::new(Instant::from_millis(0), 1_700_000_000);
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
