//! What the provisioning session tells the application ([`Event`]) and its
//! result ([`Registration`]).

use alloc::string::String;
use core::time::Duration;

use serde_json::Value;

use super::error::{DisconnectReason, ProvisioningError};
use super::response::Substatus;
use crate::auth::{Credential, DeviceId, HostName, Identity};
use crate::topic::TopicError;

/// A successful registration: where the device goes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Registration {
    /// The registration id DPS reports (the one registered).
    pub registration_id: String,
    /// The operation that produced the assignment.
    pub operation_id: String,
    /// The IoT hub the device is assigned to (`assignedHub`).
    pub assigned_hub: HostName,
    /// The device id at that hub (`deviceId`).
    pub device_id: DeviceId,
    /// Why the device is there (`substatus`), if DPS said.
    pub substatus: Option<Substatus>,
    /// Data returned by a custom allocation policy (`payload`), if any.
    pub payload: Option<Value>,
    /// `etag`, if sent.
    pub etag: Option<String>,
    /// `createdDateTimeUtc`, as sent.
    pub created_date_time_utc: Option<String>,
    /// `lastUpdatedDateTimeUtc`, as sent.
    pub last_updated_date_time_utc: Option<String>,
}

impl Registration {
    /// A registration assigning `device_id` at `assigned_hub`, nothing
    /// else known (the registration id is taken to be the device id): for
    /// an application that kept the assignment (say, on disk) and connects
    /// again without provisioning, and for tests.
    #[must_use]
    pub fn new(assigned_hub: HostName, device_id: DeviceId) -> Registration {
        Registration {
            registration_id: String::from(device_id.as_str()),
            operation_id: String::new(),
            assigned_hub,
            device_id,
            substatus: None,
            payload: None,
            etag: None,
            created_date_time_utc: None,
            last_updated_date_time_utc: None,
        }
    }

    /// The device identity at the assigned hub.
    #[must_use]
    pub fn identity(&self) -> Identity {
        Identity::device(self.device_id.clone())
    }

    /// A device session configuration (every default) for the assigned hub,
    /// with `credential`: usually
    /// [`ProvisioningAttestation::hub_credential`](crate::auth::ProvisioningAttestation::hub_credential),
    /// as DPS creates symmetric-key devices with the attestation key.
    #[must_use]
    pub fn device_config(&self, credential: Credential) -> crate::session::Config {
        crate::session::Config::new(self.identity(), self.assigned_hub.clone(), credential)
    }
}

/// What the provisioning session tells the application. Drain with
/// [`Session::poll_output`](super::Session::poll_output). Exactly one of
/// [`Event::Assigned`] and [`Event::Failed`] ends every session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// DPS accepted the CONNECT.
    Connected,
    /// A connection (or an attempt) ended. What follows is an
    /// [`Event::ReconnectScheduled`] or the end.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// The session will ask for a new transport after this delay.
    ReconnectScheduled {
        /// The delay.
        delay: Duration,
    },
    /// DPS accepted the registration (or a poll found it still running):
    /// the session polls after `retry_after`.
    Assigning {
        /// The operation id it polls with.
        operation_id: String,
        /// The wait before the next poll.
        retry_after: Duration,
    },
    /// DPS answered 429 or 5xx: the session sends the same request again
    /// after `retry_after`.
    Throttled {
        /// The status.
        status: u16,
        /// The wait.
        retry_after: Duration,
    },
    /// A PUBLISH on a topic that is not a DPS response (acknowledged if
    /// QoS 1, otherwise ignored).
    UnexpectedPublish {
        /// The topic.
        topic: String,
        /// What [`topic::parse`](crate::topic::parse) said.
        error: TopicError,
    },
    /// The registration succeeded. The last event.
    Assigned(Registration),
    /// The registration failed. The last event.
    Failed(ProvisioningError),
}
