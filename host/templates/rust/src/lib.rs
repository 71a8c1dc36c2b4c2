//! {{name}}: an actionhost executor plugin.
//!
//! Build:  actionhost plugin build        (writes dist/{{name}}.wasm)
//! Test:   actionhost plugin test dist/{{name}}.wasm --case tests/basic.case.json
//!
//! The contract is the WIT world in `wit/executor.wit`; docs/plugins.md of
//! actionhost explains every function, error variant and limit. Plugins in
//! the actionhost repository use the `actionhost-sdk` crate, which wraps
//! these raw bindings (typed params, an HTTP client); this skeleton uses
//! wit-bindgen directly so that it builds anywhere.

wit_bindgen::generate!({
    path: "wit",
    world: "actionhost:executor/executor",
    generate_all,
});

use actionhost::executor::log::{Level, write as log};
use actionhost::executor::types::{ActionType, AuthScheme};

/// The action type this plugin carries out.
const ACTION: &str = "{{action}}";

/// JSON Schema (2020-12) of the params; the host checks params against it
/// before `validate` and `execute` see them.
const PARAMS_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "name": { "type": "string", "minLength": 1, "description": "Who to greet." },
    "shout": { "type": "boolean", "description": "Greet in capitals." }
  },
  "required": ["name"],
  "additionalProperties": false
}"#;

struct Plugin;

impl Guest for Plugin {
    /// Called once at load: who we are and what we do. Must be
    /// deterministic and must not call out.
    fn describe() -> Manifest {
        Manifest {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            description: "Greets someone (a skeleton to start from).".into(),
            action_types: vec![ActionType {
                name: ACTION.into(),
                title: "Greet someone".into(),
                description: "Returns a greeting for `name`.".into(),
                params_schema: PARAMS_SCHEMA.into(),
                output_schema: None,
                // `none`: no connected account needed. A plugin calling an
                // API lists the schemes it accepts (bearer, oauth2, ...).
                auth_schemes: vec![AuthScheme::None],
                idempotent: true,
                requires_approval: false,
            }],
            // Every host the plugin calls, e.g. `https://api.example.com`.
            outbound_hosts: vec![],
        }
    }

    /// `None`: a fresh instance per execution. A Rust component
    /// instantiates in microseconds; reuse matters for interpreted plugins.
    fn reuse_policy() -> Option<ReusePolicy> {
        None
    }

    /// Business rules the schema cannot express; report every problem.
    fn validate(action_type: String, params: Json) -> Result<(), Vec<FieldError>> {
        let params: serde_json::Value = serde_json::from_str(&params).map_err(|err| {
            vec![FieldError {
                path: String::new(),
                message: format!("params are not JSON: {err}"),
            }]
        })?;
        let mut errors = Vec::new();
        if action_type != ACTION {
            errors.push(FieldError {
                path: String::new(),
                message: format!("unknown action type {action_type}"),
            });
        }
        if params["name"].as_str().is_some_and(|name| name.trim().is_empty()) {
            errors.push(FieldError {
                path: "/name".into(),
                message: "must not be blank".into(),
            });
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// One attempt of an action. Return the output as JSON, or the error
    /// variant that tells the host whether to retry (see docs/plugins.md).
    fn execute(request: ExecuteRequest) -> Result<Json, ExecuteError> {
        let params: serde_json::Value = serde_json::from_str(&request.params)
            .map_err(|err| ExecuteError::Permanent(format!("params are not JSON: {err}")))?;
        let name = params["name"].as_str().unwrap_or_default();
        let mut greeting = format!("Hello, {name}!");
        if params["shout"].as_bool() == Some(true) {
            greeting = greeting.to_uppercase();
        }
        log(Level::Info, &format!("greeting {name} (attempt {})", request.attempt));
        Ok(serde_json::json!({ "greeting": greeting }).to_string())
    }
}

export!(Plugin);
