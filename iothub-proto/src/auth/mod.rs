//! Identities, connection strings, SAS tokens and CONNECT credentials.

mod identity;

pub use identity::{DeviceId, IdError, IdErrorReason, IdKind, Identity, MAX_ID_LEN, ModuleId};
