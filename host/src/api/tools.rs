//! Tool lists for the OpenAI and Anthropic SDKs, and tool calls as a model
//! returned them: `GET /api/v2/tools`, `POST /api/v2/tools/execute`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiJson, ApiQuery, AppState, Authorized, need};
use crate::accounts::Lookup;
use crate::executions::ExecutionStatus;
use crate::tools::{
    self, MAX_TOOLS_PER_LIST, ProposalView, Refusal, ToolCaller, ToolDef, ToolOutcome, convert,
};

/// `GET /api/v2/tools`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ToolListParams {
    /// `openai` (function tools in strict mode, the default), `anthropic`
    /// or `mcp`.
    #[param(pattern = "^(openai|anthropic|mcp)$")]
    format: Option<String>,
    /// Only these action types, comma-separated.
    types: Option<String>,
    /// Only the types of this app (plugin).
    app: Option<String>,
    /// Tools per page, 1–128 (default 128).
    #[param(minimum = 1, maximum = 128)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A type left out of the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct OmittedTool {
    /// The action type.
    #[serde(rename = "type")]
    action_type: String,
    /// Its tool name.
    name: String,
    /// Why its schema cannot be expressed in this format.
    reason: String,
}

/// Ready-to-send tool definitions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolList {
    /// `openai`, `anthropic` or `mcp`.
    format: String,
    /// The definitions, at most 128: put them in the request's `tools` as they are.
    #[schema(value_type = Vec<Object>)]
    tools: Vec<serde_json::Value>,
    /// Types that match the filters but cannot be expressed in this format.
    omitted: Vec<OmittedTool>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    /// How many tools match the filters, all pages together.
    total: usize,
}

/// The action types as tool definitions for the OpenAI or Anthropic API, or
/// MCP. OpenAI's are strict-mode function tools; a type whose schema cannot
/// be expressed in the format is left out, with the reason under `omitted`.
#[utoipa::path(
    get,
    path = "/api/v2/tools",
    tag = "tools",
    params(ToolListParams),
    responses((status = 200, body = ToolList), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn tools_list(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ToolListParams>,
) -> Result<axum::Json<ToolList>, ApiError> {
    let format = params.format.as_deref().unwrap_or("openai");
    if !["openai", "anthropic", "mcp"].contains(&format) {
        return Err(ApiError::invalid(format!(
            "format {format:?} is not one of openai, anthropic, mcp"
        )));
    }
    let limit = params.limit.unwrap_or(MAX_TOOLS_PER_LIST);
    if !(1..=MAX_TOOLS_PER_LIST).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit {limit} is out of range: 1 to {MAX_TOOLS_PER_LIST}"
        )));
    }
    let registry = ready_registry(&state)?;
    let wanted: Option<Vec<&str>> = params.types.as_deref().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    });
    let mut tools = Vec::new();
    let mut omitted = Vec::new();
    for def in tools::catalog(registry) {
        if wanted
            .as_ref()
            .is_some_and(|types| !types.contains(&def.action_type.as_str()))
        {
            continue;
        }
        if params
            .app
            .as_ref()
            .is_some_and(|app| !app.eq_ignore_ascii_case(&def.app))
        {
            continue;
        }
        match definition(format, &def) {
            Ok(tool) => tools.push((def.name.clone(), tool)),
            Err(reason) => omitted.push(OmittedTool {
                action_type: def.action_type,
                name: def.name,
                reason,
            }),
        }
    }
    if let Some(types) = &wanted {
        let known: Vec<String> = tools::catalog(registry)
            .into_iter()
            .map(|d| d.action_type)
            .collect();
        if let Some(unknown) = types.iter().find(|t| !known.iter().any(|k| k == *t)) {
            return Err(ApiError::invalid(format!(
                "types names {unknown:?}, which no loaded plugin provides; known types: {}",
                known.join(", ")
            )));
        }
    }
    let total = tools.len();
    let start = match &params.cursor {
        None => 0,
        Some(cursor) => tools
            .iter()
            .position(|(name, _)| name > cursor)
            .unwrap_or(total),
    };
    let page: Vec<(String, serde_json::Value)> =
        tools.into_iter().skip(start).take(limit).collect();
    let next_cursor = (start + page.len() < total)
        .then(|| page.last().map(|(name, _)| name.clone()))
        .flatten();
    Ok(axum::Json(ToolList {
        format: format.to_owned(),
        tools: page.into_iter().map(|(_, tool)| tool).collect(),
        omitted,
        next_cursor,
        total,
    }))
}

