//! The client scenarios, written once and run against every adapter:
//! tokio, smol, async-std (the smol adapter's client under async-std's
//! executor) and blocking.
//!
//! A scenario is an `async fn` generic over [`Device`], the client API
//! every adapter has (the same method names, arguments, errors and
//! streams). The async adapters implement it with their own futures; the
//! blocking adapter with its blocking calls, which the runner's
//! `block_on` simply waits out (a scenario never needs two of its own
//! futures to make progress at once: work that must go on meanwhile runs
//! on a thread of its own, [`spawn`]).
//!
//! An adapter's test file is one line:
//!
//! ```text
//! iothub_testkit::scenarios!(iothub_tokio::Client, iothub_testkit::scenarios::run_tokio);
//! ```
//!
//! which makes one `#[test]` per scenario. The emulator runs on a tokio
//! runtime of its own ([`Emu`]); scenarios reach it through calls that
//! need no runtime, or through [`Emu::spawn`], awaited from any executor.

use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt as _;
use iothub_client::{
    ClientBuilder, ClientOptions, DesiredUpdate, Error, InputMessage, ProvisioningOptions,
    StatusWatch,
};
use iothub_proto::provisioning::{Registration, ReprovisionPolicy, ReprovisionReason};
use iothub_proto::session::{AckToken, InboundMessage, Message, Twin};
use serde_json::Value;

use crate::Emu;

pub mod async_client;
pub mod c2d;
#[cfg(unix)]
pub mod edge;
pub mod hub;
pub mod modules;
pub mod mosquitto;
pub mod provisioning;
pub mod signer;

/// How long a blocking stream waits for its next item before the
/// scenario counts it as missing.
const RECV_WAIT: Duration = Duration::from_secs(30);

/// A client, as the scenarios drive it: the API all three adapters share.
pub trait Device: Clone + Send + Sync + Sized + std::fmt::Debug + 'static {
    /// An inbound stream.
    type Stream<T: Send + 'static>: Stream<T>;
    /// A direct method call.
    type Call: Call;

    /// `builder.build()`, awaited where the adapter's is a future.
    fn build(builder: ClientBuilder<Self>) -> impl Future<Output = Result<Self, Error>>;
    /// Provisions, then connects (the adapter's `provision_and_connect`).
    fn provision_and_connect(
        options: &ProvisioningOptions,
    ) -> impl Future<Output = Result<(Self, Registration), Error>>;
    /// Provisions only (the adapter's `provision`): the registration and
    /// the options for the hub.
    fn provision(
        options: &ProvisioningOptions,
    ) -> impl Future<Output = Result<(Registration, ClientOptions), Error>>;

    fn send_telemetry(&self, message: Message) -> impl Future<Output = Result<(), Error>>;
    fn get_twin(&self) -> impl Future<Output = Result<Twin, Error>>;
    fn update_reported(&self, patch: &Value) -> impl Future<Output = Result<u64, Error>>;
    fn desired_updates(&self) -> impl Future<Output = Result<Self::Stream<DesiredUpdate>, Error>>;
    fn method_requests(&self) -> impl Future<Output = Result<Self::Stream<Self::Call>, Error>>;
    fn c2d_messages(&self) -> impl Future<Output = Result<Self::Stream<InboundMessage>, Error>>;
    fn input_messages(&self) -> impl Future<Output = Result<Self::Stream<InputMessage>, Error>>;
    fn ack(&self, token: AckToken) -> impl Future<Output = Result<(), Error>>;
    fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> impl Future<Output = Result<ReprovisionReason, Error>>;
    fn status(&self) -> StatusWatch;
    fn wait_connected(&self) -> impl Future<Output = Result<(), Error>>;
    fn shutdown(&self, timeout: Duration) -> impl Future<Output = Result<(), Error>>;
    /// The adapter's `run_provisioned`, with `run` as a boxed future
    /// (the blocking adapter waits it out).
    fn run_provisioned<F>(
        options: ProvisioningOptions,
        policy: ReprovisionPolicy,
        run: F,
    ) -> impl Future<Output = Result<(), Error>>
    where
        F: FnMut(Self, Registration) -> RunFuture + Send + 'static;
}

/// What a `run_provisioned` closure of the scenarios returns.
pub type RunFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), Error>>>>;

/// An inbound stream of a [`Device`].
pub trait Stream<T>: Send + 'static {
    /// The next item; `None` once the stream has ended (or, blocking,
    /// after 30 s).
    fn recv(&mut self) -> impl Future<Output = Option<T>>;
    /// The next item if it comes within `wait`.
    fn recv_for(&mut self, wait: Duration) -> impl Future<Output = Option<T>>;
}

