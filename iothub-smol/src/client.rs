//! The public handle: [`Client`], its streams and method requests. Every
//! method only sends a command to the driver and awaits the answer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use iothub_net::driver::{Command, MethodCall, Reply, Sink, Subscribe, Telemetry};
use iothub_net::watch::StatusWatch;
use iothub_net::{ClientOptions, DesiredUpdate, Error, InputMessage, Status};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, InboundMessage, Message, MethodId, Twin};
use serde_json::Value;

use crate::driver::Driver;

/// Telemetry messages waiting for room in the session's queue.
const TELEMETRY_CHANNEL: usize = 64;

/// A reply whose answer arrives on a one-slot channel.
pub(crate) fn reply<T: Send + 'static>() -> (Reply<T>, Receiver<Result<T, Error>>) {
    let (tx, rx) = async_channel::bounded(1);
    (
        Reply::new(move |v| tx.try_send(v).err().map(|e| e.into_inner())),
        rx,
    )
}

pub(crate) async fn answer<T>(rx: Receiver<Result<T, Error>>) -> Result<T, Error> {
    rx.recv().await.map_err(|_| Error::Closed)?
}

/// A direct method call; answer it with [`respond`](Self::respond) before
/// the caller's timeout.
#[derive(Debug)]
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The request body (JSON or empty).
    pub payload: Bytes,
    id: Option<MethodId>,
    ctl: Option<Sender<Box<Command>>>,
}

impl MethodRequest {
    /// Answers with a status and a body (JSON or empty). Fails with
    /// [`CommandError::MethodResponseUndeliverable`](iothub_proto::session::CommandError::MethodResponseUndeliverable)
    /// if the connection the call came on is gone.
    pub async fn respond(mut self, status: u16, payload: impl Into<Bytes>) -> Result<(), Error> {
        let (Some(id), Some(ctl)) = (self.id.take(), self.ctl.take()) else {
            return Err(Error::Closed);
        };
        let (tx, rx) = reply();
        let cmd = Command::Respond(id, status, payload.into(), tx);
        ctl.send(Box::new(cmd)).await.map_err(|_| Error::Closed)?;
        answer(rx).await
    }
}

impl Drop for MethodRequest {
    fn drop(&mut self) {
        if self.id.is_some() {
            tracing::warn!(method = %self.name, "method request dropped without an answer");
        }
    }
}

/// A stream of inbound items. Use [`recv`](Self::recv) or the
/// [`futures_core::Stream`] impl. It ends when the client stops, or when
/// a newer stream of the same kind is asked for.
#[derive(Debug)]
pub struct Events<T> {
    rx: Pin<Box<Receiver<T>>>,
}

impl<T> Events<T> {
    /// The next item; `None` once the stream has ended. Cancel-safe.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.ok()
    }
}

impl<T> futures_core::Stream for Events<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// An IoT Hub device or module client: a cheap handle (`Clone + Send +
/// Sync`) to one [`Driver`]. When the last handle is dropped the driver
/// shuts down as [`shutdown`](Self::shutdown) would, with a 5 s drain.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctl: Sender<Box<Command>>,
    tel: Sender<Telemetry>,
    status: Arc<StatusWatch>,
}

impl Client {
    /// A client and its driver: checks the options and builds the TLS
    /// configuration. Spawn the driver on your executor (it connects at
    /// once); nothing happens until it runs.
    pub fn new(options: ClientOptions) -> Result<(Client, Driver), Error> {
        let (ctl_tx, ctl_rx) = async_channel::unbounded();
        let (tel_tx, tel_rx) = async_channel::bounded(TELEMETRY_CHANNEL);
        let (driver, status) = Driver::new(options, ctl_rx, tel_rx)?;
        let inner = Inner {
            ctl: ctl_tx,
            tel: tel_tx,
            status,
        };
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
    pub(crate) fn control(&self) -> &Sender<Box<Command>> {
        &self.inner.ctl
    }

    async fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = reply();
        self.inner
            .ctl
            .send(Box::new(make(tx)))
            .await
            .map_err(|_| Error::Closed)?;
        answer(rx).await
    }

    /// Sends a telemetry message and resolves when the hub acknowledged it
    /// (QoS 1: PUBACK) or, for QoS 0, when it was written. Waits for room
    /// while the session's queue is full. Cancelling after the message
    /// reached the driver does not stop it.
    pub async fn send_telemetry(&self, message: impl Into<Message>) -> Result<(), Error> {
        let (tx, rx) = reply();
        self.inner
            .tel
            .send(Box::new((message.into(), tx)))
            .await
            .map_err(|_| Error::Closed)?;
        answer(rx).await
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

    async fn subscribe<T: Send + 'static>(
        &self,
        make: impl FnOnce(Sink<T>) -> Subscribe,
    ) -> Result<Events<T>, Error> {
        let (tx, rx) = async_channel::unbounded();
        let sink = make(Sink::new(move |item| tx.try_send(item).is_ok()));
        self.call(|reply| Command::Enable(sink, reply)).await?;
        Ok(Events { rx: Box::pin(rx) })
    }

    /// Desired-properties updates: a [`DesiredUpdate::Full`] after every
    /// connection whose twin differs from the last version seen, then
    /// patches. Subscribes on first use; a second call ends the first
    /// stream.
    pub async fn desired_updates(&self) -> Result<Events<DesiredUpdate>, Error> {
        self.subscribe(Subscribe::Desired).await
    }

    /// Direct method calls. Subscribes on first use; a second call ends
    /// the first stream.
    pub async fn method_requests(&self) -> Result<Events<MethodRequest>, Error> {
        let ctl = self.inner.ctl.downgrade();
        self.subscribe(|methods: Sink<MethodRequest>| {
            Subscribe::Methods(Sink::new(move |call: MethodCall| {
                methods.deliver(MethodRequest {
                    name: call.name,
                    payload: call.payload,
                    id: Some(call.id),
                    ctl: ctl.upgrade(),
                })
            }))
        })
        .await
    }

    /// Cloud-to-device messages (device identities), acknowledged to the
    /// hub when the driver hands them to this stream (or by
    /// [`ack`](Self::ack) with [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)).
    pub async fn c2d_messages(&self) -> Result<Events<InboundMessage>, Error> {
        self.subscribe(Subscribe::C2d).await
    }

    /// IoT Edge module input messages (module identities).
    pub async fn input_messages(&self) -> Result<Events<InputMessage>, Error> {
        self.subscribe(Subscribe::Inputs).await
    }

    /// Acknowledges a message in manual-ack mode.
    pub async fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.call(|tx| Command::Ack(token, tx)).await
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
        self.call(|tx| Command::WatchReprovision(policy, tx)).await
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
        let _ = self.call(|tx| Command::Shutdown(timeout, tx)).await;
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
