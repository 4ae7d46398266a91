//! Custom token signers (HSM, TPM, key vault): the client of
//! [`iothub_net::token`], which runs the signer and routes its tokens;
//! this file only hands the signer to the driver.

use std::sync::Arc;

use iothub_net::driver::Command;
use iothub_net::edge::TokenCommand;
use iothub_net::edge::with_external_signer;
use iothub_net::token::{self, SignerError, TokenRequest};
use iothub_net::{ClientOptions, Error};
use iothub_proto::auth::SasToken;

use crate::Client;
use crate::driver::Input;

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
    pub fn with_token_signer(
        options: ClientOptions,
        signer: impl Fn(&TokenRequest) -> Result<SasToken, SignerError> + Send + Sync + 'static,
    ) -> Result<Client, Error> {
        let options = with_external_signer(options);
        let resource_uri = token::resource_uri(&options);
        let client = Client::new(options)?;
        let inputs = client.inputs();
        let tx = inputs.clone();
        let answer: token::Answer = Arc::new(move |cmd| {
            let _ = tx.send(Input::Command(Command::Token(cmd)));
        });
        let source = token::signer_source(Arc::new(signer), resource_uri, answer);
        inputs
            .send(Input::Command(Command::Token(TokenCommand::Source(source))))
            .map_err(|_| Error::Closed)?;
        Ok(client)
    }
}
