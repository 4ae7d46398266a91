//! Device and module identities with validated ids.

use alloc::string::String;
use core::fmt;

use crate::text::impl_str_newtype;

/// The longest device or module id the hub accepts, in characters.
pub const MAX_ID_LEN: usize = 128;

/// Which kind of id an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A device id.
    Device,
    /// A module id.
    Module,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Device => "device id",
            IdKind::Module => "module id",
        })
    }
}

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdErrorReason {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] characters.
    TooLong {
        /// The length that was given, in bytes.
        len: usize,
    },
    /// The id holds a character outside the hub's set (ASCII letters, digits
    /// and `- . % _ * ? ! ( ) , : = @ $ '`).
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the id.
        index: usize,
    },
}

/// A device or module id that the hub would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdError {
    /// Which id was refused.
    pub kind: IdKind,
    /// Why it was refused.
    pub reason: IdErrorReason,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            IdErrorReason::Empty => write!(f, "{} is empty", self.kind),
            IdErrorReason::TooLong { len } => write!(
                f,
                "{} is {len} characters long; the hub allows at most {MAX_ID_LEN}",
                self.kind
            ),
            IdErrorReason::InvalidChar { ch, index } => write!(
                f,
                "{} has the character {ch:?} at byte {index}; allowed are ASCII letters, digits and - . % _ * ? ! ( ) , : = @ $ '",
                self.kind
            ),
        }
    }
}

impl core::error::Error for IdError {}

/// Whether `b` may appear in a device or module id.
const fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'%'
                | b'_'
                | b'*'
                | b'?'
                | b'!'
                | b'('
                | b')'
                | b','
                | b':'
                | b'='
                | b'@'
                | b'$'
                | b'\''
        )
}

fn validate(kind: IdKind, s: &str) -> Result<(), IdError> {
    let err = |reason| IdError { kind, reason };
    if s.is_empty() {
        return Err(err(IdErrorReason::Empty));
    }
    if let Some((index, ch)) = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !is_id_byte(c as u8))
    {
        return Err(err(IdErrorReason::InvalidChar { ch, index }));
    }
    if s.len() > MAX_ID_LEN {
        return Err(err(IdErrorReason::TooLong { len: s.len() }));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `id` against the hub's rules (1 to 128 characters of
            /// ASCII letters, digits and `- . % _ * ? ! ( ) , : = @ $ '`).
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($kind, &id)?;
                Ok(Self(id))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl_str_newtype!($name, IdError);
    };
}

id_type!(
    /// A validated device id.
    DeviceId,
    IdKind::Device
);
id_type!(
    /// A validated module id (IoT Edge modules and module identities).
    ModuleId,
    IdKind::Module
);

/// Who is connecting: a device, or a module of a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    device_id: DeviceId,
    module_id: Option<ModuleId>,
}

impl Identity {
    /// A device identity.
    pub fn device(device_id: DeviceId) -> Self {
        Self {
            device_id,
            module_id: None,
        }
    }

    /// A module identity.
    pub fn module(device_id: DeviceId, module_id: ModuleId) -> Self {
        Self {
            device_id,
            module_id: Some(module_id),
        }
    }

    /// Validates both ids and builds the identity: a module identity when
    /// `module_id` is given.
    pub fn parse(device_id: &str, module_id: Option<&str>) -> Result<Self, IdError> {
        Ok(Self {
            device_id: DeviceId::new(device_id)?,
            module_id: module_id.map(ModuleId::new).transpose()?,
        })
    }

    /// The device id.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The module id, for a module identity.
    pub fn module_id(&self) -> Option<&ModuleId> {
        self.module_id.as_ref()
    }

    /// The MQTT client id: `{deviceId}` or `{deviceId}/{moduleId}`.
    pub fn client_id(&self) -> String {
        let mut s = String::from(self.device_id.as_str());
        if let Some(m) = &self.module_id {
            s.push('/');
            s.push_str(m.as_str());
        }
        s
    }

    /// The SAS resource URI (not yet URL-encoded):
    /// `{host}/devices/{deviceId}` or `{host}/devices/{deviceId}/modules/{moduleId}`.
    pub fn resource_uri(&self, host_name: &str) -> String {
        let mut s = String::with_capacity(host_name.len() + 64);
        s.push_str(host_name);
        s.push_str("/devices/");
        s.push_str(self.device_id.as_str());
        if let Some(m) = &self.module_id {
            s.push_str("/modules/");
            s.push_str(m.as_str());
        }
        s
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.device_id.as_str())?;
        if let Some(m) = &self.module_id {
            write!(f, "/{m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn accepts_every_allowed_character() {
        let id = "aZ09-.%_*?!(),:=@$'";
        assert_eq!(DeviceId::new(id).unwrap().as_str(), id);
    }

    #[test]
    fn refuses_empty_long_and_bad_chars() {
        assert_eq!(DeviceId::new("").unwrap_err().reason, IdErrorReason::Empty);
        let long = "a".repeat(129);
        assert_eq!(
            DeviceId::new(long).unwrap_err().reason,
            IdErrorReason::TooLong { len: 129 }
        );
        assert!(DeviceId::new("a".repeat(128)).is_ok());
        for bad in ["a/b", "a#", "a b", "é", "a+b", "a&b", "a\0"] {
            let e = ModuleId::new(bad).unwrap_err();
            assert_eq!(e.kind, IdKind::Module);
            assert!(
                matches!(e.reason, IdErrorReason::InvalidChar { .. }),
                "{bad}"
            );
        }
        let e = DeviceId::new("ab/c").unwrap_err();
        assert_eq!(e.reason, IdErrorReason::InvalidChar { ch: '/', index: 2 });
        assert!(e.to_string().contains("device id"));
    }

    #[test]
    fn client_id_and_resource_uri() {
        let d = Identity::parse("dev1", None).unwrap();
        assert_eq!(d.client_id(), "dev1");
        assert_eq!(d.resource_uri("h.example"), "h.example/devices/dev1");
        let m = Identity::parse("dev1", Some("mod1")).unwrap();
        assert_eq!(m.client_id(), "dev1/mod1");
        assert_eq!(
            m.resource_uri("h.example"),
            "h.example/devices/dev1/modules/mod1"
        );
        assert_eq!(m.to_string(), "dev1/mod1");
    }
}
