//! `/mcp`: the Model Context Protocol server, over streamable HTTP.
//!
//! The protocol is `rmcp`'s: this file only says what the tools are and
//! what a call does ([`crate::tools`]). Revision 2025-11-25 (and the
//! older ones) is served with a session, `Mcp-Session-Id`, created by
//! `initialize`; 2026-07-28 is stateless, every request carrying its own
//! protocol version. Both answer the same tools.
//!
//! In front of the protocol, [`guard`] does what the rest of the API does
//! for every request: the `Host` header must be one the server is reached
//! at (`public_url`, `[mcp] allowed_hosts`, or loopback: a DNS-rebinding
//! page in a browser cannot talk to a local server), the key comes in
//! `Authorization: Bearer KEY` (401 without one), and the key must hold the
//! scope of each JSON-RPC method in the body (403 without it):
//! `plugins:read` to list tools, `actions:execute` or `actions:write` to
//! call one (`actions:read` for `get_action` and `list_pending_actions`).
//! The key is checked on every request, not once per session: a revoked
//! key stops working at once.
//!
//! The end user is chosen per connection, with `?entityId=` or
//! `?connectedAccountId=` on the URL (as Composio's MCP URLs do), or per
//! call with the same names in the call's `_meta`.
//!
//! A call that proposes (the type needs approval, or the key may not
//! execute) answers with the stored action at once. A client that declares
//! the tasks extension (`io.modelcontextprotocol/tasks`) gets a task instead,
//! whose id is the action's: `tasks/get` follows it, from the stored action,
//! until it has run, and `tasks/cancel` cancels it while it has not.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    CreateTaskResult, DetailedTask, ErrorCode, GetTaskParams, GetTaskResult, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Task,
    TaskPayload, TaskStatus, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::{ApiError, AppState, authenticate, require};
use crate::accounts::Lookup;
use crate::actions::{Action, ActionError, ActionStatus};
use crate::executions::{ExecutionRecord, ExecutionStatus};
use crate::runtime::FieldError;
use crate::tenancy::Scope;
use crate::tools::{
    self, MAX_TOOLS_PER_LIST, ProposalView, Refusal, ToolCaller, ToolDef, ToolOutcome, convert,
};

/// How often a client should poll a task.
const TASK_POLL_MS: u64 = 1000;

/// The most actions `list_pending_actions` returns.
const PENDING_MAX: usize = 100;

/// The `/mcp` service: the guard in front of rmcp's streamable HTTP server.
pub(super) fn router(state: &AppState) -> axum::Router {
    let settings = &state.settings;
    let handler = McpHandler {
        state: state.clone(),
    };
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(
            &settings.public_url,
            &settings.mcp_allowed_hosts,
        ))
        .with_max_request_body_bytes(settings.max_body_bytes)
        // A stateless answer that ends the exchange goes as plain JSON.
        .with_json_response(true)
        .with_cancellation_token(settings.shutdown.clone());
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
}

/// The hosts `/mcp` answers: loopback, the public URL's, and the
/// configured ones (an entry without a port matches any port).
fn allowed_hosts(public_url: &str, configured: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Ok(url) = url::Url::parse(public_url)
        && let Some(host) = url.host_str()
    {
        hosts.push(host.trim_matches(['[', ']']).to_ascii_lowercase());
    }
    // An entry's port, if it has one, is not compared: `Host` names the
    // server, and the listener already fixes the port.
    hosts.extend(configured.iter().map(|h| host_name(h)));
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The caller of one `/mcp` request, put in the request's extensions by
/// [`guard`] and read back by the handler.
#[derive(Debug, Clone)]
struct McpCaller(ToolCaller);

/// Host, key and scopes, before the protocol sees the request.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let settings = &state.settings;
    let hosts = allowed_hosts(&settings.public_url, &settings.mcp_allowed_hosts);
    if let Some(host) = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        let name = host_name(host);
        if !hosts.iter().any(|allowed| allowed == &name) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the Host header {host:?} is not one this server answers MCP requests for; set public_url, or add the host to [mcp] allowed_hosts"
                ),
            )
            .into_response();
        }
    }
    let principal = match authenticate(request.headers(), &state) {
        Ok(principal) => principal,
        Err(err) => return err.into_response(),
    };
    let (mut parts, body) = request.into_parts();
    let lookup = match connection_lookup(parts.uri.query()) {
        Ok(lookup) => lookup,
        Err(err) => return err.into_response(),
    };
    let bytes = if parts.method == Method::POST {
        match axum::body::to_bytes(body, settings.max_body_bytes).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than the server's limit (max_body_bytes)",
                )
                .into_response();
            }
        }
    } else {
        axum::body::Bytes::new()
    };
    for any_of in scopes_of(&bytes) {
        if let Err(err) = require(&principal, any_of) {
            return err.into_response();
        }
    }
    parts
        .extensions
        .insert(McpCaller(ToolCaller { principal, lookup }));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `host[:port]` without the port, lowercased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.to_ascii_lowercase()
}

