//! The public handle: [`Client`], its [`Receipt`]s and its [`Events`]
//! iterators. Every method sends a command to the driver and blocks on
//! the answer; nothing here touches the session.

use std::sync::mpsc::{
    self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use iothub_client::builder::{Adapter, Parts, Resolved, RunYourself, TokenRoute};
use iothub_client::driver::{Command, Reply, Responder, Sink, Subscribe, Taken, Telemetry};
use iothub_client::{
    ClientBuilder, DesiredUpdate, Error, Inbound, InputMessage, Source, StatusWatch,
};
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, InboundMessage, Message, Twin};
use serde_json::Value;

use crate::driver::{Bell, Driver, Input};

/// Telemetry messages waiting for room in the session's queue; senders
/// block while it is full.
const TELEMETRY_CHANNEL: usize = 64;

/// The answer to a command, to wait for now or later.
#[derive(Debug)]
#[must_use = "a receipt does nothing unless waited on; dropping it does not cancel the command"]
pub struct Receipt<T> {
    rx: Receiver<Result<T, Error>>,
}

impl<T> Receipt<T> {
    fn new() -> (Reply<T>, Receipt<T>)
    where
        T: Send + 'static,
    {
        // One answer: a channel of one slot (an unbounded channel would
        // allocate a block of 31 slots for it).
        let (tx, rx) = mpsc::sync_channel(1);
        (
            Reply::new(move |v| {
                tx.try_send(v).err().map(|e| match e {
                    TrySendError::Full(v) | TrySendError::Disconnected(v) => v,
                })
            }),
            Receipt { rx },
        )
    }

    /// Blocks until the answer comes.
    pub fn wait(self) -> Result<T, Error> {
        self.rx.recv().map_err(|_| Error::Closed)?
    }

    /// Blocks for at most `timeout`; [`Error::Timeout`] gives up waiting,
    /// not the command.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, Error> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }

    /// The answer if it has come.
    #[must_use]
    pub fn try_get(&self) -> Option<Result<T, Error>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(Error::Closed)),
        }
    }
}

/// A direct method call; answer it with [`respond`](Self::respond) before
/// the caller's timeout.
#[derive(Debug)]
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The request body (JSON or empty).
    pub payload: Bytes,
    responder: Responder<Sender<Input>>,
}

impl MethodRequest {
    fn new(name: String, payload: Bytes, responder: Responder<Sender<Input>>) -> MethodRequest {
        MethodRequest {
            name,
            payload,
            responder,
        }
    }

    /// Answers with a status and a body (JSON or empty). Fails with
    /// [`CommandError::MethodResponseUndeliverable`](iothub_proto::session::CommandError::MethodResponseUndeliverable)
    /// if the connection the call came on is gone.
    pub fn respond(mut self, status: i32, payload: impl Into<Bytes>) -> Result<(), Error> {
        let (reply, receipt) = Receipt::new();
        let (ctl, cmd) = (self.responder)
            .respond(status, payload.into(), reply)
            .ok_or(Error::Closed)?;
        ctl.send(Input::Command(cmd)).map_err(|_| Error::Closed)?;
        receipt.wait()
    }
}

/// Inbound items (C2D messages, module inputs, method calls, desired
/// updates): an [`Iterator`] that blocks for the next one and ends when
/// the client stops or a newer stream of the same kind is asked for.
///
/// A cloud-to-device or module input message is acknowledged to the hub
/// when this stream hands it out (unless
/// [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)), not
/// before: the messages still inside when the stream is dropped go back to
/// the client, which holds them unacknowledged for the next stream.
#[derive(Debug)]
pub struct Events<T> {
    rx: Receiver<T>,
    /// Set once the stream is dropped: the driver then keeps its items.
    closed: Arc<Mutex<bool>>,
    taken: Option<Taken<T>>,
}

impl<T> Events<T> {
    /// The next item, blocking; `None` once the stream has ended.
    pub fn recv(&self) -> Option<T> {
        let item = self.rx.recv().ok()?;
        self.took(&item);
        Some(item)
    }

    /// The next item within `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let item = self.rx.recv_timeout(timeout)?;
        self.took(&item);
        Ok(item)
    }

    /// The next item if one is waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let item = self.rx.try_recv()?;
        self.took(&item);
        Ok(item)
    }

    /// Reports an item handed out (a message taken: acknowledged).
    fn took(&self, item: &T) {
        if let Some(taken) = &self.taken {
            taken.taken(item);
        }
    }
}

impl<T> Drop for Events<T> {
    fn drop(&mut self) {
        let Some(taken) = &self.taken else { return };
        // Under the lock the driver's sink holds while it sends: no item
        // can slip in after the last one is taken out.
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        *closed = true;
        while let Ok(item) = self.rx.try_recv() {
            taken.returned(item);
        }
    }
}

impl<T> Iterator for Events<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.recv()
    }
}