/// A direct method call of a [`Device`].
pub trait Call: Send + 'static {
    fn name(&self) -> &str;
    fn payload(&self) -> &[u8];
    fn respond(self, status: i32, payload: Vec<u8>) -> impl Future<Output = Result<(), Error>>;
}

std::thread_local! {
    /// Where the runner wants an async client's driver: `None`, the
    /// adapter's own `build` (a tokio task, or a thread of its own for
    /// smol); else `build_with_driver`, the driver handed to this
    /// executor's `spawn`.
    static SPAWN_DRIVER: std::cell::Cell<Option<fn(iothub_client::ClientDriver)>> =
        const { std::cell::Cell::new(None) };
}

impl<R: iothub_client::rt::Runtime> Device for iothub_client::AsyncClient<R> {
    type Stream<T: Send + 'static> = iothub_client::handle::Events<T>;
    type Call = iothub_client::handle::MethodRequest;

    async fn build(builder: ClientBuilder<Self>) -> Result<Self, Error> {
        match SPAWN_DRIVER.get() {
            None => builder.build().await,
            Some(spawn) => {
                let (client, driver) = builder.build_with_driver().await?;
                spawn(driver);
                Ok(client)
            }
        }
    }
    async fn provision_and_connect(
        options: &ProvisioningOptions,
    ) -> Result<(Self, Registration), Error> {
        iothub_client::rt::provision_and_connect::<R>(options).await
    }
    async fn provision(
        options: &ProvisioningOptions,
    ) -> Result<(Registration, ClientOptions), Error> {
        let p = iothub_client::rt::provision::<R>(options).await?;
        Ok((p.registration, p.options))
    }
    async fn send_telemetry(&self, message: Message) -> Result<(), Error> {
        Self::send_telemetry(self, message).await
    }
    async fn get_twin(&self) -> Result<Twin, Error> {
        Self::get_twin(self).await
    }
    async fn update_reported(&self, patch: &Value) -> Result<u64, Error> {
        Self::update_reported(self, patch).await
    }
    async fn desired_updates(&self) -> Result<Self::Stream<DesiredUpdate>, Error> {
        Self::desired_updates(self).await
    }
    async fn method_requests(&self) -> Result<Self::Stream<Self::Call>, Error> {
        Self::method_requests(self).await
    }
    async fn c2d_messages(&self) -> Result<Self::Stream<InboundMessage>, Error> {
        Self::c2d_messages(self).await
    }
    async fn input_messages(&self) -> Result<Self::Stream<InputMessage>, Error> {
        Self::input_messages(self).await
    }
    async fn ack(&self, token: AckToken) -> Result<(), Error> {
        Self::ack(self, token).await
    }
    async fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        Self::reprovision_needed(self, policy).await
    }
    fn status(&self) -> StatusWatch {
        Self::status(self)
    }
    async fn wait_connected(&self) -> Result<(), Error> {
        Self::wait_connected(self).await
    }
    async fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        Self::shutdown(self, timeout).await
    }
    async fn run_provisioned<F>(
        options: ProvisioningOptions,
        policy: ReprovisionPolicy,
        run: F,
    ) -> Result<(), Error>
    where
        F: FnMut(Self, Registration) -> RunFuture + Send + 'static,
    {
        iothub_client::rt::run_provisioned::<R, F, RunFuture>(options, policy, run).await
    }
}

impl<T: Send + 'static> Stream<T> for iothub_client::handle::Events<T> {
    async fn recv(&mut self) -> Option<T> {
        iothub_client::handle::Events::recv(self).await
    }
    async fn recv_for(&mut self, wait: Duration) -> Option<T> {
        iothub_client::handle::Events::recv(self)
            .or(async {
                Timer::after(wait).await;
                None
            })
            .await
    }
}

impl Call for iothub_client::handle::MethodRequest {
    fn name(&self) -> &str {
        &self.name
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    async fn respond(self, status: i32, payload: Vec<u8>) -> Result<(), Error> {
        iothub_client::handle::MethodRequest::respond(self, status, payload).await
    }
}

impl Device for iothub_blocking::Client {
    type Stream<T: Send + 'static> = iothub_blocking::Events<T>;
    type Call = iothub_blocking::MethodRequest;

