//! Message property bags: `name=value&name2=value2`.
//!
//! IoT Hub carries the properties of a telemetry, cloud-to-device or module
//! input message in the MQTT topic, after the last fixed segment
//! (`devices/{d}/messages/events/{bag}`). A bag is a list of pairs joined by
//! `&`; each pair is `name=value`, `name=` (an empty value) or a lone `name`
//! (a null value). Names and values are percent-encoded UTF-8.
//!
//! [`MessageProperties`] is the typed form: the system properties the hub
//! knows (`$.mid`, `$.ct`, `iothub-ack`, …) are fields, everything else is an
//! ordered list of application properties.
//!
//! # Encoding
//!
//! [`MessageProperties::encode`] writes system properties first, in the order
//! of [`SystemProperty::ALL`], then application properties in insertion
//! order. Every byte of a name or value except the RFC 3986 *unreserved* set
//! (`A-Z a-z 0-9 - . _ ~`) is percent-encoded with uppercase hex digits, the
//! way Python's `urllib.parse.quote(s, safe="")` does. So `$.ct=application/json`
//! is sent as `%24.ct=application%2Fjson`: the hub decodes names, and
//! Microsoft's Python SDK sends `%24.mid` too.
//!
//! # Decoding rules
//!
//! [`decode`] reads what a peer sent, and it never refuses a bag: a
//! property the receiver only reads must not cost it the message (real
//! hub→device bags carry shapes the encoder never writes, see
//! `PROTOCOL.md`). It is lenient and loses nothing:
//!
//! - `""` is an empty bag. One trailing `/` after the bag is dropped
//!   (Microsoft's Node device SDK ends a module output topic with it, and
//!   some SDKs' test data show it on cloud-to-device topics).
//! - The bag is split on every `&`; empty pairs (`a=1&&b=2`, a leading or
//!   trailing `&`) are skipped. Each pair is split at its **first** `=`:
//!   `a=b=c` is name `a`, value `b=c`; a lone `name` has no value (`None`),
//!   `name=` an empty one, `=v` an empty name.
//! - `%XY` (hex digits in either case) is decoded; `+` is a literal plus,
//!   not a space; any other character that arrives unencoded (`$`, `/`,
//!   non-ASCII, …) is taken as is. A `%` not followed by two hex digits
//!   stays as it is (`100%` is `100%`), and a name or value whose decoded
//!   bytes are not UTF-8 is kept as its raw text.
//! - Names are matched against the system property names **after**
//!   decoding and case-sensitively: `%24.mid` and `$.mid` are both the
//!   message id, `$.MID` is an application property. The first occurrence
//!   of a system property **with a value** fills its typed field; for
//!   `iothub-ack` the known values are matched in any letter case
//!   (`Full` is [`Ack::Full`]) and any other value is kept as
//!   [`Ack::Other`]. `$.mid=` is an empty message id.
//! - Every other pair is an application property, kept in order: unknown
//!   names (`$.xyz`, `iothub-operation`, `iothub-MessageType`,
//!   `mqtt-retain`), repeated names, a system property name **without** a
//!   value (the `%24.cid&%24.uid` of Event Grid–shaped messages) and a
//!   second occurrence of a system property.
//!
//! Decoding undoes encoding: for every [`MessageProperties`] value `p`
//! built with this API (an [`Ack::Other`] that does not spell a known value
//! aside), `decode(&p.to_bag()) == p`. The other direction holds up to
//! spelling only: a bag re-encodes in the canonical form (system properties
//! first, `%24` for `$`, uppercase hex), which decodes to the same value.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::iter::FusedIterator;

use percent_encoding::utf8_percent_encode;

/// Bytes that are percent-encoded in a bag: everything except the RFC 3986
/// unreserved set `A-Z a-z 0-9 - . _ ~` (non-ASCII bytes are always encoded).
use crate::text::NOT_UNRESERVED as BAG_ENCODE_SET;

/// Whether `b` is left as is by the encoder (RFC 3986 unreserved).
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `s` to `out`, percent-encoded as a bag name or value.
pub(crate) fn percent_encode_into(s: &str, out: &mut String) {
    out.extend(utf8_percent_encode(s, BAG_ENCODE_SET));
}

/// Writes `s`, percent-encoded, to any formatter.
fn percent_encode_fmt<W: fmt::Write + ?Sized>(s: &str, w: &mut W) -> fmt::Result {
    for chunk in utf8_percent_encode(s, BAG_ENCODE_SET) {
        w.write_str(chunk)?;
    }
    Ok(())
}

/// Length of `s` once percent-encoded.
fn percent_encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| if is_unreserved(b) { 1 } else { 3 })
        .sum()
}

