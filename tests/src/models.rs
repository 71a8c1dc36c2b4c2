//! A stand-in for the model APIs: Anthropic's Messages API
//! (`POST /v1/messages`) and OpenAI's Chat Completions
//! (`POST /v1/chat/completions`), on one loopback port.
//!
//! It checks each request the way the real service would: the path, the
//! key the host injected (`x-api-key`, or `Authorization: Bearer`),
//! `anthropic-version: 2023-06-01`, the required fields, every tool's JSON
//! Schema (an object schema) and a forced tool choice that names a tool. A
//! request that fails a check gets the provider's own 400 and is noted in
//! [`Models::problems`]. The answer comes from the test's script: queued
//! replies first, then the test's responder.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The key the tests' provider accounts hold.
pub const MODEL_KEY: &str = "sk-test-model-key-0123456789";

/// What the stand-in answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A call of the forced tool with these arguments.
    Tool(Value),
    /// The same, with OpenAI's `arguments` as an object rather than a JSON
    /// string (as some servers send).
    ToolObject(Value),
    /// A call of the forced tool whose arguments are this raw text.
    ToolRaw(String),
    /// Text and no tool call.
    Text(String),
    /// A status with `Retry-After` (seconds) and a body.
    Status {
        /// The status.
        status: u16,
        /// `Retry-After`.
        retry_after: Option<u64>,
        /// The body.
        body: Value,
    },
    /// The reply after a delay.
    Slow(Duration, Box<Reply>),
}

/// Computes a reply from a request's JSON body.
pub type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// A request received.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    /// `anthropic` or `openai`.
    pub api: &'static str,
    /// Its JSON body.
    pub body: Value,
}

