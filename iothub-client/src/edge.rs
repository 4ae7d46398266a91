//! IoT Edge modules: what every adapter shares to run a module client
//! whose SAS tokens the workload API signs (see [`iothub_proto::edge`]).
//!
//! The session asks for tokens
//! ([`Event::TokenRequested`](iothub_proto::session::Event::TokenRequested));
//! the [`Router`](crate::Router) hands each request to the adapter's
//! [`TokenSource`] (a closure that starts one workload API call on the
//! adapter's runtime). The call's outcome comes back to the driver as a
//! [`TokenCommand::Answer`], which [`Router::token`](crate::Router::token)
//! gives to the session. The bytes of a call are built and parsed here
//! ([`WorkloadCall`]); the adapter only moves them over the Unix socket:
//!
//! ```text
//! let mut call = WorkloadCall::sign(&env, Clock::unix_secs(), lifetime);
//! socket.write_all(call.request())?;
//! loop {
//!     let n = socket.read(&mut buf)?;
//!     if let Some(response) = call.feed(&buf[..n], n == 0)? { break call.token(&env, &response) }
//! }
//! ```

use std::fmt;
use std::time::Duration;

use iothub_proto::auth::SasToken;
use iothub_proto::edge::{
    EdgeEnvError, EdgeEnvironment, HttpResponse, WorkloadError, WorkloadRequest,
    parse_http_response, trust_bundle_from_http_response,
};

use crate::ClientOptions;

/// Starts signing a token valid for the given lifetime; its outcome must
/// come back to the driver as [`TokenCommand::Answer`]. Called on the
/// driver's thread: it must not block (spawn a task or a thread).
pub type TokenSource = Box<dyn FnMut(Duration) + Send>;

/// What the driver's one token route carries.
#[non_exhaustive]
pub enum TokenCommand {
    /// From now on, token requests go to this source (a request made
    /// before it was installed goes to it at once).
    Source(TokenSource),
    /// The outcome of a request: a token, or why the signer failed (it
    /// becomes the detail of
    /// [`Status::last_token_failure`](crate::Status::last_token_failure)).
    Answer(Result<SasToken, String>),
}

impl fmt::Debug for TokenCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenCommand::Source(_) => f.write_str("TokenCommand::Source"),
            TokenCommand::Answer(t) => f.debug_tuple("TokenCommand::Answer").field(t).finish(),
        }
    }
}

/// Why a module client could not be built from the IoT Edge environment,
/// or a workload API call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum EdgeError {
    /// The `IOTEDGE_*` variables are missing or invalid.
    Environment(EdgeEnvError),
    /// The workload API is not on a Unix socket (`http://` is not
    /// supported by the adapters).
    NotUnixSocket,
    /// The workload API could not be reached or did not answer in time.
    Io(std::io::Error),
    /// The workload API's answer was an error or not understood.
    Workload(WorkloadError),
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeError::Environment(e) => fmt::Display::fmt(e, f),
            EdgeError::NotUnixSocket => {
                f.write_str("the workload API URI is not unix://, the only kind supported")
            }
            EdgeError::Io(e) => write!(f, "the workload API could not be reached: {e}"),
            EdgeError::Workload(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for EdgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EdgeError::Environment(e) => Some(e),
            EdgeError::Io(e) => Some(e),
            EdgeError::Workload(e) => Some(e),
            EdgeError::NotUnixSocket => None,
        }
    }
}

impl From<EdgeEnvError> for EdgeError {
    fn from(e: EdgeEnvError) -> Self {
        EdgeError::Environment(e)
    }
}

impl From<std::io::Error> for EdgeError {
    fn from(e: std::io::Error) -> Self {
        EdgeError::Io(e)
    }
}

impl From<WorkloadError> for EdgeError {
    fn from(e: WorkloadError) -> Self {
        EdgeError::Workload(e)
    }
}

/// How long one workload API call may take (connect, write, answer).
pub const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The IoT Edge environment of this process:
/// [`EdgeEnvironment::from_lookup`] over the process environment.
pub fn edge_environment() -> Result<EdgeEnvironment, EdgeError> {
    Ok(EdgeEnvironment::from_lookup(|k| std::env::var(k).ok())?)
}

