//! Sending email through the connected account's SMTP server.
//!
//! Build the RFC 5322 message yourself (the `mail-builder` crate works well
//! in a component) and hand it over with the envelope; the host connects,
//! authenticates with the account's credentials and relays it.

use crate::bindings::actionhost::executor::smtp as wit;
use crate::error::ExecuteError;

/// Relays `message` from `sender` to every address in `recipients` (To, Cc and
/// Bcc alike). Returns the server's final reply.
pub fn send(sender: &str, recipients: &[String], message: &[u8]) -> Result<String, ExecuteError> {
    let envelope = wit::Envelope {
        sender: sender.to_owned(),
        recipients: recipients.to_vec(),
    };
    wit::send(&envelope, message).map_err(|error| match error {
        wit::SmtpError::NotConfigured(message) => {
            ExecuteError::Permanent(format!("smtp is not configured: {message}"))
        }
        wit::SmtpError::Unauthorized(message) => ExecuteError::Unauthorized(message),
        wit::SmtpError::Transient(message) => ExecuteError::Transient(message),
        wit::SmtpError::Permanent(message) => ExecuteError::Permanent(message),
    })
}
