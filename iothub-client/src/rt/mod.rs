//! The one async implementation of the async adapters (`iothub-tokio`,
//! `iothub-smol`), generic over a small [`Runtime`] each adapter provides:
//! the driver loop around [`DriverCore`](crate::driver::DriverCore)
//! ([`Driver`]), the transport (TCP, the proxy tunnel, TLS with
//! `futures-rustls`, WebSocket with `async-tungstenite`, each step within
//! its timeout), the provisioning loop around
//! [`ProvisioningCore`](crate::provision_driver::ProvisioningCore)
//! ([`provision()`]) and the IoT Edge workload API calls ([`edge`]).
//!
//! Everything runs on `futures-io` streams: the runtime only connects a
//! socket, sleeps until an instant and runs a future in the background.
//!
//! ```text
//! impl Runtime for Tokio {
//!     type Tcp = Compat<TcpStream>;          // tokio-util's compat
//!     type Sleep = tokio::time::Sleep;
//!     fn connect_tcp(host, port) → TcpStream::connect + set_nodelay + compat
//!     fn sleep_until(at) → tokio::time::sleep_until(at)
//!     fn spawn(task) → tokio::spawn(task)
//! }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite, FutureExt as _};

mod client;
mod driver;
#[cfg(unix)]
pub mod edge;
mod provision;
mod transport;

pub use client::{Building, Client, ClientDriver};
pub use driver::Driver;
pub use provision::{Provisioned, provision, provision_and_connect, run_provisioned};

/// A future run in the background ([`Runtime::spawn`]).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What an async adapter's runtime gives the shared code: sockets, a
/// timer and a way to run a future in the background. Implemented by a
/// unit type in each adapter, in a few lines.
pub trait Runtime: Send + Sync + 'static {
    /// A connected TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A connected Unix stream (the IoT Edge workload API).
    #[cfg(unix)]
    type Unix: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A future that completes at an instant (its output is ignored).
    type Sleep: Future + Send + 'static;

    /// Connects to `host:port` (the first address that answers), with
    /// `TCP_NODELAY` set.
    fn connect_tcp(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Tcp>> + Send;

    /// Connects to the Unix socket at `path`.
    #[cfg(unix)]
    fn connect_unix(path: &str) -> impl Future<Output = io::Result<Self::Unix>> + Send;

    /// Completes at `at` (at once if it has passed).
    fn sleep_until(at: Instant) -> Self::Sleep;

    /// Runs `task` to its end in the background, or says why it cannot.
    fn spawn(task: Task) -> io::Result<()>;
}

/// `f`, or `Err(timeout())` at `deadline`.
async fn until<R: Runtime, T, E>(
    deadline: Instant,
    f: impl Future<Output = Result<T, E>>,
    timeout: impl FnOnce() -> E,
) -> Result<T, E> {
    f.or(async {
        R::sleep_until(deadline).await;
        Err(timeout())
    })
    .await
}
