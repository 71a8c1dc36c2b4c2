//! Signatures made with the connected account's signing secret (WIT 0.1.2).
//!
//! The secret stays in the host: the plugin hands over the bytes to sign and
//! gets the MAC back. The account must come from an auth config of type
//! `signing_secret`.

use crate::bindings::actionhost::executor::signing as wit;
use crate::error::ExecuteError;

/// HMAC-SHA256 of `message` under the account's signing secret (32 bytes).
///
/// Fails with [`ExecuteError::Permanent`] when the execution's account has
/// no signing secret: the account is of the wrong kind, which no retry (and
/// no expiry of the account) mends.
pub fn hmac_sha256(message: &[u8]) -> Result<Vec<u8>, ExecuteError> {
    wit::hmac_sha256(message).map_err(|error| match error {
        wit::SigningError::NotConfigured(message) => ExecuteError::Permanent(message),
    })
}
