//! [`EmulatorError`]: what an emulator call can fail with.

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No such device or module.
    NotFound(String),
    /// The device is not connected, or not subscribed to what the
    /// operation needs (direct methods: `$iothub/methods/POST/#`).
    NotConnected,
    /// A direct method got no answer within its response timeout.
    Timeout,
    /// The request is malformed or not allowed.
    BadRequest(String),
    /// A message or twin section over its limit.
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The device already has this many C2D messages pending.
    QueueFull {
        /// The limit (50).
        max: usize,
    },
    /// The emulator is shutting down.
    Shutdown,
    /// A configuration the emulator refuses (a non-loopback address, …).
    Config(String),
    /// Certificates or keys could not be made or read.
    Tls(String),
    /// The database failed.
    Storage(String),
    /// A socket or file operation failed.
    Io(std::io::Error),
}

impl std::fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmulatorError::NotFound(m) => write!(f, "not found: {m}"),
            EmulatorError::NotConnected => {
                f.write_str("the device is not connected or not subscribed")
            }
            EmulatorError::Timeout => f.write_str("the device did not answer in time"),
            EmulatorError::BadRequest(m) => write!(f, "bad request: {m}"),
            EmulatorError::TooLarge { size, max } => {
                write!(f, "{size} bytes is over the limit of {max}")
            }
            EmulatorError::QueueFull { max } => write!(f, "{max} messages are already pending"),
            EmulatorError::Shutdown => f.write_str("the emulator is shutting down"),
            EmulatorError::Config(m) => write!(f, "configuration: {m}"),
            EmulatorError::Tls(m) => write!(f, "TLS: {m}"),
            EmulatorError::Storage(m) => write!(f, "storage: {m}"),
            EmulatorError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl std::error::Error for EmulatorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EmulatorError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for EmulatorError {
    fn from(e: std::io::Error) -> EmulatorError {
        EmulatorError::Io(e)
    }
}
