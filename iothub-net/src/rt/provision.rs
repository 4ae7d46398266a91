//! Provisioning with the Device Provisioning Service: the core's
//! provisioning session run by the client's own driver loop
//! ([`Loop`], with no application side) over the same transports,
//! inside the caller's future (nothing is spawned).

use iothub_proto::provisioning::Registration;
use tracing::Instrument as _;

use super::Runtime;
use super::driver::Loop;
use crate::driver::Core;
use crate::provision_driver::Provisioning;
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
    let (core, endpoint, span) = Core::start_provisioning(options, clock.now().at)?;
    let registration = Loop::<R, Provisioning, ()>::new(core, (), clock, endpoint)
        .run()
        .instrument(span)
        .await?;
    let client = options.client_options(&registration)?;
    Ok((registration, client))
}