impl ModelRequest {
    /// The system prompt, in either API.
    pub fn system(&self) -> String {
        match self.api {
            "anthropic" => self.body["system"].as_str().unwrap_or_default().to_owned(),
            _ => self.body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The text of the first user message.
    pub fn prompt(&self) -> String {
        self.body["messages"]
            .as_array()
            .and_then(|messages| messages.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Reply>,
    responder: Option<Responder>,
    requests: Vec<ModelRequest>,
    problems: Vec<String>,
}

/// The running stand-in. Stopped on drop.
pub struct Models {
    /// `http://127.0.0.1:PORT` (Anthropic's base URL; OpenAI's is it plus `/v1`).
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Models {
    /// Starts the stand-in on a free loopback port.
    pub fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                ready_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("report address");
                let app = Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = ready_rx.recv().expect("model stand-in started");
        Self {
            base_url: format!("http://{address}"),
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues replies, answered in order before the responder.
    pub fn queue(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().queue.extend(replies);
    }

    /// Answers every request the queue does not with `responder`.
    pub fn respond(&self, responder: impl Fn(&Value) -> Reply + Send + Sync + 'static) {
        self.lock().responder = Some(Arc::new(responder));
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.lock().requests.clone()
    }

    /// What the checks found wrong with the requests.
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }
}

impl Drop for Models {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = match uri.path() {
        "/v1/messages" => "anthropic",
        "/v1/chat/completions" => "openai",
        other => {
            return (StatusCode::NOT_FOUND, format!("no such endpoint {other}")).into_response();
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let mut problems = Vec::new();
    let (key_ok, auth_status) = match api {
        "anthropic" => (header("x-api-key") == MODEL_KEY, "authentication_error"),
        _ => (
            header("authorization") == format!("Bearer {MODEL_KEY}"),
            "invalid_api_key",
        ),
    };
    if !key_ok {
        let answer = error(
            api,
            StatusCode::UNAUTHORIZED,
            auth_status,
            "invalid x-api-key",
        );
        lock(&shared)
            .problems
            .push(format!("{api}: the key was not injected"));
        return answer;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            lock(&shared)
                .problems
                .push(format!("{api}: the body is not JSON: {err}"));
            return error(
                api,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "the body is not JSON",
            );
        }
    };
    if api == "anthropic" && header("anthropic-version") != "2023-06-01" {
        problems.push("anthropic-version must be 2023-06-01".to_owned());
    }
    check(api, &body, &mut problems);
    let reply = {
        let mut shared = lock(&shared);
        shared.requests.push(ModelRequest {
            api,
            body: body.clone(),
        });
        if !problems.is_empty() {
            shared
                .problems
                .extend(problems.iter().map(|p| format!("{api}: {p}")));
            None
        } else {
            let queued = shared.queue.pop_front();
            Some(queued.or_else(|| shared.responder.as_ref().map(|r| r(&body))))
        }
    };
    let Some(reply) = reply else {
        return error(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            &problems.join("; "),
        );
    };
    let tool = forced_tool(api, &body).unwrap_or_else(|| "propose_actions".to_owned());
    answer(
        api,
        &tool,
        reply.unwrap_or(Reply::Text("no script for this request".into())),
    )
    .await
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The checks the real APIs make of a request.
fn check(api: &str, body: &Value, problems: &mut Vec<String>) {
    if body["model"].as_str().is_none_or(str::is_empty) {
        problems.push("model is required".into());
    }
    let messages = body["messages"].as_array();
    if messages.is_none_or(Vec::is_empty) {
        problems.push("messages must not be empty".into());
    }
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    let mut names = Vec::new();
    for (index, tool) in tools.iter().enumerate() {
        let (name, schema) = match api {
            "anthropic" => (&tool["name"], &tool["input_schema"]),
            _ => (&tool["function"]["name"], &tool["function"]["parameters"]),
        };
        match name.as_str() {
            Some(name)
                if !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                names.push(name.to_owned());
            }
            _ => problems.push(format!(
                "tools.{index}: the name must match ^[a-zA-Z0-9_-]{{1,64}}$"
            )),
        }
        if schema["type"] != "object" {
            problems.push(format!(
                "tools.{index}: the input schema must be an object schema"
            ));
        } else if jsonschema::validator_for(schema).is_err() {
            problems.push(format!(
                "tools.{index}: the input schema is not a valid JSON Schema"
            ));
        }
    }
    match api {
        "anthropic" => {
            if body["max_tokens"].as_u64().is_none() {
                problems.push("max_tokens is required".into());
            }
            if let Some(system) = body.get("system")
                && !system.is_string()
            {
                problems.push("system must be a string".into());
            }
            for message in messages.into_iter().flatten() {
                if !matches!(message["role"].as_str(), Some("user" | "assistant")) {
                    problems.push(format!(
                        "a message's role must be user or assistant, not {}",
                        message["role"]
                    ));
                }
            }
        }
        _ => {
            for message in messages.into_iter().flatten() {
                if !matches!(
                    message["role"].as_str(),
                    Some("system" | "user" | "assistant" | "tool")
                ) {
                    problems.push(format!("unknown role {}", message["role"]));
                }
            }
        }
    }
    if let Some(forced) = forced_tool(api, body)
        && !names.contains(&forced)
    {
        problems.push(format!(
            "tool_choice names {forced}, which is not among the tools"
        ));
    }
}

fn forced_tool(api: &str, body: &Value) -> Option<String> {
    let choice = &body["tool_choice"];
    match api {
        "anthropic" => (choice["type"] == "tool")
            .then(|| choice["name"].as_str().unwrap_or_default().to_owned()),
        _ => choice["function"]["name"].as_str().map(str::to_owned),
    }
}

fn error(api: &str, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match api {
        "anthropic" => json!({"type": "error", "error": {"type": kind, "message": message}}),
        _ => json!({"error": {"message": message, "type": kind, "code": kind}}),
    };
    (status, axum::Json(body)).into_response()
}

async fn answer(api: &str, tool: &str, reply: Reply) -> Response {
    let usage = (120, 40);
    let call = |arguments: Value, as_string: bool| match api {
        "anthropic" => json!({
            "id": "msg_standin", "type": "message", "role": "assistant", "model": "stand-in",
            "content": [{"type": "tool_use", "id": "toolu_standin", "name": tool,
                "input": if let Value::String(text) = &arguments { serde_json::from_str(text).unwrap_or(Value::String(text.clone())) } else { arguments }}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": usage.0, "output_tokens": usage.1},
        }),
        _ => json!({
            "id": "chatcmpl-standin", "object": "chat.completion", "model": "stand-in",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_standin", "type": "function", "function": {"name": tool,
                    "arguments": if as_string { match &arguments { Value::String(text) => Value::String(text.clone()), other => Value::String(other.to_string()) } } else { arguments }}}],
            }}],
            "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1},
        }),
    };
    match reply {
        Reply::Tool(arguments) => axum::Json(call(arguments, true)).into_response(),
        Reply::ToolObject(arguments) => axum::Json(call(arguments, false)).into_response(),
        Reply::ToolRaw(text) => axum::Json(call(Value::String(text), true)).into_response(),
        Reply::Text(text) => axum::Json(match api {
            "anthropic" => json!({"id": "msg_standin", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "usage": {"input_tokens": usage.0, "output_tokens": usage.1}}),
            _ => json!({"id": "chatcmpl-standin", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}], "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1}}),
        })
        .into_response(),
        Reply::Status {
            status,
            retry_after,
            body,
        } => {
            let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response();
            if let Some(seconds) = retry_after
                && let Ok(value) = seconds.to_string().parse()
            {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
        Reply::Slow(delay, reply) => {
            tokio::time::sleep(delay).await;
            Box::pin(answer(api, tool, *reply)).await
        }
    }
}
