//! tokio as [`iothub_client::rt`]'s [`Runtime`]: its sockets (as `futures-io`
//! streams through `tokio-util`'s compat), its timer and its tasks. The
//! driver loop, the transport and the provisioning loop are
//! `iothub-client`'s, shared with `iothub-smol`.

use std::io;
use std::time::Instant;

use iothub_client::rt::{Runtime, Task};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

/// tokio, as the runtime of [`Client`](crate::Client): the sockets, timer
/// and tasks of the runtime the client is built in.
#[derive(Debug)]
pub struct Tokio;

impl Runtime for Tokio {
    type Tcp = Compat<tokio::net::TcpStream>;
    #[cfg(unix)]
    type Unix = Compat<tokio::net::UnixStream>;
    type Sleep = tokio::time::Sleep;

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp.compat())
    }

    #[cfg(unix)]
    async fn connect_unix(path: &str) -> io::Result<Self::Unix> {
        Ok(tokio::net::UnixStream::connect(path).await?.compat())
    }

    fn sleep_until(at: Instant) -> Self::Sleep {
        tokio::time::sleep_until(at.into())
    }

    fn spawn(task: Task) -> io::Result<()> {
        tokio::spawn(task);
        Ok(())
    }
}
