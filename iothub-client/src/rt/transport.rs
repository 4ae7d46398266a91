//! Opening, reading, writing and closing one transport over `futures-io`:
//! TCP (the [`Runtime`]'s), an optional HTTP CONNECT tunnel, TLS
//! (`futures-rustls`), WebSocket framing (`async-tungstenite`). No
//! protocol meaning: bytes in, bytes out.

use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _};
use futures_rustls::TlsConnector;

use super::{Runtime, until};
use crate::transport::{Endpoint, Failure, ws_data};
use crate::{Proxy, proxy, websocket};

/// Bytes read per call at most (stream transports).
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// A byte stream: TCP, a proxy tunnel, or TLS over either.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open transport.
pub(super) enum Conn {
    /// MQTT bytes straight on the stream.
    Stream(Box<dyn Io>),
    /// MQTT bytes in binary WebSocket frames.
    WebSocket(Box<WebSocketStream<Box<dyn Io>>>),
}

/// Opens a transport: TCP (to the proxy if any), the CONNECT tunnel, TLS,
/// the WebSocket upgrade; all within the open timeout.
pub(super) async fn open<R: Runtime>(ep: &Endpoint) -> Result<Conn, Failure> {
    let deadline = Instant::now() + ep.open_timeout;
    let (host, port) = ep.first_hop();
    let connect = async {
        R::connect_tcp(host, port)
            .await
            .map_err(|e| Failure::connect(format!("TCP connect to {host}:{port}: {e}")))
    };
    let tcp = until::<R, _, _>(deadline, connect, || {
        Failure::connect("TCP connect timed out")
    })
    .await?;
    let mut io: Box<dyn Io> = Box::new(tcp);
    if let Some(p) = &ep.proxy {
        let tunnel = tunnel(&mut io, p, &ep.host, ep.port);
        until::<R, _, _>(deadline, tunnel, || {
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
        let tls = until::<R, _, _>(deadline, handshake, || {
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
    let (ws, _) = until::<R, _, _>(deadline, upgrade, timed_out).await?;
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
    /// Reads what arrives next into `buf` (replacing what it held) and
    /// returns how many bytes it holds now. Cancel-safe: nothing is
    /// consumed by a read that did not complete.
    pub(super) async fn read(&mut self, buf: &mut Vec<u8>) -> Result<usize, Failure> {
        match self {
            Conn::Stream(io) => {
                buf.resize(READ_CHUNK, 0);
                match io.read(buf).await {
                    Ok(0) => Err(Failure::closed("end of stream")),
                    Ok(n) => Ok(n),
                    Err(e) => Err(Failure::io(e)),
                }
            }
            Conn::WebSocket(ws) => loop {
                if let Some(data) = ws_data(ws.next().await)? {
                    buf.clear();
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
            },
        }
    }

    /// Writes `data` (one WebSocket binary frame) and flushes it, within
    /// `limit`.
    pub(super) async fn write<R: Runtime>(
        &mut self,
        data: Bytes,
        limit: Duration,
    ) -> Result<(), Failure> {
        let write = async {
            match self {
                Conn::Stream(io) => {
                    io.write_all(&data).await.map_err(Failure::io)?;
                    io.flush().await.map_err(Failure::io)
                }
                Conn::WebSocket(ws) => ws.send(WsMessage::Binary(data)).await.map_err(Failure::io),
            }
        };
        until::<R, _, _>(Instant::now() + limit, write, || {
            Failure::io("write timed out")
        })
        .await
    }

    /// Closes gracefully (TLS close_notify, WebSocket close), giving up
    /// after a second.
    pub(super) async fn close<R: Runtime>(self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let close = async {
            match self {
                Conn::Stream(mut io) => drop(io.close().await),
                Conn::WebSocket(mut ws) => drop(ws.close(None).await),
            }
            Ok(())
        };
        let _ = until::<R, _, _>(deadline, close, || ()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use iothub_proto::session::TransportClosed;

    use super::{Conn, open};
    use crate::rt::{Runtime, Task};
    use crate::{ClientOptions, Proxy, Transport};

    /// `async-io` and `async-net`: the test runtime.
    struct Test;

    impl Runtime for Test {
        type Tcp = async_net::TcpStream;
        #[cfg(unix)]
        type Unix = async_net::unix::UnixStream;
        type Sleep = async_io::Timer;

        async fn connect_tcp(host: &str, port: u16) -> std::io::Result<Self::Tcp> {
            async_net::TcpStream::connect((host, port)).await
        }

        #[cfg(unix)]
        async fn connect_unix(path: &str) -> std::io::Result<Self::Unix> {
            async_net::unix::UnixStream::connect(path).await
        }

        fn sleep_until(at: Instant) -> async_io::Timer {
            async_io::Timer::at(at)
        }

        fn spawn(task: Task) -> std::io::Result<()> {
            std::thread::spawn(move || async_io::block_on(task));
            Ok(())
        }
    }

    fn options(port: u16, transport: Transport) -> ClientOptions {
        ClientOptions::from_connection_string(
            "HostName=127.0.0.1;DeviceId=dev1;SharedAccessKey=AAAA",
        )
        .unwrap()
        .with_port(port)
        .with_transport(transport)
        .with_open_timeout(Duration::from_millis(300))
    }

    #[test]
    fn a_silent_tls_peer_times_the_open_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ep = options(port, Transport::Mqtt).endpoint().unwrap();
        let silent = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let start = Instant::now();
        let err = async_io::block_on(open::<Test>(&ep)).err().unwrap();
        let took = start.elapsed();
        assert_eq!(err.kind, TransportClosed::HandshakeFailed);
        assert_eq!(err.detail, "TLS handshake timed out");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        drop(silent.join());
    }

    #[test]
    fn a_refusing_proxy_fails_the_open() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ep = options(443, Transport::WebSocket)
            .with_proxy(Proxy::new("127.0.0.1", port))
            .endpoint()
            .unwrap();
        let proxy = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8];
            while !request.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let err = async_io::block_on(open::<Test>(&ep)).err().unwrap();
        assert_eq!(err.kind, TransportClosed::ConnectFailed);
        assert!(err.detail.starts_with("proxy: "), "{}", err.detail);
        let request = proxy.join().unwrap();
        assert!(
            request.starts_with("CONNECT 127.0.0.1:443 HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[test]
    fn plain_tcp_carries_bytes_both_ways_then_sees_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ep = options(port, Transport::PlainTcp).endpoint().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        async_io::block_on(async {
            let mut conn = open::<Test>(&ep).await.unwrap();
            assert!(matches!(conn, Conn::Stream(_)));
            conn.write::<Test>(bytes::Bytes::from_static(b"hello"), Duration::from_secs(1))
                .await
                .unwrap();
            let mut buf = Vec::new();
            let mut got = Vec::new();
            while got.len() < 5 {
                let n = conn.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, b"hello");
            echo.join().unwrap();
            let end = conn.read(&mut buf).await.err().unwrap();
            assert_eq!(end.kind, TransportClosed::ClosedByPeer);
            conn.close::<Test>().await;
        });
    }
}