/// The registry, once the plugins found at start-up are loaded: before,
/// the tools are not all known yet.
fn ready_registry(state: &AppState) -> Result<&crate::registry::PluginRegistry, ApiError> {
    let registry = state.pipeline.registry();
    if registry.is_ready() {
        Ok(registry)
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "plugins are still loading; try again in a moment",
        ))
    }
}

/// One tool's definition in `format`.
fn definition(format: &str, def: &ToolDef) -> Result<serde_json::Value, String> {
    let description = convert::description(&def.info.title, &def.info.description);
    let schema = &def.info.params_schema;
    Ok(match format {
        "openai" => serde_json::json!({
            "type": "function",
            "function": {
                "name": def.name,
                "description": description,
                "parameters": convert::openai_strict(schema)?,
                "strict": true,
            },
        }),
        "anthropic" => serde_json::json!({
            "name": def.name,
            "description": description,
            "input_schema": convert::anthropic(schema)?,
        }),
        _ => serde_json::json!({
            "name": def.name,
            "title": def.info.title,
            "description": description,
            "inputSchema": convert::mcp(schema)?,
            "annotations": {
                "title": def.info.title,
                "readOnlyHint": false,
                "destructiveHint": def.destructive(),
                "idempotentHint": def.info.idempotent,
                "openWorldHint": def.open_world,
            },
        }),
    })
}

/// A tool call as a model returned it: OpenAI's (`function` with `name`
/// and `arguments`, a JSON string), Anthropic's `tool_use` block (`name` and
/// `input`), or plainly `name` and `arguments` (a string or an object).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "call_1", "type": "function", "function": {"name": "crm_sync", "arguments": "{\"contacts\":[{\"email\":\"ada@example.com\"}]}"}, "entityId": "user-42"}))]
pub struct ToolCallBody {
    /// The call's id (`call_…`, `toolu_…`), echoed as `tool_call_id`.
    #[serde(default)]
    id: Option<String>,
    /// `function` (OpenAI) or `tool_use` (Anthropic); not checked.
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    kind: Option<String>,
    /// OpenAI's call: `name` and `arguments`.
    #[serde(default)]
    function: Option<FunctionCall>,
    /// The tool's name.
    #[serde(default)]
    name: Option<String>,
    /// The arguments: a JSON string or an object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    arguments: Option<serde_json::Value>,
    /// Anthropic's name for the arguments (an object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Option<serde_json::Value>,
    /// The end user whose account is used (Composio's `entityId`).
    #[serde(default)]
    entity_id: Option<String>,
    /// The connected account to use.
    #[serde(default)]
    connected_account_id: Option<String>,
}

/// OpenAI's `function` of a tool call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionCall {
    /// The tool's name.
    name: String,
    /// The arguments: a JSON string (or an object, as some servers send).
    #[schema(value_type = Object)]
    arguments: serde_json::Value,
}

/// What a tool call did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCallResult {
    /// The call's id, when the request had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
    /// The tool's name.
    name: String,
    /// The action type.
    #[serde(rename = "type")]
    action_type: String,
    /// `succeeded`, `failed` (the plugin ran and reported a failure) or
    /// `pending_approval` (nothing ran: a person decides, see `action_id`).
    status: &'static str,
    /// Whether it ran and succeeded.
    successful: bool,
    /// The plugin's output.
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    /// The failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The failure's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
    /// Whether trying again later may succeed.
    retryable: bool,
    /// The execution record (`GET /v1/executions/{id}`), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_id: Option<String>,
    /// The stored action waiting for approval, when it proposed.
    #[serde(skip_serializing_if = "Option::is_none")]
    proposal: Option<ProposalView>,
    /// The answer as text, ready to send back to the model as the tool's result.
    content: String,
}

