//! The client side shared by the async adapters (`iothub-tokio`,
//! `iothub-smol`): a [`Handle`] sends commands and telemetry to the driver
//! over `async-channel` (which needs no runtime) and awaits the answers;
//! [`Events`] and [`MethodRequest`] are the streams and method calls it
//! hands out. The driver reads the other ends, an [`Inbox`]. An adapter's
//! `Client` is a `Handle` plus its status watch and its way to run the
//! driver.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_channel::{Receiver, Sender, TryRecvError, WeakSender};
use bytes::Bytes;
use futures_channel::oneshot;
use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, InboundMessage, Message, Twin};
use serde_json::Value;
use tracing::debug;

use crate::api::{DesiredUpdate, Error, Inbound, InputMessage};
use crate::driver::{
    Command, DriverCore, Ready, Reply, Responder, Sink, Subscribe, Taken, Telemetry,
};

/// Telemetry messages waiting for room in the session's queue.
pub const TELEMETRY_CHANNEL: usize = 64;

/// The driver's command channel (unbounded: `try_send` fails only once
/// the driver has stopped).
pub type Commands = Sender<Box<Command>>;
/// The command channel held weakly: it does not keep the driver up.
pub type WeakCommands = WeakSender<Box<Command>>;

/// A reply whose answer arrives on a oneshot channel, and that channel.
pub fn reply<T: Send + 'static>() -> (Reply<T>, oneshot::Receiver<Result<T, Error>>) {
    let (tx, rx) = oneshot::channel();
    (Reply::oneshot(tx), rx)
}

/// The answer of a [`reply`]; [`Error::Closed`] if the driver dropped it.
pub async fn answer<T>(rx: oneshot::Receiver<Result<T, Error>>) -> Result<T, Error> {
    rx.await.map_err(|_| Error::Closed)?
}

/// The outcome of a command, to await now or later: resolves to what the
/// command answers, or [`Error::Closed`] if the client stopped first.
/// Dropping it does not cancel the command (a telemetry message is still
/// delivered; its outcome is logged).
#[derive(Debug)]
#[must_use = "a receipt does nothing unless awaited; dropping it does not cancel the command"]
pub struct Receipt<T>(oneshot::Receiver<Result<T, Error>>);

impl<T> Receipt<T> {
    /// The outcome if it has come, without waiting.
    pub fn try_get(&mut self) -> Option<Result<T, Error>> {
        match self.0.try_recv() {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(_) => Some(Err(Error::Closed)),
        }
    }
}

impl<T> std::future::Future for Receipt<T> {
    type Output = Result<T, Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// The driver's ends of a [`Handle`]'s channels.
#[derive(Debug)]
pub struct Inbox {
    /// Commands (unbounded: they are few and small).
    pub commands: Receiver<Box<Command>>,
    /// Telemetry (bounded: backpressure once the session's queue is full).
    pub telemetry: Receiver<Telemetry>,
}

impl Inbox {
    /// [`DriverCore::take_ready`] over these channels.
    pub fn take_ready(&self, core: &mut DriverCore, now: crate::clock::Now) {
        let (c, t) = (&self.commands, &self.telemetry);
        core.take_ready(now, || ready(c.try_recv()), || ready(t.try_recv()));
    }

    /// [`DriverCore::take_telemetry`] over the telemetry channel.
    pub fn take_telemetry(&self, core: &mut DriverCore, now: crate::clock::Now) {
        let t = &self.telemetry;
        core.take_telemetry(now, || ready(t.try_recv()));
    }

    /// Once stopped, no command or telemetry will be taken again: closes
    /// both channels, so later sends fail at once ([`Error::Closed`]), and
    /// drops what is already queued, so its replies end (also
    /// [`Error::Closed`]). Dropping the receivers is not enough: an
    /// `async_channel` keeps its queued items while any sender (the
    /// client's handles) lives, so a command sent after the stop but
    /// before the driver's end would wait for an answer forever.
    pub fn refuse_late(&self) {
        self.commands.close();
        self.telemetry.close();
        while let Ok(c) = self.commands.try_recv() {
            debug!("command after the stop: refused");
            drop(c);
        }
        while let Ok(t) = self.telemetry.try_recv() {
            debug!("telemetry after the stop: refused");
            drop(t);
        }
    }
}

fn ready<T>(r: Result<T, TryRecvError>) -> Ready<T> {
    match r {
        Ok(item) => Ready::Item(item),
        Err(TryRecvError::Empty) => Ready::Empty,
        Err(TryRecvError::Closed) => Ready::Closed,
    }
}

/// A direct method call; answer it with [`respond`](Self::respond) before
/// the caller's timeout. Dropping it unanswered leaves the caller to time
/// out (and is logged).
#[derive(Debug)]
pub struct MethodRequest {
    /// The method name.
    pub name: String,
    /// The request body (JSON or empty).
    pub payload: Bytes,
    responder: Responder<Commands>,
}

impl MethodRequest {
    fn new(name: String, payload: Bytes, responder: Responder<Commands>) -> Self {
        MethodRequest {
            name,
            payload,
            responder,
        }
    }

