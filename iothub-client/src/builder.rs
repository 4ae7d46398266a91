//! [`ClientBuilder`]: how every adapter makes a client — where the
//! identity and credentials come from ([`Source`]), then the options, then
//! `build()`:
//!
//! ```text
//! Client::builder("HostName=…;DeviceId=…;SharedAccessKey=…")   // or ClientOptions, Source::edge_environment(), …
//!     .configure(|o| o.with_transport(Transport::WebSocket))  // any ClientOptions setting
//!     .token_signer(|req| hsm.sign(req))                      // optional: an HSM / TPM signs the tokens
//!     .build()                                                 // .await in the async adapters
//! ```
//!
//! The builder is the same type in every adapter (`ClientBuilder<A>`, `A`
//! the adapter); only `build` (and, in the adapters whose driver you may
//! run yourself, `build_with_driver`) is the adapter's, through
//! [`Adapter`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use iothub_proto::auth::SasToken;
use iothub_proto::edge::EdgeEnvironment;

use crate::edge::{EdgeError, edge_environment, with_external_signer};
use crate::token::{self, SignerError, TokenRequest, TokenSigner};
use crate::{ClientOptions, Error};

/// Where a client's identity and credentials come from.
#[derive(Debug)]
pub struct Source(SourceKind);

#[derive(Debug)]
enum SourceKind {
    Options(Box<ClientOptions>),
    ConnectionString(String),
    /// An IoT Edge module; `None`: from the process's `IOTEDGE_*`
    /// variables, read at `build`.
    Edge(Option<Box<EdgeEnvironment>>),
}

impl Source {
    /// A device or module connection string
    /// (`HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…` or
    /// `…;SharedAccessSignature=…`), with default options: MQTT over TLS on
    /// 8883, webpki roots. Checked at `build`.
    #[must_use]
    pub fn connection_string(cs: &str) -> Source {
        Source(SourceKind::ConnectionString(cs.to_owned()))
    }

    /// Options made by hand (an X.509 identity, a proxy, a
    /// [`Credential`](iothub_proto::auth::Credential) of any kind, …).
    #[must_use]
    pub fn options(options: ClientOptions) -> Source {
        Source(SourceKind::Options(Box::new(options)))
    }

    /// The IoT Edge module this process runs as, from its `IOTEDGE_*`
    /// variables (read at `build`): the gateway, the edge CA from the
    /// workload API's trust bundle, and tokens signed by the workload API
    /// for as long as the client runs.
    #[must_use]
    pub fn edge_environment() -> Source {
        Source(SourceKind::Edge(None))
    }

    /// An IoT Edge module of this environment (see
    /// [`edge_environment`](Self::edge_environment)).
    #[must_use]
    pub fn edge_module(env: EdgeEnvironment) -> Source {
        Source(SourceKind::Edge(Some(Box::new(env))))
    }
}

impl From<&str> for Source {
    /// [`Source::connection_string`].
    fn from(cs: &str) -> Source {
        Source::connection_string(cs)
    }
}

impl From<ClientOptions> for Source {
    /// [`Source::options`].
    fn from(options: ClientOptions) -> Source {
        Source::options(options)
    }
}

impl From<EdgeEnvironment> for Source {
    /// [`Source::edge_module`].
    fn from(env: EdgeEnvironment) -> Source {
        Source::edge_module(env)
    }
}

/// An adjustment of the options, applied at `build` in order.
type Configure = Box<dyn FnOnce(ClientOptions) -> ClientOptions + Send>;

/// Makes a client: a [`Source`], then options, then `build()` (the
/// adapter's, see [`Adapter`]). Get one with the adapter's
/// `Client::builder(source)`.
#[must_use = "a builder does nothing until built"]
pub struct ClientBuilder<A> {
    parts: Parts,
    adapter: PhantomData<fn() -> A>,
}