/// An IoT Hub device or module client: a cheap handle (`Clone + Send +
/// Sync`) to one driver. Every method blocks the calling thread only.
///
/// When the last handle is dropped the driver shuts down as
/// [`shutdown`](Self::shutdown) would, with a 5 s drain.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ctl: Sender<Input>,
    tel: SyncSender<Telemetry>,
    bell: Bell,
    status: StatusWatch,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.ctl.send(Input::HandlesDropped);
    }
}

impl Client {
    /// A builder of a client of `source`: a connection string, a
    /// [`ClientOptions`](crate::ClientOptions), or an IoT Edge module
    /// ([`Source`]); then
    /// options, then [`build`](iothub_client::ClientBuilder::build) (the
    /// driver on a thread of its own) or
    /// [`build_with_driver`](iothub_client::ClientBuilder::build_with_driver)
    /// (you [`run`](Driver::run) it).
    pub fn builder(source: impl Into<Source>) -> ClientBuilder<Client> {
        ClientBuilder::new(source)
    }

    /// The client and its driver, the token route installed: the edge CA
    /// fetched for an IoT Edge module, the options checked, the TLS
    /// configuration built.
    fn start(mut parts: Parts) -> Result<(Client, Driver), Error> {
        let trust_bundle = match parts.edge()?.cloned() {
            #[cfg(unix)]
            Some(env) => Some(crate::edge::trust_bundle(&env).map_err(Error::Edge)?),
            #[cfg(not(unix))]
            Some(_) => return Err(Error::Edge(iothub_client::EdgeError::NotUnixSocket)),
            None => None,
        };
        let Resolved { options, tokens } = parts.resolve(trust_bundle)?;
        let (ctl, inputs) = mpsc::channel();
        let (tel, telemetry) = mpsc::sync_channel(TELEMETRY_CHANNEL);
        let bell = Bell::default();
        let (driver, status) = Driver::new(options, inputs, ctl.clone(), telemetry, bell.clone())?;
        let client = Client {
            inner: Arc::new(Inner {
                ctl,
                tel,
                bell,
                status,
                thread: Mutex::new(None),
            }),
        };
        match tokens {
            TokenRoute::Session => {}
            TokenRoute::Signer(signer, uri) => crate::token::install_signer(&client, uri, signer)?,
            #[cfg(unix)]
            TokenRoute::Workload(env) => crate::edge::install_token_source(&client, *env)?,
            #[cfg(not(unix))]
            TokenRoute::Workload(_) => {
                return Err(Error::Edge(iothub_client::EdgeError::NotUnixSocket));
            }
        }
        Ok((client, driver))
    }

    /// The driver's input channel (the token route of IoT Edge and of
    /// custom signers).
    pub(crate) fn inputs(&self) -> Sender<Input> {
        self.inner.ctl.clone()
    }

    fn command<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Receipt<T>, Error> {
        let (reply, receipt) = Receipt::new();
        self.inner
            .ctl
            .send(Input::Command(make(reply)))
            .map_err(|_| Error::Closed)?;
        Ok(receipt)
    }

    /// Sends a telemetry message and returns once the hub acknowledged it
    /// (QoS 1: PUBACK) or, for QoS 0, once it was written.
    pub fn send_telemetry(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.queue_telemetry(message)?.wait()
    }

    /// Hands a telemetry message to the driver and returns a receipt for
    /// its outcome. Blocks only while the driver's queue is full
    /// (backpressure); dropping the receipt does not cancel the message.
    pub fn queue_telemetry(&self, message: impl Into<Message>) -> Result<Receipt<()>, Error> {
        let (reply, receipt) = Receipt::new();
        self.inner
            .tel
            .send(Box::new((message.into(), reply)))
            .map_err(|_| Error::Closed)?;
        if self.inner.bell.ring() {
            self.inner
                .ctl
                .send(Input::Telemetry)
                .map_err(|_| Error::Closed)?;
        }
        Ok(receipt)
    }

    /// Reads the full twin (desired and reported sections).
    pub fn get_twin(&self) -> Result<Twin, Error> {
        self.command(Command::GetTwin)?.wait()
    }

    /// Updates reported properties with a JSON object patch (`null`
    /// deletes) and returns the new reported `$version`.
    pub fn update_reported(&self, patch: &Value) -> Result<u64, Error> {
        let json = Bytes::from(patch.to_string());
        self.command(|r| Command::UpdateReported(json, r))?.wait()
    }

