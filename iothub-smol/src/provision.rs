//! Provisioning with the Device Provisioning Service, runtime-neutral:
//! `iothub-net`'s provisioning loop ([`iothub_net::rt::provision`],
//! shared with the tokio adapter) inside the caller's future over the
//! client's transports and an `async-io` timer, then a [`Client`] for the
//! hub it assigned. Nothing is spawned, so it runs under smol, async-std
//! or any executor.

use std::future::{Future, pending};
use std::time::Duration;

use futures_lite::FutureExt as _;
use iothub_net::{ClientOptions, Error, ProvisioningOptions};
use iothub_proto::provisioning::{Registration, ReprovisionPolicy};
use tracing::warn;

use crate::rt::AsyncIo;
use crate::{Client, Driver};

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
    /// A client for the assigned hub with [`options`](Self::options), and
    /// its driver to spawn ([`Client::new`]).
    pub fn connect(self) -> Result<(Client, Driver), Error> {
        Client::new(self.options)
    }
}

/// Provisions the device: connects to DPS, registers, polls until the
/// registration is assigned, and returns the assignment with the client
/// options for the assigned hub. Fails with [`Error::Provisioning`] when
/// DPS refuses the device or the registration fails, is disabled or times
/// out ([`ProvisioningError::is_retriable`](iothub_proto::provisioning::ProvisioningError::is_retriable)
/// tells whether trying again later may help), and with
/// [`Error::Options`] for bad options. Everything happens inside the
/// returned future (nothing to spawn).
///
/// ```no_run
/// # async fn demo() -> Result<(), iothub_smol::Error> {
/// use iothub_smol::{Message, ProvisioningOptions, provision};
///
/// let options = ProvisioningOptions::symmetric_key("0ne00000A0A", "my-device", "<base64 key>")?;
/// let provisioned = provision(&options).await?;
/// println!("assigned to {}", provisioned.registration.assigned_hub);
/// let (client, driver) = provisioned.connect()?;
/// smol::spawn(driver).detach();
/// client.send_telemetry(Message::new(&b"hello"[..])).await?;
/// # Ok(()) }
/// ```
pub async fn provision(options: &ProvisioningOptions) -> Result<Provisioned, Error> {
    let (registration, options) = iothub_net::rt::provision::<AsyncIo>(options).await?;
    Ok(Provisioned {
        registration,
        options,
    })
}

/// Provisions, then makes a client for the assigned hub: the client, its
/// driver to spawn, and the registration.
pub async fn provision_and_connect(
    options: &ProvisioningOptions,
) -> Result<(Client, Driver, Registration), Error> {
    let p = provision(options).await?;
    let registration = p.registration.clone();
    let (client, driver) = p.connect()?;
    Ok((client, driver, registration))
}

/// How long an abandoned client gets to flush when the device provisions
/// again.
const REPROVISION_DRAIN: Duration = Duration::from_secs(2);

/// Provisions, connects, and runs `run` with the client — the client's
/// driver runs inside this future, nothing is spawned; whenever `policy`
/// says the device should provision again ([`Client::reprovision_needed`]:
/// the hub refused its credentials, or connections kept failing), drops
/// `run`'s future, shuts that client down, provisions again and calls
/// `run` with the new client. Returns what `run` returns, or the first
/// provisioning error ([`Error::Closed`] if the client stopped on its
/// own).
///
/// ```no_run
/// # async fn demo(options: iothub_smol::ProvisioningOptions) -> Result<(), iothub_smol::Error> {
/// use iothub_smol::{Message, ReprovisionPolicy, run_provisioned};
///
/// run_provisioned(options, ReprovisionPolicy::default(), |client, registration| async move {
///     println!("connected as {} at {}", registration.device_id, registration.assigned_hub);
///     loop {
///         client.send_telemetry(Message::new(&b"{\"t\":21}"[..])).await?;
///         async_io::Timer::after(std::time::Duration::from_secs(60)).await;
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
    enum Ended {
        Run(Result<(), Error>),
        Reprovision(Result<iothub_proto::provisioning::ReprovisionReason, Error>),
    }
    loop {
        let (client, mut driver, registration) = provision_and_connect(&options).await?;
        let work = run(client.clone(), registration);
        let ended = async { Ended::Run(work.await) }
            .or(async { Ended::Reprovision(client.reprovision_needed(policy).await) });
        let mut driven = false;
        let ended = ended
            .or(async {
                (&mut driver).await;
                driven = true;
                pending().await
            })
            .await;
        // The client ends with this turn: shut it down, driving it to
        // its end.
        if !driven {
            let _ = futures_lite::future::zip(client.shutdown(REPROVISION_DRAIN), driver).await;
        }
        match ended {
            Ended::Run(r) => return r,
            Ended::Reprovision(reason) => {
                let reason = reason?;
                warn!(%reason, "provisioning again");
            }
        }
    }
}