/// A system property: a message property with a reserved name that the hub
/// interprets (or sets) itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SystemProperty {
    /// `$.mid`: message id.
    MessageId,
    /// `$.cid`: correlation id.
    CorrelationId,
    /// `$.uid`: user id.
    UserId,
    /// `$.ct`: content type, e.g. `application/json`.
    ContentType,
    /// `$.ce`: content encoding, e.g. `utf-8`.
    ContentEncoding,
    /// `$.exp`: absolute expiry time.
    AbsoluteExpiryTime,
    /// `$.to`: destination, e.g. `/devices/{d}/messages/deviceBound`.
    To,
    /// `$.ctime`: creation time.
    CreationTime,
    /// `$.sub`: component name (IoT Plug and Play).
    ComponentName,
    /// `$.on`: output name (modules).
    OutputName,
    /// `$.cdid`: connection device id.
    ConnectionDeviceId,
    /// `$.cmid`: connection module id.
    ConnectionModuleId,
    /// `$.ifid`: interface id.
    InterfaceId,
    /// `iothub-ack`: the feedback the sender asked for, see [`Ack`].
    Ack,
}

impl SystemProperty {
    /// Every system property, in the order the encoder writes them.
    pub const ALL: &'static [SystemProperty] = &[
        SystemProperty::MessageId,
        SystemProperty::CorrelationId,
        SystemProperty::UserId,
        SystemProperty::ContentType,
        SystemProperty::ContentEncoding,
        SystemProperty::AbsoluteExpiryTime,
        SystemProperty::To,
        SystemProperty::CreationTime,
        SystemProperty::ComponentName,
        SystemProperty::OutputName,
        SystemProperty::ConnectionDeviceId,
        SystemProperty::ConnectionModuleId,
        SystemProperty::InterfaceId,
        SystemProperty::Ack,
    ];

    /// The (decoded) name on the wire, e.g. `$.mid` or `iothub-ack`.
    pub const fn name(self) -> &'static str {
        match self {
            SystemProperty::MessageId => "$.mid",
            SystemProperty::CorrelationId => "$.cid",
            SystemProperty::UserId => "$.uid",
            SystemProperty::ContentType => "$.ct",
            SystemProperty::ContentEncoding => "$.ce",
            SystemProperty::AbsoluteExpiryTime => "$.exp",
            SystemProperty::To => "$.to",
            SystemProperty::CreationTime => "$.ctime",
            SystemProperty::ComponentName => "$.sub",
            SystemProperty::OutputName => "$.on",
            SystemProperty::ConnectionDeviceId => "$.cdid",
            SystemProperty::ConnectionModuleId => "$.cmid",
            SystemProperty::InterfaceId => "$.ifid",
            SystemProperty::Ack => "iothub-ack",
        }
    }

    /// The system property with this decoded name (case-sensitive), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "$.mid" => SystemProperty::MessageId,
            "$.cid" => SystemProperty::CorrelationId,
            "$.uid" => SystemProperty::UserId,
            "$.ct" => SystemProperty::ContentType,
            "$.ce" => SystemProperty::ContentEncoding,
            "$.exp" => SystemProperty::AbsoluteExpiryTime,
            "$.to" => SystemProperty::To,
            "$.ctime" => SystemProperty::CreationTime,
            "$.sub" => SystemProperty::ComponentName,
            "$.on" => SystemProperty::OutputName,
            "$.cdid" => SystemProperty::ConnectionDeviceId,
            "$.cmid" => SystemProperty::ConnectionModuleId,
            "$.ifid" => SystemProperty::InterfaceId,
            "iothub-ack" => SystemProperty::Ack,
            _ => return None,
        })
    }
}

impl fmt::Display for SystemProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `iothub-ack` system property: which delivery feedback the sender of
/// a cloud-to-device message asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Ack {
    /// `none`: no feedback.
    None,
    /// `positive`: feedback when the message is completed.
    Positive,
    /// `negative`: feedback when the message expires or is rejected.
    Negative,
    /// `full`: both positive and negative feedback.
    Full,
    /// Any other value, kept as received (decoding never refuses a
    /// message for a property the device only reads).
    Other(String),
}

impl Ack {
    /// The value on the wire: `none`, `positive`, `negative`, `full`, or
    /// the text of [`Ack::Other`].
    pub fn as_str(&self) -> &str {
        match self {
            Ack::None => "none",
            Ack::Positive => "positive",
            Ack::Negative => "negative",
            Ack::Full => "full",
            Ack::Other(s) => s,
        }
    }

    /// One of the four known values, matched in any letter case (`Full`
    /// is [`Ack::Full`]); `None` for anything else. For senders that must
    /// refuse an unknown value.
    pub fn known(value: &str) -> Option<Self> {
        [Ack::None, Ack::Positive, Ack::Negative, Ack::Full]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(value))
    }

    /// Reads a received value: a known one in any letter case, else
    /// [`Ack::Other`] with the text as is.
    pub fn from_wire(value: &str) -> Self {
        Ack::known(value).unwrap_or_else(|| Ack::Other(String::from(value)))
    }
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An application property name that [`MessageProperties`] refuses: the
/// caller misused the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PropertyNameError {
    /// The name is empty.
    Empty,
    /// The name is a system property name; set the typed field instead.
    Reserved(SystemProperty),
}

