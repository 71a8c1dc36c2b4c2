//! Bindings generated from the WIT world `actionhost:executor/executor`.
//!
//! Plugin authors do not use this module: [`crate::plugin!`] and the typed
//! wrappers of this crate stand between them and the raw bindings.

#![allow(missing_docs, unsafe_code, clippy::all)]

wit_bindgen::generate!({
    path: "../wit/since_v0.1.3",
    world: "actionhost:executor/executor",
    pub_export_macro: true,
    export_macro_name: "__export_executor",
    default_bindings_module: "::actionhost_sdk::bindings",
    runtime_path: "::actionhost_sdk::__private::wit_bindgen::rt",
    generate_all,
});

pub use self::actionhost::executor::types::{
    Account, ActionType, AuthScheme, OutboundHost, RateLimit,
};
