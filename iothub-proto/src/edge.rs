//! IoT Edge modules: the module's configuration from the IoT Edge
//! environment, output messages, and what an adapter needs to sign through
//! the workload API.
//!
//! Module identities work everywhere in the crate already (telemetry on
//! `devices/{d}/modules/{m}/messages/events/`, routed input messages as
//! [`Event::InputMessage`](crate::session::Event::InputMessage) once
//! [`Feature::ModuleInputs`](crate::session::Feature::ModuleInputs) is
//! enabled). This module adds the IoT Edge specifics.
//!
//! # Signing: what the core does and what the adapter must do
//!
//! Inside IoT Edge a module has no key: its SAS tokens are signed by the
//! security daemon's workload API, over a Unix socket
//! (`IOTEDGE_WORKLOADURI`, e.g. `unix:///var/run/iotedge/workload.sock`).
//! The core does no I/O, so the work is split:
//!
//! | step | who |
//! |---|---|
//! | read the environment | the adapter, passing a lookup closure to [`EdgeEnvironment::from_lookup`] |
//! | build the session configuration (gateway as transport host, tokens from outside) | the core: [`EdgeEnvironment::external_config`] |
//! | ask for a token ([`Event::TokenRequested`](crate::session::Event::TokenRequested)) before CONNECT and at 80 % of its lifetime | the core: the session |
//! | build the sign request, as HTTP/1.1 bytes | the core: [`EdgeEnvironment::sign_request`], [`WorkloadRequest::to_http`] |
//! | write them to the Unix socket, read the answer | the adapter ([`WorkloadUri::unix_socket_path`]) |
//! | parse the answer (status, `Content-Length` or chunked body, `{"digest":"…"}`) into a SAS token | the core: [`parse_http_response`], [`EdgeEnvironment::token_from_http_response`] |
//! | hand the token to the session | the adapter: [`Session::provide_token`](crate::session::Session::provide_token) |
//! | fetch the edge CA ([`EdgeEnvironment::trust_bundle_request`]) and trust it for TLS to the gateway | the adapter; parsing: [`trust_bundle_from_http_response`] |
//!
//! [`EdgeEnvironment::config`] still builds a configuration around one
//! fixed token ([`Credential::SharedAccessSignature`]), which the session
//! cannot renew.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::auth::{Credential, DeviceId, HostName, Identity, ModuleId, SasToken};
use crate::session::{Config, Message};
use crate::text::url_encode;

/// The hub's host name.
pub const IOTEDGE_IOTHUBHOSTNAME: &str = "IOTEDGE_IOTHUBHOSTNAME";
/// The edge hub's host name: the transport host (optional).
pub const IOTEDGE_GATEWAYHOSTNAME: &str = "IOTEDGE_GATEWAYHOSTNAME";
/// The device id of the edge device.
pub const IOTEDGE_DEVICEID: &str = "IOTEDGE_DEVICEID";
/// The module id.
pub const IOTEDGE_MODULEID: &str = "IOTEDGE_MODULEID";
/// The authentication scheme: `sasToken` is the only one.
pub const IOTEDGE_AUTHSCHEME: &str = "IOTEDGE_AUTHSCHEME";
/// The workload API's URI (`unix:///…` or `http://…`).
pub const IOTEDGE_WORKLOADURI: &str = "IOTEDGE_WORKLOADURI";
/// The module's generation id (part of the workload API path).
pub const IOTEDGE_MODULEGENERATIONID: &str = "IOTEDGE_MODULEGENERATIONID";
/// The workload API's api-version.
pub const IOTEDGE_APIVERSION: &str = "IOTEDGE_APIVERSION";

/// The workload API key the module's tokens are signed with.
pub const WORKLOAD_KEY_ID: &str = "primary";

