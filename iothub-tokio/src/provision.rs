//! Provisioning with the Device Provisioning Service: the core's
//! provisioning session driven over the client's transports (MQTT over
//! TLS, WebSocket over TLS, plain TCP for tests), then a [`Client`] for
//! the hub it assigned. Every protocol decision (register, poll after
//! `retry-after`, retries, backoff, the overall timeout) is the core's;
//! the loop around it is `iothub-net`'s ([`iothub_net::rt::provision`],
//! shared with the smol adapter) on tokio.

use std::future::Future;
use std::time::Duration;

use iothub_net::{ClientOptions, Error, ProvisioningOptions};
use iothub_proto::provisioning::{Registration, ReprovisionPolicy};
use tracing::warn;

use crate::Client;
use crate::rt::Tokio;

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
    let (registration, options) = iothub_net::rt::provision::<Tokio>(options).await?;
    Ok(Provisioned {
        registration,
        options,
    })
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
