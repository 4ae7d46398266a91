//! Shared access keys and shared access signature (SAS) tokens.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::text::{push_url_encoded, url_decode, url_encode};

/// The text every SAS token starts with (including the one space).
const PREFIX: &str = "SharedAccessSignature ";

/// The SHA-256 block size: the HMAC key length after padding.
const BLOCK_LEN: usize = 64;

/// The `skn` (key name) that the Device Provisioning Service expects from a
/// device registering with a symmetric key.
pub const DPS_KEY_NAME: &str = "registration";

/// The SAS resource URI of a Device Provisioning Service registration:
/// `{idScope}/registrations/{registrationId}` (not yet URL-encoded; pass it
/// to [`SasToken::generate`] with [`DPS_KEY_NAME`]).
pub fn dps_resource_uri(id_scope: &str, registration_id: &str) -> String {
    let mut s = String::with_capacity(id_scope.len() + registration_id.len() + 15);
    s.push_str(id_scope);
    s.push_str("/registrations/");
    s.push_str(registration_id);
    s
}

/// HMAC-SHA256 of `message` under `key`, ready to finalize or verify.
///
/// The key is brought to the block length here as RFC 2104 prescribes
/// (hashed when longer than 64 bytes, then zero-padded), so that the
/// infallible `KeyInit::new` can be used instead of the `Result`-returning
/// `new_from_slice`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut block = [0u8; BLOCK_LEN];
    if key.len() <= BLOCK_LEN {
        block.iter_mut().zip(key).for_each(|(d, s)| *d = *s);
    } else {
        let digest = Sha256::digest(key);
        block
            .iter_mut()
            .zip(digest.iter())
            .for_each(|(d, s)| *d = *s);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    mac.update(message);
    mac
}

// ---------------------------------------------------------------------------
// SharedAccessKey

/// Why a shared access key was refused. Never contains any part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SharedAccessKeyError {
    /// The key is empty.
    Empty,
    /// The key is not valid standard base64 (alphabet `A-Z a-z 0-9 + /`,
    /// padding optional).
    NotBase64,
}

impl fmt::Display for SharedAccessKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "shared access key is empty",
            Self::NotBase64 => "shared access key is not valid base64",
        })
    }
}

impl core::error::Error for SharedAccessKeyError {}

/// A symmetric key (the decoded bytes of a `SharedAccessKey=` value) that
/// signs SAS tokens.
///
/// Its `Debug` prints `SharedAccessKey(<redacted>)`; it has no `Display`.
/// The bytes are reachable only through [`expose_secret`](Self::expose_secret).
#[derive(Clone)]
pub struct SharedAccessKey(Vec<u8>);

impl SharedAccessKey {
    /// Decodes a base64 key as the portal and the connection string show it.
    ///
    /// Standard alphabet; the `=` padding may be present or absent, but no
    /// whitespace is allowed.
    pub fn from_base64(key: &str) -> Result<Self, SharedAccessKeyError> {
        if key.is_empty() {
            return Err(SharedAccessKeyError::Empty);
        }
        let bytes = STANDARD_PAD_INDIFFERENT
            .decode(key)
            .map_err(|_| SharedAccessKeyError::NotBase64)?;
        Self::from_bytes(bytes)
    }

    /// Wraps raw key bytes. Refuses an empty key.
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Self, SharedAccessKeyError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SharedAccessKeyError::Empty);
        }
        Ok(Self(key))
    }

    /// The raw key bytes. Named so that every use stands out in review.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The per-device key of a Device Provisioning Service group enrollment:
    /// HMAC-SHA256 of the registration id under this (group) key.
    pub fn derive_for_registration(&self, registration_id: &str) -> SharedAccessKey {
        let tag = hmac_sha256(&self.0, registration_id.as_bytes()).finalize();
        Self(tag.into_bytes().to_vec())
    }
}

impl fmt::Debug for SharedAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedAccessKey(<redacted>)")
    }
}

// ---------------------------------------------------------------------------
// SasToken