/// The scopes the messages of a body need: for each, the key must hold
/// one of the list.
fn scopes_of(body: &[u8]) -> Vec<&'static [Scope]> {
    const CONNECT: &[Scope] = &[
        Scope::PluginsRead,
        Scope::ActionsRead,
        Scope::ActionsExecute,
        Scope::ActionsWrite,
    ];
    const LIST: &[Scope] = &[Scope::PluginsRead];
    const CALL: &[Scope] = &[Scope::ActionsExecute, Scope::ActionsWrite];
    const READ: &[Scope] = &[Scope::ActionsRead];
    // Following a task reads the action; cancelling it changes it, as
    // `POST /v1/actions/{id}/cancel` does.
    const CANCEL: &[Scope] = &[Scope::ActionsWrite];
    let messages = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(batch)) => batch,
        Ok(message) => vec![message],
        // Not JSON (or empty, for GET and DELETE): rmcp answers it.
        Err(_) => return vec![CONNECT],
    };
    let mut needed = vec![CONNECT];
    for message in &messages {
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        let name = message
            .pointer("/params/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        needed.push(match method {
            "tools/list" => LIST,
            "tools/call" if tools::RESERVED_NAMES.contains(&name) => READ,
            "tools/call" => CALL,
            "tasks/get" => READ,
            "tasks/cancel" | "tasks/update" => CANCEL,
            _ => CONNECT,
        });
    }
    needed
}

/// The end user named on the URL.
fn connection_lookup(query: Option<&str>) -> Result<Lookup, ApiError> {
    let mut lookup = Lookup::default();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = Some(value.into_owned()).filter(|v| !v.is_empty());
        match key.as_ref() {
            "entityId" | "entity_id" | "user_id" => lookup.entity_id = value,
            "connectedAccountId" | "connected_account_id" => {
                lookup.connected_account_id = value;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "the /mcp URL takes entityId and connectedAccountId, not {other:?}"
                )));
            }
        }
    }
    Ok(lookup)
}

/// The MCP server's handler: one per request (stateless) or per session.
#[derive(Clone)]
struct McpHandler {
    state: AppState,
}

