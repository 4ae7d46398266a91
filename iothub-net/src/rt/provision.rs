//! Provisioning with the Device Provisioning Service: the core's
//! provisioning session driven over the same transports as a hub
//! connection, inside the caller's future (nothing is spawned). Every
//! protocol decision is the core's, and the order of the steps around it
//! is [`ProvisioningCore`]'s; this loop moves bytes and sets one timer.

use std::future::pending;
use std::sync::Arc;

use futures_lite::FutureExt as _;
use iothub_proto::provisioning::Registration;
use tracing::Instrument as _;

use super::Runtime;
use super::driver::{self, Opening, Wake};
use super::transport::Conn;
use crate::provision_driver::{ProvisioningCore, Step};
use crate::transport::Endpoint;
use crate::{ClientOptions, Clock, Error, ProvisioningOptions};

/// Provisions the device on runtime `R`: connects to DPS, registers,
/// polls until the registration is assigned, and returns the assignment
/// with the client options for the assigned hub
/// ([`ProvisioningOptions::client_options`]). Fails with
/// [`Error::Provisioning`] when DPS refuses the device or the
/// registration fails, is disabled or times out, and with
/// [`Error::Options`] for bad options (before any socket).
pub async fn provision<R: Runtime>(
    options: &ProvisioningOptions,
) -> Result<(Registration, ClientOptions), Error> {
    let clock = Clock::new();
    let (core, endpoint, span) =
        ProvisioningCore::start(options, clock.instant(std::time::Instant::now()))?;
    let registration = run::<R>(core, clock, Arc::new(endpoint))
        .instrument(span)
        .await?;
    let client = options.client_options(&registration)?;
    Ok((registration, client))
}

/// The loop of the module docs.
async fn run<R: Runtime>(
    mut core: ProvisioningCore,
    clock: Clock,
    endpoint: Arc<Endpoint>,
) -> Result<Registration, Error> {
    let now = || clock.instant(std::time::Instant::now());
    let mut conn: Option<Conn> = None;
    let mut opening: Option<Opening> = None;
    let mut buf = Vec::new();
    loop {
        let deadline = match core.poll() {
            Step::Write(data) => {
                if let Some(c) = conn.as_mut() {
                    if let Err(f) = c.write::<R>(data, endpoint.write_timeout).await {
                        conn = None;
                        core.transport_closed(now(), &f);
                    }
                }
                continue;
            }
            Step::Open => {
                conn = None;
                opening = Some(driver::open::<R>(&endpoint, core.attempts()));
                continue;
            }
            Step::Close => {
                opening = None;
                if let Some(c) = conn.take() {
                    c.close::<R>().await;
                }
                continue;
            }
            Step::Wait(at) => at.map(|at| clock.deadline(at)),
            step => {
                if let Some(c) = conn.take() {
                    c.close::<R>().await;
                }
                return match step {
                    Step::Done(r) => r,
                    _ => Err(Error::Closed),
                };
            }
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    R::sleep_until(at).await;
                    Wake::Timer
                }
                None => pending().await,
            }
        };
        let wake = driver::transport(conn.as_mut(), opening.as_mut(), &mut buf)
            .or(timer)
            .await;
        match wake {
            Wake::Read(Ok(n)) => core.handle_input(now(), &buf[..n]),
            Wake::Opened(Ok(c)) => {
                opening = None;
                conn = Some(c);
                core.transport_opened(now());
            }
            Wake::Read(Err(f)) | Wake::Opened(Err(f)) => {
                opening = None;
                conn = None;
                core.transport_closed(now(), &f);
            }
            Wake::Timer => core.timeout(now()),
            Wake::Command(_) | Wake::Telemetry(_) => {}
        }
    }
}