/// A field of a SAS token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SasField {
    /// `sr`, the URL-encoded resource URI.
    ResourceUri,
    /// `sig`, the URL-encoded base64 signature.
    Signature,
    /// `se`, the expiry in Unix seconds.
    Expiry,
    /// `skn`, the key (policy) name.
    KeyName,
}

impl SasField {
    /// The field name as it appears in the token: `sr`, `sig`, `se`, `skn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResourceUri => "sr",
            Self::Signature => "sig",
            Self::Expiry => "se",
            Self::KeyName => "skn",
        }
    }
}

impl fmt::Display for SasField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a SAS token could not be read. Never contains any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SasTokenError {
    /// The token does not start with `SharedAccessSignature ` (one space).
    MissingPrefix,
    /// The `&`-separated part number `index` (counted from 1) has no `=`.
    FieldWithoutEquals {
        /// The part number, counted from 1.
        index: usize,
    },
    /// A required field (`sr`, `sig` or `se`) is missing.
    MissingField(SasField),
    /// A field occurs more than once.
    DuplicateField(SasField),
    /// A field has an empty value.
    EmptyField(SasField),
    /// `se` is not a decimal number of Unix seconds that fits in a `u64`.
    InvalidExpiry,
    /// A field does not decode (percent-decoding) to UTF-8 text.
    InvalidEncoding(SasField),
}

impl fmt::Display for SasTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPrefix => {
                f.write_str("SAS token does not start with `SharedAccessSignature `")
            }
            Self::FieldWithoutEquals { index } => {
                write!(f, "SAS token field {index} has no `=`")
            }
            Self::MissingField(field) => write!(f, "SAS token has no `{field}` field"),
            Self::DuplicateField(field) => {
                write!(f, "SAS token has the `{field}` field more than once")
            }
            Self::EmptyField(field) => write!(f, "SAS token field `{field}` is empty"),
            Self::InvalidExpiry => {
                f.write_str("SAS token field `se` is not a decimal number of Unix seconds")
            }
            Self::InvalidEncoding(field) => write!(
                f,
                "SAS token field `{field}` does not percent-decode to UTF-8 text"
            ),
        }
    }
}

impl core::error::Error for SasTokenError {}

/// The fields of a token, as they appear in it (still URL-encoded).
struct RawFields<'a> {
    sr: &'a str,
    sig: &'a str,
    se: &'a str,
    skn: Option<&'a str>,
}

fn raw_fields(token: &str) -> Result<RawFields<'_>, SasTokenError> {
    let body = token
        .strip_prefix(PREFIX)
        .ok_or(SasTokenError::MissingPrefix)?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for (i, part) in body.split('&').enumerate() {
        let (name, value) = part
            .split_once('=')
            .ok_or(SasTokenError::FieldWithoutEquals { index: i + 1 })?;
        let (slot, field) = match name {
            "sr" => (&mut sr, SasField::ResourceUri),
            "sig" => (&mut sig, SasField::Signature),
            "se" => (&mut se, SasField::Expiry),
            "skn" => (&mut skn, SasField::KeyName),
            // Other fields are not ours to judge; the service ignores them too.
            _ => continue,
        };
        if slot.is_some() {
            return Err(SasTokenError::DuplicateField(field));
        }
        if value.is_empty() {
            return Err(SasTokenError::EmptyField(field));
        }
        *slot = Some(value);
    }
    Ok(RawFields {
        sr: sr.ok_or(SasTokenError::MissingField(SasField::ResourceUri))?,
        sig: sig.ok_or(SasTokenError::MissingField(SasField::Signature))?,
        se: se.ok_or(SasTokenError::MissingField(SasField::Expiry))?,
        skn,
    })
}

fn parse_expiry(se: &str) -> Result<u64, SasTokenError> {
    if !se.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SasTokenError::InvalidExpiry);
    }
    se.parse().map_err(|_| SasTokenError::InvalidExpiry)
}

