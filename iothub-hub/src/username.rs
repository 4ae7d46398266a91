//! Reading a CONNECT username back (the hub's side): the inverse of
//! [`UsernameOptions::username`](iothub_proto::auth::UsernameOptions::username).

use std::borrow::Cow;
use std::fmt;

use iothub_proto::auth::{HostName, HostNameError, IdError, Identity};

/// Lenient percent-decoding (a `%` not followed by two hex digits stays);
/// `None` when the result is not UTF-8.
fn url_decode(s: &str) -> Option<Cow<'_, str>> {
    percent_encoding::percent_decode_str(s).decode_utf8().ok()
}

/// The parameter that carries the api-version.
const API_VERSION: &str = "api-version";

/// Why a CONNECT username could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsernameError {
    /// The last `/`-separated part starts with neither `?` nor
    /// `api-version=`.
    MissingQuery,
    /// Not `{host}/{device}/…` or `{host}/{device}/{module}/…`.
    WrongSegmentCount {
        /// The number of `/`-separated parts found (3 or 4 expected).
        count: usize,
    },
    /// The host part is not a valid host name.
    InvalidHostName {
        /// Why.
        error: HostNameError,
    },
    /// The device or module part is not a valid id.
    InvalidId {
        /// Why.
        error: IdError,
    },
    /// No `api-version` parameter.
    MissingApiVersion,
    /// More than one `api-version` parameter.
    DuplicateApiVersion,
    /// `api-version` has an empty value.
    EmptyApiVersion,
    /// A parameter does not percent-decode to UTF-8 text.
    InvalidEncoding {
        /// The parameter number, counted from 1.
        param: usize,
    },
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingQuery => {
                f.write_str("username does not end with `/?api-version=…` or `/api-version=…`")
            }
            Self::WrongSegmentCount { count } => write!(
                f,
                "username has {count} `/`-separated parts; expected `{{host}}/{{device}}/?…` or `{{host}}/{{device}}/{{module}}/?…`"
            ),
            Self::InvalidHostName { error } => write!(f, "username host is invalid: {error}"),
            Self::InvalidId { error } => write!(f, "username {} is invalid: {error}", error.kind),
            Self::MissingApiVersion => f.write_str("username has no `api-version`"),
            Self::DuplicateApiVersion => f.write_str("username has `api-version` more than once"),
            Self::EmptyApiVersion => f.write_str("username has an empty `api-version`"),
            Self::InvalidEncoding { param } => write!(
                f,
                "username parameter {param} does not percent-decode to UTF-8 text"
            ),
        }
    }
}

impl std::error::Error for UsernameError {}

/// A CONNECT username, read back by [`Username::parse`].
///
/// The inverse of [`UsernameOptions::username`](iothub_proto::auth::UsernameOptions::username).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Username {
    /// The hub host name (first part).
    pub host_name: HostName,
    /// The device, or module, identity.
    pub identity: Identity,
    /// The `api-version` value, percent-decoded.
    pub api_version: String,
    /// Every other parameter in order of appearance, name and value
    /// percent-decoded (a parameter without `=` has an empty value).
    pub params: Vec<(String, String)>,
    /// Whether the legacy form (`…/api-version=…`, no `?`) was used.
    pub legacy_form: bool,
}

