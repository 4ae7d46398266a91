//! The public handle: [`Client`], its streams and method calls. Every
//! method only sends a command to the driver task and awaits the answer;
//! nothing here touches the session. The values handed out (error,
//! status, stream items) are the runtime-neutral ones of `iothub_net::api`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use iothub_net::{
    ClientOptions, DesiredUpdate, Error, InputMessage, MethodCall, OptionsError, Status, Subscriber,
};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, ConnectionState, InboundMessage, Message, MethodId, Twin};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::driver::{Command, Driver, Telemetry};
use crate::transport::Endpoint;

/// A direct method call; answer it with [`respond`](Self::respond) before
/// the caller's timeout. Dropping it unanswered leaves the caller to time
/// out (and is logged).
#[derive(Debug)]
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The request body (JSON or empty).
    pub payload: Bytes,
    pub(crate) id: Option<MethodId>,
    pub(crate) ctl: Option<mpsc::UnboundedSender<Box<Command>>>,
}

impl MethodRequest {
    /// Answers with a status and a body (JSON or empty). Fails with
    /// [`CommandError::MethodResponseUndeliverable`](iothub_proto::session::CommandError::MethodResponseUndeliverable) if the connection the
    /// call came on is gone (the hub accepts answers only there).
    pub async fn respond(mut self, status: u16, payload: impl Into<Bytes>) -> Result<(), Error> {
        let (Some(id), Some(ctl)) = (self.id.take(), self.ctl.take()) else {
            return Err(Error::Closed);
        };
        let (tx, rx) = oneshot::channel();
        ctl.send(Box::new(Command::Respond(id, status, payload.into(), tx)))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for MethodRequest {
    fn drop(&mut self) {
        if self.id.is_some() {
            tracing::warn!(method = %self.name, "method request dropped without an answer");
        }
    }
}

/// A stream of inbound items (cloud-to-device messages, module inputs,
/// method calls, desired updates). Use [`recv`](Self::recv) or the
/// [`futures_core::Stream`] impl. It ends when the client stops, or when a
/// newer stream of the same kind is asked for.
#[derive(Debug)]
pub struct Events<T> {
    rx: mpsc::UnboundedReceiver<T>,
}

impl<T> Events<T> {
    /// The next item; `None` once the stream has ended. Cancel-safe.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }
}

impl<T> futures_core::Stream for Events<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}

/// An IoT Hub device or module client: a cheap handle (`Clone + Send +
/// Sync`) to one driver task that owns the session and the socket.
///
/// Every future is cancel-safe in this sense: dropping it never corrupts
/// the client. A command that reached the driver goes on without you: a
/// telemetry message whose `send_telemetry` future was dropped after it
/// was queued is still delivered at least once, and its outcome is logged
/// (tracing, target `iothub_tokio`) instead of returned.
///
/// When the last handle is dropped the driver shuts down as
/// [`shutdown`](Self::shutdown) would, with a 5 s drain.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctl: mpsc::UnboundedSender<Box<Command>>,
    tel: mpsc::Sender<Telemetry>,
    status: watch::Receiver<Status>,
}

