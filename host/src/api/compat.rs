//! The Composio-compatible surface: execute an action, read its schema, list apps.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use axum::response::{IntoResponse, Response};

use super::composio::{self, AppView};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, IdempotencyKey, need};
use crate::accounts::{InlineAuth, Lookup};
use crate::actions::{Claim, StoredResponse};
use crate::executions::{Admission, ExecuteCommand, ExecutionStatus};
use crate::runtime::{AuthScheme, FieldError, Plugin};

/// `ActionExecutionReqDTO`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"entityId": "user-42", "input": {"contacts": [{"email": "ada@example.com", "firstname": "Ada"}]}, "allowTracing": true}))]
pub struct ExecuteBody {
    /// The connected account (a UUID) to run as.
    #[serde(default)]
    connected_account_id: Option<String>,
    /// The app the action belongs to (checked when given).
    #[serde(default)]
    app_name: Option<String>,
    /// The end user whose account is picked when it is the only active one of the app.
    #[serde(default)]
    entity_id: Option<String>,
    /// The action's params, per `GET /api/v2/actions/{action}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    input: Option<serde_json::Value>,
    /// Echoed back in the response (and stored with the execution).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    session_info: Option<serde_json::Value>,
    /// Credentials for this one execution; never stored.
    #[serde(default)]
    auth_config: Option<InlineAuth>,
    /// A use-case description for the configured language model
    /// (`[models] text_provider`, `text_model`) to derive `input` from, with
    /// one forced call of a tool whose schema is the action's. The derived
    /// input is checked before anything runs.
    #[serde(default)]
    text: Option<String>,
    /// Context for the language model (see `text`).
    #[serde(default)]
    custom_description: Option<String>,
    /// System prompt for the language model (see `text`).
    #[serde(default)]
    system_prompt: Option<String>,
    /// The plugin version to run: `latest` or `latest:base` (the newest
    /// active one), an active version, or `1_0` (the newest active 1.0.x).
    #[serde(default)]
    version: Option<String>,
    /// Client-side trace entries, stored with the execution's session info.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    trace_logs: Option<Vec<serde_json::Value>>,
    /// Keep and return the outbound request log (method, host, path, status, duration).
    #[serde(default)]
    allow_tracing: bool,
}

/// `ActionExecutionResDto`, plus the error's code and `retryable`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteResponse {
    /// The plugin's output (`{}` on failure).
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// Whether the action succeeded.
    successful: bool,
    /// Deprecated spelling of `successful`, same value.
    successfull: bool,
    /// The error message, when it failed.
    error: Option<String>,
    /// The error's code: `unauthorized`, `rate_limited`, `transient`, `permanent`, `invalid_input`, `plugin_fault`.
    error_code: Option<String>,
    /// Whether trying again later may succeed.
    retryable: bool,
    /// For `rate_limited`: how long the provider asked to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    /// The execution record (`GET /v1/executions/{logId}`).
    log_id: String,
    /// The request's session info, echoed.
    #[schema(value_type = Option<Object>)]
    session_info: Option<serde_json::Value>,
    /// With `allowTracing`: the outbound requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    trace: Option<Vec<crate::runtime::OutboundCall>>,
}

