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
//! [`decode`] is strict about structure and lenient about characters:
//!
//! - `""` is a valid, empty bag.
//! - The bag is split on every `&`, then each pair at its **first** `=`; the
//!   value may hold further raw `=` (`a=b=c` is name `a`, value `b=c`).
//! - An empty pair (`a=1&&b=2`, a leading or trailing `&`) is an error
//!   ([`PropertyError::EmptyPair`]), and so is a pair with an empty name
//!   (`=v`, [`PropertyError::EmptyName`]).
//! - `%XY` (hex digits in either case) is decoded; a `%` not followed by two
//!   hex digits (`%`, `%4`, `%zz`) is an error
//!   ([`PropertyError::InvalidPercentEncoding`]); decoded bytes that are not
//!   UTF-8 are an error ([`PropertyError::NotUtf8`]).
//! - `+` is a literal plus, not a space. Any other character that arrives
//!   unencoded (`$`, `/`, non-ASCII, …) is taken as is.
//! - Names are matched against the system property names **after** decoding
//!   and case-sensitively: `%24.mid` and `$.mid` are both the message id,
//!   `$.MID` is an application property.
//! - A system property given twice ([`PropertyError::DuplicateSystemProperty`])
//!   or without a value (a lone `$.mid`, [`PropertyError::MissingValue`]) is an
//!   error; `$.mid=` is an empty message id. `iothub-ack` must be one of
//!   `none`, `positive`, `negative`, `full` (lowercase,
//!   [`PropertyError::InvalidAck`]).
//! - Every other name, including unknown `$.xyz` names, `iothub-operation`,
//!   `iothub-MessageType` and `mqtt-retain`, is an application property. An
//!   application name may repeat; all pairs are kept, in order.
//!
//! These rules make decoding undo encoding: for every [`MessageProperties`]
//! value `p`, `decode(&p.to_bag()) == Ok(p)`. The other direction holds up
//! to spelling only: a bag that decodes re-encodes in the canonical form
//! (system properties first, `%24` for `$`, uppercase hex).

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ack {
    /// `none`: no feedback.
    None,
    /// `positive`: feedback when the message is completed.
    Positive,
    /// `negative`: feedback when the message expires or is rejected.
    Negative,
    /// `full`: both positive and negative feedback.
    Full,
}

