//! The [`Action`] trait and the glue that [`crate::plugin!`] expands to.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings;
use crate::context::Context;
use crate::error::{ExecuteError, FieldError};

/// How a provider expects to be authenticated; the host injects the matching
/// credentials from the connected account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// No credentials.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// An API key in a header or a query parameter.
    ApiKey,
    /// HTTP basic authentication.
    Basic,
    /// OAuth2, injected as a bearer token and refreshed by the host.
    OAuth2,
    /// An SMTP server's credentials, used by the host's SMTP relay.
    Smtp,
}

impl From<AuthScheme> for bindings::AuthScheme {
    fn from(scheme: AuthScheme) -> Self {
        match scheme {
            AuthScheme::None => Self::None,
            AuthScheme::Bearer => Self::Bearer,
            AuthScheme::ApiKey => Self::ApiKey,
            AuthScheme::Basic => Self::Basic,
            AuthScheme::OAuth2 => Self::Oauth2,
            AuthScheme::Smtp => Self::Smtp,
        }
    }
}

/// One action type of a plugin: its metadata, typed params and behaviour.
///
/// Only `NAME`, `TITLE`, the two types and [`Action::execute`] are required;
/// everything else has a sensible default.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an actionhost action",
    label = "listed in `actions: [...]` of `plugin!`",
    note = "implement `actionhost_sdk::Action` for `{Self}`: set `NAME`, `TITLE`, `type Params`, `type Output` and write `fn execute`"
)]
pub trait Action {
    /// Machine name of the action type, `snake_case`, such as `send_email`.
    const NAME: &'static str;
    /// Short human title, such as `Send an email`.
    const TITLE: &'static str;
    /// What the action does, for people and for LLM tool descriptions.
    const DESCRIPTION: &'static str = "";
    /// Whether running the same params twice has the effect of running them
    /// once (an upsert is; sending a message is not).
    const IDEMPOTENT: bool = false;
    /// Whether every action of this type needs a human approval first.
    const REQUIRES_APPROVAL: bool = false;
    /// The auth schemes this action accepts, in order of preference.
    const AUTH_SCHEMES: &'static [AuthScheme] = &[AuthScheme::None];

    /// The params, deserialized from the request's JSON. Their JSON Schema,
    /// derived with `#[derive(JsonSchema)]`, is what the host checks requests
    /// against and what `GET /api/v2/actions/{name}` shows; doc comments on
    /// fields become descriptions.
    type Params: DeserializeOwned + JsonSchema;
    /// The output, serialized to JSON. Use `serde_json::Value` for free-form
    /// output.
    type Output: Serialize + JsonSchema;

    /// Business rules beyond the schema, such as "at least one of `text` and
    /// `html`". Return every problem found, not just the first.
    fn validate(params: &Self::Params) -> Result<(), Vec<FieldError>> {
        let _ = params;
        Ok(())
    }

    /// Carries out one attempt of the action.
    fn execute(params: Self::Params, ctx: &Context) -> Result<Self::Output, ExecuteError>;
}

/// Builds the manifest that `describe` returns.
pub fn describe(
    name: &str,
    version: &str,
    description: &str,
    outbound_hosts: &[&str],
    action_types: Vec<bindings::ActionType>,
) -> bindings::Manifest {
    let outbound_hosts = outbound_hosts
        .iter()
        .map(|host| {
            parse_outbound_host(host).unwrap_or_else(|| {
                panic!("invalid outbound host {host:?} in plugin!: expected scheme://host[:port]")
            })
        })
        .collect();
    bindings::Manifest {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        action_types,
        outbound_hosts,
    }
}

fn parse_outbound_host(url: &str) -> Option<bindings::OutboundHost> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.is_empty() {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().ok()?)),
        None => (rest, None),
    };
    Some(bindings::OutboundHost {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
    })
}