/// A shared access signature token: the CONNECT password.
///
/// `SharedAccessSignature sr={url-encoded resourceUri}&sig={url-encoded base64 signature}&se={expiry}[&skn={url-encoded key name}]`
///
/// Built by [`generate`](Self::generate) from a key, or read by
/// [`parse`](Self::parse) from a ready token (for instance a connection
/// string's `SharedAccessSignature=` value, which cannot be renewed: watch
/// [`expiry_unix_secs`](Self::expiry_unix_secs)).
///
/// Its `Debug` shows the resource URI, the expiry and the key name but not
/// the token or its signature; it has no `Display`. The token text is
/// reachable only through [`expose_secret`](Self::expose_secret).
#[derive(Clone)]
pub struct SasToken {
    token: String,
    resource_uri: String,
    expiry_unix_secs: u64,
    key_name: Option<String>,
}

impl SasToken {
    /// Signs a token for `resource_uri` (not URL-encoded: for a hub identity
    /// [`Identity::resource_uri`](super::Identity::resource_uri) of the hub's
    /// `HostName`, never the gateway's; for DPS [`dps_resource_uri`] with
    /// `key_name` [`DPS_KEY_NAME`]).
    ///
    /// `expiry_unix_secs` is the wall-clock time, in seconds since the Unix
    /// epoch, after which the hub refuses the token; the caller reads the
    /// clock (SDKs use now + 3600).
    ///
    /// The signature is `base64(HMAC-SHA256(key, url-encode(resource_uri) + "\n" + expiry))`.
    pub fn generate(
        resource_uri: &str,
        key: &SharedAccessKey,
        expiry_unix_secs: u64,
        key_name: Option<&str>,
    ) -> SasToken {
        let message = Self::string_to_sign(resource_uri, expiry_unix_secs);
        let tag = hmac_sha256(&key.0, message.as_bytes()).finalize();
        let signature = STANDARD.encode(tag.into_bytes());
        Self::from_signature(resource_uri, &signature, expiry_unix_secs, key_name)
    }

    /// Assembles a token from a signature computed elsewhere: by an HSM,
    /// or by the IoT Edge workload API (see
    /// [`edge::EdgeEnvironment`](crate::edge::EdgeEnvironment)), over
    /// [`string_to_sign`](Self::string_to_sign)`(resource_uri, expiry_unix_secs)`.
    /// `signature_base64` is the standard base64 of the HMAC-SHA256 tag, as
    /// the signer returns it; it is URL-encoded here. Nothing is verified.
    pub fn from_signature(
        resource_uri: &str,
        signature_base64: &str,
        expiry_unix_secs: u64,
        key_name: Option<&str>,
    ) -> SasToken {
        let encoded_sr = url_encode(resource_uri);
        let mut token = String::with_capacity(PREFIX.len() + encoded_sr.len() + 100);
        token.push_str(PREFIX);
        token.push_str("sr=");
        token.push_str(&encoded_sr);
        token.push_str("&sig=");
        push_url_encoded(&mut token, signature_base64);
        let _ = write!(token, "&se={expiry_unix_secs}");
        if let Some(name) = key_name {
            token.push_str("&skn=");
            push_url_encoded(&mut token, name);
        }
        SasToken {
            token,
            resource_uri: String::from(resource_uri),
            expiry_unix_secs,
            key_name: key_name.map(String::from),
        }
    }

    /// The message a SAS signature is computed over:
    /// `url-encode(resource_uri) + "\n" + expiry`. For signers outside this
    /// crate ([`from_signature`](Self::from_signature)).
    pub fn string_to_sign(resource_uri: &str, expiry_unix_secs: u64) -> String {
        let mut message = url_encode(resource_uri);
        let _ = write!(message, "\n{expiry_unix_secs}");
        message
    }

    /// Reads a ready token.
    ///
    /// Rules: the text starts with `SharedAccessSignature ` (one space);
    /// then `&`-separated `name=value` fields in any order (split at the
    /// first `=`); `sr`, `sig` and `se` are required, `skn` optional, each at
    /// most once and non-empty; unknown fields are ignored; `se` is decimal
    /// digits only; `sr` and `skn` are percent-decoded (either hex case).
    /// The signature itself is not checked here: see [`verify`](Self::verify).
    pub fn parse(token: &str) -> Result<SasToken, SasTokenError> {
        let raw = raw_fields(token)?;
        let resource_uri =
            url_decode(raw.sr).ok_or(SasTokenError::InvalidEncoding(SasField::ResourceUri))?;
        let expiry_unix_secs = parse_expiry(raw.se)?;
        let key_name = raw
            .skn
            .map(|skn| url_decode(skn).ok_or(SasTokenError::InvalidEncoding(SasField::KeyName)))
            .transpose()?;
        Ok(SasToken {
            token: String::from(token),
            resource_uri: resource_uri.into_owned(),
            expiry_unix_secs,
            key_name: key_name.map(|k| k.into_owned()),
        })
    }