impl McpHandler {
    /// The caller the guard authenticated, with the call's own end user.
    fn caller(
        context: &RequestContext<RoleServer>,
        meta: Option<&JsonObject>,
    ) -> Result<ToolCaller, ErrorData> {
        let McpCaller(mut caller) = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<McpCaller>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::internal_error("the request reached MCP without its caller", None)
            })?;
        // rmcp moves a request's `_meta` into the context; `meta` is the
        // params' own, for a request that kept it.
        let text = |key: &str| {
            meta.and_then(|m| m.get(key))
                .or_else(|| context.meta.get(key))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        if let Some(account) = text("connectedAccountId") {
            caller.lookup.connected_account_id = Some(account);
        }
        if let Some(entity) = text("entityId") {
            caller.lookup.entity_id = Some(entity);
        }
        Ok(caller)
    }

    fn public_url(&self) -> &str {
        &self.state.settings.public_url
    }

    /// Every tool: the action types, then `get_action` and
    /// `list_pending_actions`.
    fn tools(&self) -> Vec<Tool> {
        let mut list: Vec<Tool> = tools::catalog(self.state.tools.registry())
            .iter()
            .filter_map(|def| match mcp_tool(def) {
                Ok(tool) => Some(tool),
                Err(reason) => {
                    tracing::warn!(action_type = %def.action_type, %reason, "action type left out of MCP tools");
                    None
                }
            })
            .collect();
        list.extend(follow_up_tools());
        // Sorted by name, as the cursor of `tools/list` assumes.
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    async fn get_action(
        &self,
        caller: &ToolCaller,
        arguments: &JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(id) = arguments.get("action_id").and_then(Value::as_str) else {
            return Ok(tool_error(&Refusal {
                code: "invalid_input".into(),
                message: "action_id is required: the id (act_…) a call answered with".into(),
                retryable: false,
                errors: vec![FieldError::new("/action_id", "is required")],
                candidates: Vec::new(),
                retry_after_ms: None,
            }));
        };
        match self.state.tools.action(caller, id).map_err(internal)? {
            Some(action) => Ok(CallToolResult::structured(tools::action_view(
                &action,
                self.public_url(),
            ))),
            None => Ok(tool_error(&Refusal {
                code: "not_found".into(),
                message: format!("action {id} not found"),
                retryable: false,
                errors: Vec::new(),
                candidates: Vec::new(),
                retry_after_ms: None,
            })),
        }
    }

    async fn list_pending(
        &self,
        caller: &ToolCaller,
        arguments: &JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        let limit = match arguments.get("limit") {
            None | Some(Value::Null) => 20,
            Some(value) => match value.as_u64() {
                Some(n @ 1..=100) => usize::try_from(n).unwrap_or(PENDING_MAX),
                _ => {
                    return Ok(tool_error(&Refusal {
                        code: "invalid_input".into(),
                        message: format!("limit {value} is not a whole number from 1 to 100"),
                        retryable: false,
                        errors: vec![FieldError::new("/limit", "expected 1 to 100")],
                        candidates: Vec::new(),
                        retry_after_ms: None,
                    }));
                }
            },
        };
        let (actions, total) = self.state.tools.pending(caller, limit).map_err(internal)?;
        let views: Vec<Value> = actions
            .iter()
            .map(|a| tools::action_view(a, self.public_url()))
            .collect();
        Ok(CallToolResult::structured(
            json!({"actions": views, "total": total}),
        ))
    }
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(
            Implementation::new("actionhost", env!("CARGO_PKG_VERSION")).with_title("actionhost"),
        )
        .with_instructions(
            "Each tool is an action type. A call of a type that needs a person's approval (or any call under a key that may only propose) does not run: it is stored as an action in pending_approval, and the answer gives its action_id; follow it with get_action. Failures come back as tool errors with error_code, message and retryable.",
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let all = self.tools();
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => all
                .iter()
                .position(|tool| tool.name.as_ref() > cursor.as_str())
                .unwrap_or(all.len()),
        };
        let total = all.len();
        let page: Vec<Tool> = all
            .into_iter()
            .skip(start)
            .take(MAX_TOOLS_PER_LIST)
            .collect();
        let next_cursor = (start + page.len() < total)
            .then(|| page.last().map(|tool| tool.name.to_string()))
            .flatten();
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next_cursor;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Self::caller(&context, request.meta.as_ref().map(|m| &m.0.0))?;
        let arguments = request.arguments.unwrap_or_default();
        match request.name.as_ref() {
            "get_action" => return Ok(self.get_action(&caller, &arguments).await?.into()),
            "list_pending_actions" => {
                return Ok(self.list_pending(&caller, &arguments).await?.into());
            }
            _ => {}
        }
        let registry = self.state.tools.registry();
        let Some(def) = tools::find(registry, &request.name) else {
            let known: Vec<String> = self
                .tools()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                Some(json!({"tools": known})),
            ));
        };
        let outcome = self
            .state
            .tools
            .call(&caller, &def, Value::Object(arguments))
            .await
            .map_err(internal)?;
        Ok(match outcome {
            ToolOutcome::Ran(record) => ran(&record).into(),
            ToolOutcome::Refused(refusal) => tool_error(&refusal).into(),
            ToolOutcome::Proposed(action) => {
                let tasks = context
                    .client_capabilities()
                    .is_some_and(|c| c.supports_tasks());
                if tasks {
                    CallToolResponse::Task(CreateTaskResult::new(task_of(&action)))
                } else {
                    proposed(&ProposalView::of(&action, self.public_url())).into()
                }
            }
        })
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let caller = Self::caller(&context, None)?;
        let action = self
            .state
            .tools
            .action(&caller, &request.task_id)
            .map_err(internal)?
            .ok_or_else(|| unknown_task(&request.task_id))?;
        let executions = self.state.actions.executions(&action).unwrap_or_default();
        Ok(GetTaskResult::new(DetailedTask::new(
            task_of(&action),
            payload_of(&action, executions.last()),
        )))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = Self::caller(&context, None)?;
        match self.state.tools.cancel(&caller, &request.task_id).await {
            Ok(_) => Ok(()),
            Err(ActionError::NotFound(_)) => Err(unknown_task(&request.task_id)),
            Err(ActionError::Forbidden(forbidden)) => Err(ErrorData::invalid_request(
                format!("the task cannot be cancelled: {forbidden}"),
                None,
            )),
            Err(other) => Err(internal(other)),
        }
    }
}

