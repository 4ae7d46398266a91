//! Provisioning with the Device Provisioning Service: the core's
//! provisioning session ([`iothub_proto::provisioning::Session`]) driven
//! over the client's transports (MQTT over TLS, WebSocket over TLS, plain
//! TCP for tests), then a [`Client`] for the hub it assigned. Every
//! protocol decision (register, poll after `retry-after`, retries,
//! backoff, the overall timeout) is the core's; this loop moves bytes and
//! sets one timer.
//!
//! ```text
//! loop {
//!     drain   poll_transmit → write;  poll_transport → open / close;  poll_event → log
//!     done?   outcome() → the Registration (or the error)
//!     wait    bytes read | transport opened | poll_timeout
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use iothub_net::transport::Endpoint;
use iothub_net::{ClientOptions, Clock, Error, OptionsError, ProvisioningOptions};
use iothub_proto::provisioning::{
    Config, Event, Registration, ReprovisionPolicy, Session, TransportCommand,
};
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::Client;
use crate::driver::{Opening, opened, read};
use crate::transport::{self, Conn};

/// What provisioning gave: the assignment, and the options of a client for
/// the assigned hub ([`ProvisioningOptions::client_options`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Provisioned {
    /// The hub and device id DPS assigned (and the rest of its answer).
    pub registration: Registration,
    /// Options for a [`Client`] of that device at that hub.
    pub options: ClientOptions,
}

impl Provisioned {
    /// Starts a client for the assigned hub with [`options`](Self::options).
    pub fn connect(self) -> Result<Client, Error> {
        Client::new(self.options)
    }
}

/// Provisions the device: connects to DPS, registers, polls until the
/// registration is assigned, and returns the assignment with the client
/// options for the assigned hub. Fails with [`Error::Provisioning`] when
/// DPS refuses the device or the registration fails, is disabled or times
/// out ([`ProvisioningError::is_retriable`](iothub_proto::provisioning::ProvisioningError::is_retriable)
/// tells whether trying again later may help), and with
/// [`Error::Options`] for bad options.
///
/// ```no_run
/// # async fn demo() -> Result<(), iothub_tokio::Error> {
/// use iothub_tokio::{Message, ProvisioningOptions, provision};
///
/// let options = ProvisioningOptions::symmetric_key("0ne00000A0A", "my-device", "<base64 key>")?;
/// let provisioned = provision(&options).await?;
/// println!("assigned to {}", provisioned.registration.assigned_hub);
/// let client = provisioned.connect()?;
/// client.send_telemetry(Message::new(&b"hello"[..])).await?;
/// # Ok(()) }
/// ```
pub async fn provision(options: &ProvisioningOptions) -> Result<Provisioned, Error> {
    let endpoint = dps_endpoint(options)?;
    let span = info_span!(
        "dps",
        registration_id = %options.config.registration_id,
        id_scope = %options.config.id_scope,
    );
    let registration = run(options.config.clone(), Arc::new(endpoint))
        .instrument(span)
        .await?;
    let client = options.client_options(&registration)?;
    Ok(Provisioned {
        registration,
        options: client,
    })
}

/// The Device Provisioning Service's endpoint (options checked, TLS
/// configuration built).
fn dps_endpoint(options: &ProvisioningOptions) -> Result<Endpoint, OptionsError> {
    Endpoint::new(
        (options.host(), options.port()),
        options.transport,
        options.prepare()?,
        options.proxy.clone(),
        (options.open_timeout, options.write_timeout),
    )
}

/// Provisions, then starts a client for the assigned hub.
pub async fn provision_and_connect(
    options: &ProvisioningOptions,
) -> Result<(Client, Registration), Error> {
    let p = provision(options).await?;
    let registration = p.registration.clone();
    Ok((p.connect()?, registration))
}

/// How long an abandoned client gets to flush when the device provisions
/// again.
const REPROVISION_DRAIN: Duration = Duration::from_secs(2);

