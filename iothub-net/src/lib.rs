//! # iothub-net — what every runtime adapter of iothub-rs shares
//!
//! The protocol lives in [`iothub_proto`] (sans-IO, no clock). An adapter
//! (`iothub-tokio`, `iothub-blocking`, `iothub-smol`) owns sockets, TLS,
//! timers and threads. This crate holds the parts of an adapter that do
//! not depend on a runtime, so no adapter copies them:
//!
//! | module | what |
//! |---|---|
//! | [`api`] | the runtime-neutral values of the client API: [`Error`], [`Status`], [`DesiredUpdate`], [`InputMessage`] |
//! | [`options`] | [`ClientOptions`]: session [`Config`](iothub_proto::session::Config) plus transport, port, TLS and proxy settings, from a connection string or built by hand |
//! | [`provisioning`] | [`ProvisioningOptions`]: the DPS provisioning [`Config`](iothub_proto::provisioning::Config) plus the same transport settings, and the [`ClientOptions`] for the hub a [`Registration`](iothub_proto::provisioning::Registration) names |
//! | [`tls`] | a rustls [`ClientConfig`](rustls::ClientConfig) (ring provider) from webpki roots, an extra CA in PEM and an optional X.509 client certificate |
//! | [`websocket`] | the MQTT-over-WebSocket URL and upgrade request (`/$iothub/websocket`, subprotocol `mqtt`) |
//! | [`proxy`] | the HTTP `CONNECT` request, an incremental parser of its answer and the handshake ([`Tunnel`](proxy::Tunnel)) every adapter drives |
//! | [`driver`] | [`DriverCore`](driver::DriverCore): the fixed order of the driver's steps around the session; it routes the session's events through a [`Router`]; the answer of a method call ([`Responder`](driver::Responder)) and the channels taken without waiting ([`DriverCore::take_ready`](driver::DriverCore::take_ready)) (every adapter's driver runs on it) |
//! | [`handle`] | [`Handle`](handle::Handle): the async client calls over `async-channel` (commands, telemetry with backpressure, replies), the [`Events`](handle::Events) streams and the [`MethodRequest`](handle::MethodRequest) of the async adapters (tokio, smol) |
//! | [`provision_driver`] | [`ProvisioningCore`](provision_driver::ProvisioningCore): the fixed order of the provisioning driver's steps around the DPS session, its events logged (every adapter's `provision`) |
//! | [`transport`] | the [`Endpoint`](transport::Endpoint) to open (for the hub and for DPS), the [`Failure`](transport::Failure) a transport reports, the meaning of a WebSocket message |
//! | [`watch`] | [`StatusWatch`](watch::StatusWatch): the latest status, waited on blocking or async under any runtime (blocking and smol adapters) |
//! | [`router`] | [`Router`]: the session's events routed to the adapter's completions and streams (by message id and request token), and the connection lifecycle logged with `tracing` (the one routing core, used through [`driver`]) |
//! | [`edge`] | IoT Edge modules: [`module_options`](edge::module_options) (tokens from the workload API, the edge CA), the bytes of one workload API call ([`WorkloadCall`](edge::WorkloadCall)), the token route's [`TokenCommand`](edge::TokenCommand) |
//! | `rt` (feature `rt`) | the one async implementation of the async adapters, generic over their small `Runtime` trait: the driver loop, the transport (TCP, proxy tunnel, `futures-rustls`, `async-tungstenite`), the provisioning loop, the IoT Edge workload calls |
//! | [`token`] | custom signers (HSM, TPM): the [`TokenRequest`](token::TokenRequest) a [`TokenSigner`](token::TokenSigner) answers, run on a thread of its own per token, its answer through the token route (every adapter's `Client::with_token_signer`) |
//! | [`clock`] | the map from the platform's monotonic clock to the core's [`Instant`](iothub_proto::time::Instant), and Unix seconds |
//!
//! Outside `rt`, nothing here opens a socket, and the one thread is a
//! custom signer's ([`token::signer_source`]); every other function is a
//! pure computation or a constructor. `rt` does I/O only through the
//! `Runtime` an adapter implements.
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod driver;
pub mod edge;
pub mod handle;
pub mod options;
pub mod provision_driver;
pub mod provisioning;
pub mod proxy;
pub mod router;
#[cfg(feature = "rt")]
pub mod rt;
pub mod tls;
pub mod token;
pub mod transport;
pub mod watch;
pub mod websocket;

pub use api::{DesiredUpdate, Error, Inbound, InputMessage, Status, TokenRequestFailure};
pub use clock::Clock;
pub use options::{ClientOptions, OptionsError, Transport};
pub use provisioning::ProvisioningOptions;
pub use proxy::Proxy;
pub use router::{MethodCall, Reply, Router, Sink, Subscribe};