impl Client {
    /// Starts a client: checks the options, builds the TLS configuration
    /// and spawns the driver task, which connects at once. Must be called
    /// within a tokio runtime.
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let tls = options.prepare()?;
        let endpoint = Endpoint::new(&options, tls).map_err(OptionsError::from)?;
        let span = tracing::info_span!(
            "iothub",
            client_id = %options.config.identity.client_id(),
        );
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (tel_tx, tel_rx) = mpsc::channel(TELEMETRY_CHANNEL);
        let (driver, status) = Driver::new(options.config, endpoint, ctl_rx, tel_rx)
            .map_err(|e| Error::Options(OptionsError::Config(e)))?;
        tokio::spawn(driver.run().instrument(span));
        Ok(Client {
            inner: Arc::new(Inner {
                ctl: ctl_tx,
                tel: tel_tx,
                status,
            }),
        })
    }

    /// Starts a client from a connection string with default options
    /// (MQTT over TLS on 8883, webpki roots).
    pub fn from_connection_string(cs: &str) -> Result<Client, Error> {
        Client::new(ClientOptions::from_connection_string(cs)?)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .ctl
            .send(Box::new(make(tx)))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Sends a telemetry message and resolves when the hub acknowledged it
    /// (QoS 1: PUBACK) or, for QoS 0, when it was written. Waits for room
    /// while the session's queue is full.
    ///
    /// Cancelling: before the message reached the driver, it is not sent;
    /// after, it is delivered anyway and its outcome logged.
    pub async fn send_telemetry(&self, message: impl Into<Message>) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tel
            .send(Box::new((message.into(), tx)))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Reads the full twin (desired and reported sections).
    pub async fn get_twin(&self) -> Result<Twin, Error> {
        self.call(Command::GetTwin).await
    }

    /// Updates reported properties with a JSON object patch (`null`
    /// deletes) and returns the new reported `$version`.
    pub async fn update_reported(&self, patch: &Value) -> Result<u64, Error> {
        let json = Bytes::from(patch.to_string());
        self.call(|tx| Command::UpdateReported(json, tx)).await
    }

    /// Subscribes: the driver's router feeds `item(value)` to a new
    /// stream.
    async fn subscribe<T: Send + 'static, U: 'static>(
        &self,
        kind: fn(iothub_net::Outlet<U>) -> Subscriber,
        mut item: impl FnMut(U) -> T + Send + 'static,
    ) -> Result<Events<T>, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let outlet = kind(Box::new(move |u| tx.send(item(u)).is_ok()));
        self.call(|reply| Command::Subscribe(outlet, reply)).await?;
        Ok(Events { rx })
    }

    /// Desired-properties updates: a [`DesiredUpdate::Full`] after every
    /// connection whose twin differs from the last version seen, then
    /// patches. Subscribes on first use; a second call ends the first
    /// stream.
    pub async fn desired_updates(&self) -> Result<Events<DesiredUpdate>, Error> {
        self.subscribe(Subscriber::Desired, |u| u).await
    }

    /// Direct method calls. Subscribes on first use; a second call ends
    /// the first stream.
    pub async fn method_requests(&self) -> Result<Events<MethodRequest>, Error> {
        // A weak sender: streams and calls in flight do not keep the driver
        // alive once every handle is gone.
        let ctl = self.inner.ctl.downgrade();
        self.subscribe(Subscriber::Methods, move |call: MethodCall| MethodRequest {
            name: call.name,
            payload: call.payload,
            id: Some(call.id),
            ctl: ctl.upgrade(),
        })
        .await
    }

    /// Cloud-to-device messages (device identities). Each is acknowledged
    /// to the hub when the driver hands it to this stream (or by
    /// [`ack`](Self::ack) with [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)):
    /// keep the stream alive, or messages received meanwhile are lost
    /// (and logged).
    pub async fn c2d_messages(&self) -> Result<Events<InboundMessage>, Error> {
        self.subscribe(Subscriber::C2d, |m| m).await
    }

    /// IoT Edge module input messages (module identities); acknowledged
    /// like [`c2d_messages`](Self::c2d_messages).
    pub async fn input_messages(&self) -> Result<Events<InputMessage>, Error> {
        self.subscribe(Subscriber::Inputs, |m| m).await
    }

    /// Acknowledges a message in manual-ack mode.
    pub async fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.call(|tx| Command::Ack(token, tx)).await
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
        self.call(|tx| Command::WatchReprovision(policy, tx)).await
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
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .ctl
            .send(Box::new(Command::Shutdown(timeout, tx)))
            .is_ok()
        {
            let _ = rx.await;
        }
        Ok(())
    }
}

impl Client {
    /// Sends a command that needs no answer (the IoT Edge token route).
    pub(crate) fn control(&self, c: Command) -> Result<(), Error> {
        self.inner.ctl.send(Box::new(c)).map_err(|_| Error::Closed)
    }

    /// The command channel, held weakly (does not keep the driver up).
    pub(crate) fn weak_control(&self) -> mpsc::WeakUnboundedSender<Box<Command>> {
        self.inner.ctl.downgrade()
    }
}

/// Telemetry messages waiting for room in the session's queue.
const TELEMETRY_CHANNEL: usize = 64;

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync>() {}
        check::<super::Client>();
    }
}