/// Provisions, connects, and hands the client to `run`; whenever `policy`
/// says the device should provision again ([`Client::reprovision_needed`]:
/// the hub refused its credentials, or connections kept failing), drops
/// `run`'s future, shuts that client down, provisions again and calls
/// `run` with the new client. Returns what `run` returns, or the first
/// provisioning error.
///
/// ```no_run
/// # async fn demo(options: iothub_tokio::ProvisioningOptions) -> Result<(), iothub_tokio::Error> {
/// use iothub_tokio::{Message, ReprovisionPolicy, run_provisioned};
///
/// run_provisioned(options, ReprovisionPolicy::default(), |client, registration| async move {
///     println!("connected as {} at {}", registration.device_id, registration.assigned_hub);
///     loop {
///         client.send_telemetry(Message::new(&b"{\"t\":21}"[..])).await?;
///         tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     }
/// })
/// .await
/// # }
/// ```
pub async fn run_provisioned<F, Fut>(
    options: ProvisioningOptions,
    policy: ReprovisionPolicy,
    mut run: F,
) -> Result<(), Error>
where
    F: FnMut(Client, Registration) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    loop {
        let (client, registration) = provision_and_connect(&options).await?;
        tokio::select! {
            reason = client.reprovision_needed(policy) => {
                let reason = reason?;
                warn!(%reason, "provisioning again");
                let _ = client.shutdown(REPROVISION_DRAIN).await;
            }
            r = run(client.clone(), registration) => return r,
        }
    }
}

/// The loop of the module docs.
async fn run(config: Config, endpoint: Arc<Endpoint>) -> Result<Registration, Error> {
    let clock = Clock::starting_at(tokio::time::Instant::now().into_std());
    let now = || clock.instant(tokio::time::Instant::now().into_std());
    let mut session = Session::new(config, now())
        .map_err(|e| Error::Options(OptionsError::ProvisioningConfig(e)))?;
    let mut conn: Option<Conn> = None;
    let mut opening: Option<Opening> = None;
    let mut rbuf = Vec::new();
    let mut attempts = 0u64;
    loop {
        loop {
            let mut moved = false;
            while let Some(bytes) = session.poll_transmit() {
                moved = true;
                let Some(c) = conn.as_mut() else { continue };
                if let Err(f) = c.write(bytes, endpoint.write_timeout).await {
                    warn!(error = %f, "transport closed");
                    conn = None;
                    session.handle_transport_closed(now(), f.kind);
                }
            }
            while let Some(cmd) = session.poll_transport() {
                moved = true;
                match cmd {
                    TransportCommand::Open => {
                        attempts += 1;
                        conn = None;
                        let span = info_span!(
                            "connect",
                            attempt = attempts,
                            host = %endpoint.host,
                            port = endpoint.port,
                            transport = ?endpoint.transport,
                        );
                        span.in_scope(|| info!("opening transport"));
                        opening =
                            Some(Box::pin(transport::open(endpoint.clone()).instrument(span)));
                    }
                    TransportCommand::Close => {
                        opening = None;
                        if let Some(c) = conn.take() {
                            c.close().await;
                        }
                    }
                }
            }
            while let Some(event) = session.poll_event() {
                moved = true;
                log(&event);
            }
            if !moved {
                break;
            }
        }
        if let Some(outcome) = session.outcome() {
            if let Some(c) = conn.take() {
                c.close().await;
            }
            return outcome.clone().map_err(Error::Provisioning);
        }
        let wake = session
            .poll_timeout()
            .map(|at| tokio::time::Instant::from_std(clock.deadline(at)));
        tokio::select! {
            biased;
            r = read(conn.as_mut(), &mut rbuf) => match r {
                Ok(()) => {
                    session.handle_input(now(), &rbuf);
                    rbuf.clear();
                }
                Err(f) => {
                    warn!(error = %f, "transport closed");
                    conn = None;
                    session.handle_transport_closed(now(), f.kind);
                }
            },
            r = opened(opening.as_mut()) => {
                opening = None;
                match r {
                    Ok(c) => {
                        debug!("transport open");
                        conn = Some(c);
                        session.handle_transport_connected(now(), Clock::unix_secs());
                    }
                    Err(f) => {
                        warn!(error = %f, "could not open the transport");
                        session.handle_transport_closed(now(), f.kind);
                    }
                }
            }
            () = sleep_until(wake) => session.handle_timeout(now(), Clock::unix_secs()),
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
