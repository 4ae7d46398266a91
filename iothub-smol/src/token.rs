//! Custom token signers (HSM, TPM, key vault): the client of
//! [`iothub_net::token`], which runs the signer and routes its tokens;
//! this file only hands the signer to the driver.

use std::sync::Arc;

use iothub_net::edge::with_external_signer;
use iothub_net::token::{self, SignerError, TokenRequest};
use iothub_net::{ClientOptions, Error};
use iothub_proto::auth::SasToken;

use crate::{Client, Driver};

impl Client {
    /// Starts a client whose SAS tokens `signer` signs (an HSM, a TPM, a
    /// key vault): before the first CONNECT and at
    /// [`renewal_percent`](iothub_proto::session::Config::renewal_percent)
    /// of every token's lifetime
    /// ([`sas_lifetime`](iothub_proto::session::Config::sas_lifetime)).
    /// The signer runs on a thread of its own for each token; its error
    /// shows in [`Status::last_token_failure`](crate::Status::last_token_failure)
    /// and the session asks again after its backoff. The credential of
    /// `options` becomes
    /// [`Credential::ExternalSigner`](iothub_proto::auth::Credential::ExternalSigner).
    /// Returns the client and its driver (run it on any executor).
    pub fn with_token_signer(
        options: ClientOptions,
        signer: impl Fn(&TokenRequest) -> Result<SasToken, SignerError> + Send + Sync + 'static,
    ) -> Result<(Client, Driver), Error> {
        let options = with_external_signer(options);
        let resource_uri = token::resource_uri(&options);
        let (client, driver) = Client::new(options)?;
        token::install_signer(client.control(), resource_uri, Arc::new(signer))?;
        Ok((client, driver))
    }
}