/// Executes an action synchronously through the resolved connected account.
#[utoipa::path(
    post,
    path = "/api/v2/actions/{action}/execute",
    tag = "execute",
    params(
        ("action" = String, Path, description = "The action type, such as `send_email`, in any case (`SEND_EMAIL`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeat of the same request; passed to the plugin"),
    ),
    request_body = ExecuteBody,
    responses(
        (status = 200, body = ExecuteResponse, description = "The action ran; `successful` says how it went"),
        (status = 404, body = super::ErrorBody, description = "Unknown action"),
        (status = 422, body = super::ErrorBody, description = "Invalid params, or no usable account"),
        (status = 429, body = super::ErrorBody, description = "The tenant or the plugin already runs as many executions as its concurrency cap allows; retry after `Retry-After` seconds", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, body = super::ErrorBody, description = "Nothing ran and may be tried again: the plugins are still loading (`unavailable`), or the account's OAuth2 token is about to expire and its token endpoint did not give a new one (`transient`; the account stays active)"),
    ),
    security(("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]))
)]
pub async fn actions_execute(
    caller: Authorized<need::ActionsExecute>,
    key: IdempotencyKey,
    State(state): State<AppState>,
    ApiPath(action): ApiPath<String>,
    ApiJson(mut body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    // Composio's client writes `CRM_SYNC`; actionhost's name is `crm_sync`.
    let action = composio::canonical_action(&state, &action);
    let keyed = super::actions::keyed(
        &key,
        "POST",
        &format!("/api/v2/actions/{action}/execute"),
        &body,
    )?;
    composio::composio_auth_config(&mut body)?;
    let mut body: ExecuteBody = super::parse(body)?;
    body.version = composio::composio_version(&state, &action, body.version.as_deref());
    // Composio's client sends the app upper-cased; plugin names are lower case.
    body.app_name = body.app_name.map(|app| app.to_ascii_lowercase());
    let params = match (body.input, &body.text) {
        (Some(input), _) if input.is_object() => input,
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "input must be a JSON object of the action's params",
            ));
        }
        (None, Some(text)) => {
            derive_input(
                &state,
                caller.tenant(),
                &action,
                body.version.as_deref(),
                text,
                body.custom_description.as_deref(),
                body.system_prompt.as_deref(),
            )
            .await?
        }
        (None, None) => serde_json::json!({}),
    };
    let session_info = match (body.session_info, body.trace_logs) {
        (info, None) => info,
        (info, Some(logs)) => {
            let mut info = info.unwrap_or_else(|| serde_json::json!({}));
            if let Some(map) = info.as_object_mut() {
                map.insert("traceLogs".into(), logs.into());
            }
            Some(info)
        }
    };
    let tenant = caller.tenant();
    let idempotency = state.actions.idempotency();
    if let Some(keyed) = &keyed {
        match idempotency.claim(tenant, keyed)? {
            Claim::New => {}
            other => return super::actions::claim_answer(other),
        }
    }
    let command = ExecuteCommand {
        performed_by: caller.principal.user.id.clone(),
        key_id: caller.principal.key.id.clone(),
        version: body.version,
        app_name: body.app_name,
        lookup: Lookup {
            connected_account_id: body.connected_account_id,
            entity_id: body.entity_id,
            identity_id: None,
        },
        inline_auth: body.auth_config,
        trace: body.allow_tracing,
        session_info,
        text: body.text,
        idempotency_key: keyed.as_ref().map(|k| k.key.clone()),
        // The client waits on the answer: at a cap, it hears so at once.
        admission: Admission::Refuse,
        ..ExecuteCommand::new(tenant, action, params)
    };
    // In a task of its own: a client that goes away does not cut the run
    // short, and its record and its key's answer are written all the same.
    let (pipeline, idempotency, tenant) = (
        state.pipeline.clone(),
        idempotency.clone(),
        tenant.to_owned(),
    );
    let run = async move {
        let record = match pipeline.execute(command).await {
            Ok(record) => record,
            Err(err) => {
                // Nothing ran: the key may be used again for a corrected request.
                if let Some(keyed) = &keyed {
                    idempotency.release(&tenant, &keyed.key)?;
                }
                return Err(ApiError::from(err));
            }
        };
        let successful = record.status == ExecutionStatus::Succeeded;
        let response = ExecuteResponse {
            data: record.output.unwrap_or_else(|| serde_json::json!({})),
            successful,
            successfull: successful,
            error: record.error.as_ref().map(|e| e.message.clone()),
            error_code: record.error.as_ref().map(|e| e.code.clone()),
            retryable: record.error.as_ref().is_some_and(|e| e.retryable),
            retry_after_ms: record.error.as_ref().and_then(|e| e.retry_after_ms),
            log_id: record.id,
            session_info: record.session_info,
            trace: record.trace,
        };
        if let Some(keyed) = &keyed {
            let body = serde_json::to_value(&response).map_err(ApiError::internal)?;
            idempotency.complete(&tenant, &keyed.key, StoredResponse { status: 200, body })?;
        }
        Ok(response)
    };
    let response = state
        .actions
        .detach(run)
        .await
        .map_err(ApiError::internal)??;
    Ok(axum::Json(response).into_response())
}

