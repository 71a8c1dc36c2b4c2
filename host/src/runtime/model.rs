//! The model world's types as the rest of the host sees them, and their
//! conversions to and from the `actionhost:model` bindings.
//!
//! A model plugin (`actionhost:model/model`) exports `describe` and
//! `complete`: one completion request in, one model answer or a typed
//! error out. Everything here is plain data: the agents runner and
//! Composio's `text` build requests and read answers without a wasmtime
//! type.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bindings::model_v0_1_0::actionhost::model::types as wit;

/// What a model plugin says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The provider name agents name in `llm_config.provider`.
    pub provider: String,
    /// The API's base URL when an account's metadata names none.
    pub default_base_url: String,
}

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The host, asking.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments, a JSON value (providers that send them as a JSON
    /// string are parsed; one that does not parse stays a string).
    pub arguments: serde_json::Value,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The assistant's tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// Which tool the model must use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// As it sees fit.
    Auto,
    /// No tool.
    None,
    /// This tool.
    Tool(String),
}

/// One model call.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    /// The model.
    pub model: String,
    /// The system prompt.
    pub system: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The tools offered.
    pub tools: Vec<Tool>,
    /// Which to use.
    pub tool_choice: ToolChoice,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// The most tokens to generate.
    pub max_tokens: u32,
    /// The provider account, without its key.
    pub account: Option<(String, serde_json::Value)>,
}

/// Tokens used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Its text.
    pub content: String,
    /// Its tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub stop_reason: String,
    /// Tokens used.
    pub usage: Usage,
}

/// Why a model call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The request is wrong.
    #[error("the model refused the request: {0}")]
    InvalidRequest(String),
    /// The key was refused.
    #[error("the provider refused the key: {0}")]
    Unauthorized(String),
    /// Too many requests.
    #[error("rate limited: {message}")]
    RateLimited {
        /// What the provider said.
        message: String,
        /// Its wait.
        retry_after: Option<Duration>,
    },
    /// Overloaded.
    #[error("the provider is overloaded: {message}")]
    Overloaded {
        /// What the provider said.
        message: String,
        /// Its wait.
        retry_after: Option<Duration>,
    },
    /// A spend limit is reached.
    #[error("the provider's quota is exceeded: {0}")]
    QuotaExceeded(String),
    /// May pass.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Will not pass.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl ModelError {
    /// Whether waiting and trying again may help, and how long to wait at
    /// least.
    pub fn retry(&self) -> Option<Option<Duration>> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Overloaded { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Transient(_) => Some(None),
            _ => None,
        }
    }

    /// The taxonomy's code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_input",
            Self::Unauthorized(_) => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } | Self::Transient(_) => "transient",
            Self::QuotaExceeded(_) | Self::Permanent(_) => "permanent",
        }
    }
}

impl From<Role> for wit::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::User => Self::User,
            Role::Assistant => Self::Assistant,
            Role::Tool => Self::Tool,
        }
    }
}

fn arguments_text(arguments: &serde_json::Value) -> String {
    match arguments {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

impl From<&CompletionRequest> for wit::CompletionRequest {
    fn from(request: &CompletionRequest) -> Self {
        Self {
            model: request.model.clone(),
            system: request.system.clone(),
            messages: request
                .messages
                .iter()
                .map(|m| wit::Message {
                    role: m.role.into(),
                    content: m.content.clone(),
                    tool_calls: m
                        .tool_calls
                        .iter()
                        .map(|c| wit::ToolCall {
                            id: c.id.clone(),
                            name: c.name.clone(),
                            arguments: arguments_text(&c.arguments),
                        })
                        .collect(),
                    tool_call_id: m.tool_call_id.clone(),
                })
                .collect(),
            tools: request
                .tools
                .iter()
                .map(|t| wit::Tool {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.parameters.to_string(),
                })
                .collect(),
            tool_choice: match &request.tool_choice {
                ToolChoice::Auto => wit::ToolChoice::Auto,
                ToolChoice::None => wit::ToolChoice::None,
                ToolChoice::Tool(name) => wit::ToolChoice::Tool(name.clone()),
            },
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            account: request.account.as_ref().map(|(id, metadata)| wit::Account {
                id: id.clone(),
                metadata: metadata.to_string(),
            }),
        }
    }
}

impl From<wit::Completion> for Completion {
    fn from(completion: wit::Completion) -> Self {
        Self {
            content: completion.content,
            tool_calls: completion
                .tool_calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    name: call.name,
                    arguments: serde_json::from_str(&call.arguments)
                        .unwrap_or(serde_json::Value::String(call.arguments)),
                })
                .collect(),
            stop_reason: completion.stop_reason,
            usage: Usage {
                input_tokens: completion.usage.input_tokens.into(),
                output_tokens: completion.usage.output_tokens.into(),
            },
        }
    }
}

impl From<wit::ModelError> for ModelError {
    fn from(error: wit::ModelError) -> Self {
        let wait = |ms: Option<u64>| ms.map(Duration::from_millis);
        match error {
            wit::ModelError::InvalidRequest(m) => Self::InvalidRequest(m),
            wit::ModelError::Unauthorized(m) => Self::Unauthorized(m),
            wit::ModelError::RateLimited(r) => Self::RateLimited {
                message: r.message,
                retry_after: wait(r.retry_after_ms),
            },
            wit::ModelError::Overloaded(r) => Self::Overloaded {
                message: r.message,
                retry_after: wait(r.retry_after_ms),
            },
            wit::ModelError::QuotaExceeded(m) => Self::QuotaExceeded(m),
            wit::ModelError::Transient(m) => Self::Transient(m),
            wit::ModelError::Permanent(m) => Self::Permanent(m),
        }
    }
}