    /// Answers with a status and a body (JSON or empty). Fails with
    /// [`CommandError::MethodResponseUndeliverable`](iothub_proto::session::CommandError::MethodResponseUndeliverable)
    /// if the connection the call came on is gone (the hub accepts
    /// answers only there).
    pub async fn respond(mut self, status: i32, payload: impl Into<Bytes>) -> Result<(), Error> {
        let (tx, rx) = reply();
        let (ctl, cmd) = (self.responder)
            .respond(status, payload.into(), tx)
            .ok_or(Error::Closed)?;
        ctl.send(Box::new(cmd)).await.map_err(|_| Error::Closed)?;
        answer(rx).await
    }
}

/// A stream of inbound items (cloud-to-device messages, module inputs,
/// method calls, desired updates). Use [`recv`](Self::recv) or the
/// [`futures_core::Stream`] impl. It ends when the client stops, or when a
/// newer stream of the same kind is asked for.
///
/// A cloud-to-device or module input message is acknowledged to the hub
/// when this stream hands it out (unless
/// [`Config::manual_ack`](iothub_proto::session::Config::manual_ack)), not
/// before: the messages still inside when the stream is dropped go back to
/// the client, which holds them unacknowledged for the next stream.
#[derive(Debug)]
pub struct Events<T> {
    rx: Pin<Box<Receiver<T>>>,
    taken: Option<Taken<T>>,
}

impl<T> Events<T> {
    /// The next item; `None` once the stream has ended. Cancel-safe.
    pub async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await.ok()?;
        self.took(&item);
        Some(item)
    }

    fn took(&self, item: &T) {
        if let Some(taken) = &self.taken {
            taken.taken(item);
        }
    }
}

impl<T> futures_core::Stream for Events<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let polled = self.rx.as_mut().poll_next(cx);
        if let Poll::Ready(Some(item)) = &polled {
            self.took(item);
        }
        polled
    }
}

impl<T> Drop for Events<T> {
    fn drop(&mut self) {
        if let Some(taken) = &self.taken {
            // Closed first: the driver cannot slip another message in
            // after the last one is taken out.
            self.rx.close();
            while let Ok(item) = self.rx.try_recv() {
                taken.returned(item);
            }
        }
    }
}

/// The async client calls: each sends one command (or one telemetry
/// message) to the driver and awaits its answer. Cloning shares the
/// channels; when every handle is gone the driver drains and stops.
#[derive(Debug, Clone)]
pub struct Handle {
    ctl: Commands,
    tel: Sender<Telemetry>,
}

impl Handle {
    /// A handle and the driver's ends of its channels.
    #[must_use]
    pub fn new() -> (Handle, Inbox) {
        let (ctl, commands) = async_channel::unbounded();
        let (tel, telemetry) = async_channel::bounded(TELEMETRY_CHANNEL);
        (
            Handle { ctl, tel },
            Inbox {
                commands,
                telemetry,
            },
        )
    }

    /// The command channel, for commands that need no answer (the IoT
    /// Edge token route).
    #[must_use]
    pub fn commands(&self) -> &Commands {
        &self.ctl
    }

