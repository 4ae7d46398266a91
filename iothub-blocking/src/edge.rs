//! IoT Edge modules: a client whose SAS tokens the workload API signs
//! over its Unix socket, renewed for as long as the client runs. The
//! bytes of each call are built and parsed by the core
//! ([`iothub_client::edge::WorkloadCall`]); this file only moves them with a
//! [`std::os::unix::net::UnixStream`] with read and write timeouts, on a
//! short-lived thread per token so the driver never blocks on it.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use iothub_client::Clock;
use iothub_client::driver::Command;
use iothub_client::edge::{
    EdgeError, TokenCommand, TokenSource, WORKLOAD_TIMEOUT, WorkloadCall, workload_socket,
};
use iothub_proto::auth::SasToken;
use iothub_proto::edge::{EdgeEnvironment, HttpResponse};

use crate::Client;
use crate::driver::Input;

/// One call to the workload API: write the request, read until the
/// response is complete.
fn call(env: &EdgeEnvironment, call: &mut WorkloadCall) -> Result<HttpResponse, EdgeError> {
    // WORKLOAD_TIMEOUT bounds the whole call, not each read: a workload
    // API that answers a byte at a time still has to finish in time.
    let deadline = std::time::Instant::now() + WORKLOAD_TIMEOUT;
    let left = || {
        let d = deadline.saturating_duration_since(std::time::Instant::now());
        if d.is_zero() {
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        } else {
            Ok(d)
        }
    };
    let mut socket = UnixStream::connect(workload_socket(env)?)?;
    socket.set_write_timeout(Some(left()?))?;
    socket.write_all(call.request())?;
    let mut buf = vec![0u8; 4096];
    loop {
        socket.set_read_timeout(Some(left()?))?;
        let n = socket.read(&mut buf)?;
        if let Some(response) = call.feed(&buf[..n], n == 0)? {
            return Ok(response);
        }
    }
}

/// Signs a token valid for `lifetime` from now through the workload API.
fn sign_token(env: &EdgeEnvironment, lifetime: Duration) -> Result<SasToken, EdgeError> {
    let mut sign = WorkloadCall::sign(env, Clock::unix_secs(), lifetime);
    let response = call(env, &mut sign)?;
    Ok(sign.token(env, &response)?)
}

/// The edge CA (PEM) of the workload API's trust bundle.
pub(crate) fn trust_bundle(env: &EdgeEnvironment) -> Result<String, EdgeError> {
    let mut bundle = WorkloadCall::trust_bundle(env);
    let response = call(env, &mut bundle)?;
    Ok(WorkloadCall::certificate(&response)?)
}

/// The token source of a client: each request signs on a thread of its
/// own, whose outcome goes back to the driver.
fn token_source(env: EdgeEnvironment, inputs: Sender<Input>) -> TokenSource {
    let env = Arc::new(env);
    Box::new(move |lifetime| {
        let answer = |tx: &Sender<Input>, token| {
            let _ = tx.send(Input::Command(Command::Token(TokenCommand::Answer(token))));
        };
        let (env, tx) = (env.clone(), inputs.clone());
        let spawned = std::thread::Builder::new()
            .name("iothub-workload".into())
            .spawn(move || {
                let token = sign_token(&env, lifetime)
                    .map_err(|e| format!("the workload API did not sign a token: {e}"));
                answer(&tx, token);
            });
        if let Err(e) = spawned {
            answer(
                &inputs,
                Err(format!("no thread for the workload API call: {e}")),
            );
        }
    })
}

/// Routes the token requests of `client` to the workload API of `env`.
pub(crate) fn install_token_source(
    client: &Client,
    env: EdgeEnvironment,
) -> Result<(), iothub_client::Error> {
    let inputs = client.inputs();
    let source = token_source(env, inputs.clone());
    inputs
        .send(Input::Command(Command::Token(TokenCommand::Source(source))))
        .map_err(|_| iothub_client::Error::Closed)
}