impl fmt::Display for PropertyNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyNameError::Empty => f.write_str("application property name is empty"),
            PropertyNameError::Reserved(p) => write!(
                f,
                "`{p}` is a system property name, not an application property name"
            ),
        }
    }
}

impl core::error::Error for PropertyNameError {}

/// Checks that `name` may be used as an application property name.
fn check_application_name(name: &str) -> Result<(), PropertyNameError> {
    if name.is_empty() {
        return Err(PropertyNameError::Empty);
    }
    match SystemProperty::from_name(name) {
        Some(p) => Err(PropertyNameError::Reserved(p)),
        None => Ok(()),
    }
}

/// One decoded pair of a bag, as yielded by [`pairs`]. Borrows from the bag
/// when nothing needed decoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawPair<'a> {
    /// The decoded name (empty for a pair such as `=v`).
    pub name: Cow<'a, str>,
    /// The decoded value: `None` for a lone `name`, `Some("")` for `name=`.
    pub value: Option<Cow<'a, str>>,
}

/// Iterator over the decoded pairs of a bag; see [`pairs`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    rest: Option<&'a str>,
}

/// Splits and percent-decodes a bag into its pairs, in order, without
/// interpreting names (no system properties): the structural and encoding
/// rules of the [module docs](self). Never fails: empty pairs are skipped
/// and one trailing `/` is dropped.
pub fn pairs(bag: &str) -> Pairs<'_> {
    let bag = bag.strip_suffix('/').unwrap_or(bag);
    Pairs {
        rest: if bag.is_empty() { None } else { Some(bag) },
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = RawPair<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (pair, tail) = match rest.split_once('&') {
                Some((pair, tail)) => (pair, Some(tail)),
                None => (rest, None),
            };
            self.rest = tail;
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            return Some(RawPair {
                name: percent_decode(name),
                value: value.map(percent_decode),
            });
        }
    }
}

impl FusedIterator for Pairs<'_> {}

/// Lenient percent-decoding: `%XY` is decoded, a `%` not followed by two
/// hex digits stays, `+` stays a plus; decoded bytes that are not UTF-8
/// leave the text raw.
fn percent_decode(s: &str) -> Cow<'_, str> {
    crate::text::url_decode(s).unwrap_or(Cow::Borrowed(s))
}

/// The properties of one message: typed system properties and an ordered
/// list of application properties.
///
/// Set system properties through the public fields. Application properties
/// go through [`add_application`](Self::add_application), which refuses
/// names that would not decode back as application properties (empty, or a
/// system property name), so that [`encode`](Self::encode) followed by
/// [`decode`](Self::decode) always gives back the same value.
///
/// ```
/// use iothub_proto::properties::MessageProperties;
///
/// let mut p = MessageProperties::new();
/// p.content_type = Some("application/json".into());
/// p.content_encoding = Some("utf-8".into());
/// p.add_application("temp alert", "true")?;
/// assert_eq!(
///     p.to_bag(),
///     "%24.ct=application%2Fjson&%24.ce=utf-8&temp%20alert=true"
/// );
/// assert_eq!(MessageProperties::decode(&p.to_bag()), p);
///
/// // What a peer sends is read, never refused.
/// let q = MessageProperties::decode("iothub-ack=Full&%24.cid&k=v/");
/// assert_eq!(q.get_application("$.cid"), Some(None));
/// assert_eq!(q.get_application("k"), Some(Some("v")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageProperties {
    /// `$.mid`: message id.
    pub message_id: Option<String>,
    /// `$.cid`: correlation id.
    pub correlation_id: Option<String>,
    /// `$.uid`: user id.
    pub user_id: Option<String>,
    /// `$.ct`: content type (`application/json` lets message routing query
    /// the body).
    pub content_type: Option<String>,
    /// `$.ce`: content encoding (e.g. `utf-8`).
    pub content_encoding: Option<String>,
    /// `$.exp`: absolute expiry time, as sent.
    pub absolute_expiry_time: Option<String>,
    /// `$.to`: destination.
    pub to: Option<String>,
    /// `$.ctime`: creation time, as sent.
    pub creation_time: Option<String>,
    /// `$.sub`: component name (IoT Plug and Play).
    pub component_name: Option<String>,
    /// `$.on`: output name (modules).
    pub output_name: Option<String>,
    /// `$.cdid`: connection device id.
    pub connection_device_id: Option<String>,
    /// `$.cmid`: connection module id.
    pub connection_module_id: Option<String>,
    /// `$.ifid`: interface id.
    pub interface_id: Option<String>,
    /// `iothub-ack`: requested delivery feedback.
    pub ack: Option<Ack>,
    /// Application properties in order. Added through the API, names are
    /// never empty and never a system property name; decoded, this holds
    /// every pair no typed field took (see the [module docs](self)).
    application: Vec<(String, Option<String>)>,
}