/// The Unix socket path of the workload API.
pub fn workload_socket(env: &EdgeEnvironment) -> Result<&str, EdgeError> {
    env.workload_uri
        .unix_socket_path()
        .ok_or(EdgeError::NotUnixSocket)
}

/// The client options of a module: the session of
/// [`EdgeEnvironment::external_config`] (tokens from the workload API,
/// renewed), the gateway (if any) as the transport host, and the edge CA
/// from the workload API's trust bundle (if given) added to the TLS roots.
#[must_use]
pub fn module_options(env: &EdgeEnvironment, trust_bundle_pem: Option<String>) -> ClientOptions {
    let options = ClientOptions::new(env.external_config());
    match trust_bundle_pem {
        Some(pem) => options.with_ca_pem(pem.into_bytes()),
        None => options,
    }
}

/// `options` with tokens from outside the session
/// ([`Credential::ExternalSigner`](iothub_proto::auth::Credential::ExternalSigner)),
/// whatever credential they had: what every adapter's `new_edge_module`
/// starts from.
#[must_use]
pub fn with_external_signer(options: ClientOptions) -> ClientOptions {
    options.with_session(|mut c| {
        c.credential = iothub_proto::auth::Credential::ExternalSigner;
        c
    })
}

/// One workload API call: the request bytes to write and the response
/// read so far. Built and parsed by the core; the adapter moves bytes.
#[derive(Debug)]
pub struct WorkloadCall {
    request: Vec<u8>,
    /// The expiry signed for (sign calls).
    expiry: u64,
    read: Vec<u8>,
}

impl WorkloadCall {
    fn new(env: &EdgeEnvironment, request: &WorkloadRequest, expiry: u64) -> WorkloadCall {
        WorkloadCall {
            request: request.to_http(env.workload_host()),
            expiry,
            read: Vec::new(),
        }
    }

    /// A sign call for a token valid for `lifetime` from `unix_secs`.
    #[must_use]
    pub fn sign(env: &EdgeEnvironment, unix_secs: u64, lifetime: Duration) -> WorkloadCall {
        let expiry = unix_secs.saturating_add(lifetime.as_secs().max(1));
        WorkloadCall::new(env, &env.sign_request(expiry), expiry)
    }

    /// A trust bundle call.
    #[must_use]
    pub fn trust_bundle(env: &EdgeEnvironment) -> WorkloadCall {
        WorkloadCall::new(env, &env.trust_bundle_request(), 0)
    }

    /// The bytes to write.
    #[must_use]
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Bytes read (`eof`: the server closed, `data` is empty then); the
    /// response once it is complete.
    pub fn feed(&mut self, data: &[u8], eof: bool) -> Result<Option<HttpResponse>, WorkloadError> {
        self.read.extend_from_slice(data);
        parse_http_response(&self.read, eof)
    }

    /// The token of a sign call's response.
    pub fn token(
        &self,
        env: &EdgeEnvironment,
        response: &HttpResponse,
    ) -> Result<SasToken, WorkloadError> {
        env.token_from_http_response(self.expiry, response)
    }

