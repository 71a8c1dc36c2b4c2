//! Bindings generated from the WIT worlds: `actionhost:executor/executor`
//! (feature `executor`, the default) and `actionhost:model/model` (feature
//! `model`, for language-model provider plugins).
//!
//! Plugin authors do not use this module: [`crate::plugin!`],
//! `model_plugin!` and the typed wrappers of this crate stand between them
//! and the raw bindings. A component carries one world, so a plugin crate
//! enables one feature; `wasi:http` and `log` are at the same paths
//! (`bindings::wasi`, `bindings::actionhost::executor::log`) either way, so
//! the HTTP client and the log serve both.

#![allow(missing_docs, unsafe_code, clippy::all)]

#[cfg(feature = "executor")]
wit_bindgen::generate!({
    path: "../wit/since_v0.1.3",
    world: "actionhost:executor/executor",
    pub_export_macro: true,
    export_macro_name: "__export_executor",
    default_bindings_module: "::actionhost_sdk::bindings",
    runtime_path: "::actionhost_sdk::__private::wit_bindgen::rt",
    generate_all,
});

#[cfg(feature = "executor")]
pub use self::actionhost::executor::types::{
    Account, ActionType, AuthScheme, OutboundHost, RateLimit,
};

/// The model world alone: its `wasi` and `actionhost` modules stand where
/// the executor world's would.
#[cfg(all(feature = "model", not(feature = "executor")))]
pub use self::model::{actionhost, wasi};

/// The model world.
#[cfg(feature = "model")]
pub mod model {
    #[cfg(not(feature = "executor"))]
    wit_bindgen::generate!({
        path: "../wit/model/since_v0.1.0",
        world: "actionhost:model/model",
        pub_export_macro: true,
        export_macro_name: "__export_model",
        default_bindings_module: "::actionhost_sdk::bindings::model",
        runtime_path: "::actionhost_sdk::__private::wit_bindgen::rt",
        generate_all,
    });

    // Both features on happens only in a host-side build of the whole
    // workspace, never in a component: the interfaces the worlds share are
    // the executor's.
    #[cfg(feature = "executor")]
    wit_bindgen::generate!({
        path: "../wit/model/since_v0.1.0",
        world: "actionhost:model/model",
        pub_export_macro: true,
        export_macro_name: "__export_model",
        default_bindings_module: "::actionhost_sdk::bindings::model",
        runtime_path: "::actionhost_sdk::__private::wit_bindgen::rt",
        with: {
            "wasi:http/types@0.2.12": crate::bindings::wasi::http::types,
            "wasi:http/outgoing-handler@0.2.12": crate::bindings::wasi::http::outgoing_handler,
            "wasi:io/error@0.2.12": crate::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": crate::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": crate::bindings::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": crate::bindings::wasi::clocks::monotonic_clock,
            "actionhost:executor/log@0.1.3": crate::bindings::actionhost::executor::log,
        },
        generate_all,
    });

    pub use self::actionhost::model::types;
}
