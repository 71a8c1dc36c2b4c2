//! Write [actionhost](https://example.invalid/actionhost) executor plugins in Rust.
//!
//! A plugin is a WebAssembly component that carries out one or more action
//! types. With this crate you write one [`Action`] implementation per action
//! type, with typed params whose JSON Schema is derived for you, and register
//! them with one [`plugin!`] invocation:
//!
//! ```no_run
//! use actionhost_sdk::{Action, Context, ExecuteError, JsonSchema, http};
//! use serde::Deserialize;
//!
//! /// Params of `post_note`.
//! #[derive(Deserialize, JsonSchema)]
//! struct NoteParams {
//!     /// The note's text.
//!     text: String,
//! }
//!
//! struct PostNote;
//!
//! impl Action for PostNote {
//!     const NAME: &'static str = "post_note";
//!     const TITLE: &'static str = "Post a note";
//!     type Params = NoteParams;
//!     type Output = serde_json::Value;
//!
//!     fn execute(params: NoteParams, _ctx: &Context) -> Result<serde_json::Value, ExecuteError> {
//!         let response = http::Request::post("https://notes.example.com/v1/notes")
//!             .json(&serde_json::json!({ "text": params.text }))?
//!             .send()?
//!             .error_for_status()?;
//!         Ok(response.json()?)
//!     }
//! }
//!
//! actionhost_sdk::plugin! {
//!     name: "notes",
//!     description: "Posts notes",
//!     outbound_hosts: ["https://notes.example.com"],
//!     actions: [PostNote],
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the `.wasm`
//! file in `target/wasm32-wasip2/release/` is the component the host loads.
//!
//! # How the pieces fit
//!
//! - [`plugin!`] implements the WIT world `actionhost:executor/executor`
//!   (`describe`, `validate`, `execute`) by dispatching on the action type's
//!   name to your [`Action`] implementations.
//! - [`http`] is a blocking HTTP client over `wasi:http`. The host checks each
//!   request against the plugin's allow-list and adds the connected account's
//!   credentials on the way out: your code never sees a secret.
//! - [`smtp`] hands a finished RFC 5322 message to the host, which relays it
//!   through the account's SMTP server.
//! - [`log`] writes into the execution's log, which the host keeps with the
//!   execution record.
//! - [`signing`] signs bytes with the account's signing secret, which stays
//!   in the host.
//! - [`contacts`] hands over the contact an action addresses (for types
//!   whose params have a `contact_id`) and the identity it acts as, and
//!   attaches notes to the contact.

#![deny(missing_docs)]

extern crate self as actionhost_sdk;

#[cfg(feature = "executor")]
mod action;
#[doc(hidden)]
pub mod bindings;
#[cfg(feature = "executor")]
pub mod contacts;
#[cfg(feature = "executor")]
mod context;
pub mod email;
mod error;
pub mod http;
pub mod log;
#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "executor")]
pub mod signing;
#[cfg(feature = "executor")]
pub mod smtp;

#[cfg(feature = "executor")]
pub use action::{Action, AuthScheme};
#[cfg(feature = "executor")]
pub use context::{Account, Context};
pub use error::{ExecuteError, FieldError};
pub use schemars::JsonSchema;

/// The version of the WIT contract (`actionhost:executor`) this SDK builds
/// plugins against.
pub const WIT_VERSION: &str = "0.1.3";

/// Implementation details of [`plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "executor")]
    pub use crate::action::{describe, describe_action, execute, unknown_action_type, validate};
    pub use wit_bindgen;
}

/// Registers a plugin's actions and exports the component's entry points.
///
/// Write it once, at the root of the plugin crate:
///
/// ```ignore
/// actionhost_sdk::plugin! {
///     name: "crm-sync",                          // kebab-case plugin name
///     version: "1.0.0",                          // optional, defaults to CARGO_PKG_VERSION
///     description: "Upserts contacts into HubSpot",
///     outbound_hosts: ["https://api.hubapi.com"], // optional, scheme://host[:port]
///     reuse: { max_calls: 1000, max_idle: 0 },   // optional: opt into instance reuse
///     actions: [UpsertContacts],                 // types implementing `Action`
/// }
/// ```
///
/// `reuse` lets the host keep an instance between executions of the same
/// connected account (globals survive); leave it out for a fresh instance
/// per execution. A Rust plugin instantiates in microseconds, so it rarely
/// needs reuse.
#[macro_export]
macro_rules! plugin {
    (
        name: $name:expr,
        $(version: $version:expr,)?
        description: $description:expr,
        $(outbound_hosts: [$($host:expr),* $(,)?],)?
        $(reuse: { max_calls: $max_calls:expr, max_idle: $max_idle:expr $(,)? },)?
        actions: [$($action:ty),+ $(,)?] $(,)?
    ) => {
        #[doc(hidden)]
        struct __ActionhostPlugin;

        impl $crate::bindings::Guest for __ActionhostPlugin {
            fn describe() -> $crate::bindings::Manifest {
                $crate::__private::describe(
                    $name,
                    $crate::plugin!(@version $($version)?),
                    $description,
                    &[$($($host),*)?],
                    ::std::vec![$($crate::__private::describe_action::<$action>()),+],
                )
            }

            fn reuse_policy() -> ::std::option::Option<$crate::bindings::ReusePolicy> {
                $crate::plugin!(@reuse $($max_calls, $max_idle)?)
            }

            fn validate(
                action_type: ::std::string::String,
                params: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::vec::Vec<$crate::bindings::FieldError>> {
                $(
                    if action_type == <$action as $crate::Action>::NAME {
                        return $crate::__private::validate::<$action>(&params);
                    }
                )+
                ::std::result::Result::Err(::std::vec![$crate::__private::unknown_action_type(
                    &action_type,
                    &[$(<$action as $crate::Action>::NAME),+],
                )])
            }

            fn execute(
                request: $crate::bindings::ExecuteRequest,
            ) -> ::std::result::Result<::std::string::String, $crate::bindings::ExecuteError> {
                $(
                    if request.action_type == <$action as $crate::Action>::NAME {
                        return $crate::__private::execute::<$action>(request);
                    }
                )+
                let known = [$(<$action as $crate::Action>::NAME),+];
                ::std::result::Result::Err($crate::bindings::ExecuteError::InvalidInput(
                    ::std::vec![$crate::__private::unknown_action_type(&request.action_type, &known)],
                ))
            }
        }

        $crate::bindings::__export_executor!(__ActionhostPlugin with_types_in $crate::bindings);
    };
    (@version) => { ::core::env!("CARGO_PKG_VERSION") };
    (@reuse) => { ::std::option::Option::None };
    (@reuse $max_calls:expr, $max_idle:expr) => {
        ::std::option::Option::Some($crate::bindings::ReusePolicy {
            max_calls: $max_calls,
            max_idle: $max_idle,
        })
    };
    (@version $version:expr) => { $version };
}

/// The README's example plugin, compiled as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
