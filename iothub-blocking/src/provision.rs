//! Provisioning with the Device Provisioning Service, blocking: the core's
//! provisioning session driven on the calling thread over the client's
//! transports (the same connection threads as a hub connection), then a
//! [`Client`] for the hub it assigned. Every protocol decision is the
//! core's, and the order of the steps around it is `iothub-client`'s
//! [`Core`]; the loop is the client's own ([`run`]), with nothing on the
//! application's side.

use std::time::Duration;

use iothub_client::driver::Core;
use iothub_client::{ClientOptions, Clock, Error, ProvisioningOptions};
use iothub_proto::provisioning::{Registration, ReprovisionPolicy};
use tracing::warn;

use crate::Client;
use crate::driver::{Connection, run};

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
    /// Starts a client for the assigned hub with
    /// [`options`](Self::options) (`Client::builder(options).build()`).
    pub fn connect(self) -> Result<Client, Error> {
        Client::builder(self.options).build()
    }
}

/// Provisions the device, blocking the calling thread: connects to DPS,
/// registers, polls until the registration is assigned, and returns the
/// assignment with the client options for the assigned hub. Fails with
/// [`Error::Provisioning`] when DPS refuses the device or the
/// registration fails, is disabled or times out
/// ([`ProvisioningError::is_retriable`](iothub_proto::provisioning::ProvisioningError::is_retriable)
/// tells whether trying again later may help), and with
/// [`Error::Options`] for bad options. The overall time is the
/// provisioning configuration's timeout.
///
/// ```no_run
/// # fn demo() -> Result<(), iothub_blocking::Error> {
/// use iothub_blocking::{Message, ProvisioningOptions, provision};
///
/// let options = ProvisioningOptions::symmetric_key("0ne00000A0A", "my-device", "<base64 key>")?;
/// let provisioned = provision(&options)?;
/// println!("assigned to {}", provisioned.registration.assigned_hub);
/// let client = provisioned.connect()?;
/// client.send_telemetry(Message::new(&b"hello"[..]))?;
/// # Ok(()) }
/// ```
pub fn provision(options: &ProvisioningOptions) -> Result<Provisioned, Error> {
    let clock = Clock::new();
    let (core, endpoint, span) = Core::start_provisioning(options, clock.now().at)?;
    let (mut conn, inputs) = Connection::channel(endpoint);
    let registration = span.in_scope(|| run(core, &mut (), &clock, &mut conn, &inputs))?;
    let client = options.client_options(&registration)?;
    Ok(Provisioned {
        registration,
        options: client,
    })
}

/// Provisions, then starts a client for the assigned hub.
pub fn provision_and_connect(
    options: &ProvisioningOptions,
) -> Result<(Client, Registration), Error> {
    let p = provision(options)?;
    let registration = p.registration.clone();
    Ok((p.connect()?, registration))
}

/// How long an abandoned client gets to flush when the device provisions
/// again.
const REPROVISION_DRAIN: Duration = Duration::from_secs(2);

/// Provisions, connects, and calls `run` with the client on this thread;
/// whenever `policy` says the device should provision again
/// ([`Client::reprovision_needed`]: the hub refused its credentials, or
/// connections kept failing), shuts that client down — so `run`'s calls
/// on it fail with [`Error::Closed`] and `run` should return — then
/// provisions again and calls `run` with the new client. Returns what
/// `run` returns when the policy did not fire (an `Ok` always ends it),
/// or the first provisioning error.
///
/// A thread per client waits for the policy.
///
/// ```no_run
/// # fn demo(options: iothub_blocking::ProvisioningOptions) -> Result<(), iothub_blocking::Error> {
/// use iothub_blocking::{Message, ReprovisionPolicy, run_provisioned};
///
/// run_provisioned(options, ReprovisionPolicy::default(), |client, registration| {
///     println!("connected as {} at {}", registration.device_id, registration.assigned_hub);
///     loop {
///         client.send_telemetry(Message::new(&b"{\"t\":21}"[..]))?;
///         std::thread::sleep(std::time::Duration::from_secs(60));
///     }
/// })
/// # }
/// ```
pub fn run_provisioned<F>(
    options: ProvisioningOptions,
    policy: ReprovisionPolicy,
    mut run: F,
) -> Result<(), Error>
where
    F: FnMut(Client, Registration) -> Result<(), Error>,
{
    loop {
        let (client, registration) = provision_and_connect(&options)?;
        let watch = client.watch_reprovision(policy)?;
        let handle = client.clone();
        let watcher = std::thread::Builder::new()
            .name("iothub-reprovision".into())
            .spawn(move || {
                let reason = watch.wait()?;
                warn!(%reason, "provisioning again");
                let _ = handle.shutdown(REPROVISION_DRAIN);
                Ok(reason)
            })
            .map_err(|_| Error::Closed)?;
        let result = run(client.clone(), registration);
        // Ends the watch (with `Closed`) if it has not fired.
        let _ = client.shutdown(REPROVISION_DRAIN);
        let fired: Result<_, Error> = watcher.join().unwrap_or(Err(Error::Closed));
        match (&result, fired) {
            (Err(_), Ok(_)) => continue,
            _ => return result,
        }
    }
}
