//! Language-model provider plugins (the `actionhost:model` world; feature
//! `model`).
//!
//! A provider turns one [`CompletionRequest`] into one call to a model API
//! and its answer back into a [`Completion`]. Implement [`Provider`] and
//! register it with [`crate::model_plugin!`]:
//!
//! ```ignore
//! use actionhost_sdk::model::{Completion, CompletionRequest, ModelError, Provider};
//!
//! struct Echo;
//!
//! impl Provider for Echo {
//!     fn complete(request: CompletionRequest) -> Result<Completion, ModelError> {
//!         let text = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
//!         Ok(Completion { content: text, ..Completion::default() })
//!     }
//! }
//!
//! actionhost_sdk::model_plugin! {
//!     name: "echo",
//!     description: "Answers with the last message",
//!     provider: "echo",
//!     default_base_url: "https://echo.example.com",
//!     outbound_hosts: [],
//!     implementation: Echo,
//! }
//! ```
//!
//! The provider's key is a connected account of the plugin's app; the host
//! injects it into the requests to the hosts its auth config names, so the
//! plugin never has it. The account's metadata may name a `base_url` (a
//! local Ollama, a vLLM server): [`CompletionRequest::base_url`].

use std::time::Duration;

use crate::bindings::model::types as wit;
use crate::error::ExecuteError;

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The host, asking.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The provider's id of the call.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments as a JSON value.
    pub arguments: serde_json::Value,
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The assistant's tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    pub tool_call_id: Option<String>,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// Which tool the model must use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// As it sees fit.
    Auto,
    /// No tool.
    None,
    /// This one.
    Tool(String),
}

/// One model call.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    /// The model.
    pub model: String,
    /// The system prompt.
    pub system: Option<String>,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// The tools offered.
    pub tools: Vec<Tool>,
    /// Which to use.
    pub tool_choice: ToolChoice,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// The most tokens to generate.
    pub max_tokens: u32,
    /// The account's non-secret metadata (`{}` without an account).
    pub account_metadata: serde_json::Value,
}

impl CompletionRequest {
    /// The account's `base_url`, or `default`; without a trailing `/`.
    pub fn base_url<'a>(&'a self, default: &'a str) -> &'a str {
        self.account_metadata
            .get("base_url")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(default)
            .trim_end_matches('/')
    }
}

/// Tokens used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
}

/// The model's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    /// Its text.
    pub content: String,
    /// Its tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped, as the provider says.
    pub stop_reason: String,
    /// Tokens used.
    pub usage: Usage,
}

/// Why a call failed; the host retries `RateLimited`, `Overloaded` and
/// `Transient`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The request is wrong.
    InvalidRequest(String),
    /// The key was refused.
    Unauthorized(String),
    /// Too many requests, for now.
    RateLimited {
        /// What the provider said.
        message: String,
        /// Its wait.
        retry_after: Option<Duration>,
    },
    /// Overloaded (Anthropic's 529, a 503).
    Overloaded {
        /// What the provider said.
        message: String,
        /// Its wait.
        retry_after: Option<Duration>,
    },
    /// A spend limit or quota: waiting does not help.
    QuotaExceeded(String),
    /// May pass.
    Transient(String),
    /// Will not pass.
    Permanent(String),
}

