//! Anthropic's Messages API as an actionhost model provider.
//!
//! `POST {base_url}/v1/messages` with `anthropic-version: 2023-06-01`; the
//! host injects the account's key (an `api_key` auth config with header
//! `x-api-key`). Tools go as `tools` with `input_schema`, a forced tool as
//! `tool_choice: {"type": "tool", "name": …}`, and the answer's `tool_use`
//! blocks come back as tool calls. A 529 (overloaded) and a 5xx are
//! retried by the host, as is a 429 with its `Retry-After`; a 429 or 400
//! that says the credit or spend limit is spent is not.

use actionhost_sdk::http::{Request, Response};
use actionhost_sdk::model::{
    Completion, CompletionRequest, Message, ModelError, Provider, Role, ToolCall, ToolChoice, Usage,
};
use serde_json::{Value, json};

const BASE_URL: &str = "https://api.anthropic.com";
const VERSION: &str = "2023-06-01";

/// The provider.
pub struct Anthropic;

impl Provider for Anthropic {
    fn complete(request: CompletionRequest) -> Result<Completion, ModelError> {
        let url = format!("{}/v1/messages", request.base_url(BASE_URL));
        let response = Request::post(url)
            .header("anthropic-version", VERSION)
            .json(&body(&request))?
            .send()?;
        if !response.is_success() {
            return Err(error(&response));
        }
        let answer: Value = response.json()?;
        completion(&answer)
    }
}

/// The request body of the Messages API.
fn body(request: &CompletionRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": request.messages.iter().map(message).collect::<Vec<_>>(),
    });
    if let Some(system) = &request.system {
        body["system"] = json!(system);
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
    }
    body
}

fn message(message: &Message) -> Value {
    match message.role {
        Role::User => json!({"role": "user", "content": message.content}),
        Role::Assistant => {
            let mut blocks = Vec::new();
            if !message.content.is_empty() {
                blocks.push(json!({"type": "text", "text": message.content}));
            }
            for call in &message.tool_calls {
                blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}));
            }
            json!({"role": "assistant", "content": blocks})
        }
        Role::Tool => json!({"role": "user", "content": [{
            "type": "tool_result",
            "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
            "content": message.content,
        }]}),
    }
}

fn completion(answer: &Value) -> Result<Completion, ModelError> {
    let blocks = answer["content"]
        .as_array()
        .ok_or_else(|| ModelError::Permanent(format!("the answer has no content: {answer}")))?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => content.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: block["id"].as_str().unwrap_or_default().to_owned(),
                name: block["name"].as_str().unwrap_or_default().to_owned(),
                arguments: block["input"].clone(),
            }),
            _ => {}
        }
    }
    let tokens =
        |name: &str| u32::try_from(answer["usage"][name].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    Ok(Completion {
        content,
        tool_calls,
        stop_reason: answer["stop_reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        usage: Usage {
            input_tokens: tokens("input_tokens"),
            output_tokens: tokens("output_tokens"),
        },
    })
}

/// A failure status as the host should treat it.
fn error(response: &Response) -> ModelError {
    let text = response.text();
    let spent = ["credit balance", "spend limit", "billing"]
        .iter()
        .any(|needle| text.to_lowercase().contains(needle));
    match response.status {
        429 | 400 if spent => ModelError::QuotaExceeded(short(&text)),
        529 | 503 => ModelError::Overloaded {
            message: short(&text),
            retry_after: response.retry_after(),
        },
        _ => response.to_error().into(),
    }
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

actionhost_sdk::model_plugin! {
    name: "anthropic",
    description: "Anthropic's Messages API (Claude), with tool use",
    provider: "anthropic",
    default_base_url: "https://api.anthropic.com",
    outbound_hosts: ["https://api.anthropic.com"],
    implementation: Anthropic,
}