    async fn build(builder: ClientBuilder<Self>) -> Result<Self, Error> {
        builder.build()
    }
    async fn provision_and_connect(
        options: &ProvisioningOptions,
    ) -> Result<(Self, Registration), Error> {
        iothub_blocking::provision_and_connect(options)
    }
    async fn provision(
        options: &ProvisioningOptions,
    ) -> Result<(Registration, ClientOptions), Error> {
        let p = iothub_blocking::provision(options)?;
        Ok((p.registration, p.options))
    }
    async fn send_telemetry(&self, message: Message) -> Result<(), Error> {
        Self::send_telemetry(self, message)
    }
    async fn get_twin(&self) -> Result<Twin, Error> {
        Self::get_twin(self)
    }
    async fn update_reported(&self, patch: &Value) -> Result<u64, Error> {
        Self::update_reported(self, patch)
    }
    async fn desired_updates(&self) -> Result<Self::Stream<DesiredUpdate>, Error> {
        Self::desired_updates(self)
    }
    async fn method_requests(&self) -> Result<Self::Stream<Self::Call>, Error> {
        Self::method_requests(self)
    }
    async fn c2d_messages(&self) -> Result<Self::Stream<InboundMessage>, Error> {
        Self::c2d_messages(self)
    }
    async fn input_messages(&self) -> Result<Self::Stream<InputMessage>, Error> {
        Self::input_messages(self)
    }
    async fn ack(&self, token: AckToken) -> Result<(), Error> {
        Self::ack(self, token)
    }
    async fn reprovision_needed(
        &self,
        policy: ReprovisionPolicy,
    ) -> Result<ReprovisionReason, Error> {
        Self::reprovision_needed(self, policy)
    }
    fn status(&self) -> StatusWatch {
        Self::status(self)
    }
    async fn wait_connected(&self) -> Result<(), Error> {
        Self::wait_connected(self, RECV_WAIT)
    }
    async fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        Self::shutdown(self, timeout)
    }
    async fn run_provisioned<F>(
        options: ProvisioningOptions,
        policy: ReprovisionPolicy,
        mut run: F,
    ) -> Result<(), Error>
    where
        F: FnMut(Self, Registration) -> RunFuture + Send + 'static,
    {
        iothub_blocking::run_provisioned(options, policy, |client, registration| {
            futures_lite::future::block_on(run(client, registration))
        })
    }
}

impl<T: Send + 'static> Stream<T> for iothub_blocking::Events<T> {
    async fn recv(&mut self) -> Option<T> {
        self.recv_timeout(RECV_WAIT).ok()
    }
    async fn recv_for(&mut self, wait: Duration) -> Option<T> {
        self.recv_timeout(wait).ok()
    }
}

impl Call for iothub_blocking::MethodRequest {
    fn name(&self) -> &str {
        &self.name
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    async fn respond(self, status: i32, payload: Vec<u8>) -> Result<(), Error> {
        iothub_blocking::MethodRequest::respond(self, status, payload)
    }
}

/// Runs a scenario on a tokio runtime (the tokio adapter's driver is a
/// task of it).
pub fn run_tokio(f: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f);
}

/// Runs a scenario with `futures-lite`'s `block_on` on the test thread
/// (the blocking adapter's drivers run on threads of their own).
pub fn run_block_on(f: impl Future<Output = ()>) {
    futures_lite::future::block_on(f);
}

/// Runs a scenario with smol: `smol::block_on`, every client's driver a
/// task of smol's executor (`build_with_driver`).
pub fn run_smol(f: impl Future<Output = ()>) {
    SPAWN_DRIVER.set(Some(|driver| smol::spawn(driver).detach()));
    smol::block_on(f);
}

/// Runs a scenario with async-std: `async_std::task::block_on`, every
/// client's driver an async-std task (`build_with_driver`).
pub fn run_async_std(f: impl Future<Output = ()>) {
    SPAWN_DRIVER.set(Some(|driver| drop(async_std::task::spawn(driver))));
    async_std::task::block_on(f);
}

/// `f` within `secs` seconds, or the scenario fails. (A blocking
/// adapter's call cannot be interrupted: its own bound applies.)
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    f.or(async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("not within {secs} s")
    })
    .await
}

/// Runs the future `f` makes on a thread of its own, to its end: work
/// that goes on while the scenario waits for something else.
pub fn spawn<F, Fut>(f: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::spawn(move || futures_lite::future::block_on(f()))
}