impl Username {
    /// Reads `{host}/{device}[/{module}]/?api-version={v}[&name=value…]` or
    /// the legacy `{host}/{device}[/{module}]/api-version={v}[&name=value…]`.
    ///
    /// The rule: split on every `/`. Ids and host names cannot contain `/`
    /// (but ids may contain `?` and `=`), so the host is part 1, the
    /// device id part 2, the module id part 3 when there are 4 parts, and
    /// the last part is the query: it must start with `?` (the `?` is
    /// dropped) or with `api-version=` (legacy form). A `/` inside a
    /// parameter value must therefore be percent-encoded, as every SDK does.
    ///
    /// The query is split on `&` (empty pieces skipped), each piece at its
    /// first `=`; names and values are percent-decoded leniently (a `%` not
    /// followed by two hex digits stays as is; `+` stays `+`). Exactly one
    /// non-empty `api-version` is required, anywhere in the query.
    ///
    /// IoT Hub usernames only: a Device Provisioning Service username
    /// (`{idScope}/registrations/{registrationId}/api-version=…`) has the
    /// same shape as a legacy module username and would be read as one
    /// (host = ID scope, device = `registrations`). Read those with
    /// [`ProvisioningUsername::parse`](iothub_proto::auth::ProvisioningUsername::parse).
    pub fn parse(s: &str) -> Result<Self, UsernameError> {
        use UsernameError as E;

        let (path, last) = s.rsplit_once('/').ok_or(E::MissingQuery)?;
        let (query, legacy_form) = if let Some(q) = last.strip_prefix('?') {
            (q, false)
        } else if last.starts_with("api-version=") {
            (last, true)
        } else {
            return Err(E::MissingQuery);
        };
        let mut parts = path.split('/');
        let count = path.split('/').count() + 1;
        let (Some(host), Some(device), module, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(E::WrongSegmentCount { count });
        };
        let host_name = HostName::new(host).map_err(|error| E::InvalidHostName { error })?;
        let identity = Identity::parse(device, module).map_err(|error| E::InvalidId { error })?;

        let mut api_version = None;
        let mut params = Vec::new();
        for (i, piece) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let decode = |t| url_decode(t).ok_or(E::InvalidEncoding { param: i + 1 });
            let (name, value) = (decode(name)?, decode(value)?);
            if name == API_VERSION {
                if api_version.is_some() {
                    return Err(E::DuplicateApiVersion);
                }
                if value.is_empty() {
                    return Err(E::EmptyApiVersion);
                }
                api_version = Some(value.into_owned());
            } else {
                params.push((name.into_owned(), value.into_owned()));
            }
        }
        Ok(Self {
            host_name,
            identity,
            api_version: api_version.ok_or(E::MissingApiVersion)?,
            params,
            legacy_form,
        })
    }

    /// The value of the first parameter called `name` (other than
    /// `api-version`), if any.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `DeviceClientType` (user agent), if given.
    pub fn device_client_type(&self) -> Option<&str> {
        self.param("DeviceClientType")
    }

    /// The `model-id` (IoT Plug and Play DTMI), if given.
    pub fn model_id(&self) -> Option<&str> {
        self.param("model-id")
    }
}

impl core::str::FromStr for Username {
    type Err = UsernameError;
    fn from_str(s: &str) -> Result<Self, UsernameError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::auth::{IdErrorReason, IdKind, ProvisioningUsername, UsernameOptions};

    fn p(s: &str) -> Result<Username, UsernameError> {
        Username::parse(s)
    }

    #[test]
    fn parses_both_forms() {
        let u = p("contoso.azure-devices.net/MyDevice01/?api-version=2021-04-12").unwrap();
        assert_eq!(u.host_name.as_str(), "contoso.azure-devices.net");
        assert_eq!(u.identity, Identity::parse("MyDevice01", None).unwrap());
        assert_eq!(u.api_version, "2021-04-12");
        assert!(u.params.is_empty());
        assert!(!u.legacy_form);

        let u = p("contoso.azure-devices.net/MyDevice01/api-version=2016-11-14").unwrap();
        assert_eq!(u.api_version, "2016-11-14");
        assert!(u.legacy_form);

        let u = p("h/d/m/?api-version=2020-09-30&DeviceClientType=iothub-rs%2F0.1&model-id=dtmi%3Aa%3B1&x&y=&z=%2b+")
            .unwrap();
        assert_eq!(u.identity, Identity::parse("d", Some("m")).unwrap());
        assert_eq!(u.device_client_type(), Some("iothub-rs/0.1"));
        assert_eq!(u.model_id(), Some("dtmi:a;1"));
        assert_eq!(u.param("x"), Some(""));
        assert_eq!(u.param("z"), Some("++"));
        assert_eq!(u.params.len(), 5);

        let u = p("h/d/m/api-version=1&model-id=dtmi%3Aa%3B1").unwrap();
        assert!(u.legacy_form);
        assert_eq!(u.model_id(), Some("dtmi:a;1"));

        // api-version need not come first in the `?` form; empty pieces skipped.
        let u = p("h/d/?&model-id=x&&api-version=v&").unwrap();
        assert_eq!(u.api_version, "v");
        assert_eq!(u.params, vec![("model-id".to_string(), "x".to_string())]);
    }