impl Ack {
    /// The value on the wire: `none`, `positive`, `negative` or `full`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Ack::None => "none",
            Ack::Positive => "positive",
            Ack::Negative => "negative",
            Ack::Full => "full",
        }
    }

    /// Parses a wire value (exact, lowercase); `None` for anything else.
    pub fn from_wire(value: &str) -> Option<Self> {
        Some(match value {
            "none" => Ack::None,
            "positive" => Ack::Positive,
            "negative" => Ack::Negative,
            "full" => Ack::Full,
            _ => return None,
        })
    }
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which half of a pair a [`PropertyError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairPart {
    /// The name, before the first `=`.
    Name,
    /// The value, after the first `=`.
    Value,
}

impl fmt::Display for PairPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PairPart::Name => "name",
            PairPart::Value => "value",
        })
    }
}

/// A property bag that does not decode. `index` is the 0-based position of
/// the offending pair in the bag (pairs are separated by `&`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PropertyError {
    /// An empty pair: two `&` in a row, or a leading or trailing `&`.
    EmptyPair {
        /// Position of the pair.
        index: usize,
    },
    /// A pair whose name is empty (`=value`).
    EmptyName {
        /// Position of the pair.
        index: usize,
    },
    /// A `%` not followed by two hex digits.
    InvalidPercentEncoding {
        /// Position of the pair.
        index: usize,
        /// Whether the name or the value is at fault.
        part: PairPart,
    },
    /// The percent-decoded bytes are not UTF-8.
    NotUtf8 {
        /// Position of the pair.
        index: usize,
        /// Whether the name or the value is at fault.
        part: PairPart,
    },
    /// A system property appears a second time.
    DuplicateSystemProperty {
        /// Position of the second occurrence.
        index: usize,
        /// The property.
        property: SystemProperty,
    },
    /// A system property without a value (a lone name, no `=`).
    MissingValue {
        /// Position of the pair.
        index: usize,
        /// The property.
        property: SystemProperty,
    },
    /// `iothub-ack` with a value other than `none`, `positive`, `negative`
    /// or `full`.
    InvalidAck {
        /// Position of the pair.
        index: usize,
    },
}

impl PropertyError {
    /// The 0-based position of the offending pair in the bag.
    pub fn index(&self) -> usize {
        match *self {
            PropertyError::EmptyPair { index }
            | PropertyError::EmptyName { index }
            | PropertyError::InvalidPercentEncoding { index, .. }
            | PropertyError::NotUtf8 { index, .. }
            | PropertyError::DuplicateSystemProperty { index, .. }
            | PropertyError::MissingValue { index, .. }
            | PropertyError::InvalidAck { index } => index,
        }
    }
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyError::EmptyPair { index } => {
                write!(f, "property pair {index} is empty (`&&`, or `&` at an end)")
            }
            PropertyError::EmptyName { index } => {
                write!(f, "property pair {index} has an empty name")
            }
            PropertyError::InvalidPercentEncoding { index, part } => write!(
                f,
                "property pair {index}: the {part} has a `%` not followed by two hex digits"
            ),
            PropertyError::NotUtf8 { index, part } => write!(
                f,
                "property pair {index}: the percent-decoded {part} is not UTF-8"
            ),
            PropertyError::DuplicateSystemProperty { index, property } => write!(
                f,
                "property pair {index}: system property `{property}` appears twice"
            ),
            PropertyError::MissingValue { index, property } => write!(
                f,
                "property pair {index}: system property `{property}` has no value"
            ),
            PropertyError::InvalidAck { index } => write!(
                f,
                "property pair {index}: `iothub-ack` must be none, positive, negative or full"
            ),
        }
    }
}

impl core::error::Error for PropertyError {}

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
    /// The decoded name; never empty.
    pub name: Cow<'a, str>,
    /// The decoded value: `None` for a lone `name`, `Some("")` for `name=`.
    pub value: Option<Cow<'a, str>>,
}

/// Iterator over the decoded pairs of a bag; see [`pairs`].
///
/// After yielding an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    rest: Option<&'a str>,
    index: usize,
}

/// Splits and percent-decodes a bag into its pairs, in order, without
/// interpreting names (no system properties, no duplicate checks).
///
/// Applies the structural and encoding rules of the [module docs](self): an
/// empty bag yields nothing; an empty pair, an empty name, a bad `%` sequence
/// or non-UTF-8 bytes yield an error, after which the iterator ends.
pub fn pairs(bag: &str) -> Pairs<'_> {
    Pairs {
        rest: if bag.is_empty() { None } else { Some(bag) },
        index: 0,
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<RawPair<'a>, PropertyError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let (pair, tail) = match rest.split_once('&') {
            Some((pair, tail)) => (pair, Some(tail)),
            None => (rest, None),
        };
        self.rest = tail;
        let index = self.index;
        self.index = self.index.saturating_add(1);
        let item = decode_pair(pair, index);
        if item.is_err() {
            self.rest = None;
        }
        Some(item)
    }
}

impl FusedIterator for Pairs<'_> {}

fn decode_pair(pair: &str, index: usize) -> Result<RawPair<'_>, PropertyError> {
    if pair.is_empty() {
        return Err(PropertyError::EmptyPair { index });
    }
    let (name, value) = match pair.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (pair, None),
    };
    if name.is_empty() {
        return Err(PropertyError::EmptyName { index });
    }
    let name = percent_decode(name, index, PairPart::Name)?;
    if name.is_empty() {
        // Cannot happen (a non-empty input never decodes to nothing), but
        // keep the invariant explicit.
        return Err(PropertyError::EmptyName { index });
    }
    let value = match value {
        Some(v) => Some(percent_decode(v, index, PairPart::Value)?),
        None => None,
    };
    Ok(RawPair { name, value })
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding: every `%` must start a `%XY` hex escape, and
/// the result must be UTF-8. `+` stays a plus.
fn percent_decode(s: &str, index: usize, part: PairPart) -> Result<Cow<'_, str>, PropertyError> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(hex_value);
            let lo = bytes.next().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(PropertyError::InvalidPercentEncoding { index, part }),
            }
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PropertyError::NotUtf8 { index, part })
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
/// assert_eq!(MessageProperties::decode(&p.to_bag())?, p);
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
    /// Application properties in order; names are never empty and never a
    /// system property name.
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
            SystemProperty::Ack => self.ack.map(Ack::as_str),
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

    /// Decodes a bag; see the [module docs](self) for the rules.
    pub fn decode(bag: &str) -> Result<Self, PropertyError> {
        let mut props = Self::new();
        for (index, pair) in pairs(bag).enumerate() {
            let RawPair { name, value } = pair?;
            let Some(property) = SystemProperty::from_name(&name) else {
                props
                    .application
                    .push((name.into_owned(), value.map(Cow::into_owned)));
                continue;
            };
            let Some(value) = value else {
                return Err(PropertyError::MissingValue { index, property });
            };
            let duplicate = PropertyError::DuplicateSystemProperty { index, property };
            match props.string_field_mut(property) {
                Some(field) => {
                    if field.is_some() {
                        return Err(duplicate);
                    }
                    *field = Some(value.into_owned());
                }
                None => {
                    // The only non-string system property: `iothub-ack`.
                    if props.ack.is_some() {
                        return Err(duplicate);
                    }
                    props.ack =
                        Some(Ack::from_wire(&value).ok_or(PropertyError::InvalidAck { index })?);
                }
            }
        }
        Ok(props)
    }
}

/// Writes the encoded bag, as [`MessageProperties::encode`] does.
impl fmt::Display for MessageProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_bag(f)
    }
}

impl core::str::FromStr for MessageProperties {
    type Err = PropertyError;

    fn from_str(bag: &str) -> Result<Self, PropertyError> {
        Self::decode(bag)
    }
}

/// Decodes a property bag into [`MessageProperties`]; the same as
/// [`MessageProperties::decode`]. Never panics, whatever the input.
pub fn decode(bag: &str) -> Result<MessageProperties, PropertyError> {
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
        let p = decode("").unwrap();
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
        assert_eq!(decode(&bag).unwrap(), p);
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
        let d = decode("a&b=&c=x").unwrap();
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
        let p = decode(bag).unwrap();
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
                let p = decode(&alloc::format!("{name}={value}")).unwrap();
                assert_eq!(p.system(prop), Some(value), "{name}");
                assert!(p.application().is_empty());
            }
        }
    }

    #[test]
    fn other_names_are_application_properties() {
        let bag =
            "%24.xyz=1&iothub-operation=op&iothub-MessageType=Will&mqtt-retain=true&%24.MID=x";
        let p = decode(bag).unwrap();
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
        let p = decode("a+b=c+d&e=f=g").unwrap();
        assert_eq!(p.get_application("a+b"), Some(Some("c+d")));
        assert_eq!(p.get_application("e"), Some(Some("f=g")));
        // Encoding escapes both again.
        assert_eq!(p.to_bag(), "a%2Bb=c%2Bd&e=f%3Dg");
    }

    #[test]
    fn lenient_about_unencoded_characters() {
        let p = decode("$.to=/devices/d&k=é ü").unwrap();
        assert_eq!(p.to.as_deref(), Some("/devices/d"));
        assert_eq!(p.get_application("k"), Some(Some("é ü")));
    }

    #[test]
    fn lowercase_hex_is_accepted() {
        let p = decode("k=%2f%2F").unwrap();
        assert_eq!(p.get_application("k"), Some(Some("//")));
    }

    #[test]
    fn invalid_percent_sequences() {
        for (bag, index, part) in [
            ("a=%", 0, PairPart::Value),
            ("a=%4", 0, PairPart::Value),
            ("a=%zz", 0, PairPart::Value),
            ("a=1&b%=2", 1, PairPart::Name),
            ("a=%4g", 0, PairPart::Value),
            ("a=%é", 0, PairPart::Value),
        ] {
            assert_eq!(
                decode(bag),
                Err(PropertyError::InvalidPercentEncoding { index, part }),
                "{bag}"
            );
        }
    }

    #[test]
    fn not_utf8() {
        assert_eq!(
            decode("a=%FF"),
            Err(PropertyError::NotUtf8 {
                index: 0,
                part: PairPart::Value
            })
        );
        assert_eq!(
            decode("x=1&%C3=1"),
            Err(PropertyError::NotUtf8 {
                index: 1,
                part: PairPart::Name
            })
        );
    }

    #[test]
    fn empty_pairs_and_names() {
        assert_eq!(
            decode("a=1&&b=2"),
            Err(PropertyError::EmptyPair { index: 1 })
        );
        assert_eq!(decode("&a=1"), Err(PropertyError::EmptyPair { index: 0 }));
        assert_eq!(decode("a=1&"), Err(PropertyError::EmptyPair { index: 1 }));
        assert_eq!(decode("&"), Err(PropertyError::EmptyPair { index: 0 }));
        assert_eq!(decode("=v"), Err(PropertyError::EmptyName { index: 0 }));
        assert_eq!(decode("a&="), Err(PropertyError::EmptyName { index: 1 }));
    }

    #[test]
    fn system_property_rules() {
        assert_eq!(
            decode("%24.mid=1&k&$.mid=2"),
            Err(PropertyError::DuplicateSystemProperty {
                index: 2,
                property: SystemProperty::MessageId
            })
        );
        assert_eq!(
            decode("iothub-ack=full&iothub-ack=full"),
            Err(PropertyError::DuplicateSystemProperty {
                index: 1,
                property: SystemProperty::Ack
            })
        );
        assert_eq!(
            decode("%24.cid"),
            Err(PropertyError::MissingValue {
                index: 0,
                property: SystemProperty::CorrelationId
            })
        );
        assert_eq!(
            decode("k=v&iothub-ack=FULL"),
            Err(PropertyError::InvalidAck { index: 1 })
        );
        assert_eq!(
            decode("iothub-ack="),
            Err(PropertyError::InvalidAck { index: 0 })
        );
        // An empty system value is a value.
        assert_eq!(decode("%24.mid=").unwrap().message_id.as_deref(), Some(""));
        for ack in [Ack::None, Ack::Positive, Ack::Negative, Ack::Full] {
            assert_eq!(Ack::from_wire(ack.as_str()), Some(ack));
        }
    }

    #[test]
    fn errors_display_the_pair() {
        let e = decode("a=1&%24.mid&x").unwrap_err();
        assert_eq!(e.index(), 1);
        let s = e.to_string();
        assert!(s.contains("pair 1") && s.contains("$.mid"), "{s}");
        let s = decode("a=1&b=%zz").unwrap_err().to_string();
        assert!(s.contains("pair 1") && s.contains("value"), "{s}");
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
        assert_eq!(decode(&p.to_bag()).unwrap(), p);
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
        let mut it = pairs("a=1&%24b=%2F&c");
        let first = it.next().unwrap().unwrap();
        assert!(matches!(first.name, Cow::Borrowed("a")));
        assert!(matches!(first.value, Some(Cow::Borrowed("1"))));
        let second = it.next().unwrap().unwrap();
        assert_eq!(second.name, "$b");
        assert_eq!(second.value.as_deref(), Some("/"));
        let third = it.next().unwrap().unwrap();
        assert_eq!(third.value, None);
        assert!(it.next().is_none());

        // Fused after an error.
        let mut it = pairs("a=%&b=1");
        assert!(it.next().unwrap().is_err());
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
            prop_assert_eq!(decode(&bag), Ok(p));
        }

        #[test]
        fn decode_never_panics(bag in any_string()) {
            let _ = decode(&bag);
            let _ = pairs(&bag).count();
        }

        #[test]
        fn decode_never_panics_on_bag_like_input(bag in "([a-z$.%0-9A-Fzé]{0,4}[=&]?){0,6}") {
            if let Ok(p) = decode(&bag) {
                // Whatever decodes re-encodes to something that decodes to the same.
                prop_assert_eq!(decode(&p.to_bag()), Ok(p));
            }
        }
    }
}
