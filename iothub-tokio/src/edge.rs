//! IoT Edge modules: a client whose SAS tokens the workload API signs
//! over its Unix socket, renewed for as long as the client runs. The
//! calls are `iothub-net`'s ([`iothub_net::rt::edge`], shared with the
//! smol adapter) over [`tokio::net::UnixStream`]; each token is signed in
//! a tokio task. The session asks for each token; the driver's router
//! hands the request to the source installed here.
//!
//! A custom signer (an HSM, a TPM) takes the workload API's place with
//! [`Client::with_token_signer`] (on every platform).

use std::time::Duration;

use iothub_net::ClientOptions;
use iothub_net::edge::{EdgeError, edge_environment, with_external_signer};
use iothub_net::rt;
use iothub_proto::auth::SasToken;
use iothub_proto::edge::EdgeEnvironment;

use crate::Client;
use crate::rt::Tokio;

/// Signs a token valid for `lifetime` from now through the workload API.
pub async fn sign_token(env: &EdgeEnvironment, lifetime: Duration) -> Result<SasToken, EdgeError> {
    rt::edge::sign_token::<Tokio>(env, lifetime).await
}

/// The client options of the module: tokens from the workload API, the
/// gateway as the transport host, and the edge CA of the workload API's
/// trust bundle added to the TLS roots
/// ([`iothub_net::edge::module_options`]).
pub async fn module_options(env: &EdgeEnvironment) -> Result<ClientOptions, EdgeError> {
    rt::edge::module_options::<Tokio>(env).await
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
        rt::edge::install_token_source::<Tokio>(client.control(), env)?;
        Ok(client)
    }
}