    /// The edge CA (PEM) of a trust bundle call's response.
    pub fn certificate(response: &HttpResponse) -> Result<String, WorkloadError> {
        trust_bundle_from_http_response(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::auth::Credential;

    fn env() -> EdgeEnvironment {
        EdgeEnvironment::from_lookup(|k| {
            Some(
                match k {
                    "IOTEDGE_IOTHUBHOSTNAME" => "hub.azure-devices.net",
                    "IOTEDGE_GATEWAYHOSTNAME" => "edgehub",
                    "IOTEDGE_DEVICEID" => "edge1",
                    "IOTEDGE_MODULEID" => "filter",
                    "IOTEDGE_AUTHSCHEME" => "sasToken",
                    "IOTEDGE_WORKLOADURI" => "unix:///tmp/none/workload.sock",
                    "IOTEDGE_MODULEGENERATIONID" => "1",
                    "IOTEDGE_APIVERSION" => "2019-01-30",
                    _ => return None,
                }
                .to_owned(),
            )
        })
        .unwrap()
    }

    #[test]
    fn the_token_route_hands_requests_out_and_answers_in() {
        use crate::Router;
        use iothub_proto::session::{Event, Output, Session, TokenFailure, TransportCommand};
        use iothub_proto::time::Instant;
        use std::sync::{Arc, Mutex};

        /// Every output until the timeout: events routed, transport
        /// commands returned with the timeout.
        fn settle(s: &mut Session, r: &mut Router) -> (Vec<TransportCommand>, Option<Instant>) {
            let mut cmds = Vec::new();
            loop {
                match s.poll_output() {
                    Output::Event(e) => r.dispatch(s, e),
                    Output::Transport(c) => cmds.push(c),
                    Output::Transmit(_) => {}
                    Output::Timeout(at) => return (cmds, at),
                }
            }
        }

        let env = env();
        let mut s = Session::new(env.external_config()).unwrap();
        let mut r = Router::new();
        let now = Instant::ZERO;
        // The first request comes before any source is installed.
        assert_eq!(settle(&mut s, &mut r).0, vec![]);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let source: TokenSource = Box::new(move |lifetime| log.lock().unwrap().push(lifetime));
        r.token(&mut s, now, 1_000, TokenCommand::Source(source));
        assert_eq!(*asked.lock().unwrap(), vec![Duration::from_secs(3600)]);
        // The signer failed: the session reports it and asks again later.
        r.token(
            &mut s,
            now,
            1_000,
            TokenCommand::Answer(Err("HSM busy".into())),
        );
        let Output::Event(failed) = s.poll_output() else {
            panic!("an event")
        };
        assert!(matches!(
            failed,
            Event::TokenRequestFailed {
                reason: TokenFailure::Unavailable,
                ..
            }
        ));
        r.dispatch(&mut s, failed);
        let failure = r.status(&s).last_token_failure.unwrap();
        assert_eq!(failure.reason, TokenFailure::Unavailable);
        assert_eq!(failure.detail.as_deref(), Some("HSM busy"));
        let retry = settle(&mut s, &mut r).1.unwrap();
        s.handle_timeout(retry, 1_001);
        settle(&mut s, &mut r);
        assert_eq!(asked.lock().unwrap().len(), 2);
        // A token: the session wants its transport.
        let key = iothub_proto::auth::SharedAccessKey::from_bytes([1u8; 32]).unwrap();
        let token = SasToken::generate(&env.resource_uri(), &key, 5_000, None);
        r.token(&mut s, retry, 1_001, TokenCommand::Answer(Ok(token)));
        assert_eq!(s.poll_output(), Output::Transport(TransportCommand::Open));
        // Still shown until the client connects.
        assert!(r.status(&s).last_token_failure.is_some());
        r.dispatch(
            &mut s,
            Event::Connected {
                session_present: false,
            },
        );
        assert_eq!(r.status(&s).last_token_failure, None);
        // A timeout carries no detail, not even one left from an earlier
        // answer.
        r.token(
            &mut s,
            retry,
            1_001,
            TokenCommand::Answer(Err("late".into())),
        );
        r.dispatch(
            &mut s,
            Event::TokenRequestFailed {
                reason: TokenFailure::TimedOut,
                retry_in: Duration::from_secs(1),
            },
        );
        let timed_out = r.status(&s).last_token_failure.unwrap();
        assert_eq!(timed_out.reason, TokenFailure::TimedOut);
        assert_eq!(timed_out.detail, None);
    }

    #[test]
    fn module_options_and_a_sign_call() {
        let env = env();
        let options = module_options(&env, Some("PEM".into()));
        assert_eq!(options.host(), "edgehub");
        assert!(matches!(
            options.config.credential,
            Credential::ExternalSigner
        ));
        assert_eq!(workload_socket(&env).unwrap(), "/tmp/none/workload.sock");
        let mut call = WorkloadCall::sign(&env, 1_000, Duration::from_secs(60));
        assert!(
            call.request()
                .starts_with(b"POST /modules/filter/genid/1/sign")
        );
        assert_eq!(call.feed(b"HTTP/1.1 401 No\r\n", false), Ok(None));
        let response = call
            .feed(b"Content-Length: 15\r\n\r\n{\"message\":\"x\"}", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            call.token(&env, &response).unwrap_err(),
            WorkloadError::Status {
                status: 401,
                message: Some("x".into())
            }
        );
        assert!(
            WorkloadCall::trust_bundle(&env)
                .request()
                .starts_with(b"GET /trust-bundle")
        );
    }
}
