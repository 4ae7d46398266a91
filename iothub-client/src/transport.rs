//! What an adapter's transport code needs besides its runtime's sockets:
//! the [`Endpoint`] (where to connect, through what, with which TLS
//! configuration and timeouts), the [`Failure`] it reports to the session,
//! and the meaning of each WebSocket message ([`ws_data`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iothub_proto::session::TransportClosed;
use rustls_pki_types::ServerName;

use crate::{ClientOptions, OptionsError, ProvisioningOptions, Proxy, Transport, tls};

/// How to reach the hub, or DPS; built once per client by
/// [`ClientOptions::endpoint`], once per provisioning by
/// [`ProvisioningOptions::endpoint`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Endpoint {
    /// The TLS peer and WebSocket host: the gateway if any, else the hub.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the bytes travel.
    pub transport: Transport,
    /// The TLS configuration and server name; `None` for plain TCP.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// An HTTP `CONNECT` proxy to tunnel through.
    pub proxy: Option<Proxy>,
    /// Time to open a transport (every handshake included).
    pub open_timeout: Duration,
    /// Time a write may block.
    pub write_timeout: Duration,
}

impl Endpoint {
    /// An endpoint for `host:port`: TLS with `tls_config` if any (the
    /// server name is checked here), through `proxy` if any. The client's
    /// comes from [`ClientOptions::endpoint`]; this serves other services
    /// (the Device Provisioning Service) over the same transports.
    pub fn new(
        (host, port): (&str, u16),
        transport: Transport,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        proxy: Option<Proxy>,
        (open_timeout, write_timeout): (Duration, Duration),
    ) -> Result<Endpoint, OptionsError> {
        let tls = match tls_config {
            Some(config) => Some((config, tls::server_name(host)?)),
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

    /// The `connect{attempt, host, port, transport}` span of one attempt
    /// to open a transport, with "opening transport" logged in it.
    #[must_use]
    pub fn open_span(&self, attempt: u64) -> tracing::Span {
        let span = tracing::info_span!(
            "connect",
            attempt,
            host = %self.host,
            port = self.port,
            transport = ?self.transport,
        );
        span.in_scope(|| tracing::info!("opening transport"));
        span
    }

    /// Where the TCP connection goes first: the proxy if any, else the
    /// host.
    #[must_use]
    pub fn first_hop(&self) -> (&str, u16) {
        match &self.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (self.host.as_str(), self.port),
        }
    }

    /// Whether MQTT travels in WebSocket frames.
    #[must_use]
    pub fn is_websocket(&self) -> bool {
        self.transport == Transport::WebSocket
    }
}

impl ClientOptions {
    /// Checks the options ([`prepare`](Self::prepare)) and gathers what
    /// the transport needs. Adapters call it once, when the client is made.
    pub fn endpoint(&self) -> Result<Endpoint, OptionsError> {
        Endpoint::new(
            (self.host(), self.port()),
            self.transport,
            self.prepare()?,
            self.proxy.clone(),
            (self.open_timeout, self.write_timeout),
        )
    }
}

impl ProvisioningOptions {
    /// Checks the options ([`prepare`](Self::prepare)) and gathers what
    /// the transport needs to reach DPS: the same [`Endpoint`] as a hub
    /// connection's, so an adapter opens both with one function.
    pub fn endpoint(&self) -> Result<Endpoint, OptionsError> {
        Endpoint::new(
            (self.host(), self.port()),
            self.transport,
            self.prepare()?,
            self.proxy.clone(),
            (self.open_timeout, self.write_timeout),
        )
    }
}

/// Why a transport failed: the kind the session needs, and a detail for
/// the logs.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What the session is told.
    pub kind: TransportClosed,
    /// What happened, for people.
    pub detail: String,
}

impl Failure {
    /// A failure of this kind.
    pub fn new(kind: TransportClosed, detail: impl fmt::Display) -> Failure {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }

    /// Opening failed (DNS, TCP, proxy).
    pub fn connect(detail: impl fmt::Display) -> Failure {
        Failure::new(TransportClosed::ConnectFailed, detail)
    }

    /// A TLS or WebSocket handshake failed.
    pub fn handshake(detail: impl fmt::Display) -> Failure {
        Failure::new(TransportClosed::HandshakeFailed, detail)
    }

    /// Reading or writing failed.
    pub fn io(detail: impl fmt::Display) -> Failure {
        Failure::new(TransportClosed::Io, detail)
    }

    /// The peer closed the stream.
    #[must_use]
    pub fn closed(detail: &str) -> Failure {
        Failure::new(TransportClosed::ClosedByPeer, detail)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Failure {}

/// What one WebSocket message means for MQTT: `Ok(Some(bytes))` MQTT
/// data, `Ok(None)` nothing (ping, pong: tungstenite answers pings), or
/// the end of the transport (a close, or a text frame, which IoT Hub never
/// sends). `None` (the stream ended) is a close too.
pub fn ws_data(
    message: Option<Result<tungstenite::Message, tungstenite::Error>>,
) -> Result<Option<Bytes>, Failure> {
    use tungstenite::Message;
    match message {
        Some(Ok(Message::Binary(data))) => Ok(Some(data)),
        Some(Ok(Message::Close(_))) | None => Err(Failure::closed("WebSocket closed")),
        Some(Ok(Message::Text(_))) => Err(Failure::io("WebSocket text frame")),
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(Failure::io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_frames() {
        let o = ClientOptions::from_connection_string(
            "HostName=hub.azure-devices.net;DeviceId=d;SharedAccessKey=AAAA",
        )
        .unwrap()
        .with_transport(Transport::WebSocket)
        .with_proxy(Proxy::new("127.0.0.1", 3128));
        let ep = o.endpoint().unwrap();
        assert_eq!(ep.first_hop(), ("127.0.0.1", 3128));
        assert!(ep.is_websocket() && ep.tls.is_some());
        assert_eq!(ep.port, 443);
        use tungstenite::Message;
        let data = ws_data(Some(Ok(Message::Binary(Bytes::from_static(b"x")))));
        assert_eq!(data.unwrap().unwrap().as_ref(), b"x");
        assert!(
            ws_data(Some(Ok(Message::Ping(Bytes::new()))))
                .unwrap()
                .is_none()
        );
        let e = ws_data(None).unwrap_err();
        assert_eq!(e.kind, TransportClosed::ClosedByPeer);
        let e = ws_data(Some(Ok(Message::Text("x".into())))).unwrap_err();
        assert_eq!(e.kind, TransportClosed::Io);
    }
}
