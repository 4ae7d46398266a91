//! Provisioning with the Device Provisioning Service, for every async
//! runtime: the core's provisioning session run by the client's own
//! driver loop ([`Loop`], with no application side) over the same
//! transports, inside the caller's future (nothing is spawned); then a
//! [`Client`] for the hub it assigned, and provisioning again when the hub
//! stops accepting the device ([`run_provisioned`]).

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use futures_lite::FutureExt as _;
use iothub_proto::provisioning::{Registration, ReprovisionPolicy, ReprovisionReason};
use tracing::{Instrument as _, warn};

use super::driver::Loop;
use super::{Client, Runtime};
use crate::driver::Core;
use crate::provision_driver::Provisioning;
use crate::{ClientOptions, Clock, Error, ProvisioningOptions};

/// What provisioning gave: the assignment, and the options of a client for
/// the assigned hub ([`ProvisioningOptions::client_options`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Provisioned<R> {
    /// The hub and device id DPS assigned (and the rest of its answer).
    pub registration: Registration,
    /// Options for a client of that device at that hub.
    pub options: ClientOptions,
    runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> Provisioned<R> {
    /// Starts a client for the assigned hub with
    /// [`options`](Self::options) (`Client::builder(options).build()`).
    pub async fn connect(self) -> Result<Client<R>, Error> {
        Client::<R>::builder(self.options).build().await
    }
}

/// Provisions the device on runtime `R`: connects to DPS, registers,
/// polls until the registration is assigned, and returns the assignment
/// with the client options for the assigned hub
/// ([`ProvisioningOptions::client_options`]). Fails with
/// [`Error::Provisioning`] when DPS refuses the device or the
/// registration fails, is disabled or times out
/// ([`ProvisioningError::is_retriable`](iothub_proto::provisioning::ProvisioningError::is_retriable)
/// tells whether trying again later may help), and with
/// [`Error::Options`] for bad options (before any socket). Everything
/// happens inside the returned future; the overall time is the
/// provisioning configuration's timeout.
pub async fn provision<R: Runtime>(options: &ProvisioningOptions) -> Result<Provisioned<R>, Error> {
    let clock = Clock::new();
    let (core, endpoint, span) = Core::start_provisioning(options, clock.now().at)?;
    let registration = Loop::<R, Provisioning, ()>::new(core, (), clock, endpoint)
        .run()
        .instrument(span)
        .await?;
    let client = options.client_options(&registration)?;
    Ok(Provisioned {
        registration,
        options: client,
        runtime: PhantomData,
    })
}

/// Provisions, then starts a client for the assigned hub.
pub async fn provision_and_connect<R: Runtime>(
    options: &ProvisioningOptions,
) -> Result<(Client<R>, Registration), Error> {
    let p = provision::<R>(options).await?;
    let registration = p.registration.clone();
    Ok((p.connect().await?, registration))
}

/// How long an abandoned client gets to flush when the device provisions
/// again.
const REPROVISION_DRAIN: Duration = Duration::from_secs(2);

/// Provisions, connects, and hands the client to `run`; whenever `policy`
/// says the device should provision again
/// ([`Client::reprovision_needed`]: the hub refused its credentials, or
/// connections kept failing), drops `run`'s future, shuts that client
/// down, provisions again and calls `run` with the new client. Returns
/// what `run` returns, or the first provisioning error.
pub async fn run_provisioned<R, F, Fut>(
    options: ProvisioningOptions,
    policy: ReprovisionPolicy,
    mut run: F,
) -> Result<(), Error>
where
    R: Runtime,
    F: FnMut(Client<R>, Registration) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    enum Ended {
        Run(Result<(), Error>),
        Reprovision(Result<ReprovisionReason, Error>),
    }
    loop {
        let (client, registration) = provision_and_connect::<R>(&options).await?;
        let work = run(client.clone(), registration);
        let ended = async { Ended::Run(work.await) }
            .or(async { Ended::Reprovision(client.reprovision_needed(policy).await) })
            .await;
        match ended {
            Ended::Run(r) => return r,
            Ended::Reprovision(reason) => {
                let reason = reason?;
                warn!(%reason, "provisioning again");
                let _ = client.shutdown(REPROVISION_DRAIN).await;
            }
        }
    }
}
