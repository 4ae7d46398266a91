//! Opening, reading, writing and closing one transport: TCP, an optional
//! HTTP CONNECT tunnel, TLS (rustls), and WebSocket framing. No protocol
//! meaning: bytes in, bytes out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt as _};
use iothub_net::transport::{Endpoint, Failure, ws_data};
use iothub_net::{Proxy, proxy, websocket};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

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

/// Opens a transport: TCP (to the proxy if any), the CONNECT tunnel, TLS,
/// the WebSocket upgrade; all within the open timeout.
pub(crate) async fn open(ep: Arc<Endpoint>) -> Result<Conn, Failure> {
    let deadline = Instant::now() + ep.open_timeout;
    let (host, port) = ep.first_hop();
    let tcp = timeout_at(deadline, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Failure::connect("TCP connect timed out"))?
        .map_err(|e| Failure::connect(format!("TCP connect to {host}:{port}: {e}")))?;
    tcp.set_nodelay(true).map_err(Failure::connect)?;
    let mut io: Box<dyn Io> = Box::new(tcp);
    if let Some(p) = &ep.proxy {
        timeout_at(deadline, tunnel(&mut io, p, &ep.host, ep.port))
            .await
            .map_err(|_| Failure::connect("proxy CONNECT timed out"))??;
    }
    if let Some((config, name)) = &ep.tls {
        let connect = TlsConnector::from(config.clone()).connect(name.clone(), io);
        let tls = timeout_at(deadline, connect)
            .await
            .map_err(|_| Failure::handshake("TLS handshake timed out"))?
            .map_err(|e| Failure::handshake(format!("TLS: {e}")))?;
        io = Box::new(tls);
    }
    if !ep.is_websocket() {
        return Ok(Conn::Stream(io));
    }
    let request =
        websocket::request(&ep.host, ep.port, ep.tls.is_some()).map_err(Failure::handshake)?;
    let (ws, _) = timeout_at(deadline, tokio_tungstenite::client_async(request, io))
        .await
        .map_err(|_| Failure::handshake("WebSocket handshake timed out"))?
        .map_err(|e| Failure::handshake(format!("WebSocket: {e}")))?;
    Ok(Conn::WebSocket(Box::new(ws)))
}

/// Asks the proxy for a tunnel ([`proxy::Tunnel`]: byte by byte).
async fn tunnel(io: &mut Box<dyn Io>, p: &Proxy, host: &str, port: u16) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::connect(format!("proxy: {e}"));
    let mut t = proxy::Tunnel::new(p, host, port);
    io.write_all(t.request()).await.map_err(|e| failed(&e))?;
    while !t
        .feed(io.read_u8().await.map_err(|e| failed(&e))?)
        .map_err(|e| failed(&e))?
    {}
    Ok(())
}

/// Bytes read per call at most (stream transports).
const READ_CHUNK: usize = 8 * 1024;

impl Conn {
    /// Appends what arrives next to `buf`. Cancel-safe: nothing is lost
    /// if the future is dropped before it completes.
    pub(crate) async fn read(&mut self, buf: &mut Vec<u8>) -> Result<(), Failure> {
        match self {
            Conn::Stream(io) => {
                buf.reserve(READ_CHUNK);
                match io.read_buf(buf).await {
                    Ok(0) => Err(Failure::closed("end of stream")),
                    Ok(_) => Ok(()),
                    Err(e) => Err(Failure::io(e)),
                }
            }
            Conn::WebSocket(ws) => loop {
                if let Some(data) = ws_data(ws.next().await)? {
                    buf.extend_from_slice(&data);
                    return Ok(());
                }
            },
        }
    }

    /// Writes `data` (one WebSocket binary frame) and flushes it, within
    /// the write timeout.
    pub(crate) async fn write(&mut self, data: Bytes, limit: Duration) -> Result<(), Failure> {
        let write = async {
            match self {
                Conn::Stream(io) => {
                    io.write_all(&data).await?;
                    io.flush().await
                }
                Conn::WebSocket(ws) => ws
                    .send(WsMessage::Binary(data))
                    .await
                    .map_err(std::io::Error::other),
            }
        };
        match timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::io(e)),
            Err(_) => Err(Failure::io("write timed out")),
        }
    }

    /// Closes gracefully (TLS close_notify, WebSocket close), giving up
    /// after a second.
    pub(crate) async fn close(self) {
        let limit = Duration::from_secs(1);
        match self {
            Conn::Stream(mut io) => {
                let _ = timeout(limit, io.shutdown()).await;
            }
            Conn::WebSocket(mut ws) => {
                let _ = timeout(limit, SinkExt::close(&mut *ws)).await;
            }
        }
    }
}
