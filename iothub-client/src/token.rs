//! Custom token signers: SAS tokens signed by the application (an HSM, a
//! TPM, a key vault) instead of a key the session holds or the IoT Edge
//! workload API. Every adapter's `Client::with_token_signer` is this
//! module plus the way the adapter reaches its driver:
//!
//! ```text
//! session ── Event::TokenRequested{lifetime} ──▶ Router ──▶ TokenSource (signer_source)
//!                                                               │ a thread per request:
//!                                                               │ signer(&TokenRequest)
//! session ◀── provide_token / token_unavailable ◀── Router ◀────┘ TokenCommand::Answer
//! ```
//!
//! The signer is a plain function, run on a short-lived thread of its own
//! for each token (once per renewal), so a slow HSM never stalls the
//! driver whatever the runtime. Its error, if any, becomes the detail of
//! [`Status::last_token_failure`](crate::Status::last_token_failure), and
//! the session asks again after its backoff.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use iothub_proto::auth::SasToken;

use crate::edge::{TokenCommand, TokenSource};
use crate::handle::Commands;
use crate::{ClientOptions, Clock, Error};

/// What a custom signer's own error is: anything it can describe.
pub type SignerError = Box<dyn std::error::Error + Send + Sync>;

/// A custom signer: given the token wanted, the token (usually
/// [`TokenRequest::token_from_signature`] over a signature of
/// [`TokenRequest::string_to_sign`], or [`SasToken::generate`] with a key
/// it holds), or why it could not sign.
pub type TokenSigner = Arc<dyn Fn(&TokenRequest) -> Result<SasToken, SignerError> + Send + Sync>;

/// One token the session asks a custom signer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    resource_uri: String,
    expiry_unix_secs: u64,
    lifetime: Duration,
}

impl TokenRequest {
    /// A request for a token of `resource_uri` valid for `lifetime` from
    /// `unix_secs` (at least one second).
    #[must_use]
    pub fn new(resource_uri: String, unix_secs: u64, lifetime: Duration) -> TokenRequest {
        TokenRequest {
            resource_uri,
            expiry_unix_secs: unix_secs.saturating_add(lifetime.as_secs().max(1)),
            lifetime,
        }
    }

    /// The SAS resource URI: `{hub}/devices/{d}` or
    /// `{hub}/devices/{d}/modules/{m}`.
    #[must_use]
    pub fn resource_uri(&self) -> &str {
        &self.resource_uri
    }

    /// When the token must expire (Unix seconds): the `se=` to sign.
    #[must_use]
    pub fn expiry_unix_secs(&self) -> u64 {
        self.expiry_unix_secs
    }

    /// The lifetime the session asked for.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The message to sign with HMAC-SHA256:
    /// [`SasToken::string_to_sign`] of the resource URI and expiry.
    #[must_use]
    pub fn string_to_sign(&self) -> String {
        SasToken::string_to_sign(&self.resource_uri, self.expiry_unix_secs)
    }

    /// The token of a signature (standard base64 of the HMAC-SHA256 tag
    /// of [`string_to_sign`](Self::string_to_sign)), with no key name.
    #[must_use]
    pub fn token_from_signature(&self, signature_base64: &str) -> SasToken {
        SasToken::from_signature(
            &self.resource_uri,
            signature_base64,
            self.expiry_unix_secs,
            None,
        )
    }

    /// Runs `signer` for this request and checks that the token is for
    /// this resource URI.
    pub fn sign(&self, signer: &TokenSigner) -> Result<SasToken, SignError> {
        let token = signer(self).map_err(SignError::Signer)?;
        if token.resource_uri() != self.resource_uri {
            return Err(SignError::WrongResource {
                expected: self.resource_uri.clone(),
                signed: token.resource_uri().to_owned(),
            });
        }
        Ok(token)
    }
}

/// Why a custom signer gave no usable token.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignError {
    /// The signer failed.
    Signer(SignerError),
    /// The token is for another resource URI than the one asked for.
    WrongResource {
        /// The URI of the request.
        expected: String,
        /// The URI of the token.
        signed: String,
    },
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Signer(e) => write!(f, "the custom signer failed: {e}"),
            SignError::WrongResource { expected, signed } => write!(
                f,
                "the custom signer signed a token for {signed:?}, not {expected:?}"
            ),
        }
    }
}

