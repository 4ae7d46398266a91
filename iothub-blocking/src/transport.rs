//! One connection: opened (TCP, an optional HTTP CONNECT tunnel, TLS, the
//! WebSocket upgrade) and then read by its own thread, which forwards raw
//! bytes to the driver; the driver keeps the [`Link`] (the socket's write
//! side, the TLS state, the WebSocket framing) and turns raw bytes into
//! MQTT bytes and back. No protocol meaning here.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use bytes::Bytes;
use iothub_client::transport::{Endpoint, Failure, ws_data};
use iothub_client::{Proxy, proxy, websocket};
use rustls::{ClientConnection, StreamOwned};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message as WsMessage, WebSocket};

use crate::driver::Input;

/// The driver's side of an open connection.
pub(crate) struct Link {
    sock: TcpStream,
    tls: Option<ClientConnection>,
    ws: Option<WebSocket<Pipe>>,
}

/// An in-memory byte stream for tungstenite: what the driver put in is
/// read (then `WouldBlock`), what tungstenite writes is collected.
#[derive(Default)]
pub(crate) struct Pipe {
    inbound: Vec<u8>,
    outbound: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.inbound.len());
        buf[..n].copy_from_slice(&self.inbound[..n]);
        self.inbound.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Starts a connection thread: it opens the transport, hands the [`Link`]
/// to the driver, then reads the socket until it closes.
pub(crate) fn spawn(
    ep: Arc<Endpoint>,
    id: u64,
    tx: Sender<Input>,
    span: tracing::Span,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("iothub-conn".into())
        .spawn(move || {
            let _in_span = span.enter();
            match open(&ep) {
                Ok((link, reader)) => {
                    if tx.send(Input::Opened(id, Ok(Box::new(link)))).is_ok() {
                        read_until_closed(reader, id, &tx);
                    }
                }
                Err(f) => {
                    let _ = tx.send(Input::Opened(id, Err(f)));
                }
            }
        })
        .map(drop)
}

fn read_until_closed(mut sock: TcpStream, id: u64, tx: &Sender<Input>) {
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        match sock.read(&mut buf) {
            Ok(0) => break Failure::closed("end of stream"),
            Ok(n) => {
                if tx.send(Input::Read(id, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Failure::io(e),
        }
    };
    let _ = tx.send(Input::Closed(id, end));
}

/// Bounds every blocking step of the opening by what is left of the
/// open timeout.
fn left(deadline: Instant, what: &str) -> Result<std::time::Duration, Failure> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(Failure::connect(format!("{what} timed out")));
    }
    Ok(d)
}

fn open(ep: &Endpoint) -> Result<(Link, TcpStream), Failure> {
    let deadline = Instant::now() + ep.open_timeout;
    let (host, port) = ep.first_hop();
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Failure::connect(format!("resolving {host}:{port}: {e}")))?;
    let mut last = None;
    let mut sock = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left(deadline, "TCP connect")?) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut sock = sock.ok_or_else(|| {
        let e = last.map_or("no address".into(), |e| e.to_string());
        Failure::connect(format!("TCP connect to {host}:{port}: {e}"))
    })?;
    let timeouts = |s: &TcpStream, d| {
        s.set_read_timeout(Some(d))
            .and_then(|()| s.set_write_timeout(Some(d)))
            .map_err(Failure::connect)
    };
    sock.set_nodelay(true).map_err(Failure::connect)?;
    timeouts(&sock, left(deadline, "proxy CONNECT")?)?;
    if let Some(p) = &ep.proxy {
        tunnel(&mut sock, p, &ep.host, ep.port, deadline)?;
    }
    let (sock, tls, ws) = match &ep.tls {
        Some((config, name)) => {
            let conn = ClientConnection::new(config.clone(), name.clone())
                .map_err(|e| Failure::handshake(format!("TLS: {e}")))?;
            let mut stream = StreamOwned::new(conn, sock);
            while stream.conn.is_handshaking() {
                // The open's deadline bounds the whole handshake, not each read.
                timeouts(&stream.sock, left(deadline, "TLS handshake")?)?;
                stream
                    .conn
                    .complete_io(&mut stream.sock)
                    .map_err(|e| Failure::handshake(format!("TLS: {e}")))?;
            }
            let ws = upgrade(ep, &mut stream, deadline)?;
            let StreamOwned { conn, sock } = stream;
            (sock, Some(conn), ws)
        }
        None => {
            let ws = upgrade(ep, &mut sock, deadline)?;
            (sock, None, ws)
        }
    };
    sock.set_read_timeout(None).map_err(Failure::connect)?;
    sock.set_write_timeout(Some(ep.write_timeout))
        .map_err(Failure::connect)?;
    let reader = sock.try_clone().map_err(Failure::connect)?;
    Ok((Link { sock, tls, ws }, reader))
}

/// Asks the proxy for a tunnel, reading its answer byte by byte so that no
/// byte of the tunnel is consumed; a proxy that answers slowly, a byte at a
/// time, still has to finish by `deadline`.
fn tunnel(
    sock: &mut TcpStream,
    p: &Proxy,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::connect(format!("proxy: {e}"));
    let mut t = proxy::Tunnel::new(p, host, port);
    sock.write_all(t.request()).map_err(|e| failed(&e))?;
    let mut byte = [0u8; 1];
    loop {
        sock.set_read_timeout(Some(left(deadline, "proxy CONNECT")?))
            .map_err(Failure::connect)?;
        sock.read_exact(&mut byte).map_err(|e| failed(&e))?;
        if t.feed(byte[0]).map_err(|e| failed(&e))? {
            return Ok(());
        }
    }
}

