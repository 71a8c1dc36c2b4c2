//! The runtime's own types: what the rest of the host sees of a plugin, a
//! request, a result. None of them is a wasmtime type; each WIT version's
//! bindings convert into these.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a plugin says about itself, checked by the host.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Plugin name, kebab-case.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// What the plugin is for.
    pub description: String,
    /// The WIT version (`actionhost:executor@…`) the plugin was built against.
    pub wit_version: String,
    /// The action types it provides.
    pub action_types: Vec<ActionTypeInfo>,
    /// Where it may send requests.
    pub outbound_hosts: Vec<HostRule>,
    /// Instance reuse as the plugin asked for it (WIT 0.1.2 and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReusePolicy>,
    /// For a model provider (the `actionhost:model` world): which provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<super::model::ModelInfo>,
}

/// A plugin's request to have its instances reused between executions of
/// the same account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReusePolicy {
    /// Executions one instance serves before it is discarded.
    pub max_calls: u32,
    /// Idle instances kept, all accounts together (0: the host's choice).
    pub max_idle: u32,
}

impl Manifest {
    /// The action type named `name`, if this plugin provides it.
    pub fn action_type(&self, name: &str) -> Option<&ActionTypeInfo> {
        self.action_types.iter().find(|t| t.name == name)
    }
}

/// One action type of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct ActionTypeInfo {
    /// Machine name, such as `send_email`.
    pub name: String,
    /// Human title.
    pub title: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of the params.
    pub params_schema: serde_json::Value,
    /// JSON Schema of the output, if documented.
    pub output_schema: Option<serde_json::Value>,
    /// Accepted auth schemes, in order of preference.
    pub auth_schemes: Vec<AuthScheme>,
    /// Whether executing twice equals executing once.
    pub idempotent: bool,
    /// Whether every action of this type needs approval.
    pub requires_approval: bool,
}

impl ActionTypeInfo {
    /// Whether actions of this type address a contact: their params schema
    /// has a top-level `contact_id` property. The host then checks the
    /// contact exists and hands it to the plugin (the `contacts` interface).
    pub fn contact_bound(&self) -> bool {
        self.params_schema
            .get("properties")
            .and_then(|p| p.get("contact_id"))
            .is_some()
    }
}

/// How a provider authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// No credentials.
    None,
    /// Bearer token.
    Bearer,
    /// API key in a header or query parameter.
    ApiKey,
    /// HTTP basic.
    Basic,
    /// OAuth2 access token.
    #[serde(rename = "oauth2")]
    OAuth2,
    /// SMTP server credentials.
    Smtp,
}

/// Which port an outbound rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRule {
    /// The scheme's default port (443 for https, 80 for http).
    Default,
    /// Exactly this port.
    Exact(u16),
    /// Any port (operator rules only, such as `http://127.0.0.1:*`).
    Any,
}

/// One allowed outbound destination: scheme, host (exact or `*.suffix`) and
/// port. Written `https://api.hubapi.com`, `http://127.0.0.1:8025` or
/// `http://127.0.0.1:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host name or IP literal, or `*.` followed by a suffix.
    pub host: String,
    /// The port(s) matched.
    pub port: PortRule,
}

impl HostRule {
    /// Whether a request to `scheme://host:port` matches this rule.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if !self.scheme.eq_ignore_ascii_case(scheme) {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => self.host == host,
        };
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Exact(p) => p == port,
            PortRule::Default => Some(port) == default_port(scheme),
        };
        host_ok && port_ok
    }
}

/// The default port of `http` and `https`.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]", self.scheme, self.host)?;
        } else {
            write!(f, "{}://{}", self.scheme, self.host)?;
        }
        match self.port {
            PortRule::Default => Ok(()),
            PortRule::Exact(port) => write!(f, ":{port}"),
            PortRule::Any => write!(f, ":*"),
        }
    }
}

impl FromStr for HostRule {
    type Err = String;

    fn from_str(rule: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "invalid host rule {rule:?}: expected scheme://host[:port|:*], such as https://api.hubapi.com"
            )
        };
        let (scheme, rest) = rule.split_once("://").ok_or_else(invalid)?;
        let scheme = scheme.to_ascii_lowercase();
        if default_port(&scheme).is_none() {
            return Err(format!(
                "invalid host rule {rule:?}: the scheme must be http or https"
            ));
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, PortRule::Any),
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                (host, PortRule::Exact(port.parse().map_err(|_| invalid())?))
            }
            _ => (rest, PortRule::Default),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        if bare.is_empty() || bare.contains(['/', '*', '@', '?', '#', ' ']) {
            return Err(invalid());
        }
        Ok(Self { scheme, host, port })
    }
}

impl Serialize for HostRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rule = String::deserialize(deserializer)?;
        rule.parse().map_err(serde::de::Error::custom)
    }
}

/// One problem with one field of an action's params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON Pointer to the field; empty for the whole params.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A problem at `path` (a JSON Pointer).
    pub fn new(path: &str, message: &str) -> Self {
        Self {
            path: path.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl FieldError {
    /// Every error of `fields` in one line: `/a: why; /b: why`.
    pub fn summary(fields: &[FieldError]) -> String {
        fields
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A plugin's own verdict on a failed execution (the inner layer of a call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteError {
    /// The params are wrong.
    InvalidInput(Vec<FieldError>),
    /// The provider rejected the credentials.
    Unauthorized(String),
    /// The provider asked to slow down.
    RateLimited {
        /// What the provider said.
        message: String,
        /// How long it asked to wait.
        retry_after: Option<Duration>,
    },
    /// A failure that may pass.
    Transient(String),
    /// A failure that will not pass.
    Permanent(String),
}

impl ExecuteError {
    /// The error code of the API's taxonomy.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Unauthorized(_) => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Transient(_) => "transient",
            Self::Permanent(_) => "permanent",
        }
    }

    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient(_))
    }
}

impl fmt::Display for ExecuteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(errors) => {
                f.write_str("invalid input: ")?;
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                f.write_str(&list.join("; "))
            }
            Self::Unauthorized(message) => write!(f, "unauthorized: {message}"),
            Self::RateLimited {
                message,
                retry_after: Some(after),
            } => {
                write!(
                    f,
                    "rate limited: {message} (retry after {} ms)",
                    after.as_millis()
                )
            }
            Self::RateLimited {
                message,
                retry_after: None,
            } => write!(f, "rate limited: {message}"),
            Self::Transient(message) => write!(f, "transient failure: {message}"),
            Self::Permanent(message) => write!(f, "permanent failure: {message}"),
        }
    }
}

/// The connected account an execution runs as, without secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Account id.
    pub id: String,
    /// App name, such as `gmail`.
    pub app_name: String,
    /// Non-secret metadata (a JSON object).
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// One attempt at an action, as the runtime hands it to a plugin.
#[derive(Debug, Clone)]
pub struct ExecuteRequest {
    /// The action's id.
    pub action_id: String,
    /// The action type.
    pub action_type: String,
    /// The params (already checked against the schema and by `validate`).
    pub params: serde_json::Value,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The same for every attempt of the action.
    pub idempotency_key: String,
    /// The resolved account.
    pub account: Option<AccountInfo>,
    /// Whom a reused instance may serve (plugins that opt into reuse): only
    /// executions with the same key share instances. The caller sets it to
    /// the stored connected account's id; `None` (no account, or credentials
    /// given inline) means a fresh instance.
    pub reuse_key: Option<String>,
}
