//! IoT Edge modules: a client whose SAS tokens the workload API signs
//! over its Unix socket, renewed for as long as the client runs. The
//! bytes of each call are built and parsed by the core
//! ([`iothub_net::edge::WorkloadCall`]); this file only moves them with
//! `async-net`'s [`UnixStream`](async_net::unix::UnixStream). The driver
//! runs on any executor, so each token is signed on a short-lived thread
//! of its own (`async_io::block_on`), whose outcome goes back to the
//! driver through its command channel.

use std::sync::Arc;
use std::time::Duration;

use async_channel::WeakSender;
use async_io::Timer;
use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _, FutureExt as _};
use iothub_net::driver::Command;
use iothub_net::edge::{
    EdgeError, TokenCommand, TokenSource, WORKLOAD_TIMEOUT, WorkloadCall, edge_environment,
    with_external_signer, workload_socket,
};
use iothub_net::{ClientOptions, Clock};
use iothub_proto::auth::SasToken;
use iothub_proto::edge::{EdgeEnvironment, HttpResponse};
use tracing::warn;

use crate::{Client, Driver};

/// One call to the workload API: write the request, read until the
/// response is complete.
async fn call(env: &EdgeEnvironment, call: &mut WorkloadCall) -> Result<HttpResponse, EdgeError> {
    let path = workload_socket(env)?;
    let exchange = async {
        let mut socket = async_net::unix::UnixStream::connect(path).await?;
        socket.write_all(call.request()).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await?;
            if let Some(response) = call.feed(&buf[..n], n == 0)? {
                return Ok(response);
            }
        }
    };
    let timeout = async {
        Timer::after(WORKLOAD_TIMEOUT).await;
        Err(EdgeError::Io(std::io::ErrorKind::TimedOut.into()))
    };
    exchange.or(timeout).await
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

/// The token source of a client. It holds the driver's channel weakly,
/// so it never keeps a client alive.
fn token_source(env: EdgeEnvironment, ctl: WeakSender<Box<Command>>) -> TokenSource {
    let env = Arc::new(env);
    Box::new(move |lifetime| {
        let answer = |ctl: &WeakSender<Box<Command>>, token| {
            if let Some(ctl) = ctl.upgrade() {
                let _ = ctl.try_send(Box::new(Command::Token(TokenCommand::Answer(token))));
            }
        };
        let (env, tx) = (env.clone(), ctl.clone());
        let spawned = std::thread::Builder::new()
            .name("iothub-workload".into())
            .spawn(move || {
                let token = async_io::block_on(sign_token(&env, lifetime))
                    .inspect_err(|e| warn!(error = %e, "the workload API did not sign a token"))
                    .ok();
                answer(&tx, token);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "no thread for the workload API call");
            answer(&ctl, None);
        }
    })
}

impl Client {
    /// The client of an IoT Edge module from the process's `IOTEDGE_*`
    /// variables, and its driver: the trust bundle and every token come
    /// from the workload API (see [`new_edge_module`](Self::new_edge_module)).
    pub async fn from_edge_environment() -> Result<(Client, Driver), EdgeError> {
        let env = edge_environment()?;
        let options = module_options(&env).await?;
        Client::new_edge_module(options, env)
    }

    /// A module client with `options` (usually from [`module_options`],
    /// adjusted) whose tokens the workload API of `env` signs, and its
    /// driver: before the first CONNECT and at
    /// [`renewal_percent`](iothub_proto::session::Config::renewal_percent)
    /// of every token's lifetime, while the connection goes on. The
    /// credential of `options` becomes
    /// [`Credential::ExternalSigner`](iothub_proto::auth::Credential::ExternalSigner).
    pub fn new_edge_module(
        options: ClientOptions,
        env: EdgeEnvironment,
    ) -> Result<(Client, Driver), EdgeError> {
        let options = with_external_signer(options);
        let (client, driver) = Client::new(options).map_err(EdgeError::Client)?;
        let ctl = client.control();
        let source = token_source(env, ctl.downgrade());
        ctl.try_send(Box::new(Command::Token(TokenCommand::Source(source))))
            .map_err(|_| EdgeError::Client(iothub_net::Error::Closed))?;
        Ok((client, driver))
    }
}
