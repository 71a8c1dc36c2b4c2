//! OpenAI-compatible Chat Completions as an actionhost model provider:
//! OpenAI itself, and any server that speaks its API (Ollama, llama.cpp's
//! server, vLLM), chosen by the account's `base_url` (default
//! `https://api.openai.com/v1`; Ollama's is `http://HOST:11434/v1`).
//!
//! `POST {base_url}/chat/completions` with `tools` and `tool_choice`; the
//! host injects the key as a bearer token. `tool_calls[].function.arguments`
//! is a JSON string in OpenAI's API and an object in some servers': both
//! are read. A 429 is retried by the host after its `Retry-After`, unless
//! it says `insufficient_quota` (the spend limit); a 5xx is retried.

use actionhost_sdk::http::{Request, Response};
use actionhost_sdk::model::{
    Completion, CompletionRequest, Message, ModelError, Provider, Role, ToolCall, ToolChoice, Usage,
};
use serde_json::{Value, json};

const BASE_URL: &str = "https://api.openai.com/v1";

/// The provider.
pub struct OpenAiCompatible;

impl Provider for OpenAiCompatible {
    fn complete(request: CompletionRequest) -> Result<Completion, ModelError> {
        let url = format!("{}/chat/completions", request.base_url(BASE_URL));
        let response = Request::post(url).json(&body(&request))?.send()?;
        if !response.is_success() {
            return Err(error(&response));
        }
        let answer: Value = response.json()?;
        completion(&answer)
    }
}

fn body(request: &CompletionRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.extend(request.messages.iter().map(message));
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    });
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
    }
    body
}

fn message(message: &Message) -> Value {
    match message.role {
        Role::User => json!({"role": "user", "content": message.content}),
        Role::Assistant => {
            let mut value = json!({"role": "assistant", "content": message.content});
            if !message.tool_calls.is_empty() {
                value["tool_calls"] = message
                    .tool_calls
                    .iter()
                    .map(|call| json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments.to_string()},
                    }))
                    .collect();
            }
            value
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": message.tool_call_id.clone().unwrap_or_default(),
            "content": message.content,
        }),
    }
}

fn completion(answer: &Value) -> Result<Completion, ModelError> {
    let choice = &answer["choices"][0];
    let message = &choice["message"];
    if message.is_null() {
        return Err(ModelError::Permanent(format!(
            "the answer has no choices: {answer}"
        )));
    }
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|call| ToolCall {
                    id: call["id"].as_str().unwrap_or_default().to_owned(),
                    name: call["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    // A JSON string (OpenAI) or an object (some servers).
                    arguments: match &call["function"]["arguments"] {
                        Value::String(text) => serde_json::from_str(text)
                            .unwrap_or_else(|_| Value::String(text.clone())),
                        other => other.clone(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let tokens =
        |name: &str| u32::try_from(answer["usage"][name].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    Ok(Completion {
        content: message["content"].as_str().unwrap_or_default().to_owned(),
        tool_calls,
        stop_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        usage: Usage {
            input_tokens: tokens("prompt_tokens"),
            output_tokens: tokens("completion_tokens"),
        },
    })
}

fn error(response: &Response) -> ModelError {
    let text = response.text();
    match response.status {
        429 if text.contains("insufficient_quota") => {
            ModelError::QuotaExceeded(text.chars().take(300).collect())
        }
        503 => ModelError::Overloaded {
            message: text.chars().take(300).collect(),
            retry_after: response.retry_after(),
        },
        _ => response.to_error().into(),
    }
}

actionhost_sdk::model_plugin! {
    name: "openai-compatible",
    description: "OpenAI-compatible Chat Completions (OpenAI, Ollama, llama.cpp, vLLM), with tools",
    provider: "openai-compatible",
    default_base_url: "https://api.openai.com/v1",
    outbound_hosts: ["https://api.openai.com"],
    implementation: OpenAiCompatible,
}
