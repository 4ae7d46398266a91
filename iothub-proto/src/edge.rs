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
//! | build the sign request (path, JSON body) | the core: [`EdgeEnvironment::sign_request`] |
//! | `POST` it over the Unix socket (HTTP/1.1) | the adapter ([`WorkloadUri::unix_socket_path`]) |
//! | read `{"digest":"…"}` into a SAS token | the core: [`EdgeEnvironment::token_from_sign_response`] |
//! | fetch the edge CA (`GET /trust-bundle?api-version=…`) and trust it for TLS to the gateway | the adapter ([`EdgeEnvironment::trust_bundle_path`]) |
//! | build the session configuration (gateway as transport host) | the core: [`EdgeEnvironment::config`] |
//!
//! The resulting token is a fixed credential
//! ([`Credential::SharedAccessSignature`]): the device session cannot renew
//! it by itself. When it runs out the session reports
//! [`Event::TokenExpired`](crate::session::Event::TokenExpired) and stops;
//! the adapter signs a new token and starts a new session. (A session hook
//! to ask the adapter for a fresh signature on every reconnection does not
//! exist yet.)

use alloc::format;
use alloc::string::{String, ToString};
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