/// Waits (bounded, polling every 20 ms) until `cond` holds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) {
    within(secs, async {
        while !cond() {
            Timer::after(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A client of `D` for `options`.
pub async fn new_client<D: Device>(options: impl Into<iothub_client::Source>) -> D {
    D::build(ClientBuilder::new(options)).await.expect("client")
}

/// A connected client of `D` for `options`.
pub async fn connected<D: Device>(options: impl Into<iothub_client::Source>) -> D {
    let client = new_client::<D>(options).await;
    within(10, client.wait_connected())
        .await
        .expect("connected");
    client
}

impl Emu {
    /// Waits (on the emulator's runtime, awaited from any executor) until
    /// the telemetry of `target` (`device` or `device/module`) holds a
    /// message with `body`.
    pub async fn received(&self, target: &str, body: &str) {
        let (t, b) = (target.to_owned(), body.to_owned());
        let got = self
            .spawn(move |h| async move {
                h.wait_for_telemetry(
                    move |m| m.identity.to_string() == t && m.body_text() == Some(&*b),
                    Duration::from_secs(10),
                )
                .await
                .is_some()
            })
            .await
            .expect("the emulator's task");
        assert!(got, "telemetry {body:?} of {target} not received");
    }
}

/// Every scenario, one `#[test]` each, for client type `$device` run by
/// `$run` (see the [module docs](mod@crate::scenarios)).
#[macro_export]
macro_rules! scenarios {
    ($device:ty, $run:path) => {
        $crate::scenarios!(@tests $device, $run;
            hub::every_api_over_tls,
            hub::a_thousand_messages_survive_dropped_connections,
            hub::sas_renewal_reconnects_with_a_new_token_and_loses_nothing,
            hub::throttled_twin_requests_are_retried,
            hub::a_second_client_evicts_the_first,
            hub::websocket_transport,
            hub::mqtt_through_an_http_connect_proxy,
            hub::websocket_through_an_http_connect_proxy,
            hub::a_proxy_that_answers_a_byte_at_a_time_is_bounded_by_the_open_timeout,
            hub::x509_authentication,
            hub::bad_connection_strings_and_wrong_keys_give_clear_errors,
            hub::gateway_host_name_is_the_tls_peer_and_the_hub_stays_in_the_username,
            hub::a_module_identity_a_fixed_token_an_api_version_and_a_model_id,
            hub::dropping_every_handle_shuts_the_client_down,
            c2d::manual_ack_acknowledges_only_when_asked,
            c2d::c2d_that_arrives_before_the_stream_is_held_unacknowledged_until_it_is_opened,
            c2d::c2d_not_taken_before_a_restart_is_received_by_the_next_process,
            c2d::a_dropped_stream_gives_its_messages_to_the_next_stream_unacknowledged,
            c2d::an_old_stream_dropped_after_a_new_one_opened_hands_its_messages_over,
            modules::input_messages_sent_through_the_emulator_api_arrive_with_their_properties,
            modules::a_route_takes_one_modules_output_to_anothers_input,
            signer::a_custom_signer_connects_and_renews,
            signer::a_failing_signer_shows_in_the_status_until_it_signs,
            provisioning::provision_then_connect_over_tls,
            provisioning::a_group_member_over_websocket_and_plain_tcp,
            provisioning::an_x509_enrollment_then_the_same_certificate_at_the_hub,
            provisioning::refusals_and_failed_registrations_are_typed_errors,
            provisioning::a_device_deleted_at_the_hub_provisions_again,
            provisioning::repeated_failed_connects_call_for_provisioning,
            mosquitto::plain_connect_publish_and_a_method,
            mosquitto::keep_alive_holds_an_idle_connection,
            mosquitto::tls_connect_publish_and_an_untrusted_ca,
        );
        $crate::scenarios!(@unix_tests $device, $run;
            edge::a_module_connects_with_a_workload_token_and_renews_it_twice,
            edge::a_failing_workload_api_is_asked_again_until_it_signs,
            edge::a_failing_workload_api_shows_in_the_status_until_the_client_connects,
            edge::a_token_signed_with_another_key_is_refused_by_the_hub,
            edge::a_bad_environment_or_socket_is_a_typed_error,
        );
    };
    (@async $runtime:ty, $run:path) => {
        #[test]
        fn a_cancelled_send_is_still_delivered() {
            $run($crate::scenarios::async_client::a_cancelled_send_is_still_delivered::<$runtime>());
        }
        #[test]
        fn telemetry_queued_before_shutdown_is_delivered() {
            $run($crate::scenarios::async_client::telemetry_queued_before_shutdown_is_delivered::<$runtime>());
        }
    };
    (@tests $device:ty, $run:path; $($group:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $run($crate::scenarios::$group::$name::<$device>());
            }
        )*
    };
    (@unix_tests $device:ty, $run:path; $($group:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            #[cfg(unix)]
            fn $name() {
                $run($crate::scenarios::$group::$name::<$device>());
            }
        )*
    };
}
