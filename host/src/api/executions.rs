//! `GET /v1/executions/{id}`: the record of one execution.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiPath, AppState, Authorized, need};
use crate::executions::{ErrorInfo, ExecutionRecord, ExecutionStatus};

/// An execution record, with Flowdash's `status` (`Success` / `Fail`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionView {
    /// `exe_…` (Composio's `logId`).
    id: String,
    /// `Success` or `Fail`.
    status: &'static str,
    /// The failure, as a one-element list (Flowdash's shape).
    errors: Vec<ErrorInfo>,
    /// The stored action it belongs to, if any.
    action_id: Option<String>,
    /// `execute`, or the reviewer's transition it recorded.
    transition: String,
    action_type: String,
    plugin: String,
    plugin_version: String,
    #[schema(value_type = Object)]
    params: serde_json::Value,
    account_id: Option<String>,
    inline_credentials: bool,
    attempt: u32,
    outcome: ExecutionStatus,
    #[schema(value_type = Option<Object>)]
    output: Option<serde_json::Value>,
    /// The captured plugin log.
    #[schema(value_type = Vec<Object>)]
    log: Vec<crate::runtime::LogLine>,
    log_truncated_bytes: u64,
    /// Outbound requests, when tracing was asked for.
    #[schema(value_type = Option<Vec<Object>>)]
    trace: Option<Vec<crate::runtime::OutboundCall>>,
    /// The user on whose authority it ran.
    performed_by: String,
    key_id: String,
    #[schema(value_type = Option<Object>)]
    session_info: Option<serde_json::Value>,
    /// Composio's `text` the params were derived from, when they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// The key the plugin was given for provider-side deduplication.
    idempotency_key: Option<String>,
    started_at: String,
    finished_at: String,
    duration_ms: u64,
    /// The replica that ran it (`rep_…`), where several serve one database.
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<String>,
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(record: ExecutionRecord) -> Self {
        Self {
            id: record.id,
            status: match record.status {
                ExecutionStatus::Pending => "Pending",
                ExecutionStatus::Succeeded => "Success",
                ExecutionStatus::Failed => "Fail",
            },
            errors: record.error.into_iter().collect(),
            action_id: record.action_id,
            transition: record.transition,
            action_type: record.action_type,
            plugin: record.plugin,
            plugin_version: record.plugin_version,
            params: record.params,
            account_id: record.account_id,
            inline_credentials: record.inline_credentials,
            attempt: record.attempt,
            outcome: record.status,
            output: record.output,
            log: record.log,
            log_truncated_bytes: record.log_truncated_bytes,
            trace: record.trace,
            performed_by: record.performed_by,
            key_id: record.key_id,
            session_info: record.session_info,
            text: record.text,
            idempotency_key: record.idempotency_key,
            started_at: record.started_at,
            finished_at: record.finished_at,
            duration_ms: record.duration_ms,
            replica: record.replica,
        }
    }
}

/// One execution record: params, account, outcome, log, timings.
#[utoipa::path(
    get,
    path = "/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "The execution id (`logId`)")),
    responses((status = 200, body = ExecutionView), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["actions:read"]), ("api_key" = ["actions:read"]))
)]
pub async fn executions_get(
    caller: Authorized<need::ActionsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ExecutionView>, ApiError> {
    let record = state
        .pipeline
        .record(caller.tenant(), &id)?
        .ok_or_else(|| ApiError::not_found("execution", &id))?;
    Ok(axum::Json(record.into()))
}