/// Describes one action type from its [`Action`] implementation.
pub fn describe_action<A: Action>() -> bindings::ActionType {
    let params_schema = schemars::schema_for!(A::Params);
    let output_schema = schemars::schema_for!(A::Output);
    bindings::ActionType {
        name: A::NAME.to_owned(),
        title: A::TITLE.to_owned(),
        description: A::DESCRIPTION.to_owned(),
        params_schema: params_schema.as_value().to_string(),
        output_schema: Some(output_schema.as_value().to_string()),
        auth_schemes: A::AUTH_SCHEMES.iter().map(|&s| s.into()).collect(),
        idempotent: A::IDEMPOTENT,
        requires_approval: A::REQUIRES_APPROVAL,
    }
}

/// The field error for an action type the plugin does not provide.
pub fn unknown_action_type(action_type: &str, known: &[&str]) -> bindings::FieldError {
    bindings::FieldError {
        path: String::new(),
        message: format!(
            "unknown action type {action_type:?}; this plugin provides {}",
            known.join(", ")
        ),
    }
}

fn parse_params<A: Action>(params: &str) -> Result<A::Params, Vec<FieldError>> {
    let mut deserializer = serde_json::Deserializer::from_str(params);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = json_pointer(err.path());
        vec![FieldError::new(path, err.into_inner().to_string())]
    })
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } => pointer.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => pointer.push_str(variant),
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

/// `validate` for one action type.
pub fn validate<A: Action>(params: &str) -> Result<(), Vec<bindings::FieldError>> {
    install_panic_hook();
    let params = parse_params::<A>(params).map_err(into_wit_errors)?;
    A::validate(&params).map_err(into_wit_errors)
}

/// `execute` for one action type.
pub fn execute<A: Action>(
    request: bindings::ExecuteRequest,
) -> Result<String, bindings::ExecuteError> {
    install_panic_hook();
    let params = parse_params::<A>(&request.params)
        .map_err(|errors| bindings::ExecuteError::InvalidInput(into_wit_errors(errors)))?;
    let ctx = Context::from_request(&request).map_err(bindings::ExecuteError::from)?;
    let output = A::execute(params, &ctx).map_err(bindings::ExecuteError::from)?;
    serde_json::to_string(&output).map_err(|err| {
        bindings::ExecuteError::Permanent(format!("plugin output is not valid JSON: {err}"))
    })
}

fn into_wit_errors(errors: Vec<FieldError>) -> Vec<bindings::FieldError> {
    errors.into_iter().map(Into::into).collect()
}

/// Sends a panic's message to the execution log before the guest aborts, so
/// that the host's trap report says what went wrong.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::log::error(format!("plugin panicked: {info}"));
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_hosts_parse_with_and_without_port() {
        let host = parse_outbound_host("https://api.hubapi.com").expect("valid");
        assert_eq!(
            (host.scheme.as_str(), host.host.as_str(), host.port),
            ("https", "api.hubapi.com", None)
        );
        let host = parse_outbound_host("http://*.example.com:8080/").expect("valid");
        assert_eq!(
            (host.host.as_str(), host.port),
            ("*.example.com", Some(8080))
        );
        assert!(parse_outbound_host("api.hubapi.com").is_none());
        assert!(parse_outbound_host("https://api.hubapi.com/v3").is_none());
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Params {
        to: Vec<Recipient>,
    }
    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Recipient {
        address: String,
    }
    struct Probe;
    impl Action for Probe {
        const NAME: &'static str = "probe";
        const TITLE: &'static str = "Probe";
        type Params = Params;
        type Output = ();
        fn execute(_: Params, _: &Context) -> Result<(), ExecuteError> {
            Ok(())
        }
    }

    #[test]
    fn params_errors_name_the_failing_path() {
        let errors = parse_params::<Probe>(r#"{"to":[{"address":"a"},{"address":7}]}"#)
            .err()
            .expect("invalid params");
        assert_eq!(errors[0].path, "/to/1/address");
        assert!(
            errors[0].message.contains("expected a string"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn the_params_schema_is_derived() {
        let action = describe_action::<Probe>();
        let schema: serde_json::Value = serde_json::from_str(&action.params_schema).expect("json");
        assert_eq!(schema["required"], serde_json::json!(["to"]));
    }
}