impl std::error::Error for SignError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SignError::Signer(e) => Some(e.as_ref()),
            SignError::WrongResource { .. } => None,
        }
    }
}

/// The SAS resource URI of the identity `options` name.
#[must_use]
pub fn resource_uri(options: &ClientOptions) -> String {
    options
        .config
        .identity
        .resource_uri(options.config.host_name.as_str())
}

/// Where a token source hands its answers (the driver's command channel,
/// held so that it does not keep the driver up).
pub type Answer = Arc<dyn Fn(TokenCommand) + Send + Sync>;

/// The [`TokenSource`] of a custom signer for `resource_uri`: each
/// request runs `signer` on a thread of its own and hands the outcome to
/// `answer`.
#[must_use]
pub fn signer_source(signer: TokenSigner, resource_uri: String, answer: Answer) -> TokenSource {
    Box::new(move |lifetime| {
        let request = TokenRequest::new(resource_uri.clone(), Clock::unix_secs(), lifetime);
        let (signer, tx) = (signer.clone(), answer.clone());
        let spawned = std::thread::Builder::new()
            .name("iothub-signer".into())
            .spawn(move || {
                let token = request.sign(&signer).map_err(|e| e.to_string());
                tx(TokenCommand::Answer(token));
            });
        if let Err(e) = spawned {
            answer(TokenCommand::Answer(Err(format!(
                "no thread for the custom signer: {e}"
            ))));
        }
    })
}

/// Makes the client whose command channel is `ctl` (an async adapter's)
/// take its tokens from `signer`, for `resource_uri` (see
/// [`resource_uri`]). Fails with [`Error::Closed`] once the driver has
/// stopped.
pub fn install_signer(
    ctl: &Commands,
    resource_uri: String,
    signer: TokenSigner,
) -> Result<(), Error> {
    let weak = ctl.downgrade();
    let answer: Answer = Arc::new(move |cmd| {
        if let Some(ctl) = weak.upgrade() {
            let _ = ctl.try_send(Box::new(crate::driver::Command::Token(cmd)));
        }
    });
    let source = signer_source(signer, resource_uri, answer);
    ctl.try_send(Box::new(crate::driver::Command::Token(
        TokenCommand::Source(source),
    )))
    .map_err(|_| Error::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::auth::SharedAccessKey;
    use std::sync::mpsc;

    #[test]
    fn a_request_is_signed_on_a_thread_and_answered() {
        let key = SharedAccessKey::from_bytes([7u8; 32]).unwrap();
        let signer: TokenSigner = Arc::new(move |r: &TokenRequest| {
            if r.lifetime() > Duration::from_secs(100) {
                return Err("too long".into());
            }
            Ok(SasToken::generate(
                r.resource_uri(),
                &key,
                r.expiry_unix_secs(),
                None,
            ))
        });
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let answer: Answer = Arc::new(move |cmd| tx.lock().unwrap().send(cmd).unwrap());
        let mut source = signer_source(signer.clone(), "hub/devices/d".into(), answer);
        source(Duration::from_secs(60));
        let TokenCommand::Answer(Ok(token)) = rx.recv().unwrap() else {
            panic!("a token")
        };
        assert_eq!(token.resource_uri(), "hub/devices/d");
        let now = Clock::unix_secs();
        assert!((now + 59..=now + 61).contains(&token.expiry_unix_secs()));
        source(Duration::from_secs(3600));
        let TokenCommand::Answer(Err(detail)) = rx.recv().unwrap() else {
            panic!("an error")
        };
        assert_eq!(detail, "the custom signer failed: too long");

        // A token for another identity is refused.
        let request = TokenRequest::new("hub/devices/other".into(), 1_000, Duration::ZERO);
        assert_eq!(request.expiry_unix_secs(), 1_001);
        assert!(request.sign(&signer).is_ok());
        let wrong: TokenSigner = Arc::new(|r: &TokenRequest| {
            Ok(SasToken::from_signature(
                "hub/devices/d",
                "c2ln",
                r.expiry_unix_secs(),
                None,
            ))
        });
        assert!(matches!(
            request.sign(&wrong),
            Err(SignError::WrongResource { .. })
        ));
        let by_hsm = request.token_from_signature("c2ln");
        assert_eq!(by_hsm.resource_uri(), "hub/devices/other");
        assert!(request.string_to_sign().ends_with("\n1001"));
    }
}