/// An action type and its schemas, in actionhost's shape and Composio's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    /// The action type.
    name: String,
    display_name: String,
    description: String,
    /// The app (plugin) providing it.
    app_name: String,
    /// Same as `appName` (Composio's field).
    app_id: String,
    /// The plugin's version.
    version: String,
    /// Every active version, newest first (Composio's field).
    #[serde(rename = "available_versions")]
    available_versions: Vec<String>,
    /// Always empty (Composio's field).
    tags: Vec<String>,
    /// JSON Schema of `input`.
    #[schema(value_type = Object)]
    parameters: serde_json::Value,
    /// JSON Schema of `data` (an empty object schema when the plugin
    /// documents none).
    #[schema(value_type = Object)]
    response: serde_json::Value,
    #[schema(value_type = Vec<String>)]
    auth_schemes: Vec<AuthScheme>,
    idempotent: bool,
    requires_approval: bool,
}

/// Which version of an action to describe.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// `latest` or `latest:base` (the default: the newest active version),
    /// an active version, or `1_0` (the newest active 1.0.x).
    version: Option<String>,
}

/// An action type's JSON Schema.
#[utoipa::path(
    get,
    path = "/api/v2/actions/{action}",
    tag = "execute",
    params(("action" = String, Path, description = "The action type, in any case"), VersionQuery),
    responses((status = 200, body = ActionView), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody, description = "The version is not active; the message lists the active ones")),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn actions_get(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
    ApiPath(action): ApiPath<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<axum::Json<ActionView>, ApiError> {
    let action = composio::canonical_action(&state, &action);
    let version = composio::composio_version(&state, &action, query.version.as_deref());
    let registry = state.pipeline.registry();
    let plugin = registry
        .resolve(&action, version.as_deref())
        .map_err(|err| ApiError::from(crate::executions::PipelineError::from(err)))?;
    let available_versions = registry
        .action_type_entries()
        .into_iter()
        .find(|entry| entry.name == action)
        .map(|entry| entry.versions)
        .unwrap_or_default();
    ActionView::of(&plugin, &action, available_versions)
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("action type", &action))
}

impl ActionView {
    /// The action type `action` of `plugin`, with the active versions.
    pub(super) fn of(
        plugin: &Plugin,
        action: &str,
        available_versions: Vec<String>,
    ) -> Option<Self> {
        let manifest = plugin.manifest();
        let info = manifest.action_type(action)?;
        Some(Self {
            name: info.name.clone(),
            display_name: info.title.clone(),
            description: info.description.clone(),
            app_name: manifest.name.clone(),
            app_id: manifest.name.clone(),
            version: manifest.version.clone(),
            available_versions,
            tags: Vec::new(),
            parameters: composio::composio_schema(
                Some(&info.params_schema),
                &format!("{action}Request"),
            ),
            response: composio::composio_schema(
                info.output_schema.as_ref(),
                &format!("{action}Response"),
            ),
            auth_schemes: info.auth_schemes.clone(),
            idempotent: info.idempotent,
            requires_approval: info.requires_approval,
        })
    }

    /// Named by Composio's upper-case slug (`CRM_SYNC`), as its client's
    /// listings expect.
    pub(super) fn with_upper_case_name(mut self) -> Self {
        self.name = self.name.to_ascii_uppercase();
        self
    }
}

/// The apps.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppList {
    items: Vec<AppView>,
}