/// Runs a tool call as the model returned it. A type that needs approval,
/// or any call under a key that may not execute (`propose_only`, or no
/// `actions:execute`), is stored as an action in `pending_approval` and
/// answered at once; anything else runs through the one pipeline. Refused
/// arguments and account problems are errors, as on execute.
#[utoipa::path(
    post,
    path = "/api/v2/tools/execute",
    tag = "tools",
    request_body = ToolCallBody,
    responses(
        (status = 200, body = ToolCallResult, description = "It ran (see `successful`) or waits for approval (`status: pending_approval`)"),
        (status = 404, body = super::ErrorBody, description = "No tool has this name"),
        (status = 422, body = super::ErrorBody, description = "The arguments break the tool's schema (each path under `errors`), or no usable account (`candidates` when ambiguous)"),
        (status = 429, body = super::ErrorBody, description = "At a concurrency cap; retry after `Retry-After` seconds"),
        (status = 503, body = super::ErrorBody, description = "Plugins are still loading"),
    ),
    security(
        ("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]),
        ("bearer" = ["actions:write"]), ("api_key" = ["actions:write"])
    )
)]
pub async fn tools_execute(
    caller: Authorized<need::ToolsCall>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ToolCallBody>,
) -> Result<axum::Json<ToolCallResult>, ApiError> {
    let (name, arguments) = match (body.function, body.name) {
        (Some(function), None) => (function.name, Some(function.arguments)),
        (None, Some(name)) => (name, body.arguments.or(body.input)),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give the tool's name once: in `function` (OpenAI's shape) or as `name`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "the call names no tool: send `name` and `arguments`, OpenAI's `function` object, or Anthropic's tool_use block",
            ));
        }
    };
    let arguments = parse_arguments(arguments)?;
    let registry = ready_registry(&state)?;
    let Some(def) = tools::find(registry, &name) else {
        let known: Vec<String> = tools::catalog(registry)
            .into_iter()
            .map(|d| d.name)
            .collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no tool is named {name:?}; the tools: {}", known.join(", ")),
        ));
    };
    let tool_caller = ToolCaller {
        principal: caller.principal.clone(),
        lookup: Lookup {
            connected_account_id: body.connected_account_id,
            entity_id: body.entity_id,
            identity_id: None,
        },
    };
    let outcome = state
        .tools
        .call(&tool_caller, &def, arguments)
        .await
        .map_err(|err| match err {
            tools::ToolError::Store(err) => ApiError::from(err),
            other => ApiError::internal(other),
        })?;
    let result = match outcome {
        ToolOutcome::Refused(refusal) => return Err(refused(refusal)),
        ToolOutcome::Proposed(action) => {
            let proposal = ProposalView::of(&action, &state.settings.public_url);
            ToolCallResult {
                tool_call_id: body.id,
                name: def.name,
                action_type: def.action_type,
                status: "pending_approval",
                successful: false,
                data: None,
                error: None,
                error_code: None,
                retryable: false,
                log_id: None,
                content: proposal.message(),
                proposal: Some(proposal),
            }
        }
        ToolOutcome::Ran(record) => {
            let successful = record.status == ExecutionStatus::Succeeded;
            let content = match (&record.output, &record.error) {
                (Some(output), _) if successful => output.to_string(),
                (_, Some(error)) => serde_json::json!({
                    "error_code": error.code,
                    "message": error.message,
                    "retryable": error.retryable,
                })
                .to_string(),
                _ => "{}".to_owned(),
            };
            ToolCallResult {
                tool_call_id: body.id,
                name: def.name,
                action_type: def.action_type,
                status: if successful { "succeeded" } else { "failed" },
                successful,
                error: record.error.as_ref().map(|e| e.message.clone()),
                error_code: record.error.as_ref().map(|e| e.code.clone()),
                retryable: record.error.as_ref().is_some_and(|e| e.retryable),
                data: record.output.clone(),
                log_id: Some(record.id.clone()),
                proposal: None,
                content,
            }
        }
    };
    Ok(axum::Json(result))
}

/// The arguments as an object: a JSON string is parsed, `null` or absent
/// is `{}`.
fn parse_arguments(arguments: Option<serde_json::Value>) -> Result<serde_json::Value, ApiError> {
    let value = match arguments {
        None | Some(serde_json::Value::Null) => return Ok(serde_json::json!({})),
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => {
            return Ok(serde_json::json!({}));
        }
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).map_err(|err| {
            ApiError::invalid(format!(
                "arguments is a string that is not JSON ({err}); send the JSON text of an object, or the object itself"
            ))
        })?,
        Some(other) => other,
    };
    if !value.is_object() {
        return Err(ApiError::invalid(
            "arguments must be a JSON object (or the JSON text of one)",
        ));
    }
    Ok(value)
}

/// A refusal as an API error.
fn refused(refusal: Refusal) -> ApiError {
    let status = match refusal.code.as_str() {
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "unavailable" | "transient" => StatusCode::SERVICE_UNAVAILABLE,
        "conflict" => StatusCode::CONFLICT,
        "not_found" => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let code = super::static_code(&refusal.code);
    let mut error = ApiError::new(status, code, refusal.message)
        .with_fields(refusal.errors)
        .with_candidates(refusal.candidates);
    if let Some(ms) = refusal.retry_after_ms {
        error = error.with_retry_after(ms.div_ceil(1000));
    }
    error
}