/// Why the IoT Edge environment could not be read. Holds only variable
/// names (no values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EdgeEnvError {
    /// A required variable is unset or empty.
    Missing(&'static str),
    /// A variable's value is not valid (a host name, a device or module id,
    /// a URI that is neither `unix://` nor `http(s)://`).
    Invalid(&'static str),
    /// `IOTEDGE_AUTHSCHEME` is not `sasToken`.
    UnsupportedAuthScheme,
}

impl fmt::Display for EdgeEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(var) => write!(f, "the IoT Edge variable {var} is not set"),
            Self::Invalid(var) => write!(f, "the IoT Edge variable {var} is not valid"),
            Self::UnsupportedAuthScheme => {
                f.write_str("IOTEDGE_AUTHSCHEME is not `sasToken`, the only scheme supported")
            }
        }
    }
}

impl core::error::Error for EdgeEnvError {}

/// Where the workload API listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadUri {
    /// `unix://{path}`: a Unix domain socket (the usual case).
    Unix(String),
    /// `http://…` or `https://…`: TCP (Windows, development setups).
    Http(String),
}

impl WorkloadUri {
    /// Reads `unix:///var/run/iotedge/workload.sock` or an HTTP(S) URL.
    pub fn parse(uri: &str) -> Option<WorkloadUri> {
        if let Some(path) = uri.strip_prefix("unix://") {
            return (!path.is_empty()).then(|| WorkloadUri::Unix(String::from(path)));
        }
        (uri.starts_with("http://") || uri.starts_with("https://"))
            .then(|| WorkloadUri::Http(String::from(uri.trim_end_matches('/'))))
    }

    /// The socket path, for `unix://`.
    #[must_use]
    pub fn unix_socket_path(&self) -> Option<&str> {
        match self {
            WorkloadUri::Unix(path) => Some(path),
            WorkloadUri::Http(_) => None,
        }
    }
}

/// A request to the workload API, ready for an HTTP/1.1 client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkloadRequest {
    /// `POST` or `GET`.
    pub method: &'static str,
    /// The path and query, e.g.
    /// `/modules/filter/genid/637…/sign?api-version=2019-01-30`.
    pub path: String,
    /// The JSON body (`application/json`), empty for a `GET`.
    pub body: String,
}

/// The `Host` header sent to a workload API on a Unix socket (the socket,
/// not the header, says where the request goes).
pub const WORKLOAD_UNIX_HOST: &str = "localhost";

/// The largest workload API response read (head and body): 64 KiB.
pub const MAX_WORKLOAD_RESPONSE: usize = 64 * 1024;

impl WorkloadRequest {
    /// The request as HTTP/1.1 bytes: request line, `Host: {host}`,
    /// `Content-Type: application/json` and `Content-Length` for a body,
    /// `Connection: close` (one request per connection, so the response
    /// ends at the latest when the server closes).
    #[must_use]
    pub fn to_http(&self, host: &str) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", self.method, self.path);
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

/// A complete HTTP/1.1 response from the workload API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Why a workload API answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadError {
    /// Not an HTTP/1.x response (bad status line, header, chunk size), or
    /// it ended before its body was complete.
    MalformedHttp,
    /// The response is over [`MAX_WORKLOAD_RESPONSE`] bytes.
    TooLarge,
    /// A status other than 2xx, with the `message` of the JSON body if
    /// there is one (the workload API's error format).
    Status {
        /// The HTTP status.
        status: u16,
        /// The error message the workload API gave.
        message: Option<String>,
    },
    /// The sign answer's body is not usable.
    Sign(SignResponseError),
    /// The trust bundle answer has no string `certificate`.
    MissingCertificate,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedHttp => f.write_str("the workload API's answer is not valid HTTP/1.1"),
            Self::TooLarge => write!(
                f,
                "the workload API's answer is over {MAX_WORKLOAD_RESPONSE} bytes"
            ),
            Self::Status {
                status,
                message: Some(m),
            } => write!(f, "the workload API answered {status}: {m}"),
            Self::Status {
                status,
                message: None,
            } => write!(f, "the workload API answered {status}"),
            Self::Sign(e) => fmt::Display::fmt(e, f),
            Self::MissingCertificate => {
                f.write_str("the trust bundle answer has no string `certificate`")
            }
        }
    }
}

impl core::error::Error for WorkloadError {}