    async fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = reply();
        self.ctl
            .send(Box::new(make(tx)))
            .await
            .map_err(|_| Error::Closed)?;
        answer(rx).await
    }

    /// Sends a telemetry message; resolves on PUBACK (QoS 1) or once
    /// written (QoS 0). Waits for room while the session's queue is full.
    pub async fn send_telemetry(&self, message: Message) -> Result<(), Error> {
        self.queue_telemetry(message).await?.await
    }

    /// Hands a telemetry message to the driver (waiting for room while
    /// the session's queue is full) and returns a [`Receipt`] of its
    /// outcome.
    pub async fn queue_telemetry(&self, message: Message) -> Result<Receipt<()>, Error> {
        let (tx, rx) = reply();
        self.tel
            .send(Box::new((message, tx)))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(Receipt(rx))
    }

    /// Reads the full twin.
    pub async fn get_twin(&self) -> Result<Twin, Error> {
        self.call(Command::GetTwin).await
    }

    /// Patches reported properties; returns the new reported `$version`.
    pub async fn update_reported(&self, patch: &Value) -> Result<u64, Error> {
        let json = Bytes::from(patch.to_string());
        self.call(|tx| Command::UpdateReported(json, tx)).await
    }

    async fn subscribe<T: Send + 'static>(
        &self,
        make: impl FnOnce(Sink<T>) -> Subscribe,
        taken: Option<Taken<T>>,
    ) -> Result<Events<T>, Error> {
        // Unbounded, yet bounded by the session: a message stays in it
        // unacknowledged until taken, within `Config::max_inbound_pending`;
        // the other streams carry what the application asked for.
        let (tx, rx) = async_channel::unbounded();
        let sink = make(Sink::new(move |item| {
            tx.try_send(item)
                .map_err(async_channel::TrySendError::into_inner)
        }));
        self.call(|reply| Command::Enable(sink, reply)).await?;
        Ok(Events {
            rx: Box::pin(rx),
            taken,
        })
    }

    /// The reports of a message stream, over the command channel held
    /// weakly (a stream does not keep the driver up).
    fn taken<T: Inbound>(&self) -> Taken<T> {
        let ctl = self.ctl.downgrade();
        Taken::new(move |c| {
            ctl.upgrade()
                .is_some_and(|ctl| ctl.try_send(Box::new(c)).is_ok())
        })
    }

    /// Desired-properties updates (subscribes on first use).
    pub async fn desired_updates(&self) -> Result<Events<DesiredUpdate>, Error> {
        self.subscribe(Subscribe::Desired, None).await
    }

    /// Direct method calls (subscribes on first use). A weak sender: the
    /// stream does not keep the driver alive once every handle is gone.
    pub async fn method_requests(&self) -> Result<Events<MethodRequest>, Error> {
        let ctl = self.ctl.downgrade();
        self.subscribe(
            |sink| Subscribe::methods(sink, move || ctl.upgrade(), MethodRequest::new),
            None,
        )
        .await
    }

    /// Cloud-to-device messages (subscribes on first use), each
    /// acknowledged when the stream hands it out (see [`Events`]).
    pub async fn c2d_messages(&self) -> Result<Events<InboundMessage>, Error> {
        self.subscribe(Subscribe::C2d, Some(self.taken())).await
    }

    /// Module input messages (subscribes on first use), acknowledged like
    /// [`c2d_messages`](Self::c2d_messages).
    pub async fn input_messages(&self) -> Result<Events<InputMessage>, Error> {
        self.subscribe(Subscribe::Inputs, Some(self.taken())).await
    }

    /// Acknowledges a message in manual-ack mode.
    pub async fn ack(&self, token: AckToken) -> Result<(), Error> {
        self.call(|tx| Command::Ack(token, tx)).await
    }

    /// Resolves when the device should provision again under `policy`.
    pub async fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        self.call(|tx| Command::WatchReprovision(policy, tx)).await
    }

    /// Graceful shutdown within `timeout`; resolves once the driver has
    /// stopped (at once if it already has).
    pub async fn shutdown(&self, timeout: Duration) {
        let _ = self.call(|tx| Command::Shutdown(timeout, tx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// A command sent after the stop but before the driver's end (the
    /// client's handles still alive) is answered with `Closed`, and later
    /// sends fail at once.
    #[test]
    fn a_command_queued_at_the_stop_is_answered_closed() {
        let (handle, inbox) = Handle::new();
        let (tx, rx) = reply::<Twin>();
        handle.ctl.try_send(Box::new(Command::GetTwin(tx))).unwrap();
        inbox.refuse_late();
        assert!(matches!(block_on(answer(rx)), Err(Error::Closed)));
        assert!(matches!(block_on(handle.get_twin()), Err(Error::Closed)));
        assert!(handle.tel.is_closed());
    }

    #[test]
    fn handles_are_clone_send_sync() {
        fn check<T: Clone + Send + Sync>() {}
        check::<Handle>();
    }
}
