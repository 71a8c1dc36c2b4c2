//! Generated bindings, one module per supported WIT version, and the
//! conversions of each version's types into the runtime's own.
//!
//! As in Zed's extension host: the newest version ([`latest`]) is the one the
//! host implements (its `smtp`, `log`, `signing` and `contacts` imports are
//! in the linker); an older version's module reuses the newest one's types
//! wherever they did not change (bindgen's `with`), so its exports return the
//! same Rust types and need no conversion. A later version that changes a
//! type gives it a conversion into the newest one in this file. wasmtime's
//! linker resolves an import of `actionhost:executor/log@0.1.0` to the
//! `0.1.3` definition (semver-compatible), so a 0.1.0 plugin gets the 0.1.3
//! host functions.
//!
//! 0.1.3 only added an import (`contacts`): a 0.1.2 component's exports are
//! exactly the 0.1.3 world's, so [`latest`]'s bindings serve both, and no
//! module of its own is generated for 0.1.2.
//!
//! Which module serves a plugin is read from the component itself: the
//! version of its `actionhost:executor/…` imports ([`WitVersion::of`]).

#![allow(missing_docs, clippy::all)]

use super::types::{AuthScheme, ExecuteError, FieldError};

/// `actionhost:executor@0.1.3`: the newest, implemented by the host. It
/// also serves 0.1.2 components, whose exports are the same.
pub mod v0_1_3 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.3",
        world: "actionhost:executor/executor",
        imports: {
            "actionhost:executor/smtp.send": async,
            "actionhost:executor/contacts.add-note": async,
            default: tracing,
        },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
        // For the manifest cache, which keeps `describe`'s answer on disk.
        additional_derives: [serde::Serialize, serde::Deserialize],
    });

    /// The WIT package version these bindings were generated from.
    pub const VERSION: &str = "0.1.3";
}

/// `actionhost:executor@0.1.1`, frozen: the same types as 0.1.3 (0.1.2 added
/// the `signing` import and the `reuse-policy` export, 0.1.3 the `contacts`
/// import), so only the world's exports are generated anew.
pub mod v0_1_1 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.1",
        world: "actionhost:executor/executor",
        imports: { default: tracing },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "actionhost:executor/types": super::v0_1_3::actionhost::executor::types,
            "actionhost:executor/smtp": super::v0_1_3::actionhost::executor::smtp,
            "actionhost:executor/log": super::v0_1_3::actionhost::executor::log,
        },
    });

    /// The WIT package version these bindings were generated from.
    pub const VERSION: &str = "0.1.1";
}

/// `actionhost:executor@0.1.0`, frozen: the same types as 0.1.3 (0.1.1 only
/// added `log.has-room`), so only the world's exports are generated anew.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "actionhost:executor/executor",
        imports: { default: tracing },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "actionhost:executor/types": super::v0_1_3::actionhost::executor::types,
            "actionhost:executor/smtp": super::v0_1_3::actionhost::executor::smtp,
        },
    });

    /// The WIT package version these bindings were generated from.
    pub const VERSION: &str = "0.1.0";
}

/// `actionhost:model@0.1.0`: the world of language-model provider
/// plugins. It imports the executor's `log` (the newest's definition, as
/// any executor plugin does) and exports `describe` and `complete`.
pub mod model_v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/model/since_v0.1.0",
        world: "actionhost:model/model",
        imports: { default: tracing },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "actionhost:executor": super::v0_1_3::actionhost::executor,
        },
        // For the manifest cache, which keeps `describe`'s answer on disk.
        additional_derives: [serde::Serialize, serde::Deserialize],
    });

    /// The WIT package version these bindings were generated from.
    pub const VERSION: &str = "0.1.0";
}

/// Whether a component is a model provider: it exports `complete`.
pub fn is_model(component: &wasmtime::component::Component, engine: &wasmtime::Engine) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name == "complete")
}

/// The version the host implements.
pub use v0_1_3 as latest;

/// 0.1.2, served by the 0.1.3 bindings.
const V0_1_2: &str = "0.1.2";

/// The WIT versions of `actionhost:executor` this host loads, oldest first.
pub const SUPPORTED: &[&str] = &[v0_1_0::VERSION, v0_1_1::VERSION, V0_1_2, v0_1_3::VERSION];

/// The contract version a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitVersion {
    V0_1_0,
    V0_1_1,
    V0_1_2,
    V0_1_3,
}

impl WitVersion {
    /// The version as written in WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_1_0 => v0_1_0::VERSION,
            Self::V0_1_1 => v0_1_1::VERSION,
            Self::V0_1_2 => V0_1_2,
            Self::V0_1_3 => v0_1_3::VERSION,
        }
    }

    /// Reads the version from the component's `actionhost:executor/…`
    /// imports: `Ok(None)` when it imports none (the link check then says
    /// what is missing), `Err(found)` for a version this host does not know.
    pub fn of(
        component: &wasmtime::component::Component,
        engine: &wasmtime::Engine,
    ) -> Result<Option<Self>, String> {
        let ty = component.component_type();
        let mut found: Option<String> = None;
        for (name, _) in ty.imports(engine) {
            let Some(rest) = name.strip_prefix("actionhost:executor/") else {
                continue;
            };
            let version = rest.split_once('@').map_or("", |(_, v)| v);
            match &found {
                None => found = Some(version.to_owned()),
                Some(seen) if seen != version => {
                    return Err(format!("{seen} and {version} (mixed)"));
                }
                Some(_) => {}
            }
        }
        match found.as_deref() {
            None => Ok(None),
            Some(v) if v == v0_1_0::VERSION => Ok(Some(Self::V0_1_0)),
            Some(v) if v == v0_1_1::VERSION => Ok(Some(Self::V0_1_1)),
            Some(v) if v == V0_1_2 => Ok(Some(Self::V0_1_2)),
            Some(v) if v == v0_1_3::VERSION => Ok(Some(Self::V0_1_3)),
            Some("") => Err("an unversioned package".into()),
            Some(other) => Err(other.to_owned()),
        }
    }
}

use v0_1_3::actionhost::executor::types as latest_types;

impl From<latest_types::FieldError> for FieldError {
    fn from(error: latest_types::FieldError) -> Self {
        Self {
            path: error.path,
            message: error.message,
        }
    }
}

impl From<latest_types::AuthScheme> for AuthScheme {
    fn from(scheme: latest_types::AuthScheme) -> Self {
        use latest_types::AuthScheme as Wit;
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

impl From<latest_types::ExecuteError> for ExecuteError {
    fn from(error: latest_types::ExecuteError) -> Self {
        use latest_types::ExecuteError as Wit;
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
