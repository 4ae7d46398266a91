//! Opening, reading, writing and closing one transport: TCP, an optional
//! HTTP CONNECT tunnel, TLS (rustls), and WebSocket framing. No protocol
//! meaning: bytes in, bytes out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt as _};
use iothub_net::{Proxy, Transport, proxy, tls, websocket};
use iothub_proto::session::TransportClosed;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::{TlsConnector, rustls};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A byte stream: TCP, a proxy tunnel, or TLS over either.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the hub; built once per client.
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
    pub(crate) proxy: Option<Proxy>,
    pub(crate) open_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

impl Endpoint {
    pub(crate) fn new(
        options: &iothub_net::ClientOptions,
        tls_config: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Endpoint, tls::TlsError> {
        Endpoint::with(
            options.host(),
            options.port(),
            options.transport,
            tls_config,
            options.proxy.clone(),
            (options.open_timeout, options.write_timeout),
        )
    }

    /// The Device Provisioning Service's endpoint.
    pub(crate) fn provisioning(
        options: &iothub_net::ProvisioningOptions,
        tls_config: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Endpoint, tls::TlsError> {
        Endpoint::with(
            options.host(),
            options.port(),
            options.transport,
            tls_config,
            options.proxy.clone(),
            (options.open_timeout, options.write_timeout),
        )
    }

    fn with(
        host: &str,
        port: u16,
        transport: Transport,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        proxy: Option<Proxy>,
        (open_timeout, write_timeout): (Duration, Duration),
    ) -> Result<Endpoint, tls::TlsError> {
        let tls = match tls_config {
            Some(config) => Some((TlsConnector::from(config), tls::server_name(host)?)),
            None => None,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            transport,
            tls,
            proxy,
            open_timeout,
            write_timeout,
        })
    }
}

/// Why a transport failed, for the session (`kind`) and the logs.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: TransportClosed,
    pub(crate) detail: String,
}

impl Failure {
    fn new(kind: TransportClosed, detail: impl fmt::Display) -> Failure {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

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
    use TransportClosed::{ConnectFailed, HandshakeFailed};
    let deadline = Instant::now() + ep.open_timeout;
    let (host, port) = match &ep.proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (ep.host.as_str(), ep.port),
    };
    let tcp = timeout_at(deadline, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Failure::new(ConnectFailed, "TCP connect timed out"))?
        .map_err(|e| Failure::new(ConnectFailed, format!("TCP connect to {host}:{port}: {e}")))?;
    tcp.set_nodelay(true)
        .map_err(|e| Failure::new(ConnectFailed, e))?;
    let mut io: Box<dyn Io> = Box::new(tcp);
    if let Some(p) = &ep.proxy {
        timeout_at(deadline, tunnel(&mut io, p, &ep.host, ep.port))
            .await
            .map_err(|_| Failure::new(ConnectFailed, "proxy CONNECT timed out"))??;
    }
    if let Some((connector, name)) = &ep.tls {
        let tls = timeout_at(deadline, connector.connect(name.clone(), io))
            .await
            .map_err(|_| Failure::new(HandshakeFailed, "TLS handshake timed out"))?
            .map_err(|e| Failure::new(HandshakeFailed, format!("TLS: {e}")))?;
        io = Box::new(tls);
    }
    if ep.transport != Transport::WebSocket {
        return Ok(Conn::Stream(io));
    }
    let request = websocket::request(&ep.host, ep.port, ep.tls.is_some())
        .map_err(|e| Failure::new(HandshakeFailed, e))?;
    let (ws, _) = timeout_at(deadline, tokio_tungstenite::client_async(request, io))
        .await
        .map_err(|_| Failure::new(HandshakeFailed, "WebSocket handshake timed out"))?
        .map_err(|e| Failure::new(HandshakeFailed, format!("WebSocket: {e}")))?;
    Ok(Conn::WebSocket(Box::new(ws)))
}

/// Asks the proxy for a tunnel. The answer is read byte by byte, so not a
/// byte of the tunnel is consumed (it is a few dozen bytes, once per
/// connection).
async fn tunnel(io: &mut Box<dyn Io>, p: &Proxy, host: &str, port: u16) -> Result<(), Failure> {
    let failed =
        |e: &dyn fmt::Display| Failure::new(TransportClosed::ConnectFailed, format!("proxy: {e}"));
    io.write_all(&p.connect_request(host, port))
        .await
        .map_err(|e| failed(&e))?;
    let mut head = Vec::with_capacity(128);
    loop {
        let b = io.read_u8().await.map_err(|e| failed(&e))?;
        head.push(b);
        if proxy::parse_response(&head)
            .map_err(|e| failed(&e))?
            .is_some()
        {
            return Ok(());
        }
    }
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
                    Ok(0) => Err(Failure::new(TransportClosed::ClosedByPeer, "end of stream")),
                    Ok(_) => Ok(()),
                    Err(e) => Err(Failure::new(TransportClosed::Io, e)),
                }
            }
            Conn::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Binary(data))) => {
                        buf.extend_from_slice(&data);
                        return Ok(());
                    }
                    Some(Ok(WsMessage::Close(_))) | None => {
                        return Err(Failure::new(
                            TransportClosed::ClosedByPeer,
                            "WebSocket closed",
                        ));
                    }
                    Some(Ok(WsMessage::Text(_))) => {
                        return Err(Failure::new(TransportClosed::Io, "WebSocket text frame"));
                    }
                    Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                    Some(Err(e)) => return Err(Failure::new(TransportClosed::Io, e)),
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
            Ok(Err(e)) => Err(Failure::new(TransportClosed::Io, e)),
            Err(_) => Err(Failure::new(TransportClosed::Io, "write timed out")),
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