impl From<ExecuteError> for ModelError {
    /// The HTTP client's errors, and its mapping of statuses: 401/403,
    /// 429, 5xx, other 4xx.
    fn from(error: ExecuteError) -> Self {
        match error {
            ExecuteError::InvalidInput(errors) => Self::InvalidRequest(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ExecuteError::Unauthorized(message) => Self::Unauthorized(message),
            ExecuteError::RateLimited {
                message,
                retry_after,
            } => Self::RateLimited {
                message,
                retry_after,
            },
            ExecuteError::Transient(message) => Self::Transient(message),
            ExecuteError::Permanent(message) => Self::Permanent(message),
        }
    }
}

impl From<crate::http::HttpError> for ModelError {
    fn from(error: crate::http::HttpError) -> Self {
        ExecuteError::from(error).into()
    }
}

impl From<serde_json::Error> for ModelError {
    fn from(error: serde_json::Error) -> Self {
        Self::Permanent(format!("unexpected JSON from the provider: {error}"))
    }
}

/// A provider: one model call.
pub trait Provider {
    /// Makes the call.
    fn complete(request: CompletionRequest) -> Result<Completion, ModelError>;
}

fn millis(after: Option<Duration>) -> Option<u64> {
    after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Implementation details of [`crate::model_plugin!`]; not a public API.
#[doc(hidden)]
pub fn complete<P: Provider>(
    request: wit::CompletionRequest,
) -> Result<wit::Completion, wit::ModelError> {
    let request = CompletionRequest {
        model: request.model,
        system: request.system,
        messages: request
            .messages
            .into_iter()
            .map(|m| Message {
                role: match m.role {
                    wit::Role::User => Role::User,
                    wit::Role::Assistant => Role::Assistant,
                    wit::Role::Tool => Role::Tool,
                },
                content: m.content,
                tool_calls: m
                    .tool_calls
                    .into_iter()
                    .map(|c| ToolCall {
                        id: c.id,
                        name: c.name,
                        arguments: serde_json::from_str(&c.arguments)
                            .unwrap_or(serde_json::Value::String(c.arguments)),
                    })
                    .collect(),
                tool_call_id: m.tool_call_id,
            })
            .collect(),
        tools: request
            .tools
            .into_iter()
            .map(|t| Tool {
                name: t.name,
                description: t.description,
                parameters: serde_json::from_str(&t.parameters).unwrap_or_default(),
            })
            .collect(),
        tool_choice: match request.tool_choice {
            wit::ToolChoice::Auto => ToolChoice::Auto,
            wit::ToolChoice::None => ToolChoice::None,
            wit::ToolChoice::Tool(name) => ToolChoice::Tool(name),
        },
        temperature: request.temperature,
        max_tokens: request.max_tokens,
        account_metadata: request
            .account
            .and_then(|a| serde_json::from_str(&a.metadata).ok())
            .unwrap_or_else(|| serde_json::json!({})),
    };
    match P::complete(request) {
        Ok(completion) => Ok(wit::Completion {
            content: completion.content,
            tool_calls: completion
                .tool_calls
                .into_iter()
                .map(|c| wit::ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: match c.arguments {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    },
                })
                .collect(),
            stop_reason: completion.stop_reason,
            usage: wit::Usage {
                input_tokens: completion.usage.input_tokens,
                output_tokens: completion.usage.output_tokens,
            },
        }),
        Err(error) => Err(match error {
            ModelError::InvalidRequest(m) => wit::ModelError::InvalidRequest(m),
            ModelError::Unauthorized(m) => wit::ModelError::Unauthorized(m),
            ModelError::RateLimited {
                message,
                retry_after,
            } => wit::ModelError::RateLimited(wit::RetryLater {
                message,
                retry_after_ms: millis(retry_after),
            }),
            ModelError::Overloaded {
                message,
                retry_after,
            } => wit::ModelError::Overloaded(wit::RetryLater {
                message,
                retry_after_ms: millis(retry_after),
            }),
            ModelError::QuotaExceeded(m) => wit::ModelError::QuotaExceeded(m),
            ModelError::Transient(m) => wit::ModelError::Transient(m),
            ModelError::Permanent(m) => wit::ModelError::Permanent(m),
        }),
    }
}

/// Implementation details of [`crate::model_plugin!`]; not a public API.
#[doc(hidden)]
pub fn describe(
    name: &str,
    version: &str,
    description: &str,
    provider: &str,
    default_base_url: &str,
    outbound_hosts: &[&str],
) -> wit::ProviderInfo {
    wit::ProviderInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        provider: provider.to_owned(),
        default_base_url: default_base_url.to_owned(),
        outbound_hosts: outbound_hosts
            .iter()
            .map(|url| {
                let (scheme, rest) = url.split_once("://").unwrap_or_else(|| {
                    panic!("invalid outbound host {url:?} in model_plugin!: expected scheme://host[:port]")
                });
                let rest = rest.trim_end_matches('/');
                let (host, port) = match rest.rsplit_once(':') {
                    Some((host, port)) => (host, port.parse().ok()),
                    None => (rest, None),
                };
                wit::OutboundHost {
                    scheme: scheme.to_owned(),
                    host: host.to_owned(),
                    port,
                }
            })
            .collect(),
    }
}

/// Registers a model provider and exports the component's entry points.
///
/// ```ignore
/// actionhost_sdk::model_plugin! {
///     name: "anthropic",                            // kebab-case; the app of its accounts
///     description: "Anthropic's Messages API",
///     provider: "anthropic",                        // llm_config.provider
///     default_base_url: "https://api.anthropic.com",
///     outbound_hosts: ["https://api.anthropic.com"],
///     implementation: Anthropic,                    // a type implementing `Provider`
/// }
/// ```
#[macro_export]
macro_rules! model_plugin {
    (
        name: $name:expr,
        $(version: $version:expr,)?
        description: $description:expr,
        provider: $provider:expr,
        default_base_url: $base:expr,
        outbound_hosts: [$($host:expr),* $(,)?],
        implementation: $implementation:ty $(,)?
    ) => {
        #[doc(hidden)]
        struct __ActionhostModel;

        impl $crate::bindings::model::Guest for __ActionhostModel {
            fn describe() -> $crate::bindings::model::types::ProviderInfo {
                $crate::model::describe(
                    $name,
                    $crate::plugin!(@version $($version)?),
                    $description,
                    $provider,
                    $base,
                    &[$($host),*],
                )
            }

            fn complete(
                request: $crate::bindings::model::types::CompletionRequest,
            ) -> ::std::result::Result<
                $crate::bindings::model::types::Completion,
                $crate::bindings::model::types::ModelError,
            > {
                $crate::model::complete::<$implementation>(request)
            }
        }

        $crate::bindings::model::__export_model!(__ActionhostModel with_types_in $crate::bindings::model);
    };
}
