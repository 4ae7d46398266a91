//! The public handle: [`Client`]. Every call goes through `iothub-net`'s
//! async [`Handle`] (it sends a command to the driver task and awaits the
//! answer); nothing here touches the session. The values handed out
//! (error, status, stream items, method requests) are the runtime-neutral
//! ones of `iothub_net`.

use std::sync::Arc;
use std::time::Duration;

use iothub_net::handle::{Commands, Handle};
use iothub_net::rt::Driver;
use iothub_net::{ClientOptions, DesiredUpdate, Error, InputMessage, Status};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, ConnectionState, InboundMessage, Message, Twin};
use serde_json::Value;
use tokio::sync::watch;

pub use iothub_net::handle::{Events, MethodRequest};

use crate::rt::Tokio;

/// An IoT Hub device or module client: a cheap handle (`Clone + Send +
/// Sync`) to one driver task that owns the session and the socket.
///
/// Every future is cancel-safe in this sense: dropping it never corrupts
/// the client. A command that reached the driver goes on without you: a
/// telemetry message whose `send_telemetry` future was dropped after it
/// was queued is still delivered at least once, and its outcome is logged
/// (tracing, target `iothub_net::router`) instead of returned.
///
/// When the last handle is dropped the driver shuts down as
/// [`shutdown`](Self::shutdown) would, with a 5 s drain.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    status: watch::Receiver<Status>,
}

impl Client {
    /// Starts a client: checks the options, builds the TLS configuration
    /// and spawns the driver task, which connects at once. Must be called
    /// within a tokio runtime.
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let (handle, inbox) = Handle::new();
        let driver = Driver::<Tokio>::new(options, inbox)?;
        let (publish, status) = watch::channel(driver.status());
        tokio::spawn(driver.run(move |now| {
            publish.send_if_modified(|s| {
                let changed = *s != now;
                *s = now;
                changed
            });
        }));
        Ok(Client {
            inner: Arc::new(Inner { handle, status }),
        })
    }

    /// Starts a client from a connection string with default options
    /// (MQTT over TLS on 8883, webpki roots).
    pub fn from_connection_string(cs: &str) -> Result<Client, Error> {
        Client::new(ClientOptions::from_connection_string(cs)?)
    }

    /// Sends a telemetry message and resolves when the hub acknowledged it
    /// (QoS 1: PUBACK) or, for QoS 0, when it was written. Waits for room
    /// while the session's queue is full.
    ///
    /// Cancelling: before the message reached the driver, it is not sent;
    /// after, it is delivered anyway and its outcome logged.
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

    /// Cloud-to-device messages (device identities). Each is acknowledged
    /// to the hub when the driver hands it to this stream (or by
    /// [`ack`](Self::ack) with [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)):
    /// keep the stream alive, or messages received meanwhile are lost
    /// (and logged).
    pub async fn c2d_messages(&self) -> Result<Events<InboundMessage>, Error> {
        self.inner.handle.c2d_messages().await
    }

    /// IoT Edge module input messages (module identities); acknowledged
    /// like [`c2d_messages`](Self::c2d_messages).
    pub async fn input_messages(&self) -> Result<Events<InputMessage>, Error> {
        self.inner.handle.input_messages().await
    }

    /// Acknowledges a message in manual-ack mode.
    pub async fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.inner.handle.ack(token).await
    }

    /// Resolves when the device should provision again under `policy`,
    /// counting from now: the hub refused its credentials (CONNACK 4 or 5:
    /// deleted, disabled, moved) or that many connection attempts failed
    /// in a row. The driver reads every session event for it. A second
    /// call replaces the first (which then fails with [`Error::Closed`]);
    /// [`Error::Closed`] too if the client stops first.
    /// [`run_provisioned`](crate::run_provisioned) uses it.
    pub async fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        self.inner.handle.reprovision_needed(policy).await
    }

    /// Watches the connection state; see [`Status`].
    #[must_use]
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// Waits until the client is connected. Fails with
    /// [`Error::Refused`] when the hub refused the credentials (wrong key,
    /// unknown device; the client keeps retrying in the background) and
    /// [`Error::Stopped`] when the session stopped.
    pub async fn wait_connected(&self) -> Result<(), Error> {
        let mut rx = self.inner.status.clone();
        let status = rx
            .wait_for(|s| s.state == ConnectionState::Connected || s.failure().is_some())
            .await
            .map_err(|_| Error::Closed)?;
        match status.failure() {
            Some(e) if status.state != ConnectionState::Connected => Err(e),
            _ => Ok(()),
        }
    }

    /// Graceful shutdown: lets queued and in-flight telemetry and twin
    /// requests finish for up to `timeout`, disconnects, and resolves when
    /// the driver has ended. What could not finish is failed (each future
    /// gets its error). Calling it again, or after a stop, returns at once.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.handle.shutdown(timeout).await;
        Ok(())
    }
}

impl Client {
    /// The driver's command channel (the IoT Edge token route).
    pub(crate) fn control(&self) -> &Commands {
        self.inner.handle.commands()
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
