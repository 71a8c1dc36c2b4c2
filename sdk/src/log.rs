//! Lines in the execution's log.
//!
//! The host keeps them with the execution record and includes the last ones
//! in the report of a trap. Standard output and standard error land in the
//! same log.

use crate::bindings::actionhost::executor::log::{Level, has_room as wit_has_room, write};

/// Writes a `trace` line.
pub fn trace(message: impl AsRef<str>) {
    write(Level::Trace, message.as_ref());
}

/// Writes a `debug` line.
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message.as_ref());
}

/// Writes an `info` line.
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message.as_ref());
}

/// Writes a `warn` line.
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message.as_ref());
}

/// Writes an `error` line.
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message.as_ref());
}

/// Whether the execution's log still has room. Once the host's cap on log
/// size is reached, lines are dropped; check this before building costly
/// debug output. (WIT 0.1.1.)
pub fn has_room() -> bool {
    wit_has_room()
}