impl From<SignResponseError> for WorkloadError {
    fn from(e: SignResponseError) -> Self {
        WorkloadError::Sign(e)
    }
}

/// Parses an HTTP/1.1 response read so far. `Ok(None)`: more bytes are
/// needed (`eof`: the server has closed, so nothing more comes: a body
/// without `Content-Length` or chunking ends here, a short one is an
/// error). The body is framed by `Transfer-Encoding: chunked`, else
/// `Content-Length`, else the end of the connection. Interim `1xx`
/// responses are skipped.
pub fn parse_http_response(data: &[u8], eof: bool) -> Result<Option<HttpResponse>, WorkloadError> {
    if data.len() > MAX_WORKLOAD_RESPONSE {
        return Err(WorkloadError::TooLarge);
    }
    let mut rest = data;
    loop {
        let Some((head, body)) = split_at_seq(rest, b"\r\n\r\n") else {
            return if eof {
                Err(WorkloadError::MalformedHttp)
            } else {
                Ok(None)
            };
        };
        let head = core::str::from_utf8(head).map_err(|_| WorkloadError::MalformedHttp)?;
        let mut lines = head.split("\r\n");
        let status = parse_status_line(lines.next().unwrap_or(""))?;
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let (name, value) = line.split_once(':').ok_or(WorkloadError::MalformedHttp)?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_digits(value, 10)?;
                // Two lengths that disagree: where the body ends is unknown.
                if length.is_some_and(|l| l != n) {
                    return Err(WorkloadError::MalformedHttp);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let body = if status == 204 || status == 304 {
            Some(Vec::new())
        } else if chunked {
            dechunk(body)?
        } else if let Some(n) = length {
            body.get(..n).map(<[u8]>::to_vec)
        } else if eof {
            Some(body.to_vec())
        } else {
            None
        };
        return match body {
            Some(body) => Ok(Some(HttpResponse { status, body })),
            None if eof => Err(WorkloadError::MalformedHttp),
            None => Ok(None),
        };
    }
}

/// The bytes before and after the first `needle`.
fn split_at_seq<'a>(hay: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = hay.windows(needle.len()).position(|w| w == needle)?;
    let (before, after) = hay.split_at_checked(at)?;
    Some((before, after.get(needle.len()..)?))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Result<u16, WorkloadError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(WorkloadError::MalformedHttp);
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 {
        return Err(WorkloadError::MalformedHttp);
    }
    u16::try_from(parse_digits(code, 10)?).map_err(|_| WorkloadError::MalformedHttp)
}

/// A length, chunk size or status code: digits of `radix` only (Rust's
/// own parsing would also take a leading `+`), within `usize`.
fn parse_digits(text: &str, radix: u32) -> Result<usize, WorkloadError> {
    if text.is_empty() || !text.chars().all(|c| c.is_digit(radix)) {
        return Err(WorkloadError::MalformedHttp);
    }
    usize::from_str_radix(text, radix).map_err(|_| WorkloadError::MalformedHttp)
}

/// A chunked body: `Ok(None)` until the last (empty) chunk.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, WorkloadError> {
    let mut body = Vec::new();
    loop {
        let Some((line, rest)) = split_at_seq(data, b"\r\n") else {
            return Ok(None);
        };
        let line = core::str::from_utf8(line).map_err(|_| WorkloadError::MalformedHttp)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = parse_digits(size, 16)?;
        if size == 0 {
            // Trailers, then an empty line.
            return Ok(split_at_seq(rest, b"\r\n").map(|_| body));
        }
        let Some((chunk, after)) = rest.split_at_checked(size) else {
            return Ok(None);
        };
        match after.get(..2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(WorkloadError::MalformedHttp),
        }
        body.extend_from_slice(chunk);
        data = after.get(2..).unwrap_or_default();
    }
}

/// The body of a 2xx response, or the typed error of any other status
/// (with the workload API's `{"message":"…"}`).
fn success_body(response: &HttpResponse) -> Result<&[u8], WorkloadError> {
    if (200..300).contains(&response.status) {
        return Ok(&response.body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from));
    Err(WorkloadError::Status {
        status: response.status,
        message,
    })
}