impl<A> fmt::Debug for ClientBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("source", &self.parts.source)
            .field("configure", &self.parts.configure.len())
            .field("token_signer", &self.parts.signer.is_some())
            .finish()
    }
}

impl<A> ClientBuilder<A> {
    /// A builder for a client of `source`.
    pub fn new(source: impl Into<Source>) -> ClientBuilder<A> {
        ClientBuilder {
            parts: Parts {
                source: source.into(),
                configure: Vec::new(),
                signer: None,
            },
            adapter: PhantomData,
        }
    }

    /// Adjusts the options the source gives (transport, port, TLS roots,
    /// proxy, the session [`Config`](iothub_proto::session::Config) with
    /// [`ClientOptions::with_session`], …). Adjustments apply in order.
    pub fn configure(
        mut self,
        f: impl FnOnce(ClientOptions) -> ClientOptions + Send + 'static,
    ) -> ClientBuilder<A> {
        self.parts.configure.push(Box::new(f));
        self
    }

    /// Has `signer` sign the client's SAS tokens (an HSM, a TPM, a key
    /// vault) instead of the source's key or the workload API: before the
    /// first CONNECT and at
    /// [`renewal_percent`](iothub_proto::session::Config::renewal_percent)
    /// of every token's lifetime. The credential becomes
    /// [`Credential::ExternalSigner`](iothub_proto::auth::Credential::ExternalSigner).
    /// The signer runs on a thread of its own for each token; its error
    /// shows in [`Status::last_token_failure`](crate::Status::last_token_failure)
    /// and the session asks again after its backoff.
    pub fn token_signer(
        mut self,
        signer: impl Fn(&TokenRequest) -> Result<SasToken, SignerError> + Send + Sync + 'static,
    ) -> ClientBuilder<A> {
        self.parts.signer = Some(Arc::new(signer));
        self
    }

    /// What the builder holds, for the adapter's `build`.
    #[doc(hidden)]
    pub fn into_parts(self) -> Parts {
        self.parts
    }
}

impl<A: Adapter> ClientBuilder<A> {
    /// Checks the options, builds the TLS configuration and starts the
    /// client; it connects at once. What it returns is the adapter's: the
    /// tokio and smol adapters give a future of the client (the tokio
    /// driver runs as a task of the current runtime; smol's on a thread of
    /// its own), the blocking adapter the client (its driver on a thread
    /// of its own).
    pub fn build(self) -> A::Built {
        A::build(self.parts)
    }
}

impl<A: RunYourself> ClientBuilder<A> {
    /// [`build`](Self::build), but the client's driver is handed to you to
    /// run where you like (smol: a future for any executor; blocking: a
    /// [`run`](crate) on a thread of yours). Nothing happens until it runs.
    pub fn build_with_driver(self) -> A::WithDriver {
        A::build_with_driver(self.parts)
    }
}

/// An adapter's way to build a client (implemented by each adapter's
/// marker type; not meant for use outside the adapters).
pub trait Adapter {
    /// What `build` gives: the client, or a future of it.
    type Built;
    /// Builds the client from what the builder holds.
    fn build(parts: Parts) -> Self::Built;
}

/// An adapter whose driver the application may run itself.
pub trait RunYourself: Adapter {
    /// What `build_with_driver` gives: the client and its driver, or a
    /// future of them.
    type WithDriver;
    /// Builds the client and hands its driver out.
    fn build_with_driver(parts: Parts) -> Self::WithDriver;
}

/// What a [`ClientBuilder`] holds.
#[doc(hidden)]
pub struct Parts {
    source: Source,
    configure: Vec<Configure>,
    signer: Option<TokenSigner>,
}

/// Where a built client's tokens come from, besides the session itself.
#[doc(hidden)]
pub enum TokenRoute {
    /// The session signs (a key) or holds (a fixed token) its own.
    Session,
    /// A custom signer, for this resource URI.
    Signer(TokenSigner, String),
    /// The workload API of this IoT Edge environment.
    Workload(Box<EdgeEnvironment>),
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TokenRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRoute::Session => f.write_str("Session"),
            TokenRoute::Signer(_, uri) => write!(f, "Signer({uri})"),
            TokenRoute::Workload(env) => write!(f, "Workload({})", env.module_id),
        }
    }
}