/// The WebSocket upgrade (for [`Transport::WebSocket`](iothub_client::Transport)),
/// run by tungstenite over a [`Pipe`] fed from the blocking stream.
fn upgrade(
    ep: &Endpoint,
    stream: &mut impl ReadWrite,
    deadline: Instant,
) -> Result<Option<WebSocket<Pipe>>, Failure> {
    if !ep.is_websocket() {
        return Ok(None);
    }
    left(deadline, "WebSocket handshake")?;
    let request =
        websocket::request(&ep.host, ep.port, ep.tls.is_some()).map_err(Failure::handshake)?;
    let failed = |e: &dyn std::fmt::Display| Failure::handshake(format!("WebSocket: {e}"));
    let mut attempt = tungstenite::client::client(request, Pipe::default());
    let mut buf = [0u8; 4096];
    loop {
        match attempt {
            Ok((ws, _)) => return Ok(Some(ws)),
            Err(HandshakeError::Failure(e)) => return Err(failed(&e)),
            Err(HandshakeError::Interrupted(mut mid)) => {
                // Each read may wait up to the time left when the phase
                // began; a peer that dribbles is stopped here at the deadline.
                left(deadline, "WebSocket handshake")?;
                let pipe = mid.get_mut().get_mut();
                stream
                    .write_all(&std::mem::take(&mut pipe.outbound))
                    .and_then(|()| stream.flush())
                    .map_err(|e| failed(&e))?;
                match stream.read(&mut buf) {
                    Ok(0) => return Err(failed(&"closed during the handshake")),
                    Ok(n) => pipe.inbound.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(failed(&e)),
                }
                attempt = mid.handshake();
            }
        }
    }
}

/// A blocking byte stream (TCP, or TLS over TCP).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Link {
    /// Turns raw bytes read from the socket into MQTT bytes.
    pub(crate) fn input(&mut self, raw: &[u8]) -> Result<Vec<u8>, Failure> {
        let plain = match &mut self.tls {
            None => raw.to_vec(),
            Some(tls) => {
                let mut plain = Vec::new();
                let mut raw = raw;
                while !raw.is_empty() {
                    tls.read_tls(&mut raw).map_err(Failure::io)?;
                    let state = tls
                        .process_new_packets()
                        .map_err(|e| Failure::io(format!("TLS: {e}")))?;
                    let start = plain.len();
                    plain.resize(start + state.plaintext_bytes_to_read(), 0);
                    tls.reader()
                        .read_exact(&mut plain[start..])
                        .map_err(Failure::io)?;
                }
                plain
            }
        };
        if let Some(tls) = &mut self.tls {
            // Alerts or post-handshake answers rustls may have queued.
            flush_tls(tls, &mut self.sock)?;
        }
        let Some(ws) = &mut self.ws else {
            return Ok(plain);
        };
        ws.get_mut().inbound.extend_from_slice(&plain);
        let mut mqtt = Vec::new();
        loop {
            match ws.read() {
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                r => {
                    if let Some(data) = ws_data(Some(r))? {
                        mqtt.extend_from_slice(&data);
                    }
                }
            }
        }
        // Pongs tungstenite queued while reading.
        let pending = std::mem::take(&mut ws.get_mut().outbound);
        self.send_raw(&pending)?;
        Ok(mqtt)
    }

    /// Writes MQTT bytes (one WebSocket binary frame) within the write
    /// timeout.
    pub(crate) fn write(&mut self, data: Bytes) -> Result<(), Failure> {
        match &mut self.ws {
            None => self.send_raw(&data),
            Some(ws) => {
                ws.send(WsMessage::Binary(data)).map_err(Failure::io)?;
                let framed = std::mem::take(&mut ws.get_mut().outbound);
                self.send_raw(&framed)
            }
        }
    }

    /// Writes bytes below the WebSocket layer: through TLS, or straight.
    fn send_raw(&mut self, data: &[u8]) -> Result<(), Failure> {
        let Some(tls) = &mut self.tls else {
            return self.sock.write_all(data).map_err(Failure::io);
        };
        // rustls takes plaintext only up to its buffer limit: feed it and
        // write the records out in turns.
        let mut rest = data;
        loop {
            let n = tls.writer().write(rest).map_err(Failure::io)?;
            rest = &rest[n..];
            flush_tls(tls, &mut self.sock)?;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Closes gracefully (WebSocket close, TLS close_notify); the socket
    /// is shut down when the link is dropped right after.
    pub(crate) fn close(mut self) {
        if let Some(ws) = &mut self.ws {
            let _ = ws.close(None);
            let _ = ws.flush();
            let framed = std::mem::take(&mut ws.get_mut().outbound);
            let _ = self.send_raw(&framed);
        }
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = flush_tls(tls, &mut self.sock);
        }
    }
}

fn flush_tls(tls: &mut ClientConnection, sock: &mut TcpStream) -> Result<(), Failure> {
    while tls.wants_write() {
        tls.write_tls(sock).map_err(Failure::io)?;
    }
    Ok(())
}

impl Drop for Link {
    /// Shuts the socket down, which also ends the connection's reader
    /// thread (it holds a clone of the socket).
    fn drop(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}