impl MessageProperties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there are no system and no application properties (the bag
    /// is empty).
    pub fn is_empty(&self) -> bool {
        self.application.is_empty()
            && SystemProperty::ALL
                .iter()
                .all(|&p| self.system(p).is_none())
    }

    /// The value of a system property, as it goes on the wire (for
    /// [`SystemProperty::Ack`], the wire form of [`Self::ack`]).
    pub fn system(&self, property: SystemProperty) -> Option<&str> {
        match property {
            SystemProperty::Ack => self.ack.as_ref().map(Ack::as_str),
            _ => self
                .string_field(property)
                .and_then(|field| field.as_deref()),
        }
    }

    fn string_field(&self, property: SystemProperty) -> Option<&Option<String>> {
        Some(match property {
            SystemProperty::MessageId => &self.message_id,
            SystemProperty::CorrelationId => &self.correlation_id,
            SystemProperty::UserId => &self.user_id,
            SystemProperty::ContentType => &self.content_type,
            SystemProperty::ContentEncoding => &self.content_encoding,
            SystemProperty::AbsoluteExpiryTime => &self.absolute_expiry_time,
            SystemProperty::To => &self.to,
            SystemProperty::CreationTime => &self.creation_time,
            SystemProperty::ComponentName => &self.component_name,
            SystemProperty::OutputName => &self.output_name,
            SystemProperty::ConnectionDeviceId => &self.connection_device_id,
            SystemProperty::ConnectionModuleId => &self.connection_module_id,
            SystemProperty::InterfaceId => &self.interface_id,
            SystemProperty::Ack => return None,
        })
    }

    fn string_field_mut(&mut self, property: SystemProperty) -> Option<&mut Option<String>> {
        Some(match property {
            SystemProperty::MessageId => &mut self.message_id,
            SystemProperty::CorrelationId => &mut self.correlation_id,
            SystemProperty::UserId => &mut self.user_id,
            SystemProperty::ContentType => &mut self.content_type,
            SystemProperty::ContentEncoding => &mut self.content_encoding,
            SystemProperty::AbsoluteExpiryTime => &mut self.absolute_expiry_time,
            SystemProperty::To => &mut self.to,
            SystemProperty::CreationTime => &mut self.creation_time,
            SystemProperty::ComponentName => &mut self.component_name,
            SystemProperty::OutputName => &mut self.output_name,
            SystemProperty::ConnectionDeviceId => &mut self.connection_device_id,
            SystemProperty::ConnectionModuleId => &mut self.connection_module_id,
            SystemProperty::InterfaceId => &mut self.interface_id,
            SystemProperty::Ack => return None,
        })
    }

    /// Appends the application property `name=value`.
    ///
    /// Refuses an empty name and a system property name
    /// ([`PropertyNameError`]). Returns `self` so calls can be chained.
    pub fn add_application(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<&mut Self, PropertyNameError> {
        self.add_application_opt(name, Some(value.into()))
    }

    /// Appends an application property whose value may be null (`None`
    /// encodes as a lone `name`, `Some("")` as `name=`).
    ///
    /// Refuses an empty name and a system property name
    /// ([`PropertyNameError`]).
    pub fn add_application_opt(
        &mut self,
        name: impl Into<String>,
        value: Option<String>,
    ) -> Result<&mut Self, PropertyNameError> {
        let name = name.into();
        check_application_name(&name)?;
        self.application.push((name, value));
        Ok(self)
    }

    /// The application properties, in order.
    pub fn application(&self) -> &[(String, Option<String>)] {
        &self.application
    }

    /// Iterates over the application properties as `(name, value)`.
    pub fn application_iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        self.application
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// The value of the first application property called `name`: `None`
    /// when there is none, `Some(None)` when it has a null value.
    pub fn get_application(&self, name: &str) -> Option<Option<&str>> {
        self.application
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Removes every application property called `name`; returns how many
    /// were removed.
    pub fn remove_application(&mut self, name: &str) -> usize {
        let before = self.application.len();
        self.application.retain(|(n, _)| n != name);
        before.saturating_sub(self.application.len())
    }

    /// Removes all application properties.
    pub fn clear_application(&mut self) {
        self.application.clear();
    }

    /// The application properties, by value.
    pub fn into_application(self) -> Vec<(String, Option<String>)> {
        self.application
    }

    /// Every pair in encoding order: system properties in the order of
    /// [`SystemProperty::ALL`], then application properties in order.
    fn entries(&self) -> impl Iterator<Item = (&str, Option<&str>)> + '_ {
        SystemProperty::ALL
            .iter()
            .filter_map(|&p| self.system(p).map(|v| (p.name(), Some(v))))
            .chain(self.application_iter())
    }

    /// Writes the encoded bag to `w`.
    fn write_bag<W: fmt::Write + ?Sized>(&self, w: &mut W) -> fmt::Result {
        for (i, (name, value)) in self.entries().enumerate() {
            if i > 0 {
                w.write_char('&')?;
            }
            percent_encode_fmt(name, w)?;
            if let Some(value) = value {
                w.write_char('=')?;
                percent_encode_fmt(value, w)?;
            }
        }
        Ok(())
    }

    /// Appends the encoded bag to `out` (nothing for no properties).
    ///
    /// System properties come first, in the order of [`SystemProperty::ALL`]
    /// (`$.mid`, `$.cid`, `$.uid`, `$.ct`, `$.ce`, `$.exp`, `$.to`,
    /// `$.ctime`, `$.sub`, `$.on`, `$.cdid`, `$.cmid`, `$.ifid`,
    /// `iothub-ack`), then application properties in insertion order. See the
    /// [module docs](self) for the escaping.
    pub fn encode(&self, out: &mut String) {
        out.reserve(self.encoded_len());
        // Writing to a `String` cannot fail.
        let _ = self.write_bag(out);
    }

    /// The encoded bag as a new string; see [`encode`](Self::encode).
    pub fn to_bag(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }

    /// The exact length in bytes of the encoded bag.
    pub fn encoded_len(&self) -> usize {
        let mut len = 0usize;
        let mut count = 0usize;
        for (name, value) in self.entries() {
            count = count.saturating_add(1);
            len = len.saturating_add(percent_encoded_len(name));
            if let Some(value) = value {
                len = len
                    .saturating_add(1)
                    .saturating_add(percent_encoded_len(value));
            }
        }
        // `&` separators.
        len.saturating_add(count.saturating_sub(1))
    }

    /// Decodes a bag; see the [module docs](self) for the rules. Never
    /// fails and never panics, whatever the input.
    pub fn decode(bag: &str) -> Self {
        let mut props = Self::new();
        for RawPair { name, value } in pairs(bag) {
            if let (Some(property), Some(value)) = (SystemProperty::from_name(&name), &value) {
                // The first occurrence with a value fills the typed field; a
                // later one is kept below, in order.
                if property == SystemProperty::Ack {
                    if props.ack.is_none() {
                        props.ack = Some(Ack::from_wire(value));
                        continue;
                    }
                } else if let Some(field @ None) = props.string_field_mut(property) {
                    *field = Some(String::from(value.as_ref()));
                    continue;
                }
            }
            props
                .application
                .push((name.into_owned(), value.map(Cow::into_owned)));
        }
        props
    }
}

/// Writes the encoded bag, as [`MessageProperties::encode`] does.
impl fmt::Display for MessageProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_bag(f)
    }
}