/// An action type as an MCP tool.
fn mcp_tool(def: &ToolDef) -> Result<Tool, String> {
    let schema = convert::into_object(convert::mcp(&def.info.params_schema)?);
    Ok(Tool::new(
        def.name.clone(),
        convert::description(&def.info.title, &def.info.description),
        Arc::new(schema),
    )
    .with_title(def.info.title.clone())
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(def.destructive())
            .idempotent(def.info.idempotent)
            .open_world(def.open_world),
    ))
}

/// `get_action` and `list_pending_actions`.
fn follow_up_tools() -> [Tool; 2] {
    let read_only = ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false);
    let get = json!({
        "type": "object",
        "properties": {"action_id": {"type": "string", "description": "The action's id (act_…), as a call answered it."}},
        "required": ["action_id"],
        "additionalProperties": false,
    });
    let list = json!({
        "type": "object",
        "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "How many, newest first (default 20)."}},
        "additionalProperties": false,
    });
    [
        Tool::new(
            "get_action",
            "The state of an action a call proposed or ran: its status (pending_approval, scheduled, executing, succeeded, failed, rejected, cancelled, outcome_unknown), params, output and error.",
            Arc::new(convert::into_object(get)),
        )
        .with_title("Get an action")
        .with_annotations(read_only.clone()),
        Tool::new(
            "list_pending_actions",
            "The actions waiting for a person's approval, newest first.",
            Arc::new(convert::into_object(list)),
        )
        .with_title("List actions waiting for approval")
        .with_annotations(read_only),
    ]
}

/// A run's answer: its output, or its failure as a tool error.
fn ran(record: &ExecutionRecord) -> CallToolResult {
    if record.status == ExecutionStatus::Succeeded {
        let output = match record.output.clone() {
            Some(Value::Object(object)) => Value::Object(object),
            Some(other) => json!({"result": other}),
            None => json!({}),
        };
        return CallToolResult::structured(output);
    }
    let error = record.error.clone();
    tool_error(&Refusal {
        code: error
            .as_ref()
            .map_or_else(|| "permanent".into(), |e| e.code.clone()),
        message: error
            .as_ref()
            .map_or_else(|| "the action failed".into(), |e| e.message.clone()),
        retryable: error.as_ref().is_some_and(|e| e.retryable),
        errors: error.as_ref().map(|e| e.fields.clone()).unwrap_or_default(),
        candidates: Vec::new(),
        retry_after_ms: error.as_ref().and_then(|e| e.retry_after_ms),
    })
    .with_log_id(&record.id)
}

/// A failure the model can read and correct: `isError`, with the code,
/// the message, `retryable`, and each failing argument.
fn tool_error(refusal: &Refusal) -> CallToolResult {
    let mut text = format!("{}: {}", refusal.code, refusal.message);
    if !refusal.errors.is_empty() && !refusal.message.contains(&refusal.errors[0].path) {
        text.push_str(&format!(" ({})", FieldError::summary(&refusal.errors)));
    }
    let mut structured = json!({
        "error_code": refusal.code,
        "message": refusal.message,
        "retryable": refusal.retryable,
    });
    if !refusal.errors.is_empty() {
        structured["errors"] = json!(refusal.errors);
    }
    if !refusal.candidates.is_empty() {
        structured["candidates"] = json!(refusal.candidates);
    }
    if let Some(ms) = refusal.retry_after_ms {
        structured["retry_after_ms"] = json!(ms);
    }
    let mut result = CallToolResult::structured_error(structured);
    result.content = vec![ContentBlock::text(text)];
    result
}