    /// The whole token text, to put in the CONNECT password. Named so that
    /// every use stands out in review.
    pub fn expose_secret(&self) -> &str {
        &self.token
    }

    /// The whole token text, by value.
    pub fn into_secret(self) -> String {
        self.token
    }

    /// The resource URI the token grants access to (`sr`, decoded).
    pub fn resource_uri(&self) -> &str {
        &self.resource_uri
    }

    /// The expiry (`se`) in seconds since the Unix epoch.
    pub fn expiry_unix_secs(&self) -> u64 {
        self.expiry_unix_secs
    }

    /// The key (policy) name (`skn`, decoded), when the token names one.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// Whether the hub refuses the token at `now_unix_secs` (wall-clock
    /// seconds since the Unix epoch, supplied by the caller): true from the
    /// expiry second on.
    pub fn is_expired_at(&self, now_unix_secs: u64) -> bool {
        now_unix_secs >= self.expiry_unix_secs
    }

    /// Server side: whether the signature was made with `key`, compared in
    /// constant time. The expiry is not looked at (see
    /// [`is_expired_at`](Self::is_expired_at)).
    ///
    /// The signed message is taken from `sr` and `se` as they appear in the
    /// token; a token whose `sr` was encoded differently from this module
    /// (say lowercase hex, as .NET's `HttpUtility` writes it) is also
    /// accepted when it was signed over the canonical encoding.
    pub fn verify(&self, key: &SharedAccessKey) -> bool {
        let Ok(raw) = raw_fields(&self.token) else {
            return false;
        };
        let Some(sig) = url_decode(raw.sig) else {
            return false;
        };
        let Ok(sig) = STANDARD_PAD_INDIFFERENT.decode(sig.as_bytes()) else {
            return false;
        };
        let signed = |sr: &str, se: &str| {
            let mut message = String::with_capacity(sr.len() + se.len() + 1);
            message.push_str(sr);
            message.push('\n');
            message.push_str(se);
            hmac_sha256(&key.0, message.as_bytes())
                .verify_slice(&sig)
                .is_ok()
        };
        if signed(raw.sr, raw.se) {
            return true;
        }
        let canonical_sr = url_encode(&self.resource_uri);
        let mut canonical_se = String::new();
        let _ = write!(canonical_se, "{}", self.expiry_unix_secs);
        (canonical_sr != raw.sr || canonical_se != raw.se) && signed(&canonical_sr, &canonical_se)
    }
}