/// A builder's parts made into what an adapter starts a client from.
#[doc(hidden)]
#[derive(Debug)]
pub struct Resolved {
    /// The client's options.
    pub options: ClientOptions,
    /// Where its tokens come from.
    pub tokens: TokenRoute,
}

impl Parts {
    /// The IoT Edge environment whose trust bundle the adapter must fetch
    /// first (for [`resolve`](Self::resolve)), if the source is a module
    /// of one; the process's variables are read here.
    pub fn edge(&mut self) -> Result<Option<&EdgeEnvironment>, Error> {
        if let SourceKind::Edge(env @ None) = &mut self.source.0 {
            *env = Some(Box::new(edge_environment().map_err(Error::Edge)?));
        }
        Ok(match &self.source.0 {
            SourceKind::Edge(Some(env)) => Some(env),
            _ => None,
        })
    }

    /// The options and the token route: `trust_bundle` is the edge CA
    /// fetched for an IoT Edge source (see [`edge`](Self::edge)).
    pub fn resolve(mut self, trust_bundle: Option<String>) -> Result<Resolved, Error> {
        self.edge()?;
        let (options, workload) = match self.source.0 {
            SourceKind::Options(o) => (*o, None),
            SourceKind::ConnectionString(cs) => (ClientOptions::from_connection_string(&cs)?, None),
            SourceKind::Edge(env) => {
                let env = env.ok_or(Error::Edge(EdgeError::NotUnixSocket))?;
                (crate::edge::module_options(&env, trust_bundle), Some(env))
            }
        };
        let options = self.configure.into_iter().fold(options, |o, f| f(o));
        let (options, tokens) = match (self.signer, workload) {
            (Some(signer), _) => {
                let options = with_external_signer(options);
                let uri = token::resource_uri(&options);
                (options, TokenRoute::Signer(signer, uri))
            }
            (None, Some(env)) => (with_external_signer(options), TokenRoute::Workload(env)),
            (None, None) => (options, TokenRoute::Session),
        };
        Ok(Resolved { options, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use iothub_proto::auth::Credential;

    const CS: &str = "HostName=h.azure-devices.net;DeviceId=d;\
        SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    struct Test;

    fn builder(source: impl Into<Source>) -> ClientBuilder<Test> {
        ClientBuilder::new(source)
    }

    #[test]
    fn a_connection_string_with_adjustments_in_order() {
        let r = builder(CS)
            .configure(|o| o.with_transport(Transport::WebSocket))
            .configure(|o| o.with_port(9443))
            .into_parts()
            .resolve(None)
            .unwrap();
        assert_eq!(r.options.transport, Transport::WebSocket);
        assert_eq!(r.options.port, Some(9443));
        assert!(matches!(r.tokens, TokenRoute::Session));
        assert!(matches!(
            r.options.config.credential,
            Credential::SharedAccessKey { .. }
        ));
    }

    #[test]
    fn a_bad_connection_string_is_an_options_error_at_build() {
        let r = builder("HostName=h").into_parts().resolve(None);
        assert!(matches!(r, Err(Error::Options(_))));
    }

    #[test]
    fn a_signer_makes_the_credential_external() {
        let r = builder(ClientOptions::from_connection_string(CS).unwrap())
            .token_signer(|_| Err("no HSM here".into()))
            .into_parts()
            .resolve(None)
            .unwrap();
        assert!(matches!(
            r.options.config.credential,
            Credential::ExternalSigner
        ));
        match r.tokens {
            TokenRoute::Signer(_, uri) => assert_eq!(uri, "h.azure-devices.net/devices/d"),
            _ => panic!("a signer route"),
        }
    }
}
