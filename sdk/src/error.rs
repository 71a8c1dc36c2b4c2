//! The errors a plugin returns to the host.

use std::fmt;
use std::time::Duration;

#[cfg(feature = "executor")]
use crate::bindings;

/// One problem with one field of an action's params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON Pointer to the field, such as `/to/0`; empty for the whole params.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A problem with the field at `path` (a JSON Pointer such as `/to/0`).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[cfg(feature = "executor")]
impl From<FieldError> for bindings::FieldError {
    fn from(error: FieldError) -> Self {
        Self {
            path: error.path,
            message: error.message,
        }
    }
}

/// Why an execution failed. The host decides about retries from the variant,
/// so pick the one that says what a retry would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteError {
    /// The params are wrong; the same params can never succeed.
    InvalidInput(Vec<FieldError>),
    /// The provider rejected the account's credentials.
    Unauthorized(String),
    /// The provider asked to slow down; the host retries after `retry_after`
    /// when given, or with its own backoff.
    RateLimited {
        /// What the provider said.
        message: String,
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// A failure that may pass; the host retries with backoff.
    Transient(String),
    /// A failure that will not pass; the host does not retry.
    Permanent(String),
}

impl ExecuteError {
    /// One invalid field.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidInput(vec![FieldError::new(path, message)])
    }
}

impl fmt::Display for ExecuteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(errors) => {
                write!(f, "invalid input:")?;
                for error in errors {
                    write!(f, " {}: {};", error.path, error.message)?;
                }
                Ok(())
            }
            Self::Unauthorized(message) => write!(f, "unauthorized: {message}"),
            Self::RateLimited {
                message,
                retry_after,
            } => {
                write!(f, "rate limited: {message}")?;
                if let Some(after) = retry_after {
                    write!(f, " (retry after {after:?})")?;
                }
                Ok(())
            }
            Self::Transient(message) => write!(f, "transient failure: {message}"),
            Self::Permanent(message) => write!(f, "permanent failure: {message}"),
        }
    }
}

impl std::error::Error for ExecuteError {}

#[cfg(feature = "executor")]
impl From<ExecuteError> for bindings::ExecuteError {
    fn from(error: ExecuteError) -> Self {
        match error {
            ExecuteError::InvalidInput(errors) => {
                Self::InvalidInput(errors.into_iter().map(Into::into).collect())
            }
            ExecuteError::Unauthorized(message) => Self::Unauthorized(message),
            ExecuteError::RateLimited {
                message,
                retry_after,
            } => Self::RateLimited(bindings::RateLimit {
                message,
                retry_after_ms: retry_after
                    .map(|after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            }),
            ExecuteError::Transient(message) => Self::Transient(message),
            ExecuteError::Permanent(message) => Self::Permanent(message),
        }
    }
}

impl From<serde_json::Error> for ExecuteError {
    /// A JSON body that could not be built or read: the provider answered
    /// something unexpected, which a retry will not change.
    fn from(error: serde_json::Error) -> Self {
        Self::Permanent(format!("unexpected JSON: {error}"))
    }
}
