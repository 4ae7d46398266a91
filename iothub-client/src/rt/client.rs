//! The async client, once for every async runtime: [`Client<R>`] is
//! `iothub-tokio`'s `Client` (`R` = tokio) and `iothub-smol`'s (`R` =
//! async-io). Every call goes through the [`Handle`] (a command to the
//! driver, then the answer); the status is a [`StatusWatch`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, InboundMessage, Message, Twin};
use serde_json::Value;

use super::Runtime;
use super::driver::Driver;
use crate::builder::{Adapter, ClientBuilder, Parts, Resolved, RunYourself, Source, TokenRoute};
use crate::handle::{Events, Handle, MethodRequest, Receipt};
use crate::{DesiredUpdate, Error, InputMessage, StatusWatch, token};

/// An IoT Hub device or module client on runtime `R`: a cheap handle
/// (`Clone + Send + Sync`) to one driver that owns the session and the
/// socket. Make one with [`Client::builder`].
///
/// Every future is cancel-safe in this sense: dropping it never corrupts
/// the client. A command that reached the driver goes on without you: a
/// telemetry message whose `send_telemetry` future was dropped after it
/// was queued is still delivered at least once, and its outcome is logged
/// (tracing, target `iothub_client::router`) instead of returned.
///
/// When the last handle is dropped the driver shuts down as
/// [`shutdown`](Self::shutdown) would, with a 5 s drain.
pub struct Client<R> {
    inner: Arc<Inner>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Client<R> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("status", &self.inner.status.get())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    status: StatusWatch,
}

/// The driver of a client built with [`ClientBuilder::build_with_driver`]:
/// a future to run on the executor of your choice; it ends when the
/// client has stopped. Nothing happens until it runs.
#[must_use = "the client does nothing until its driver runs"]
pub struct ClientDriver(Pin<Box<dyn Future<Output = ()> + Send>>);

impl fmt::Debug for ClientDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientDriver")
    }
}

impl Future for ClientDriver {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// A future of a built client.
pub type Building<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

impl<R: Runtime> Adapter for Client<R> {
    type Built = Building<Client<R>>;

    /// Spawns the driver with the runtime ([`Runtime::spawn`]).
    fn build(parts: Parts) -> Self::Built {
        Box::pin(async move {
            let (client, driver) = start::<R>(parts).await?;
            R::spawn(Box::pin(driver)).map_err(|_| Error::Closed)?;
            Ok(client)
        })
    }
}

impl<R: Runtime> RunYourself for Client<R> {
    type WithDriver = Building<(Client<R>, ClientDriver)>;

    fn build_with_driver(parts: Parts) -> Self::WithDriver {
        Box::pin(start::<R>(parts))
    }
}

/// The client and its driver, the token route installed: the edge CA
/// fetched for an IoT Edge module, the options checked, the TLS
/// configuration built.
async fn start<R: Runtime>(mut parts: Parts) -> Result<(Client<R>, ClientDriver), Error> {
    let trust_bundle = match parts.edge()?.cloned() {
        #[cfg(unix)]
        Some(env) => Some(
            super::edge::trust_bundle::<R>(&env)
                .await
                .map_err(Error::Edge)?,
        ),
        #[cfg(not(unix))]
        Some(_) => return Err(Error::Edge(crate::EdgeError::NotUnixSocket)),
        None => None,
    };
    let Resolved { options, tokens } = parts.resolve(trust_bundle)?;
    let (handle, inbox) = Handle::new();
    let driver = Driver::<R>::new(options, inbox)?;
    match tokens {
        TokenRoute::Session => {}
        TokenRoute::Signer(signer, uri) => token::install_signer(handle.commands(), uri, signer)?,
        #[cfg(unix)]
        TokenRoute::Workload(env) => {
            super::edge::install_token_source::<R>(handle.commands(), *env)?;
        }
        #[cfg(not(unix))]
        TokenRoute::Workload(_) => return Err(Error::Edge(crate::EdgeError::NotUnixSocket)),
    }
    let status = driver.watch();
    let client = Client {
        inner: Arc::new(Inner { handle, status }),
        runtime: PhantomData,
    };
    Ok((client, ClientDriver(Box::pin(driver.run()))))
}

impl<R: Runtime> Client<R> {
    /// A builder of a client of `source`: a connection string, a
    /// [`ClientOptions`](crate::ClientOptions), or an IoT Edge module
    /// ([`Source`]); then options, then `build().await`.
    pub fn builder(source: impl Into<Source>) -> ClientBuilder<Client<R>> {
        ClientBuilder::new(source)
    }

    /// The driver's command channel (the IoT Edge token route).
    #[doc(hidden)]
    #[must_use]
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
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

    /// Hands a telemetry message to the driver and returns a [`Receipt`]
    /// of its outcome (await it now or later). Waits only while the
    /// session's queue is full (backpressure); dropping the receipt does
    /// not cancel the message.
    pub async fn queue_telemetry(&self, message: impl Into<Message>) -> Result<Receipt<()>, Error> {
        self.inner.handle.queue_telemetry(message.into()).await
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

    /// Cloud-to-device messages (device identities), each acknowledged to
    /// the hub when this stream hands it out (or by [`ack`](Self::ack)
    /// with [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)).
    /// Messages that arrived before are held, unacknowledged, and come
    /// first; those left in a stream you drop go to the next one.
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
    pub async fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        self.inner.handle.reprovision_needed(policy).await
    }

    /// A watch of the connection status: [`get`](StatusWatch::get),
    /// [`changed`](StatusWatch::changed)`.await`,
    /// [`wait_for`](StatusWatch::wait_for)`.await`.
    #[must_use]
    pub fn status(&self) -> StatusWatch {
        self.inner.status.clone()
    }

    /// Waits until the client is connected. Fails with
    /// [`Error::Refused`] when the hub refused the credentials (wrong key,
    /// unknown device; the client keeps retrying in the background),
    /// [`Error::Stopped`] when the session stopped.
    pub async fn wait_connected(&self) -> Result<(), Error> {
        self.inner.status.connected().await
    }

    /// Graceful shutdown: lets queued and in-flight telemetry and twin
    /// requests finish for up to `timeout`, disconnects, and resolves once
    /// the session has stopped (what could not finish is failed: each
    /// future gets its error). Calling it again, or after a stop, returns
    /// at once.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.handle.shutdown(timeout).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_are_clone_send_sync() {
        struct NoRuntime;
        fn check<T: Clone + Send + Sync>() {}
        check::<super::Client<NoRuntime>>();
    }
}
