//! IoT Edge modules on an async runtime: the workload API calls over the
//! [`Runtime`]'s Unix socket (the bytes of each call are built and parsed
//! by [`WorkloadCall`]), and the [`TokenSource`] of a module client, which
//! runs each sign call in the background ([`Runtime::spawn`]) and hands
//! its outcome to the driver through its command channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use iothub_proto::auth::SasToken;
use iothub_proto::edge::{EdgeEnvironment, HttpResponse};

use super::{Runtime, until};
use crate::Clock;
use crate::driver::Command;
use crate::edge::{
    EdgeError, TokenCommand, TokenSource, WORKLOAD_TIMEOUT, WorkloadCall, workload_socket,
};
use crate::handle::{Commands, WeakCommands};

/// One call to the workload API: write the request, read until the
/// response is complete, within [`WORKLOAD_TIMEOUT`].
async fn call<R: Runtime>(
    env: &EdgeEnvironment,
    call: &mut WorkloadCall,
) -> Result<HttpResponse, EdgeError> {
    let path = workload_socket(env)?;
    let exchange = async {
        let mut socket = R::connect_unix(path).await?;
        socket.write_all(call.request()).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await?;
            if let Some(response) = call.feed(&buf[..n], n == 0)? {
                return Ok(response);
            }
        }
    };
    until::<R, _, _>(Instant::now() + WORKLOAD_TIMEOUT, exchange, || {
        EdgeError::Io(std::io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Signs a token valid for `lifetime` from now through the workload API.
pub async fn sign_token<R: Runtime>(
    env: &EdgeEnvironment,
    lifetime: Duration,
) -> Result<SasToken, EdgeError> {
    let mut sign = WorkloadCall::sign(env, Clock::unix_secs(), lifetime);
    let response = call::<R>(env, &mut sign).await?;
    Ok(sign.token(env, &response)?)
}

/// The edge CA (PEM) of the workload API's trust bundle.
pub async fn trust_bundle<R: Runtime>(env: &EdgeEnvironment) -> Result<String, EdgeError> {
    let mut bundle = WorkloadCall::trust_bundle(env);
    let response = call::<R>(env, &mut bundle).await?;
    Ok(WorkloadCall::certificate(&response)?)
}

/// Makes the client whose command channel is `ctl` a module client
/// whose tokens the workload API of `env` signs (its options must name an
/// external signer: [`with_external_signer`](crate::edge::with_external_signer)).
/// Fails with [`Error::Closed`](crate::Error::Closed) once the driver has
/// stopped.
pub fn install_token_source<R: Runtime>(
    ctl: &Commands,
    env: EdgeEnvironment,
) -> Result<(), crate::Error> {
    let source = token_source::<R>(env, ctl.downgrade());
    ctl.try_send(Box::new(Command::Token(TokenCommand::Source(source))))
        .map_err(|_| crate::Error::Closed)
}

/// The token source of a client: each request runs one sign call in the
/// background, whose outcome goes back to the driver. It holds the
/// driver's channel weakly, so it never keeps a client alive.
fn token_source<R: Runtime>(env: EdgeEnvironment, ctl: WeakCommands) -> TokenSource {
    let env = Arc::new(env);
    Box::new(move |lifetime| {
        let answer = |ctl: &WeakCommands, token| {
            if let Some(ctl) = ctl.upgrade() {
                let _ = ctl.try_send(Box::new(Command::Token(TokenCommand::Answer(token))));
            }
        };
        let (env, tx) = (env.clone(), ctl.clone());
        let spawned = R::spawn(Box::pin(async move {
            let token = sign_token::<R>(&env, lifetime)
                .await
                .map_err(|e| format!("the workload API did not sign a token: {e}"));
            answer(&tx, token);
        }));
        if let Err(e) = spawned {
            answer(&ctl, Err(format!("no task for the workload API call: {e}")));
        }
    })
}
