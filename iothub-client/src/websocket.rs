//! MQTT over WebSocket: IoT Hub serves it at `wss://{host}/$iothub/websocket`
//! with the WebSocket subprotocol `mqtt`; every MQTT byte travels in binary
//! frames.

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::http::HeaderValue;

/// The path IoT Hub serves MQTT over WebSocket on.
pub const PATH: &str = "/$iothub/websocket";
/// The WebSocket subprotocol.
pub const SUBPROTOCOL: &str = "mqtt";

/// The URL: `wss://{host}/$iothub/websocket`, with `:{port}` unless it is
/// 443 (`ws://` and 80 when `tls` is false, for local tests).
#[must_use]
pub fn url(host: &str, port: u16, tls: bool) -> String {
    let (scheme, default_port) = if tls { ("wss", 443) } else { ("ws", 80) };
    if port == default_port {
        format!("{scheme}://{host}{PATH}")
    } else {
        format!("{scheme}://{host}:{port}{PATH}")
    }
}

/// The upgrade request for [`url`], asking for the `mqtt` subprotocol (the
/// handshake then checks the server chose it). Give it to
/// `tungstenite::client` or `tokio_tungstenite::client_async` over a
/// stream you opened (and wrapped in TLS) yourself.
pub fn request(host: &str, port: u16, tls: bool) -> Result<Request, tungstenite::Error> {
    let mut request = url(host, port, tls).into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_request() {
        assert_eq!(
            url("contoso.azure-devices.net", 443, true),
            "wss://contoso.azure-devices.net/$iothub/websocket"
        );
        assert_eq!(
            url("127.0.0.1", 8443, true),
            "wss://127.0.0.1:8443/$iothub/websocket"
        );
        assert_eq!(
            url("localhost", 80, false),
            "ws://localhost/$iothub/websocket"
        );
        let r = request("localhost", 8443, true).expect("request");
        assert_eq!(r.uri().path(), "/$iothub/websocket");
        assert_eq!(r.headers()["Sec-WebSocket-Protocol"], "mqtt");
        assert_eq!(r.headers()["Host"], "localhost:8443");
    }
}
