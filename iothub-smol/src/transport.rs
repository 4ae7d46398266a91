//! Opening, reading, writing and closing one transport over `futures-io`:
//! TCP (`async-net`), an optional HTTP CONNECT tunnel, TLS
//! (`futures-rustls`), WebSocket framing (`async-tungstenite`). No
//! protocol meaning: bytes in, bytes out.

use std::time::{Duration, Instant};

use async_io::Timer;
use async_net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use bytes::Bytes;
use futures_lite::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, FutureExt as _, StreamExt as _,
};
use futures_rustls::TlsConnector;
use iothub_net::transport::{Endpoint, Failure, ws_data};
use iothub_net::{Proxy, proxy, websocket};

/// A byte stream: TCP, a proxy tunnel, or TLS over either.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open transport.
pub(crate) enum Conn {
    /// MQTT bytes straight on the stream.
    Stream(Box<dyn Io>),
    /// MQTT bytes in binary WebSocket frames.
    WebSocket(Box<WebSocketStream<Box<dyn Io>>>),
}

/// `f`, or `Err(timeout())` at `deadline`.
async fn until<T>(
    deadline: Instant,
    f: impl Future<Output = Result<T, Failure>>,
    timeout: impl FnOnce() -> Failure,
) -> Result<T, Failure> {
    f.or(async {
        Timer::at(deadline).await;
        Err(timeout())
    })
    .await
}

/// Opens a transport: TCP (to the proxy if any), the CONNECT tunnel, TLS,
/// the WebSocket upgrade; all within the open timeout.
pub(crate) async fn open(ep: &Endpoint) -> Result<Conn, Failure> {
    let deadline = Instant::now() + ep.open_timeout;
    let (host, port) = ep.first_hop();
    let connect = async {
        TcpStream::connect((host, port))
            .await
            .map_err(|e| Failure::connect(format!("TCP connect to {host}:{port}: {e}")))
    };
    let tcp = until(deadline, connect, || {
        Failure::connect("TCP connect timed out")
    })
    .await?;
    tcp.set_nodelay(true).map_err(Failure::connect)?;
    let mut io: Box<dyn Io> = Box::new(tcp);
    if let Some(p) = &ep.proxy {
        let tunnel = tunnel(&mut io, p, &ep.host, ep.port);
        until(deadline, tunnel, || {
            Failure::connect("proxy CONNECT timed out")
        })
        .await?;
    }
    if let Some((config, name)) = &ep.tls {
        let handshake = async {
            TlsConnector::from(config.clone())
                .connect(name.clone(), io)
                .await
                .map_err(|e| Failure::handshake(format!("TLS: {e}")))
        };
        let tls = until(deadline, handshake, || {
            Failure::handshake("TLS handshake timed out")
        });
        io = Box::new(tls.await?);
    }
    if !ep.is_websocket() {
        return Ok(Conn::Stream(io));
    }
    let request =
        websocket::request(&ep.host, ep.port, ep.tls.is_some()).map_err(Failure::handshake)?;
    let upgrade = async {
        async_tungstenite::client_async(request, io)
            .await
            .map_err(|e| Failure::handshake(format!("WebSocket: {e}")))
    };
    let timed_out = || Failure::handshake("WebSocket handshake timed out");
    let (ws, _) = until(deadline, upgrade, timed_out).await?;
    Ok(Conn::WebSocket(Box::new(ws)))
}

/// Asks the proxy for a tunnel ([`proxy::Tunnel`]: byte by byte).
async fn tunnel(io: &mut Box<dyn Io>, p: &Proxy, host: &str, port: u16) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::connect(format!("proxy: {e}"));
    let mut t = proxy::Tunnel::new(p, host, port);
    io.write_all(t.request()).await.map_err(|e| failed(&e))?;
    let mut byte = [0u8; 1];
    loop {
        io.read_exact(&mut byte).await.map_err(|e| failed(&e))?;
        if t.feed(byte[0]).map_err(|e| failed(&e))? {
            return Ok(());
        }
    }
}

impl Conn {
    /// Reads what arrives next into `chunk` (stream transports) and
    /// returns it. Cancel-safe: nothing is consumed by a read that did
    /// not complete.
    pub(crate) async fn read(&mut self, chunk: &mut [u8]) -> Result<Bytes, Failure> {
        match self {
            Conn::Stream(io) => match io.read(chunk).await {
                Ok(0) => Err(Failure::closed("end of stream")),
                Ok(n) => Ok(Bytes::copy_from_slice(&chunk[..n])),
                Err(e) => Err(Failure::io(e)),
            },
            Conn::WebSocket(ws) => loop {
                if let Some(data) = ws_data(ws.next().await)? {
                    return Ok(data);
                }
            },
        }
    }

    /// Writes `data` (one WebSocket binary frame) and flushes it, within
    /// `limit`.
    pub(crate) async fn write(&mut self, data: Bytes, limit: Duration) -> Result<(), Failure> {
        let write = async {
            match self {
                Conn::Stream(io) => {
                    io.write_all(&data).await.map_err(Failure::io)?;
                    io.flush().await.map_err(Failure::io)
                }
                Conn::WebSocket(ws) => ws.send(WsMessage::Binary(data)).await.map_err(Failure::io),
            }
        };
        until(Instant::now() + limit, write, || {
            Failure::io("write timed out")
        })
        .await
    }

    /// Closes gracefully (TLS close_notify, WebSocket close), giving up
    /// after a second.
    pub(crate) async fn close(self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let close = async {
            match self {
                Conn::Stream(mut io) => drop(io.close().await),
                Conn::WebSocket(mut ws) => drop(ws.close(None).await),
            }
            Ok(())
        };
        let _ = until(deadline, close, || Failure::io("close timed out")).await;
    }
}
