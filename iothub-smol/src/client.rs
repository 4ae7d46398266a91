//! The public handle: [`Client`]. Every call goes through `iothub-net`'s
//! async [`Handle`] (it sends a command to the driver and awaits the
//! answer); the streams and method requests are that module's.

use std::sync::Arc;
use std::time::Duration;

use iothub_net::handle::{Commands, Handle};
use iothub_net::watch::StatusWatch;
use iothub_net::{ClientOptions, DesiredUpdate, Error, InputMessage, Status};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, InboundMessage, Message, Twin};
use serde_json::Value;

pub use iothub_net::handle::{Events, MethodRequest};

use crate::driver::Driver;

/// An IoT Hub device or module client: a cheap handle (`Clone + Send +
/// Sync`) to one [`Driver`]. When the last handle is dropped the driver
/// shuts down as [`shutdown`](Self::shutdown) would, with a 5 s drain.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    status: Arc<StatusWatch>,
}

impl Client {
    /// A client and its driver: checks the options and builds the TLS
    /// configuration. Spawn the driver on your executor (it connects at
    /// once); nothing happens until it runs.
    pub fn new(options: ClientOptions) -> Result<(Client, Driver), Error> {
        let (handle, inbox) = Handle::new();
        let (driver, status) = Driver::new(options, inbox)?;
        let inner = Inner { handle, status };
        Ok((
            Client {
                inner: Arc::new(inner),
            },
            driver,
        ))
    }

    /// A client from a connection string with default options (MQTT over
    /// TLS on 8883, webpki roots), and its driver.
    pub fn from_connection_string(cs: &str) -> Result<(Client, Driver), Error> {
        Client::new(ClientOptions::from_connection_string(cs)?)
    }

    /// The driver's command channel (the IoT Edge token route).
    #[cfg(unix)]
    pub(crate) fn control(&self) -> &Commands {
        self.inner.handle.commands()
    }

    /// Sends a telemetry message and resolves when the hub acknowledged it
    /// (QoS 1: PUBACK) or, for QoS 0, when it was written. Waits for room
    /// while the session's queue is full. Cancelling after the message
    /// reached the driver does not stop it.
    pub async fn send_telemetry(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.inner.handle.send_telemetry(message.into()).await
    }

    /// Reads the full twin (desired and reported sections).
    pub async fn get_twin(&self) -> Result<Twin, Error> {
        self.inner.handle.get_twin().await
    }

    /// Updates reported properties with a JSON object patch (`null`
    /// deletes) and returns the new reported `$version`.
    pub async fn update_reported(&self, patch: &Value) -> Result<u64, Error> {
        self.inner.handle.update_reported(patch).await
    }

    /// Desired-properties updates: a [`DesiredUpdate::Full`] after every
    /// connection whose twin differs from the last version seen, then
    /// patches. Subscribes on first use; a second call ends the first
    /// stream.
    pub async fn desired_updates(&self) -> Result<Events<DesiredUpdate>, Error> {
        self.inner.handle.desired_updates().await
    }

    /// Direct method calls. Subscribes on first use; a second call ends
    /// the first stream.
    pub async fn method_requests(&self) -> Result<Events<MethodRequest>, Error> {
        self.inner.handle.method_requests().await
    }

    /// Cloud-to-device messages (device identities), acknowledged to the
    /// hub when the driver hands them to this stream (or by
    /// [`ack`](Self::ack) with [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)).
    pub async fn c2d_messages(&self) -> Result<Events<InboundMessage>, Error> {
        self.inner.handle.c2d_messages().await
    }

    /// IoT Edge module input messages (module identities).
    pub async fn input_messages(&self) -> Result<Events<InputMessage>, Error> {
        self.inner.handle.input_messages().await
    }

    /// Acknowledges a message in manual-ack mode.
    pub async fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.inner.handle.ack(token).await
    }

    /// Resolves when `policy` says the device should be provisioned again
    /// ([`ReprovisionPolicy`]: the hub refused the credentials, or so many
    /// connection attempts failed in a row), with the reason; then shut
    /// this client down and provision
    /// ([`run_provisioned`](crate::run_provisioned) does both). Fails with
    /// [`Error::Closed`] when the client stops first. The watch starts
    /// when the future is first polled.
    pub async fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        self.inner.handle.reprovision_needed(policy).await
    }

    /// The connection state now.
    #[must_use]
    pub fn status(&self) -> Status {
        self.inner.status.get()
    }

    /// Waits until the status satisfies `pred`.
    pub async fn wait_status(&self, pred: impl FnMut(&Status) -> bool) -> Status {
        self.inner.status.wait(pred).await
    }

    /// Waits until the client is connected. Fails with
    /// [`Error::Refused`] when the hub refused the credentials (the client
    /// keeps retrying in the background) and [`Error::Stopped`] when the
    /// session stopped.
    pub async fn wait_connected(&self) -> Result<(), Error> {
        let status = self.wait_status(|s| s.connect_outcome().is_some()).await;
        status.connect_outcome().unwrap_or(Err(Error::Closed))
    }

    /// Graceful shutdown: lets queued and in-flight telemetry and twin
    /// requests finish for up to `timeout`, disconnects, and resolves once
    /// the session has stopped: every later call fails with
    /// [`Error::Closed`], and the streams end when the driver future
    /// returns, right after. Calling it again, or after a stop, returns
    /// at once.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.handle.shutdown(timeout).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync>() {}
        check::<super::Client>();
    }
}
