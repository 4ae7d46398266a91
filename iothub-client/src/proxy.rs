//! HTTP `CONNECT` proxies: the request that opens a tunnel to the hub and
//! an incremental parser of the proxy's answer. The adapter writes the
//! request on a fresh TCP connection to the proxy, feeds what it reads to
//! [`parse_response`] until it is complete, then runs TLS (and WebSocket)
//! through the tunnel.

use std::fmt;

use base64::Engine as _;

/// An HTTP proxy that supports `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Proxy {
    /// The proxy's host name or IP address.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// User name and password for `Proxy-Authorization: Basic`.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Proxy {
    /// A proxy without authentication.
    #[must_use]
    pub fn new(host: impl Into<String>, port: u16) -> Proxy {
        Proxy {
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// Adds Basic authentication.
    #[must_use]
    pub fn with_basic_auth(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Proxy {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// The `CONNECT host:port HTTP/1.1` request for a tunnel to the target.
    #[must_use]
    pub fn connect_request(&self, target_host: &str, target_port: u16) -> Vec<u8> {
        let authority = if target_host.contains(':') {
            format!("[{target_host}]:{target_port}")
        } else {
            format!("{target_host}:{target_port}")
        };
        let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some((user, password)) = &self.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            r.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

/// One `CONNECT` handshake without I/O: the adapter writes
/// [`request`](Self::request), then reads the answer one byte at a time
/// and hands each to [`feed`](Self::feed) until it says the tunnel is
/// open. Byte by byte, so that no byte of the tunnel is read early (the
/// answer is a few dozen bytes, once per connection).
#[derive(Debug, Clone)]
pub struct Tunnel {
    request: Vec<u8>,
    head: Vec<u8>,
}

impl Tunnel {
    /// The handshake for a tunnel through `proxy` to `host:port`.
    #[must_use]
    pub fn new(proxy: &Proxy, host: &str, port: u16) -> Tunnel {
        Tunnel {
            request: proxy.connect_request(host, port),
            head: Vec::with_capacity(128),
        }
    }

    /// The bytes to write first.
    #[must_use]
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The next byte of the answer: `Ok(true)` once the tunnel is open
    /// (read no more), `Ok(false)` to read another byte.
    pub fn feed(&mut self, byte: u8) -> Result<bool, ProxyError> {
        self.head.push(byte);
        Ok(parse_response(&self.head)?.is_some())
    }
}

/// The largest answer header accepted from a proxy.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Why the proxy did not open the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The answer is not an HTTP/1.x status line.
    Malformed,
    /// The header is longer than [`MAX_RESPONSE_HEAD`].
    TooLong,
    /// The proxy answered a status other than 2xx (407: authentication
    /// required).
    Status(u16),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Malformed => f.write_str("the proxy's answer is not HTTP/1.x"),
            ProxyError::TooLong => f.write_str("the proxy's answer header is too long"),
            ProxyError::Status(s) => write!(f, "the proxy refused the tunnel with status {s}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Parses the proxy's answer read so far. `Ok(None)`: read more.
/// `Ok(Some(n))`: the tunnel is open and the header took the first `n`
/// bytes (anything after them already belongs to the tunnel).
pub fn parse_response(buf: &[u8]) -> Result<Option<usize>, ProxyError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(ProxyError::TooLong);
        }
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err(ProxyError::Malformed);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::Malformed)?;
    let status_line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::Malformed);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyError::Malformed)?;
    if !(200..300).contains(&status) {
        return Err(ProxyError::Status(status));
    }
    Ok(Some(end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_and_without_auth() {
        let p = Proxy::new("127.0.0.1", 3128);
        assert_eq!(
            p.connect_request("hub.azure-devices.net", 443),
            b"CONNECT hub.azure-devices.net:443 HTTP/1.1\r\nHost: hub.azure-devices.net:443\r\n\r\n"
        );
        let p = p.with_basic_auth("user", "pass");
        let r = String::from_utf8(p.connect_request("::1", 443)).unwrap();
        assert!(r.starts_with("CONNECT [::1]:443 HTTP/1.1\r\n"), "{r}");
        assert!(
            r.contains("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"),
            "{r}"
        );
        assert!(!format!("{p:?}").contains("pass"));
    }

    #[test]
    fn tunnel_reads_to_the_end_of_the_header_and_no_further() {
        let p = Proxy::new("127.0.0.1", 3128);
        let mut t = Tunnel::new(&p, "hub", 443);
        assert_eq!(t.request(), p.connect_request("hub", 443).as_slice());
        let answer = b"HTTP/1.1 200 OK\r\n\r\n";
        let (last, rest) = answer.split_last().unwrap();
        for b in rest {
            assert_eq!(t.feed(*b), Ok(false));
        }
        assert_eq!(t.feed(*last), Ok(true));
        let mut t = Tunnel::new(&p, "hub", 443);
        let refused = b"HTTP/1.1 407 x\r\n\r\n";
        let r: Result<Vec<bool>, _> = refused.iter().map(|b| t.feed(*b)).collect();
        assert_eq!(r, Err(ProxyError::Status(407)));
    }

    #[test]
    fn response_parsing_is_incremental() {
        let answer = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n\x10\x00";
        for cut in 0..answer.len() - 2 {
            assert_eq!(parse_response(&answer[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(parse_response(answer), Ok(Some(answer.len() - 2)));
        assert_eq!(
            parse_response(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"),
            Err(ProxyError::Status(407))
        );
        assert_eq!(parse_response(b"SSH-2.0-x\r\n"), Err(ProxyError::Malformed));
        assert_eq!(
            parse_response(b"HTTP/1.1 abc\r\n\r\n"),
            Err(ProxyError::Malformed)
        );
        assert_eq!(parse_response(b"HHHHH"), Err(ProxyError::Malformed));
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        long.resize(MAX_RESPONSE_HEAD + 1, b'a');
        assert_eq!(parse_response(&long), Err(ProxyError::TooLong));
    }
}