/// A proposal's answer: not an error; the model reads where it waits.
fn proposed(proposal: &ProposalView) -> CallToolResult {
    let value = serde_json::to_value(proposal).unwrap_or_default();
    let mut result = CallToolResult::structured(value.clone());
    result.content = vec![
        ContentBlock::text(proposal.message()),
        ContentBlock::text(value.to_string()),
    ];
    result
}

trait WithLogId {
    fn with_log_id(self, id: &str) -> Self;
}

impl WithLogId for CallToolResult {
    /// Adds the execution record's id to the structured answer.
    fn with_log_id(mut self, id: &str) -> Self {
        if let Some(Value::Object(object)) = &mut self.structured_content {
            object.insert("log_id".into(), json!(id));
        }
        self
    }
}

/// The task of a proposed action: its id is the action's.
fn task_of(action: &Action) -> Task {
    let (status, message) = match action.status {
        ActionStatus::PendingApproval => (TaskStatus::Working, "waiting for a person's approval"),
        ActionStatus::Scheduled => (TaskStatus::Working, "approved; waiting to run"),
        ActionStatus::Executing => (TaskStatus::Working, "running"),
        ActionStatus::Cancelled => (TaskStatus::Cancelled, "cancelled"),
        ActionStatus::Succeeded => (TaskStatus::Completed, "succeeded"),
        ActionStatus::Failed => (TaskStatus::Completed, "failed"),
        ActionStatus::Rejected => (TaskStatus::Completed, "rejected by a reviewer"),
        ActionStatus::OutcomeUnknown => (
            TaskStatus::Completed,
            "its outcome is unknown; an operator decides",
        ),
    };
    Task::new(
        action.id.clone(),
        status,
        action.created_at.clone(),
        action.updated_at.clone(),
    )
    .with_status_message(message)
    .with_poll_interval_ms(TASK_POLL_MS)
}

/// What `tasks/get` carries for the action: its result once it has one.
fn payload_of(action: &Action, last: Option<&ExecutionRecord>) -> TaskPayload {
    let result = match action.status {
        ActionStatus::PendingApproval | ActionStatus::Scheduled | ActionStatus::Executing => {
            return TaskPayload::Working;
        }
        ActionStatus::Cancelled => return TaskPayload::Cancelled,
        ActionStatus::Succeeded => match last {
            Some(record) => ran(record),
            None => CallToolResult::structured(action.output.clone().unwrap_or_else(|| json!({}))),
        },
        ActionStatus::Failed | ActionStatus::OutcomeUnknown => match last {
            Some(record) => ran(record),
            None => tool_error(&Refusal {
                code: action.status.as_str().into(),
                message: action
                    .last_error
                    .as_ref()
                    .map_or_else(|| "the action failed".into(), |e| e.message.clone()),
                retryable: false,
                errors: Vec::new(),
                candidates: Vec::new(),
                retry_after_ms: None,
            }),
        },
        ActionStatus::Rejected => tool_error(&Refusal {
            code: "rejected".into(),
            message: format!("a reviewer rejected action {}; it did not run", action.id),
            retryable: false,
            errors: Vec::new(),
            candidates: Vec::new(),
            retry_after_ms: None,
        }),
    };
    let result = match serde_json::to_value(result) {
        Ok(Value::Object(object)) => object,
        _ => JsonObject::new(),
    };
    TaskPayload::Completed { result }
}

fn unknown_task(id: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_PARAMS,
        format!("no task {id}: a task's id is the id of the action a call proposed"),
        None,
    )
}

/// A failure of the server, not of the call: logged, and reported
/// without its cause.
fn internal(cause: impl std::fmt::Display) -> ErrorData {
    tracing::error!(%cause, "mcp request failed");
    ErrorData::internal_error("internal error; the server log has the details", None)
}