    #[test]
    fn ids_with_question_marks_and_equals() {
        let u = p("h/?dev=1/?api-version=1").unwrap();
        assert_eq!(u.identity.device_id().as_str(), "?dev=1");
        let u = p("h/api-version=1/?api-version=2").unwrap();
        assert_eq!(u.identity.device_id().as_str(), "api-version=1");
        assert_eq!(u.api_version, "2");
        let u = p("h/d/?m/?api-version=2").unwrap();
        assert_eq!(u.identity.module_id().unwrap().as_str(), "?m");
        let u = p("h/d/api-version=x/api-version=2").unwrap();
        assert_eq!(u.identity.module_id().unwrap().as_str(), "api-version=x");
        assert!(u.legacy_form);
    }

    #[test]
    fn errors() {
        use UsernameError as E;
        let cases = [
            ("", E::MissingQuery),
            ("h/d", E::MissingQuery),
            ("h/d/", E::MissingQuery),
            ("h/d/api-version", E::MissingQuery),
            ("h/d/API-VERSION=1", E::MissingQuery),
            ("h/?api-version=1", E::WrongSegmentCount { count: 2 }),
            ("?api-version=1", E::MissingQuery),
            ("/?api-version=1", E::WrongSegmentCount { count: 2 }),
            ("h/d/m/x/?api-version=1", E::WrongSegmentCount { count: 5 }),
            ("h/d/?api-version=1&ua=a/b", E::MissingQuery),
            (
                "h:1/d/?api-version=1",
                E::InvalidHostName {
                    error: HostNameError::InvalidChar { ch: ':', index: 1 },
                },
            ),
            (
                "/d/?api-version=1",
                E::InvalidHostName {
                    error: HostNameError::Empty,
                },
            ),
            (
                "h//?api-version=1",
                E::InvalidId {
                    error: IdError {
                        kind: IdKind::Device,
                        reason: IdErrorReason::Empty,
                    },
                },
            ),
            (
                "h/d/m#/?api-version=1",
                E::InvalidId {
                    error: IdError {
                        kind: IdKind::Module,
                        reason: IdErrorReason::InvalidChar { ch: '#', index: 1 },
                    },
                },
            ),
            ("h/d/?", E::MissingApiVersion),
            ("h/d/?Api-Version=1", E::MissingApiVersion),
            ("h/d/?api-version=1&api-version=1", E::DuplicateApiVersion),
            ("h/d/?api-version=", E::EmptyApiVersion),
            ("h/d/?api-version", E::EmptyApiVersion),
            ("h/d/?api-version=1&a=%FF", E::InvalidEncoding { param: 2 }),
        ];
        for (text, want) in cases {
            assert_eq!(p(text), Err(want), "{text}");
            assert!(want.to_string().contains("username"));
        }
    }

    #[test]
    fn round_trips_the_builder() {
        let host = HostName::new("h.net").unwrap();
        let id = Identity::parse("d?=1", Some("m")).unwrap();
        let options = UsernameOptions::default()
            .with_api_version("2020-09-30")
            .with_device_client_type("ua/1 (x; y)&z=w")
            .with_model_id("dtmi:com:x;1");
        let u = p(&options.username(&id, &host)).unwrap();
        assert_eq!(u.host_name, host);
        assert_eq!(u.identity, id);
        assert_eq!(u.api_version, "2020-09-30");
        assert_eq!(u.device_client_type(), Some("ua/1 (x; y)&z=w"));
        assert_eq!(u.model_id(), Some("dtmi:com:x;1"));
        assert!(!u.legacy_form);
    }

    #[test]
    fn the_hub_parser_misreads_dps_usernames() {
        // Why a separate parser exists: the hub's reads the DPS form as a
        // legacy module username.
        let text =
            ProvisioningUsername::new("0ne00000A0A".parse().unwrap(), "reg-1".parse().unwrap())
                .to_string();
        let hub = Username::parse(&text).unwrap();
        assert_eq!(hub.host_name.as_str(), "0ne00000A0A");
        assert_eq!(hub.identity.device_id().as_str(), "registrations");
        assert_eq!(hub.identity.module_id().unwrap().as_str(), "reg-1");
        assert!(hub.legacy_form);
    }
}
