//! Custom token signers (HSM, TPM, key vault,
//! [`ClientBuilder::token_signer`](iothub_client::ClientBuilder::token_signer)):
//! [`iothub_client::token`] runs the signer and routes its tokens; this
//! file only hands the signer to the driver.

use std::sync::Arc;

use iothub_client::Error;
use iothub_client::driver::Command;
use iothub_client::edge::TokenCommand;
use iothub_client::token::{self, TokenSigner};

use crate::Client;
use crate::driver::Input;

/// Routes the token requests of `client` to `signer`, for tokens of
/// `resource_uri`.
pub(crate) fn install_signer(
    client: &Client,
    resource_uri: String,
    signer: TokenSigner,
) -> Result<(), Error> {
    let inputs = client.inputs();
    let tx = inputs.clone();
    let answer: token::Answer = Arc::new(move |cmd| {
        let _ = tx.send(Input::Command(Command::Token(cmd)));
    });
    let source = token::signer_source(signer, resource_uri, answer);
    inputs
        .send(Input::Command(Command::Token(TokenCommand::Source(source))))
        .map_err(|_| Error::Closed)
}
