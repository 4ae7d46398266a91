//! `async-io` and `async-net` as [`iothub_client::rt`]'s [`Runtime`]: they
//! need no executor, so the client runs under smol, async-std or any
//! other. The driver loop, the transport and the provisioning loop are
//! `iothub-client`'s, shared with `iothub-tokio`.

use std::io;
use std::time::Instant;

use iothub_client::rt::{Runtime, Task};

/// `async-io`'s reactor and timers, as the runtime of
/// [`Client`](crate::Client): no executor needed.
#[derive(Debug)]
pub struct AsyncIo;

impl Runtime for AsyncIo {
    type Tcp = async_net::TcpStream;
    #[cfg(unix)]
    type Unix = async_net::unix::UnixStream;
    type Sleep = async_io::Timer;

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let tcp = async_net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    #[cfg(unix)]
    async fn connect_unix(path: &str) -> io::Result<Self::Unix> {
        async_net::unix::UnixStream::connect(path).await
    }

    fn sleep_until(at: Instant) -> Self::Sleep {
        async_io::Timer::at(at)
    }

    /// The driver runs on any executor, so a background task (a client's
    /// driver, a workload API call) gets a thread of its own
    /// (`async_io::block_on`).
    fn spawn(task: Task) -> io::Result<()> {
        std::thread::Builder::new()
            .name("iothub-task".into())
            .spawn(move || async_io::block_on(task))
            .map(drop)
    }
}