/// The edge CA in PEM from a complete trust bundle response
/// (`{"certificate":"<PEM>"}`).
pub fn trust_bundle_from_http_response(response: &HttpResponse) -> Result<String, WorkloadError> {
    let body = success_body(response)?;
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("certificate")
                .and_then(|c| c.as_str())
                .map(String::from)
        })
        .ok_or(WorkloadError::MissingCertificate)
}

/// Why a workload API sign response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignResponseError {
    /// Not a JSON object with a string `digest`.
    MissingDigest,
    /// `digest` is not standard base64.
    NotBase64,
}

impl fmt::Display for SignResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingDigest => "the sign response has no string `digest`",
            Self::NotBase64 => "the sign response's `digest` is not base64",
        })
    }
}

impl core::error::Error for SignResponseError {}

/// A module's view of its IoT Edge environment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EdgeEnvironment {
    /// `IOTEDGE_IOTHUBHOSTNAME`: the hub (in the username and the token).
    pub iothub_host_name: HostName,
    /// `IOTEDGE_GATEWAYHOSTNAME`: the edge hub, where the transport goes.
    pub gateway_host_name: Option<HostName>,
    /// `IOTEDGE_DEVICEID`.
    pub device_id: DeviceId,
    /// `IOTEDGE_MODULEID`.
    pub module_id: ModuleId,
    /// `IOTEDGE_WORKLOADURI`.
    pub workload_uri: WorkloadUri,
    /// `IOTEDGE_MODULEGENERATIONID`.
    pub generation_id: String,
    /// `IOTEDGE_APIVERSION`: the workload API's api-version.
    pub api_version: String,
}

