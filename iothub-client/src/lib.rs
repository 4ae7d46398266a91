//! # iothub-client — the runtime-neutral Azure IoT Hub device client
//!
//! The client every adapter (`iothub-tokio`, `iothub-smol`,
//! `iothub-blocking`) is: the protocol lives in [`iothub_proto`] (sans-IO,
//! no clock); this crate is everything of a client that does not depend on
//! how it waits — the API's values, the builder, the status watch, the
//! options, and the one driver core and loops the adapters run. An adapter
//! adds only its sockets, timers and threads, and the `async` or blocking
//! face of the same methods.
//!
//! What an application meets (re-exported by every adapter):
//!
//! | item | what |
//! |---|---|
//! | [`ClientBuilder`], [`Source`] | how a client is made: a source of identity and credentials (a connection string, [`ClientOptions`], an IoT Edge module), options, a custom [token signer](ClientBuilder::token_signer), then the adapter's `build()` |
//! | [`ClientOptions`], [`Transport`], [`Proxy`] | the session [`Config`](iothub_proto::session::Config) plus transport (MQTT over TLS, over WebSocket, plain TCP for tests), port, TLS roots and client certificate, HTTP proxy |
//! | [`StatusWatch`], [`Status`] | the connection status, watched the same way everywhere: `get()`, `changed().await`, blocking `wait_changed(timeout)` |
//! | [`Error`] | what a client operation fails with |
//! | [`DesiredUpdate`], [`InputMessage`] | items of the inbound streams |
//! | [`ProvisioningOptions`] | the Device Provisioning Service registration, over the same transports |
//! | [`token`] | the [`TokenRequest`](token::TokenRequest) a custom signer answers |
//!
//! The modules hidden from these docs (`driver`, `router`, `handle`, `rt`,
//! `transport`, …) are the adapters' building blocks: public only because
//! the adapters are crates of their own, and not an API — they change
//! without notice.
//!
//! Outside `rt`, nothing here opens a socket, and the one thread is a
//! custom signer's; `rt` does I/O only through the `Runtime` an adapter
//! implements.
#![forbid(unsafe_code)]

pub mod api;
pub mod builder;
pub mod options;
pub mod provisioning;
pub mod proxy;
pub mod token;
pub mod watch;

#[doc(hidden)]
pub mod clock;
#[doc(hidden)]
pub mod driver;
#[doc(hidden)]
pub mod edge;
#[doc(hidden)]
pub mod handle;
#[doc(hidden)]
pub mod provision_driver;
#[doc(hidden)]
pub mod router;
#[doc(hidden)]
#[cfg(feature = "rt")]
pub mod rt;
#[doc(hidden)]
pub mod tls;
#[doc(hidden)]
pub mod transport;
#[doc(hidden)]
pub mod websocket;

pub use api::{DesiredUpdate, Error, Inbound, InputMessage, Status, TokenRequestFailure};
pub use builder::{ClientBuilder, Source};
pub use clock::Clock;
pub use edge::EdgeError;
pub use options::{ClientOptions, OptionsError, Transport};
pub use provisioning::ProvisioningOptions;
pub use proxy::Proxy;
pub use router::{MethodCall, Reply, Router, Sink, Subscribe};
pub use watch::StatusWatch;

/// The async client, for any [`Runtime`](rt::Runtime): `iothub-tokio`'s
/// and `iothub-smol`'s `Client`.
#[cfg(feature = "rt")]
pub use rt::Client as AsyncClient;
#[cfg(feature = "rt")]
pub use rt::{ClientDriver, Provisioned as AsyncProvisioned};

/// What every adapter re-exports at its root, so that the three present
/// the same names: the client's values, options and errors, and the
/// core's types an application uses with them.
#[doc(hidden)]
pub mod exports {
    pub use crate::builder::Source;
    pub use crate::token::{SignerError, TokenRequest};
    pub use crate::{
        ClientOptions, DesiredUpdate, EdgeError, Error, InputMessage, OptionsError,
        ProvisioningOptions, Proxy, Status, StatusWatch, TokenRequestFailure, Transport,
    };
    /// The sans-IO core, for every other type (errors, identities,
    /// options).
    pub use iothub_proto as proto;
    pub use iothub_proto::edge::EdgeEnvironment;
    pub use iothub_proto::properties::MessageProperties;
    pub use iothub_proto::provisioning::{Registration, ReprovisionPolicy, ReprovisionReason};
    pub use iothub_proto::session::{
        AckToken, Config, ConnectionState, DisconnectReason, InboundMessage, Message, Qos,
        StopReason, Twin,
    };
}