impl core::str::FromStr for SasToken {
    type Err = SasTokenError;
    fn from_str(s: &str) -> Result<Self, SasTokenError> {
        Self::parse(s)
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("resource_uri", &self.resource_uri)
            .field("expiry_unix_secs", &self.expiry_unix_secs)
            .field("key_name", &self.key_name)
            .field("signature", &format_args!("<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key() -> SharedAccessKey {
        SharedAccessKey::from_base64(KEY_B64).unwrap()
    }

    #[test]
    fn key_decoding() {
        assert_eq!(key().expose_secret().len(), 32);
        // Padding optional.
        let unpadded = SharedAccessKey::from_base64(KEY_B64.trim_end_matches('=')).unwrap();
        assert_eq!(unpadded.expose_secret(), key().expose_secret());
        assert_eq!(
            SharedAccessKey::from_base64("").unwrap_err(),
            SharedAccessKeyError::Empty
        );
        for bad in ["not base64!", "AAEC AwQF", "AAE-", "A"] {
            assert_eq!(
                SharedAccessKey::from_base64(bad).unwrap_err(),
                SharedAccessKeyError::NotBase64,
                "{bad}"
            );
        }
        assert_eq!(
            SharedAccessKey::from_bytes([]).unwrap_err(),
            SharedAccessKeyError::Empty
        );
        assert_eq!(format!("{:?}", key()), "SharedAccessKey(<redacted>)");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 (short key) and 6 (131-byte key, hashed first).
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?").finalize();
        assert_eq!(
            STANDARD.encode(tag.into_bytes()),
            STANDARD.encode([
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ])
        );
        let tag = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        )
        .finalize();
        assert_eq!(
            STANDARD.encode(tag.into_bytes()),
            STANDARD.encode([
                0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6, 0x7f, 0x0d, 0x8a, 0x26, 0xaa, 0xcb, 0xf5,
                0xb7, 0x7f, 0x8e, 0x0b, 0xc6, 0x21, 0x37, 0x28, 0xc5, 0x14, 0x05, 0x46, 0x04, 0x0f,
                0x0e, 0xe3, 0x7f, 0x54
            ])
        );
    }

    #[test]
    fn generate_then_parse() {
        let t = SasToken::generate("h.net/devices/d1", &key(), 1_700_000_000, None);
        let s = t.expose_secret();
        assert!(s.starts_with("SharedAccessSignature sr=h.net%2Fdevices%2Fd1&sig="));
        assert!(s.ends_with("&se=1700000000"));
        let p = SasToken::parse(s).unwrap();
        assert_eq!(p.resource_uri(), "h.net/devices/d1");
        assert_eq!(p.expiry_unix_secs(), 1_700_000_000);
        assert_eq!(p.key_name(), None);
        assert!(p.verify(&key()));
        assert!(!p.is_expired_at(1_699_999_999));
        assert!(p.is_expired_at(1_700_000_000));

        let t = SasToken::generate("scope/registrations/r 1", &key(), 5, Some("my policy"));
        assert!(t.expose_secret().ends_with("&se=5&skn=my%20policy"));
        let p: SasToken = t.expose_secret().parse().unwrap();
        assert_eq!(p.key_name(), Some("my policy"));
        assert_eq!(p.resource_uri(), "scope/registrations/r 1");
        assert!(p.verify(&key()));
        assert_eq!(p.into_secret(), t.into_secret());
    }

    #[test]
    fn verify_refuses_wrong_key_and_tampering() {
        let t = SasToken::generate("h.net/devices/d1", &key(), 100, None);
        let other = SharedAccessKey::from_bytes([7u8; 32]).unwrap();
        assert!(!t.verify(&other));
        let tampered = t.expose_secret().replace("se=100", "se=101");
        assert!(!SasToken::parse(&tampered).unwrap().verify(&key()));
        let tampered = t.expose_secret().replace("devices%2Fd1", "devices%2Fd2");
        assert!(!SasToken::parse(&tampered).unwrap().verify(&key()));
        let garbage = "SharedAccessSignature sr=a&sig=%%%&se=1";
        assert!(!SasToken::parse(garbage).unwrap().verify(&key()));
    }

    #[test]
    fn verify_accepts_lowercase_hex_and_field_order() {
        let t = SasToken::generate("h.net/devices/d1", &key(), 100, None);
        let s = t.expose_secret();
        let lower = s
            .replace("%2F", "%2f")
            .replace("%3D", "%3d")
            .replace("%2B", "%2b");
        let p = SasToken::parse(&lower).unwrap();
        assert_eq!(p.resource_uri(), "h.net/devices/d1");
        assert!(p.verify(&key()));
        // Fields reordered, seed style: sig, se, sr.
        let body = s.strip_prefix(PREFIX).unwrap();
        let mut parts: Vec<&str> = body.split('&').collect();
        parts.rotate_left(1);
        let reordered = format!("{PREFIX}{}", parts.join("&"));
        assert!(SasToken::parse(&reordered).unwrap().verify(&key()));
    }

    #[test]
    fn parse_errors_are_typed_and_silent() {
        use SasField::*;
        use SasTokenError as E;
        let cases: &[(&str, SasTokenError)] = &[
            ("", E::MissingPrefix),
            ("sr=a&sig=SECRETSIG&se=1", E::MissingPrefix),
            (
                "SharedAccessSignature  sr=a&sig=SECRETSIG&se=1",
                E::MissingField(ResourceUri),
            ),
            (
                "sharedaccesssignature sr=a&sig=SECRETSIG&se=1",
                E::MissingPrefix,
            ),
            (
                "SharedAccessSignature sr=a&SECRETSIG&se=1",
                E::FieldWithoutEquals { index: 2 },
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=1&",
                E::FieldWithoutEquals { index: 4 },
            ),
            (
                "SharedAccessSignature sig=SECRETSIG&se=1",
                E::MissingField(ResourceUri),
            ),
            (
                "SharedAccessSignature sr=a&se=1",
                E::MissingField(Signature),
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG",
                E::MissingField(Expiry),
            ),
            (
                "SharedAccessSignature sr=a&sr=b&sig=SECRETSIG&se=1",
                E::DuplicateField(ResourceUri),
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=1&se=2",
                E::DuplicateField(Expiry),
            ),
            (
                "SharedAccessSignature sr=a&sig=&se=1",
                E::EmptyField(Signature),
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=1&skn=",
                E::EmptyField(KeyName),
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=+1",
                E::InvalidExpiry,
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=-1",
                E::InvalidExpiry,
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=1.5",
                E::InvalidExpiry,
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=18446744073709551616",
                E::InvalidExpiry,
            ),
            (
                "SharedAccessSignature sr=%FF&sig=SECRETSIG&se=1",
                E::InvalidEncoding(ResourceUri),
            ),
            (
                "SharedAccessSignature sr=a&sig=SECRETSIG&se=1&skn=%C3",
                E::InvalidEncoding(KeyName),
            ),
        ];
        for (text, want) in cases {
            let err = SasToken::parse(text).unwrap_err();
            assert_eq!(&err, want, "{text}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("SECRETSIG"), "{shown}");
        }
        // Unknown fields are tolerated; max u64 is fine.
        let t = SasToken::parse("SharedAccessSignature x=1&sr=a&sig=s&se=18446744073709551615")
            .unwrap();
        assert_eq!(t.expiry_unix_secs(), u64::MAX);
    }

    #[test]
    fn debug_hides_the_signature() {
        let t = SasToken::generate("h.net/devices/d1", &key(), 100, Some("pol"));
        let sig = t
            .expose_secret()
            .split('&')
            .find_map(|p| p.strip_prefix("sig="))
            .unwrap()
            .to_string();
        let dbg = format!("{t:?} {t:#?}");
        assert!(!dbg.contains(&sig), "{dbg}");
        assert!(!dbg.contains(t.expose_secret()), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains("h.net/devices/d1"));
    }

    #[test]
    fn from_signature_matches_generate() {
        let t = SasToken::generate("h.net/devices/d1/modules/m", &key(), 1_700_000_000, None);
        let message = SasToken::string_to_sign("h.net/devices/d1/modules/m", 1_700_000_000);
        assert_eq!(message, "h.net%2Fdevices%2Fd1%2Fmodules%2Fm\n1700000000");
        let sig = STANDARD.encode(
            hmac_sha256(key().expose_secret(), message.as_bytes())
                .finalize()
                .into_bytes(),
        );
        let u = SasToken::from_signature("h.net/devices/d1/modules/m", &sig, 1_700_000_000, None);
        assert_eq!(u.expose_secret(), t.expose_secret());
        assert!(u.verify(&key()));
        let n = SasToken::from_signature("r", &sig, 1, Some("registration"));
        assert_eq!(n.key_name(), Some("registration"));
        assert!(n.expose_secret().ends_with("&se=1&skn=registration"));
    }

    #[test]
    fn dps_helpers() {
        assert_eq!(
            dps_resource_uri("0ne00000A0A", "reg-1"),
            "0ne00000A0A/registrations/reg-1"
        );
        let derived = key().derive_for_registration("reg-1");
        assert_eq!(derived.expose_secret().len(), 32);
        assert_ne!(derived.expose_secret(), key().expose_secret());
    }
}