impl EdgeEnvironment {
    /// Reads the IoT Edge variables through `lookup` (a pure function of
    /// the caller's choosing: `|k| std::env::var(k).ok()` in an adapter, a
    /// map in a test). Every variable but `IOTEDGE_GATEWAYHOSTNAME` is
    /// required; `IOTEDGE_AUTHSCHEME` must be `sasToken`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EdgeEnvError> {
        let get = |var: &'static str| -> Result<String, EdgeEnvError> {
            lookup(var)
                .filter(|v| !v.is_empty())
                .ok_or(EdgeEnvError::Missing(var))
        };
        let host = |var: &'static str, value: String| {
            HostName::new(value).map_err(|_| EdgeEnvError::Invalid(var))
        };
        if get(IOTEDGE_AUTHSCHEME)? != "sasToken" {
            return Err(EdgeEnvError::UnsupportedAuthScheme);
        }
        let gateway_host_name = match lookup(IOTEDGE_GATEWAYHOSTNAME).filter(|v| !v.is_empty()) {
            Some(g) => Some(host(IOTEDGE_GATEWAYHOSTNAME, g)?),
            None => None,
        };
        Ok(Self {
            iothub_host_name: host(IOTEDGE_IOTHUBHOSTNAME, get(IOTEDGE_IOTHUBHOSTNAME)?)?,
            gateway_host_name,
            device_id: DeviceId::new(get(IOTEDGE_DEVICEID)?)
                .map_err(|_| EdgeEnvError::Invalid(IOTEDGE_DEVICEID))?,
            module_id: ModuleId::new(get(IOTEDGE_MODULEID)?)
                .map_err(|_| EdgeEnvError::Invalid(IOTEDGE_MODULEID))?,
            workload_uri: WorkloadUri::parse(&get(IOTEDGE_WORKLOADURI)?)
                .ok_or(EdgeEnvError::Invalid(IOTEDGE_WORKLOADURI))?,
            generation_id: get(IOTEDGE_MODULEGENERATIONID)?,
            api_version: get(IOTEDGE_APIVERSION)?,
        })
    }

    /// The module identity.
    #[must_use]
    pub fn identity(&self) -> Identity {
        Identity::module(self.device_id.clone(), self.module_id.clone())
    }

    /// The SAS resource URI: `{hub}/devices/{d}/modules/{m}`.
    #[must_use]
    pub fn resource_uri(&self) -> String {
        self.identity().resource_uri(self.iothub_host_name.as_str())
    }

    /// The workload API request that signs a token expiring at
    /// `expiry_unix_secs`: `POST /modules/{m}/genid/{g}/sign?api-version={v}`
    /// with `{"keyId":"primary","algo":"HMACSHA256","data":"<base64 of the string to sign>"}`.
    #[must_use]
    pub fn sign_request(&self, expiry_unix_secs: u64) -> WorkloadRequest {
        let message = SasToken::string_to_sign(&self.resource_uri(), expiry_unix_secs);
        let body = serde_json::json!({
            "keyId": WORKLOAD_KEY_ID,
            "algo": "HMACSHA256",
            "data": STANDARD.encode(message.as_bytes()),
        });
        WorkloadRequest {
            method: "POST",
            path: format!(
                "/modules/{}/genid/{}/sign?api-version={}",
                url_encode(self.module_id.as_str()),
                url_encode(&self.generation_id),
                url_encode(&self.api_version)
            ),
            body: body.to_string(),
        }
    }

    /// The token signed by the workload API: reads its response body
    /// `{"digest":"<base64 HMAC>"}` and assembles the SAS token for
    /// [`resource_uri`](Self::resource_uri), expiring at `expiry_unix_secs`
    /// (the value given to [`sign_request`](Self::sign_request)).
    pub fn token_from_sign_response(
        &self,
        expiry_unix_secs: u64,
        body: &[u8],
    ) -> Result<SasToken, SignResponseError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| SignResponseError::MissingDigest)?;
        let digest = value
            .get("digest")
            .and_then(serde_json::Value::as_str)
            .ok_or(SignResponseError::MissingDigest)?;
        STANDARD
            .decode(digest)
            .map_err(|_| SignResponseError::NotBase64)?;
        Ok(SasToken::from_signature(
            &self.resource_uri(),
            digest,
            expiry_unix_secs,
            None,
        ))
    }

    /// The token from a complete HTTP response to
    /// [`sign_request`](Self::sign_request)`(expiry_unix_secs)`: a 2xx
    /// status and a `{"digest":"…"}` body, else a typed error.
    pub fn token_from_http_response(
        &self,
        expiry_unix_secs: u64,
        response: &HttpResponse,
    ) -> Result<SasToken, WorkloadError> {
        let body = success_body(response)?;
        Ok(self.token_from_sign_response(expiry_unix_secs, body)?)
    }

    /// The `Host` header for workload API requests: [`WORKLOAD_UNIX_HOST`]
    /// on a Unix socket, the URL's authority over HTTP.
    #[must_use]
    pub fn workload_host(&self) -> &str {
        match &self.workload_uri {
            WorkloadUri::Unix(_) => WORKLOAD_UNIX_HOST,
            WorkloadUri::Http(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                rest.split('/').next().unwrap_or(rest)
            }
        }
    }

    /// The request for the edge CA bundle: `GET /trust-bundle?api-version={v}`.
    #[must_use]
    pub fn trust_bundle_request(&self) -> WorkloadRequest {
        WorkloadRequest {
            method: "GET",
            path: self.trust_bundle_path(),
            body: String::new(),
        }
    }

    /// The workload API path of the edge CA bundle, to trust for TLS to the
    /// gateway: `GET /trust-bundle?api-version={v}` (the response is
    /// `{"certificate":"<PEM>"}`).
    #[must_use]
    pub fn trust_bundle_path(&self) -> String {
        format!(
            "/trust-bundle?api-version={}",
            url_encode(&self.api_version)
        )
    }

    /// The device session configuration of the module, with a token from
    /// the workload API: the hub's host name in the username and token,
    /// the gateway (if any) as the transport host.
    #[must_use]
    pub fn config(&self, token: SasToken) -> Config {
        Config::new(
            self.identity(),
            self.iothub_host_name.clone(),
            Credential::SharedAccessSignature(token),
        )
        .with_gateway_host_name(self.gateway_host_name.clone())
    }

    /// The device session configuration of the module with tokens from
    /// the workload API, renewed for as long as the session runs
    /// ([`Credential::ExternalSigner`]: answer every
    /// [`Event::TokenRequested`](crate::session::Event::TokenRequested)
    /// with a [`sign_request`](Self::sign_request)): the hub's host name in
    /// the username and token, the gateway (if any) as the transport host.
    #[must_use]
    pub fn external_config(&self) -> Config {
        Config::new(
            self.identity(),
            self.iothub_host_name.clone(),
            Credential::ExternalSigner,
        )
        .with_gateway_host_name(self.gateway_host_name.clone())
    }
}