impl core::str::FromStr for MessageProperties {
    type Err = core::convert::Infallible;

    fn from_str(bag: &str) -> Result<Self, Self::Err> {
        Ok(Self::decode(bag))
    }
}

/// Decodes a property bag into [`MessageProperties`]; the same as
/// [`MessageProperties::decode`]. Never fails, never panics.
pub fn decode(bag: &str) -> MessageProperties {
    MessageProperties::decode(bag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    fn props_with_app(pairs: &[(&str, Option<&str>)]) -> MessageProperties {
        let mut p = MessageProperties::new();
        for (n, v) in pairs {
            p.add_application_opt(*n, v.map(String::from)).unwrap();
        }
        p
    }

    #[test]
    fn empty_bag() {
        let p = decode("");
        assert!(p.is_empty());
        assert_eq!(p, MessageProperties::new());
        assert_eq!(MessageProperties::new().to_bag(), "");
        assert_eq!(MessageProperties::new().encoded_len(), 0);
        assert_eq!(pairs("").count(), 0);
    }

    #[test]
    fn encodes_system_names_and_reserved_chars() {
        let mut p = MessageProperties::new();
        p.content_type = Some("application/json".into());
        assert_eq!(p.to_bag(), "%24.ct=application%2Fjson");

        let mut p = MessageProperties::new();
        p.message_id = Some("a b+c&d=e/f?g#h%i~j.k_l-m".into());
        assert_eq!(
            p.to_bag(),
            "%24.mid=a%20b%2Bc%26d%3De%2Ff%3Fg%23h%25i~j.k_l-m"
        );
    }

    #[test]
    fn encodes_like_python_quote_with_empty_safe() {
        // Unlike JavaScript's encodeURIComponent, `! * ( ) '` are encoded.
        let p = props_with_app(&[("!*()'", Some("~-._AZaz09"))]);
        assert_eq!(p.to_bag(), "%21%2A%28%29%27=~-._AZaz09");
    }

    #[test]
    fn encodes_unicode_as_utf8_uppercase_hex() {
        let p = props_with_app(&[("é", Some("日本"))]);
        assert_eq!(p.to_bag(), "%C3%A9=%E6%97%A5%E6%9C%AC");
        assert_eq!(p.encoded_len(), p.to_bag().len());
    }

    #[test]
    fn system_order_is_fixed_then_application_in_order() {
        let mut p = MessageProperties::new();
        p.add_application("z", "1").unwrap();
        p.add_application("a", "2").unwrap();
        p.ack = Some(Ack::Full);
        p.interface_id = Some("i".into());
        p.connection_module_id = Some("cm".into());
        p.connection_device_id = Some("cd".into());
        p.output_name = Some("o".into());
        p.component_name = Some("s".into());
        p.creation_time = Some("ct".into());
        p.to = Some("t".into());
        p.absolute_expiry_time = Some("e".into());
        p.content_encoding = Some("utf-8".into());
        p.content_type = Some("c".into());
        p.user_id = Some("u".into());
        p.correlation_id = Some("c2".into());
        p.message_id = Some("m".into());
        let bag = p.to_bag();
        assert_eq!(
            bag,
            "%24.mid=m&%24.cid=c2&%24.uid=u&%24.ct=c&%24.ce=utf-8&%24.exp=e&%24.to=t\
             &%24.ctime=ct&%24.sub=s&%24.on=o&%24.cdid=cd&%24.cmid=cm&%24.ifid=i\
             &iothub-ack=full&z=1&a=2"
        );
        assert_eq!(p.encoded_len(), bag.len());
        assert_eq!(p.to_string(), bag);
        assert_eq!(decode(&bag), p);
    }

    #[test]
    fn encode_appends() {
        let p = props_with_app(&[("k", Some("v"))]);
        let mut out = String::from("devices/d/messages/events/");
        p.encode(&mut out);
        assert_eq!(out, "devices/d/messages/events/k=v");
    }

    #[test]
    fn null_and_empty_values_are_distinct() {
        let p = props_with_app(&[("a", None), ("b", Some("")), ("c", Some("x"))]);
        assert_eq!(p.to_bag(), "a&b=&c=x");
        let d = decode("a&b=&c=x");
        assert_eq!(
            d.application(),
            &[
                ("a".to_string(), None),
                ("b".to_string(), Some(String::new())),
                ("c".to_string(), Some("x".to_string())),
            ]
        );
        assert_eq!(d.get_application("a"), Some(None));
        assert_eq!(d.get_application("b"), Some(Some("")));
        assert_eq!(d.get_application("nope"), None);
        assert_eq!(d, p);
    }

    #[test]
    fn decodes_real_c2d_bag() {
        let bag = "%24.mid=6b1c3f8e-3c8a-4d38-9e8a-1a2b3c4d5e6f\
                   &%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&iothub-ack=full&k=v";
        let p = decode(bag);
        assert_eq!(
            p.message_id.as_deref(),
            Some("6b1c3f8e-3c8a-4d38-9e8a-1a2b3c4d5e6f")
        );
        assert_eq!(p.to.as_deref(), Some("/devices/dev1/messages/deviceBound"));
        assert_eq!(p.ack, Some(Ack::Full));
        assert_eq!(p.application(), &[("k".to_string(), Some("v".to_string()))]);
        assert_eq!(p.to_bag(), bag);
    }

    #[test]
    fn decodes_unencoded_system_names_and_every_system_property() {
        for &prop in SystemProperty::ALL {
            assert_eq!(SystemProperty::from_name(prop.name()), Some(prop));
            let value = if prop == SystemProperty::Ack {
                "negative"
            } else {
                "v"
            };
            for name in [prop.name().to_string(), prop.name().replace('$', "%24")] {
                let p = decode(&alloc::format!("{name}={value}"));
                assert_eq!(p.system(prop), Some(value), "{name}");
                assert!(p.application().is_empty());
            }
        }
    }

    #[test]
    fn other_names_are_application_properties() {
        let bag =
            "%24.xyz=1&iothub-operation=op&iothub-MessageType=Will&mqtt-retain=true&%24.MID=x";
        let p = decode(bag);
        assert_eq!(p.message_id, None);
        let names: Vec<&str> = p.application_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            vec![
                "$.xyz",
                "iothub-operation",
                "iothub-MessageType",
                "mqtt-retain",
                "$.MID"
            ]
        );
    }

    #[test]
    fn plus_is_literal_and_first_equals_splits() {
        let p = decode("a+b=c+d&e=f=g");
        assert_eq!(p.get_application("a+b"), Some(Some("c+d")));
        assert_eq!(p.get_application("e"), Some(Some("f=g")));
        // Encoding escapes both again.
        assert_eq!(p.to_bag(), "a%2Bb=c%2Bd&e=f%3Dg");
    }

    #[test]
    fn lenient_about_unencoded_characters() {
        let p = decode("$.to=/devices/d&k=é ü");
        assert_eq!(p.to.as_deref(), Some("/devices/d"));
        assert_eq!(p.get_application("k"), Some(Some("é ü")));
    }

    #[test]
    fn lowercase_hex_is_accepted() {
        let p = decode("k=%2f%2F");
        assert_eq!(p.get_application("k"), Some(Some("//")));
    }

    #[test]
    fn broken_percent_sequences_stay_as_they_are() {
        for (bag, name, value) in [
            ("a=%", "a", "%"),
            ("a=%4", "a", "%4"),
            ("a=%zz", "a", "%zz"),
            ("b%=2", "b%", "2"),
            ("a=%4g", "a", "%4g"),
            ("a=%é", "a", "%é"),
            ("a=100%25%", "a", "100%%"),
        ] {
            let p = decode(bag);
            assert_eq!(p.get_application(name), Some(Some(value)), "{bag}");
            // The value survives a re-encoding.
            assert_eq!(decode(&p.to_bag()), p, "{bag}");
        }
    }

    #[test]
    fn text_that_does_not_decode_to_utf8_is_kept_raw() {
        assert_eq!(decode("a=%FF").get_application("a"), Some(Some("%FF")));
        assert_eq!(
            decode("x=1&%C3=1").application_iter().collect::<Vec<_>>(),
            vec![("x", Some("1")), ("%C3", Some("1"))]
        );
        assert_eq!(decode("%24.mid=%FF").message_id.as_deref(), Some("%FF"));
    }

    #[test]
    fn empty_pairs_are_skipped_and_empty_names_kept() {
        assert_eq!(
            decode("a=1&&b=2"),
            props_with_app(&[("a", Some("1")), ("b", Some("2"))])
        );
        assert_eq!(decode("&a=1"), props_with_app(&[("a", Some("1"))]));
        assert_eq!(decode("a=1&"), props_with_app(&[("a", Some("1"))]));
        assert!(decode("&").is_empty());
        assert!(decode("&&&").is_empty());
        let p = decode("=v&a&=");
        assert_eq!(
            p.application_iter().collect::<Vec<_>>(),
            vec![("", Some("v")), ("a", None), ("", Some(""))]
        );
        assert_eq!(decode(&p.to_bag()), p);
    }

    #[test]
    fn one_trailing_slash_is_dropped() {
        // Microsoft's Node device SDK ends a module output topic with `/`.
        let p = decode("%24.on=out1&kind=reading/");
        assert_eq!(p.output_name.as_deref(), Some("out1"));
        assert_eq!(p.get_application("kind"), Some(Some("reading")));
        assert!(decode("/").is_empty());
        assert_eq!(decode("k=a/b/").get_application("k"), Some(Some("a/b")));
        // Only one: an encoded or second slash is part of the value.
        assert_eq!(decode("k=a%2F/").get_application("k"), Some(Some("a/")));
        assert_eq!(decode("k=a//").get_application("k"), Some(Some("a/")));
    }

    #[test]
    fn value_less_and_repeated_system_properties_are_kept_in_order() {
        // Event Grid–shaped cloud-to-device messages.
        let p = decode("%24.mid=m1&%24.cid&%24.uid&k=v");
        assert_eq!(p.message_id.as_deref(), Some("m1"));
        assert_eq!(p.correlation_id, None);
        assert_eq!(p.user_id, None);
        assert_eq!(
            p.application_iter().collect::<Vec<_>>(),
            vec![("$.cid", None), ("$.uid", None), ("k", Some("v"))]
        );
        assert_eq!(decode(&p.to_bag()), p);

        let p = decode("%24.mid=1&k&$.mid=2&iothub-ack=full&iothub-ack=none&iothub-ack");
        assert_eq!(p.message_id.as_deref(), Some("1"));
        assert_eq!(p.ack, Some(Ack::Full));
        assert_eq!(
            p.application_iter().collect::<Vec<_>>(),
            vec![
                ("k", None),
                ("$.mid", Some("2")),
                ("iothub-ack", Some("none")),
                ("iothub-ack", None)
            ]
        );
        assert_eq!(decode(&p.to_bag()), p);
        // A value after a value-less occurrence fills the field.
        let p = decode("%24.cid&%24.cid=c");
        assert_eq!(p.correlation_id.as_deref(), Some("c"));
        assert_eq!(p.get_application("$.cid"), Some(None));
        // An empty system value is a value.
        assert_eq!(decode("%24.mid=").message_id.as_deref(), Some(""));
    }

    #[test]
    fn iothub_ack_in_any_case_and_unknown_values() {
        for (wire, ack) in [
            ("full", Ack::Full),
            ("Full", Ack::Full),
            ("FULL", Ack::Full),
            ("Positive", Ack::Positive),
            ("NEGATIVE", Ack::Negative),
            ("nOnE", Ack::None),
            ("", Ack::Other(String::new())),
            ("sometimes", Ack::Other("sometimes".into())),
        ] {
            assert_eq!(
                decode(&alloc::format!("iothub-ack={wire}")).ack,
                Some(ack.clone()),
                "{wire}"
            );
            assert_eq!(Ack::from_wire(wire), ack);
        }
        for ack in [Ack::None, Ack::Positive, Ack::Negative, Ack::Full] {
            assert_eq!(Ack::known(ack.as_str()), Some(ack.clone()));
            assert_eq!(Ack::from_wire(ack.as_str()), ack);
        }
        assert_eq!(Ack::known("sometimes"), None);
        assert_eq!(Ack::Other("x y".into()).to_string(), "x y");
        let mut p = MessageProperties::new();
        p.ack = Some(Ack::Other("x y".into()));
        assert_eq!(p.to_bag(), "iothub-ack=x%20y");
        assert_eq!(decode(&p.to_bag()), p);
    }

    #[test]
    fn application_names_are_checked() {
        let mut p = MessageProperties::new();
        assert_eq!(
            p.add_application("", "v").unwrap_err(),
            PropertyNameError::Empty
        );
        assert_eq!(
            p.add_application("$.mid", "v").unwrap_err(),
            PropertyNameError::Reserved(SystemProperty::MessageId)
        );
        assert_eq!(
            p.add_application_opt("iothub-ack", None).unwrap_err(),
            PropertyNameError::Reserved(SystemProperty::Ack)
        );
        assert!(p.is_empty());
        // Encoded-looking names are plain names: they round-trip literally.
        p.add_application("%24.mid", "v")
            .unwrap()
            .add_application("$.other", "w")
            .unwrap();
        assert_eq!(p.to_bag(), "%2524.mid=v&%24.other=w");
        assert_eq!(decode(&p.to_bag()), p);
    }

    #[test]
    fn application_list_management() {
        let mut p = props_with_app(&[("a", Some("1")), ("b", None), ("a", Some("2"))]);
        assert_eq!(p.get_application("a"), Some(Some("1")));
        assert_eq!(p.remove_application("a"), 2);
        assert_eq!(p.application().len(), 1);
        p.clear_application();
        assert!(p.is_empty());
        let p = props_with_app(&[("x", Some("y"))]);
        assert_eq!(
            p.into_application(),
            vec![("x".to_string(), Some("y".to_string()))]
        );
    }

    #[test]
    fn raw_pairs_borrow_when_possible() {
        let mut it = pairs("a=1&%24b=%2F&&c/");
        let first = it.next().unwrap();
        assert!(matches!(first.name, Cow::Borrowed("a")));
        assert!(matches!(first.value, Some(Cow::Borrowed("1"))));
        let second = it.next().unwrap();
        assert_eq!(second.name, "$b");
        assert_eq!(second.value.as_deref(), Some("/"));
        let third = it.next().unwrap();
        assert_eq!(third.name, "c");
        assert_eq!(third.value, None);
        assert!(it.next().is_none());
        assert!(it.next().is_none());
    }

    #[test]
    fn from_str_and_display() {
        let p: MessageProperties = "%24.ce=utf-8&k=v".parse().unwrap();
        assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(alloc::format!("{p}"), "%24.ce=utf-8&k=v");
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
            "[a-z0-9$.%&=+/ -]{0,8}",
        ]
    }

    fn any_app_name() -> impl Strategy<Value = String> {
        any_string().prop_filter("valid application name", |n| {
            check_application_name(n).is_ok()
        })
    }

    prop_compose! {
        fn any_properties()(
            system in prop::collection::vec(prop::option::of(any_string()), 13),
            ack in prop::option::of(prop_oneof![
                Just(Ack::None), Just(Ack::Positive), Just(Ack::Negative), Just(Ack::Full)
            ]),
            application in prop::collection::vec(
                (any_app_name(), prop::option::of(any_string())), 0..6),
        ) -> MessageProperties {
            let mut p = MessageProperties::new();
            let string_props = SystemProperty::ALL.iter().filter(|&&s| s != SystemProperty::Ack);
            for (&prop, value) in string_props.zip(system) {
                if let Some(field) = p.string_field_mut(prop) {
                    *field = value;
                }
            }
            p.ack = ack;
            for (n, v) in application {
                p.add_application_opt(n, v).unwrap();
            }
            p
        }
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity(p in any_properties()) {
            let bag = p.to_bag();
            prop_assert_eq!(bag.len(), p.encoded_len());
            prop_assert_eq!(&p.to_string(), &bag);
            prop_assert!(bag.bytes().all(|b| is_unreserved(b) || matches!(b, b'%' | b'&' | b'=')));
            prop_assert_eq!(decode(&bag), p);
        }

        #[test]
        fn decode_never_panics(bag in any_string()) {
            let _ = decode(&bag);
            let _ = pairs(&bag).count();
        }

        #[test]
        fn whatever_decodes_re_encodes_to_the_same(bag in "([a-z$.%0-9A-Fzé/]{0,4}[=&]?){0,6}") {
            let p = decode(&bag);
            prop_assert_eq!(decode(&p.to_bag()), p);
        }
    }
}