    fn subscribe<T: Send + 'static>(
        &self,
        make: impl FnOnce(Sink<T>) -> Subscribe,
        taken: Option<Taken<T>>,
    ) -> Result<Events<T>, Error> {
        // Unbounded, yet bounded by the session: a message stays in it
        // unacknowledged until taken, within `Config::max_inbound_pending`.
        let (tx, rx) = mpsc::channel();
        let closed = Arc::new(Mutex::new(false));
        let guard = Arc::clone(&closed);
        let sink = make(Sink::new(move |item| {
            let closed = guard.lock().unwrap_or_else(PoisonError::into_inner);
            if *closed {
                return Err(item);
            }
            tx.send(item).map_err(|e| e.0)
        }));
        self.command(|r| Command::Enable(sink, r))?.wait()?;
        Ok(Events { rx, closed, taken })
    }

    /// The reports of a message stream, over the driver's input channel.
    fn taken<T: Inbound>(&self) -> Taken<T> {
        let ctl = self.inner.ctl.clone();
        Taken::new(move |c| ctl.send(Input::Command(c)).is_ok())
    }

    /// Desired-properties updates: a [`DesiredUpdate::Full`] after every
    /// connection whose twin differs from the last version seen, then
    /// patches. Subscribes on first use; a second call ends the first
    /// stream.
    pub fn desired_updates(&self) -> Result<Events<DesiredUpdate>, Error> {
        self.subscribe(Subscribe::Desired, None)
    }

    /// Direct method calls. Subscribes on first use; a second call ends
    /// the first stream.
    pub fn method_requests(&self) -> Result<Events<MethodRequest>, Error> {
        let ctl = self.inner.ctl.clone();
        self.subscribe(
            |sink| Subscribe::methods(sink, move || Some(ctl.clone()), MethodRequest::new),
            None,
        )
    }

    /// Cloud-to-device messages (device identities). Each is acknowledged
    /// to the hub when this stream hands it to you (or by
    /// [`ack`](Self::ack) with [`Config::manual_ack`](iothub_proto::session::Config::manual_ack));
    /// until then the hub keeps it. Messages that arrive before you ask
    /// (a kept CleanSession 0 subscription after a restart) are held,
    /// unacknowledged, and come first. A second call ends the first
    /// stream.
    pub fn c2d_messages(&self) -> Result<Events<InboundMessage>, Error> {
        self.subscribe(Subscribe::C2d, Some(self.taken()))
    }

    /// IoT Edge module input messages (module identities), acknowledged
    /// like [`c2d_messages`](Self::c2d_messages).
    pub fn input_messages(&self) -> Result<Events<InputMessage>, Error> {
        self.subscribe(Subscribe::Inputs, Some(self.taken()))
    }

    /// Acknowledges a message in manual-ack mode.
    pub fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.command(|r| Command::Ack(token, r))?.wait()
    }

    /// Asks the driver to watch for the need to provision again under
    /// `policy` ([`ReprovisionPolicy`]: the hub refused the credentials,
    /// or so many connection attempts failed in a row) and returns at
    /// once with a receipt for the [`ReprovisionReason`]. The receipt
    /// ends with [`Error::Closed`] when the client stops first. The
    /// driver has the watch before any later command of this handle.
    pub fn watch_reprovision(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<Receipt<ReprovisionReason>, Error> {
        self.command(|r| Command::WatchReprovision(policy, r))
    }

    /// Blocks until `policy` says the device should be provisioned again
    /// (see [`watch_reprovision`](Self::watch_reprovision)); then
    /// shut this client down and provision
    /// ([`run_provisioned`](crate::run_provisioned) does both).
    pub fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        self.watch_reprovision(policy)?.wait()
    }

    /// A watch of the connection status: [`get`](StatusWatch::get),
    /// [`wait_changed`](StatusWatch::wait_changed),
    /// [`wait_for_timeout`](StatusWatch::wait_for_timeout).
    #[must_use]
    pub fn status(&self) -> StatusWatch {
        self.inner.status.clone()
    }

    /// Blocks until the client is connected, for at most `timeout`.
    /// Fails with [`Error::Refused`] when the hub refused the credentials
    /// (the client keeps retrying in the background), [`Error::Stopped`]
    /// when the session stopped and [`Error::Timeout`] when time ran out.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.status.wait_connected(timeout)
    }

    /// Graceful shutdown: lets queued and in-flight telemetry and twin
    /// requests finish for up to `timeout`, disconnects, and returns when
    /// the driver has ended (what could not finish fails with its error).
    /// Calling it again, or after a stop, returns at once.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        if let Ok(receipt) = self.command(|r| Command::Shutdown(timeout, r)) {
            let _ = receipt.wait();
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        Ok(())
    }
}

impl Adapter for Client {
    type Built = Result<Client, Error>;

    /// Starts the driver on a thread of its own.
    fn build(parts: Parts) -> Result<Client, Error> {
        let (client, driver) = Client::start(parts)?;
        let thread = std::thread::Builder::new()
            .name("iothub-driver".into())
            .spawn(move || driver.run())
            .map_err(|_| Error::Closed)?;
        *client
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(client)
    }
}

impl RunYourself for Client {
    type WithDriver = Result<(Client, Driver), Error>;

    fn build_with_driver(parts: Parts) -> Result<(Client, Driver), Error> {
        Client::start(parts)
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