/// A message for a module output: sets `$.on` (the output name the edge
/// hub routes on) on `message`.
#[must_use]
pub fn output_message(output: &str, mut message: Message) -> Message {
    message.properties.output_name = Some(String::from(output));
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    fn env() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            (IOTEDGE_IOTHUBHOSTNAME, "contoso.azure-devices.net"),
            (IOTEDGE_GATEWAYHOSTNAME, "edge-gw"),
            (IOTEDGE_DEVICEID, "edge-device"),
            (IOTEDGE_MODULEID, "filter"),
            (IOTEDGE_AUTHSCHEME, "sasToken"),
            (IOTEDGE_WORKLOADURI, "unix:///var/run/iotedge/workload.sock"),
            (IOTEDGE_MODULEGENERATIONID, "637000000000000000"),
            (IOTEDGE_APIVERSION, "2019-01-30"),
        ])
    }

    fn read(map: &BTreeMap<&'static str, &'static str>) -> Result<EdgeEnvironment, EdgeEnvError> {
        EdgeEnvironment::from_lookup(|k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn reads_the_environment() {
        let e = read(&env()).unwrap();
        assert_eq!(e.iothub_host_name.as_str(), "contoso.azure-devices.net");
        assert_eq!(e.gateway_host_name.as_ref().unwrap().as_str(), "edge-gw");
        assert_eq!(e.identity().client_id(), "edge-device/filter");
        assert_eq!(
            e.workload_uri.unix_socket_path(),
            Some("/var/run/iotedge/workload.sock")
        );
        assert_eq!(
            e.resource_uri(),
            "contoso.azure-devices.net/devices/edge-device/modules/filter"
        );
        let mut no_gw = env();
        no_gw.remove(IOTEDGE_GATEWAYHOSTNAME);
        assert_eq!(read(&no_gw).unwrap().gateway_host_name, None);
    }

    #[test]
    fn environment_errors() {
        for var in [
            IOTEDGE_IOTHUBHOSTNAME,
            IOTEDGE_DEVICEID,
            IOTEDGE_MODULEID,
            IOTEDGE_AUTHSCHEME,
            IOTEDGE_WORKLOADURI,
            IOTEDGE_MODULEGENERATIONID,
            IOTEDGE_APIVERSION,
        ] {
            let mut m = env();
            m.remove(var);
            assert_eq!(read(&m), Err(EdgeEnvError::Missing(var)), "{var}");
            m.insert(var, "");
            assert_eq!(read(&m), Err(EdgeEnvError::Missing(var)), "{var}");
        }
        let mut m = env();
        m.insert(IOTEDGE_AUTHSCHEME, "x509");
        assert_eq!(read(&m), Err(EdgeEnvError::UnsupportedAuthScheme));
        for (var, bad) in [
            (IOTEDGE_IOTHUBHOSTNAME, "bad host"),
            (IOTEDGE_GATEWAYHOSTNAME, "gw:443"),
            (IOTEDGE_DEVICEID, "a/b"),
            (IOTEDGE_MODULEID, "m#"),
            (IOTEDGE_WORKLOADURI, "ftp://x"),
            (IOTEDGE_WORKLOADURI, "unix://"),
        ] {
            let mut m = env();
            m.insert(var, bad);
            assert_eq!(read(&m), Err(EdgeEnvError::Invalid(var)), "{var}={bad}");
        }
        assert!(EdgeEnvError::Missing("X").to_string().contains('X'));
        assert_eq!(
            WorkloadUri::parse("http://127.0.0.1:15581/"),
            Some(WorkloadUri::Http("http://127.0.0.1:15581".into()))
        );
        assert_eq!(
            WorkloadUri::Http("http://h".into()).unix_socket_path(),
            None
        );
    }

    #[test]
    fn workload_signing_round_trip() {
        let e = read(&env()).unwrap();
        let expiry = 1_700_003_600;
        let req = e.sign_request(expiry);
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.path,
            "/modules/filter/genid/637000000000000000/sign?api-version=2019-01-30"
        );
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["keyId"], "primary");
        assert_eq!(body["algo"], "HMACSHA256");
        let data = STANDARD.decode(body["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            core::str::from_utf8(&data).unwrap(),
            "contoso.azure-devices.net%2Fdevices%2Fedge-device%2Fmodules%2Ffilter\n1700003600"
        );
        // The workload API: HMAC-SHA256 of `data` under the module key.
        let module_key = [3u8; 32];
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&module_key).unwrap();
        mac.update(&data);
        let digest = STANDARD.encode(mac.finalize().into_bytes());
        let response = serde_json::json!({ "digest": digest }).to_string();
        let token = e
            .token_from_sign_response(expiry, response.as_bytes())
            .unwrap();
        let key = crate::auth::SharedAccessKey::from_bytes(module_key).unwrap();
        let direct = SasToken::generate(&e.resource_uri(), &key, expiry, None);
        assert_eq!(token.expose_secret(), direct.expose_secret());
        assert!(token.verify(&key));
        assert_eq!(
            e.token_from_sign_response(expiry, b"{}").unwrap_err(),
            SignResponseError::MissingDigest
        );
        assert_eq!(
            e.token_from_sign_response(expiry, b"{\"digest\":\"***\"}")
                .unwrap_err(),
            SignResponseError::NotBase64
        );
        assert_eq!(
            e.trust_bundle_path(),
            "/trust-bundle?api-version=2019-01-30"
        );

        let config = e.config(token);
        assert_eq!(config.transport_host().as_str(), "edge-gw");
        assert_eq!(config.host_name.as_str(), "contoso.azure-devices.net");
        assert_eq!(config.identity, e.identity());
        assert!(matches!(
            config.credential,
            Credential::SharedAccessSignature(_)
        ));
    }

    #[test]
    fn workload_http_request_bytes() {
        let e = read(&env()).unwrap();
        let req = e.sign_request(1_700_003_600);
        let bytes = req.to_http(e.workload_host());
        let text = core::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "POST /modules/filter/genid/637000000000000000/sign?api-version=2019-01-30 HTTP/1.1\r\n\
                 Host: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close",
                req.body.len()
            )
        );
        assert_eq!(body, req.body);
        let get = e.trust_bundle_request().to_http("localhost");
        assert_eq!(
            get,
            b"GET /trust-bundle?api-version=2019-01-30 HTTP/1.1\r\nHost: localhost\r\n\
              Connection: close\r\n\r\n"
        );
        let mut http = env();
        http.insert(IOTEDGE_WORKLOADURI, "http://127.0.0.1:15581/");
        assert_eq!(read(&http).unwrap().workload_host(), "127.0.0.1:15581");
    }

    fn digest_for(e: &EdgeEnvironment, expiry: u64, key: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(SasToken::string_to_sign(&e.resource_uri(), expiry).as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn workload_http_responses_every_framing_and_every_split() {
        let e = read(&env()).unwrap();
        let expiry = 1_700_003_600;
        let json = format!("{{\"digest\":\"{}\"}}", digest_for(&e, expiry, &[3u8; 32]));
        let (a, b) = json.split_at(10);
        let framings = [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            ),
            format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            ),
        ];
        let key = crate::auth::SharedAccessKey::from_bytes([3u8; 32]).unwrap();
        for full in &framings {
            let full = full.as_bytes();
            // Every prefix needs more bytes; the whole answer is complete.
            for cut in 0..full.len() {
                assert_eq!(parse_http_response(&full[..cut], false), Ok(None), "{cut}");
            }
            let response = parse_http_response(full, false).unwrap().unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body, json.as_bytes());
            let token = e.token_from_http_response(expiry, &response).unwrap();
            assert!(token.verify(&key));
            assert_eq!(token.expiry_unix_secs(), expiry);
        }
        // No length: the body ends with the connection.
        let close = format!("HTTP/1.0 200 OK\r\n\r\n{json}");
        assert_eq!(parse_http_response(close.as_bytes(), false), Ok(None));
        let r = parse_http_response(close.as_bytes(), true)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, json.as_bytes());
    }

    #[test]
    fn workload_http_errors_are_typed() {
        let e = read(&env()).unwrap();
        let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 38\r\n\r\n{\"message\":\"Module not found: filter\"}";
        let r = parse_http_response(refused, false).unwrap().unwrap();
        let err = e.token_from_http_response(1, &r).unwrap_err();
        assert_eq!(
            err,
            WorkloadError::Status {
                status: 404,
                message: Some("Module not found: filter".into())
            }
        );
        assert!(err.to_string().contains("Module not found"));
        let plain = parse_http_response(b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            trust_bundle_from_http_response(&plain),
            Err(WorkloadError::Status {
                status: 500,
                message: None
            })
        );
        let no_digest =
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false)
                .unwrap()
                .unwrap();
        assert_eq!(
            e.token_from_http_response(1, &no_digest).unwrap_err(),
            WorkloadError::Sign(SignResponseError::MissingDigest)
        );
        assert_eq!(
            trust_bundle_from_http_response(&no_digest),
            Err(WorkloadError::MissingCertificate)
        );
        let bundle = parse_http_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\n\r\n{\"certificate\":\"PEM\\n\"}",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(trust_bundle_from_http_response(&bundle).unwrap(), "PEM\n");
        for bad in [
            &b"SMTP 220 hello\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        ] {
            assert_eq!(
                parse_http_response(bad, false),
                Err(WorkloadError::MalformedHttp),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        // Cut short by the server.
        assert_eq!(
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", true),
            Err(WorkloadError::MalformedHttp)
        );
        assert_eq!(
            parse_http_response(b"HTTP/1.1 200 OK\r\n", true),
            Err(WorkloadError::MalformedHttp)
        );
        let huge = alloc::vec![b'a'; MAX_WORKLOAD_RESPONSE + 1];
        assert_eq!(
            parse_http_response(&huge, false),
            Err(WorkloadError::TooLarge)
        );
        let no_content = parse_http_response(b"HTTP/1.1 204 No Content\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(no_content.body.is_empty());
    }

    #[test]
    fn workload_http_lengths_are_digits_and_agree() {
        // A length or chunk size is hex/decimal digits only (no sign), and
        // two Content-Length headers that disagree leave the body's end
        // unknown: refused, not one of them picked.
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 +20 OK\r\n\r\n",
        ] {
            assert_eq!(
                parse_http_response(bad, true),
                Err(WorkloadError::MalformedHttp),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
        // The same length twice is one length.
        let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok";
        let r = parse_http_response(twice, false).unwrap().unwrap();
        assert_eq!(r.body, b"ok");
    }

    #[test]
    fn the_external_config_renews_through_the_session() {
        let e = read(&env()).unwrap();
        let config = e.external_config();
        assert!(matches!(config.credential, Credential::ExternalSigner));
        assert_eq!(config.transport_host().as_str(), "edge-gw");
        assert_eq!(config.identity, e.identity());
        assert!(config.credential.is_renewable());
    }

    #[test]
    fn output_messages_carry_on() {
        let m = output_message("alerts", Message::new(&b"{}"[..]));
        assert_eq!(m.properties.output_name.as_deref(), Some("alerts"));
        let identity = Identity::parse("edge-device", Some("filter")).unwrap();
        assert_eq!(
            crate::topic::telemetry(&identity, &m.properties),
            "devices/edge-device/modules/filter/messages/events/%24.on=alerts"
        );
    }
}