/// The loaded plugins as apps, with their actions.
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    tag = "execute",
    responses((status = 200, body = AppList)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn apps_list(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
) -> Result<axum::Json<AppList>, ApiError> {
    let items = state
        .pipeline
        .registry()
        .plugins()
        .iter()
        .map(AppView::of)
        .collect();
    Ok(axum::Json(AppList { items }))
}

/// Derives an action's params from `text` with one forced tool call on the
/// action's own schema, and checks them: a 422 listing the errors and the
/// derived input when they do not fit.
async fn derive_input(
    state: &AppState,
    tenant_id: &str,
    action: &str,
    version: Option<&str>,
    text: &str,
    description: Option<&str>,
    system_prompt: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    use crate::runtime::model::{CompletionRequest, Message, Tool, ToolChoice};
    let config = state.models.config();
    let (Some(provider), Some(model)) = (&config.text_provider, &config.text_model) else {
        return Err(ApiError::invalid(
            "`text` needs a language model to derive the input, and this server has none configured ([models] text_provider and text_model); send `input` with the params instead",
        ));
    };
    let plugin = state
        .pipeline
        .registry()
        .resolve(action, version)
        .map_err(|err| ApiError::from(crate::executions::PipelineError::from(err)))?;
    let info = plugin
        .manifest()
        .action_type(action)
        .cloned()
        .ok_or_else(|| ApiError::not_found("action", action))?;
    let tool_name: String = action
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let mut parameters = info.params_schema.clone();
    if let Some(object) = parameters.as_object_mut() {
        object.remove("$schema");
    }
    let mut prompt = text.to_owned();
    if let Some(description) = description {
        prompt = format!("{prompt}\n\nContext: {description}");
    }
    let request = CompletionRequest {
        model: model.clone(),
        system: Some(system_prompt.map_or_else(
            || format!("Derive the params of the action `{action}` ({}) from the user's request, and call the tool with them.", info.description),
            str::to_owned,
        )),
        messages: vec![Message::user(prompt)],
        tools: vec![Tool {
            name: tool_name.clone(),
            description: info.description.clone(),
            parameters,
        }],
        tool_choice: ToolChoice::Tool(tool_name.clone()),
        temperature: Some(0.0),
        max_tokens: 1024,
        account: None,
    };
    let answer = state
        .models
        .complete(tenant_id, provider, None, request)
        .await
        .map_err(|err| match err {
            crate::models::ModelCallError::Account(err) => ApiError::from(err),
            crate::models::ModelCallError::UnknownProvider { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{err}: the server's [models] text_provider is not loaded"),
            ),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                format!("the language model could not derive the input: {other}"),
            ),
        })?;
    let derived = answer
        .completion
        .tool_calls
        .iter()
        .find(|call| call.name == tool_name)
        .map(|call| match &call.arguments {
            serde_json::Value::String(text) => serde_json::from_str(text)
                .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
            other => other.clone(),
        });
    let Some(derived) = derived else {
        return Err(ApiError::invalid(format!(
            "the language model did not derive an input from `text` (it answered: {:?}); send `input` instead",
            answer
                .completion
                .content
                .chars()
                .take(200)
                .collect::<String>()
        )));
    };
    let fields = if derived.is_object() {
        match plugin.check_params(action, &derived) {
            Err(fields) => fields,
            Ok(()) => match plugin.validate(action, &derived).await {
                Ok(Ok(())) => Vec::new(),
                Ok(Err(fields)) => fields,
                Err(fault) => vec![FieldError::new(
                    "",
                    &format!("the plugin failed validating: {}", fault.kind),
                )],
            },
        }
    } else {
        vec![FieldError::new(
            "",
            "the derived input is not a JSON object",
        )]
    };
    if fields.is_empty() {
        return Ok(derived);
    }
    Err(ApiError::invalid(format!(
        "the input derived from `text` is invalid: {}; derived input: {derived}",
        FieldError::summary(&fields)
    ))
    .with_fields(fields)
    .with_derived_input(derived))
}
