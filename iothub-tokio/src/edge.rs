//! IoT Edge modules: a client whose SAS tokens the workload API signs
//! over its Unix socket, renewed for as long as the client runs. The
//! bytes of each call are built and parsed by the core
//! ([`iothub_net::edge::WorkloadCall`]); this file only moves them with
//! [`tokio::net::UnixStream`]. The session asks for each token; the
//! driver's router hands the request to the source installed here.

use std::sync::Arc;
use std::time::Duration;

use iothub_net::driver::Command;
use iothub_net::edge::{
    EdgeError, TokenCommand, TokenSource, WORKLOAD_TIMEOUT, WorkloadCall, edge_environment,
    with_external_signer, workload_socket,
};
use iothub_net::handle::WeakCommands;
use iothub_net::{ClientOptions, Clock};
use iothub_proto::auth::SasToken;
use iothub_proto::edge::{EdgeEnvironment, HttpResponse};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::warn;

use crate::Client;

/// One call to the workload API: write the request, read until the
/// response is complete.
async fn call(env: &EdgeEnvironment, call: &mut WorkloadCall) -> Result<HttpResponse, EdgeError> {
    let path = workload_socket(env)?;
    let exchange = async {
        let mut socket = tokio::net::UnixStream::connect(path).await?;
        socket.write_all(call.request()).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await?;
            if let Some(response) = call.feed(&buf[..n], n == 0)? {
                return Ok(response);
            }
        }
    };
    tokio::time::timeout(WORKLOAD_TIMEOUT, exchange)
        .await
        .map_err(|_| EdgeError::Io(std::io::ErrorKind::TimedOut.into()))?
}

/// Signs a token valid for `lifetime` from now through the workload API.
pub async fn sign_token(env: &EdgeEnvironment, lifetime: Duration) -> Result<SasToken, EdgeError> {
    let mut sign = WorkloadCall::sign(env, Clock::unix_secs(), lifetime);
    let response = call(env, &mut sign).await?;
    Ok(sign.token(env, &response)?)
}

/// The client options of the module: tokens from the workload API, the
/// gateway as the transport host, and the edge CA of the workload API's
/// trust bundle added to the TLS roots
/// ([`iothub_net::edge::module_options`]).
pub async fn module_options(env: &EdgeEnvironment) -> Result<ClientOptions, EdgeError> {
    let mut bundle = WorkloadCall::trust_bundle(env);
    let response = call(env, &mut bundle).await?;
    let pem = WorkloadCall::certificate(&response)?;
    Ok(iothub_net::edge::module_options(env, Some(pem)))
}

/// The token source of a client: each request spawns one sign call,
/// whose outcome goes back to the driver. It holds the driver's channel
/// weakly, so it never keeps a client alive.
fn token_source(env: EdgeEnvironment, ctl: WeakCommands) -> TokenSource {
    let env = Arc::new(env);
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |lifetime| {
        let (env, ctl) = (env.clone(), ctl.clone());
        runtime.spawn(async move {
            let answer = match sign_token(&env, lifetime).await {
                Ok(token) => Some(token),
                Err(e) => {
                    warn!(error = %e, "the workload API did not sign a token");
                    None
                }
            };
            if let Some(ctl) = ctl.upgrade() {
                let _ = ctl.try_send(Box::new(Command::Token(TokenCommand::Answer(answer))));
            }
        });
    })
}

impl Client {
    /// Starts the client of an IoT Edge module from the process's
    /// `IOTEDGE_*` variables: the trust bundle and every token come from
    /// the workload API (see [`new_edge_module`](Self::new_edge_module)).
    /// Must be called within a tokio runtime.
    pub async fn from_edge_environment() -> Result<Client, EdgeError> {
        let env = edge_environment()?;
        let options = module_options(&env).await?;
        Client::new_edge_module(options, env)
    }

    /// Starts a module client with `options` (usually from
    /// [`module_options`], adjusted) whose tokens the workload API of
    /// `env` signs: before the first CONNECT and at
    /// [`renewal_percent`](iothub_proto::session::Config::renewal_percent)
    /// of every token's lifetime, while the connection goes on. The
    /// credential of `options` becomes
    /// [`Credential::ExternalSigner`](iothub_proto::auth::Credential::ExternalSigner).
    /// Must be called within a tokio runtime.
    pub fn new_edge_module(
        options: ClientOptions,
        env: EdgeEnvironment,
    ) -> Result<Client, EdgeError> {
        let options = with_external_signer(options);
        let client = Client::new(options).map_err(EdgeError::Client)?;
        let ctl = client.control();
        let source = token_source(env, ctl.downgrade());
        ctl.try_send(Box::new(Command::Token(TokenCommand::Source(source))))
            .map_err(|_| EdgeError::Client(iothub_net::Error::Closed))?;
        Ok(client)
    }
}
