//! Listeners and connection tasks: bytes between a transport (TCP, TLS,
//! WebSocket over TLS) and the core, for the hub's listeners and the
//! DPS listeners alike. No protocol meaning lives here.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use rustls_pki_types::CertificateDer;

use crate::core::{Core, Link, Out, Service, Ticket};

/// The WebSocket path the hub serves MQTT on.
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";
/// The WebSocket subprotocol a client must offer.
pub const WEBSOCKET_SUBPROTOCOL: &str = "mqtt";
/// How long a TLS or WebSocket handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per connection.
const READ_BUFFER: usize = 4096;

/// Which transport a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    Tls,
    WebSocket,
}

/// Accepts connections until `stop` changes.
pub(crate) async fn listen(
    core: Arc<Core>,
    listener: TcpListener,
    service: Service,
    kind: Kind,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // At the limit the socket is closed at once (dropped).
        let Some(ticket) = core.admit() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let core = core.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            tracing::debug!(%peer, ?service, ?kind, "connection");
            match kind {
                Kind::Plain => serve_stream(core, service, stream, Vec::new(), ticket).await,
                Kind::Tls => {
                    if let Some((tls, chain)) = tls_accept(&acceptor, stream).await {
                        serve_stream(core, service, tls, chain, ticket).await;
                    }
                }
                Kind::WebSocket => {
                    if let Some((tls, chain)) = tls_accept(&acceptor, stream).await {
                        serve_websocket(core, service, tls, chain, ticket).await;
                    }
                }
            }
        });
    }
}

async fn tls_accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Option<(TlsStream<TcpStream>, Vec<CertificateDer<'static>>)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // The client's certificate first, then the intermediates it
            // sent (empty without a client certificate).
            let chain = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            Some((tls, chain))
        }
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Moves bytes between a byte stream and the core until either side ends.
async fn serve_stream<S>(
    core: Arc<Core>,
    service: Service,
    stream: S,
    chain: Vec<CertificateDer<'static>>,
    mut ticket: Ticket,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (conn, mut rx, budget) = core.open(service, chain);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    core.input(conn, buf.get(..n).unwrap_or_default());
                    ticket.after_input(conn);
                }
            },
            out = rx.recv() => match out {
                Some(Out::Data(b)) => {
                    if budget.is_over() || !write_within(&core, &mut wr, &b).await {
                        break;
                    }
                    budget.written(b.len());
                }
                Some(Out::Close) | None => {
                    if !budget.is_over() {
                        let drain = drain_then_shutdown(&mut rx, &mut wr);
                        let _ = within(core.write_timeout, drain).await;
                    }
                    break;
                }
            },
        }
    }
    core.closed(conn);
}

/// `f`, given up after `limit` (`None`: no limit).
async fn within<T>(limit: Option<Duration>, f: impl Future<Output = T>) -> Option<T> {
    match limit {
        Some(d) => tokio::time::timeout(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// Writes `b` within the write timeout; false (logged) when the write
/// failed or the peer did not take the bytes in time.
async fn write_within<W: AsyncWrite + Unpin>(core: &Core, wr: &mut W, b: &[u8]) -> bool {
    match within(core.write_timeout, wr.write_all(b)).await {
        Some(Ok(())) => true,
        Some(Err(_)) => false,
        None => {
            tracing::warn!(
                timeout = ?core.write_timeout,
                "connection closed: the peer did not read within the write timeout"
            );
            false
        }
    }
}

async fn drain_then_shutdown<W: AsyncWrite + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<Out>,
    wr: &mut W,
) -> std::io::Result<()> {
    while let Ok(Out::Data(b)) = rx.try_recv() {
        wr.write_all(&b).await?;
    }
    wr.flush().await?;
    wr.shutdown().await
}

/// MQTT over WebSocket: binary frames carry the MQTT bytes.
async fn serve_websocket(
    core: Arc<Core>,
    service: Service,
    tls: TlsStream<TcpStream>,
    chain: Vec<CertificateDer<'static>>,
    mut ticket: Ticket,
) {
    // The callback's signature is tungstenite's, large error and all.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let refuse = |status: StatusCode| {
            let mut r = ErrorResponse::new(None);
            *r.status_mut() = status;
            r
        };
        if req.uri().path() != WEBSOCKET_PATH {
            return Err(refuse(StatusCode::NOT_FOUND));
        }
        let offers_mqtt = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(WEBSOCKET_SUBPROTOCOL));
        if !offers_mqtt {
            return Err(refuse(StatusCode::BAD_REQUEST));
        }
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(WEBSOCKET_SUBPROTOCOL),
        );
        Ok(resp)
    };
    // A WebSocket message or frame is at most one MQTT packet of the
    // largest size the hub reads (tungstenite's defaults, 64 MiB and
    // 16 MiB, would let one peer make the emulator buffer that much before
    // CONNECT); a larger one ends the connection.
    let config = WebSocketConfig::default()
        .max_message_size(Some(iothub_hub::MAX_PACKET_SIZE))
        .max_frame_size(Some(iothub_hub::MAX_PACKET_SIZE));
    let ws = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(tls, check, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        _ => return,
    };
    let (conn, mut rx, budget) = core.open(service, chain);
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    core.input(conn, &b);
                    ticket.after_input(conn);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // Text frames are not MQTT; a close or an error ends it.
                Some(Ok(Message::Text(_) | Message::Close(_)) | Err(_)) | None => break,
            },
            out = rx.recv() => match out {
                Some(Out::Data(b)) => {
                    let n = b.len();
                    if budget.is_over() || !ws_send_within(&core, &mut sink, b).await {
                        break;
                    }
                    budget.written(n);
                }
                Some(Out::Close) | None => {
                    if !budget.is_over() {
                        let drain = async {
                            while let Ok(Out::Data(b)) = rx.try_recv() {
                                if sink.send(Message::Binary(b)).await.is_err() {
                                    break;
                                }
                            }
                            let _ = sink.close().await;
                        };
                        let _ = within(core.write_timeout, drain).await;
                    }
                    break;
                }
            },
        }
    }
    close_conn(&core, conn);
}

/// Sends one binary message within the write timeout (see
/// [`write_within`]).
async fn ws_send_within<S>(core: &Core, sink: &mut S, b: bytes::Bytes) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    match within(core.write_timeout, sink.send(Message::Binary(b))).await {
        Some(Ok(())) => true,
        Some(Err(_)) => false,
        None => {
            tracing::warn!(
                timeout = ?core.write_timeout,
                "connection closed: the peer did not read within the write timeout"
            );
            false
        }
    }
}

fn close_conn(core: &Core, conn: Link) {
    core.closed(conn);
}
