//! Generated bindings, one module per supported WIT version, and the
//! conversions of each version's types into the runtime's own (the latest).
//!
//! When `actionhost:executor@0.2.0` arrives, it gets a `v0_2_0` module beside
//! `v0_1_0`, and `v0_1_0`'s types convert into the runtime types the same way
//! as here, so the rest of the host never sees which version a plugin speaks.

#![allow(missing_docs, clippy::all)]

use super::types::{AuthScheme, ExecuteError, FieldError};

/// `actionhost:executor@0.1.0`.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "actionhost:executor/executor",
        imports: {
            "actionhost:executor/smtp.send": async,
            default: tracing,
        },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });

    /// The WIT package version these bindings were generated from.
    pub const VERSION: &str = "0.1.0";
}

use v0_1_0::actionhost::executor::types as v0_1_0_types;

impl From<v0_1_0_types::FieldError> for FieldError {
    fn from(error: v0_1_0_types::FieldError) -> Self {
        Self {
            path: error.path,
            message: error.message,
        }
    }
}

impl From<v0_1_0_types::AuthScheme> for AuthScheme {
    fn from(scheme: v0_1_0_types::AuthScheme) -> Self {
        use v0_1_0_types::AuthScheme as Wit;
        match scheme {
            Wit::None => Self::None,
            Wit::Bearer => Self::Bearer,
            Wit::ApiKey => Self::ApiKey,
            Wit::Basic => Self::Basic,
            Wit::Oauth2 => Self::OAuth2,
            Wit::Smtp => Self::Smtp,
        }
    }
}

impl From<v0_1_0_types::ExecuteError> for ExecuteError {
    fn from(error: v0_1_0_types::ExecuteError) -> Self {
        use v0_1_0_types::ExecuteError as Wit;
        match error {
            Wit::InvalidInput(errors) => {
                Self::InvalidInput(errors.into_iter().map(Into::into).collect())
            }
            Wit::Unauthorized(message) => Self::Unauthorized(message),
            Wit::RateLimited(limit) => Self::RateLimited {
                message: limit.message,
                retry_after: limit.retry_after_ms.map(std::time::Duration::from_millis),
            },
            Wit::Transient(message) => Self::Transient(message),
            Wit::Permanent(message) => Self::Permanent(message),
        }
    }
}
