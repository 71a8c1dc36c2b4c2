//! The Pathbound Actions API (`/v1/actions…`) and Flowdash's transitions
//! (`/v1/actions/{id}/transitions`), over the same stored actions; Flowdash's
//! executions are in [`super::flowdash`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, IdempotencyKey, MAX_OFFSET, need,
    parse,
};
use crate::actions::{
    Action, ActionError, ActionStatus, Actor, Claim, KeyedRequest, ListQuery, NewAction, Processed,
    Resolution, Review, SortField, StoredResponse, machine,
};
use crate::executions::{ExecutionRecord, ExecutionStatus};
use crate::tenancy::Scope;

pub(super) fn actor<S>(caller: &Authorized<S>) -> Actor {
    Actor::Key {
        key_id: caller.principal.key.id.clone(),
        user_id: caller.principal.user.id.clone(),
    }
}

pub(super) fn keyed(
    key: &IdempotencyKey,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<Option<KeyedRequest>, ApiError> {
    key.0
        .as_deref()
        .map(|key| {
            KeyedRequest::new(key, method, path, body)
                .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message))
        })
        .transpose()
}

/// A stored response, as it was first sent.
pub(super) fn respond(response: StoredResponse) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    (status, axum::Json(response.body)).into_response()
}

/// A stored response sent again for a repeated key, marked as a replay.
pub(super) fn replay(response: StoredResponse) -> Response {
    let mut answer = respond(response);
    answer.headers_mut().insert(
        "idempotent-replayed",
        axum::http::HeaderValue::from_static("true"),
    );
    answer
}

/// `POST /v1/actions`'s body (Pathbound's fields, plus `version`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "send_email", "params": {"to": "contact@example.com", "subject": "Hello", "body": "Hi there!"}, "identity_id": "id_123", "require_approval": true}))]
pub struct CreateAction {
    /// Action type (e.g. `send_email`, `linkedin_message`).
    #[serde(rename = "type")]
    action_type: String,
    /// Type-specific parameters, per the type's JSON Schema.
    #[schema(value_type = Object)]
    params: serde_json::Value,
    /// Identity to perform the action as: the connected account's `entityId` (or id).
    identity_id: String,
    /// Execute immediately, in this request (unless it needs approval).
    #[serde(default)]
    direct: bool,
    /// ISO 8601 time to execute at.
    #[serde(default)]
    scheduled_time: Option<String>,
    /// Associated list id.
    #[serde(default)]
    list_id: Option<String>,
    /// Associated list item id.
    #[serde(default)]
    item_id: Option<String>,
    /// Human-readable description.
    #[serde(default)]
    description: Option<String>,
    /// Whether a reviewer must approve it first (a plugin, or a `propose_only` key, may demand it regardless).
    #[serde(default)]
    require_approval: bool,
    /// The plugin version to run (`latest` or the loaded one).
    #[serde(default)]
    version: Option<String>,
}

/// The answer to a create.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAction {
    /// `success`.
    status: &'static str,
    /// `act_…`.
    action_id: String,
    /// "Send email to contact@example.com scheduled".
    action_summary: String,
    /// Its status now.
    action_status: ActionStatus,
}

/// Creates an action: scheduled, waiting for approval, or (with `direct`) executed at once.
#[utoipa::path(
    post,
    path = "/v1/actions",
    tag = "actions",
    request_body = CreateAction,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeat of the same request")),
    responses(
        (status = 200, body = CreatedAction),
        (status = 409, body = super::ErrorBody, description = "Idempotency-Key reused with another body"),
        (status = 422, body = super::ErrorBody, description = "Unknown type, invalid params or time"),
    ),
    security(("bearer" = ["actions:write"]), ("api_key" = ["actions:write"]))
)]
pub async fn actions_create(
    caller: Authorized<need::ActionsWrite>,
    key: IdempotencyKey,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let keyed = keyed(&key, "POST", "/v1/actions", &body)?;
    let input: CreateAction = parse(body)?;
    let created = state
        .actions
        .create(
            caller.tenant(),
            &actor(&caller),
            NewAction {
                action_type: input.action_type,
                params: input.params,
                identity_id: input.identity_id,
                direct: input.direct,
                scheduled_time: input.scheduled_time,
                list_id: input.list_id,
                item_id: input.item_id,
                description: input.description,
                // A `propose_only` key's actions wait for a reviewer.
                require_approval: input.require_approval
                    || caller.principal.key.policy == crate::tenancy::KeyPolicy::ProposeOnly,
                version: input.version,
            },
            keyed.as_ref(),
        )
        .await?;
    if let Some(first) = created.replay {
        return Ok(replay(first));
    }
    let action = created
        .action
        .ok_or_else(|| ApiError::internal("create returned neither an action nor a replay"))?;
    Ok(axum::Json(CreatedAction {
        status: "success",
        action_summary: action.summary_line(),
        action_id: action.id,
        action_status: action.status,
    })
    .into_response())
}

/// `GET /v1/actions`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Filter by status.
    #[param(
        pattern = "^(pending_approval|scheduled|executing|succeeded|failed|outcome_unknown|cancelled|rejected)$"
    )]
    status: Option<String>,
    /// Filter by action type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    action_type: Option<String>,
    /// Filter by list.
    list_id: Option<String>,
    /// Filter by list item.
    item_id: Option<String>,
    /// Filter by identity.
    identity_id: Option<String>,
    /// Filter by the contact the action addresses.
    contact_id: Option<String>,
    /// Filter by the agent that proposed the action.
    agent_id: Option<String>,
    /// Results per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// Results to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    skip: Option<usize>,
    /// `created_at` (default), `updated_at`, `scheduled_time`, `due_at`, `status` or `type`.
    #[param(pattern = "^(created_at|updated_at|scheduled_time|due_at|status|type)$")]
    sort_by: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    sort_dir: Option<String>,
}

/// The `pagination` block.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// How many actions match the filters.
    total_items: usize,
    /// The page size used.
    limit: usize,
    /// The offset used.
    skip: usize,
}

/// A page of actions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionList {
    /// `success`.
    status: &'static str,
    /// The actions of the page.
    actions: Vec<Action>,
    /// Where the page is.
    pagination: Pagination,
}

/// Lists the tenant's actions, filtered, sorted and paginated.
#[utoipa::path(
    get,
    path = "/v1/actions",
    tag = "actions",
    params(ListParams),
    responses((status = 200, body = ActionList), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["actions:read"]), ("api_key" = ["actions:read"]))
)]
pub async fn actions_list(
    caller: Authorized<need::ActionsRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::Json<ActionList>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to 100, not {limit}"
        )));
    }
    let status = params
        .status
        .as_deref()
        .map(str::parse::<ActionStatus>)
        .transpose()
        .map_err(|err| ApiError::invalid(format!("status: {err}")))?;
    let sort_by = params
        .sort_by
        .as_deref()
        .map(str::parse::<SortField>)
        .transpose()
        .map_err(|err| ApiError::invalid(format!("sort_by: {err}")))?
        .unwrap_or_default();
    let descending = match params.sort_dir.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "sort_dir must be asc or desc, not {other:?}"
            )));
        }
    };
    let skip = params.skip.unwrap_or(0);
    if skip > MAX_OFFSET {
        return Err(ApiError::invalid(format!(
            "skip must be at most {MAX_OFFSET}, not {skip}"
        )));
    }
    let page = state.actions.list(
        caller.tenant(),
        &ListQuery {
            status,
            action_type: params.action_type,
            list_id: params.list_id,
            item_id: params.item_id,
            identity_id: params.identity_id,
            contact_id: params.contact_id,
            agent_id: params.agent_id,
            limit,
            skip,
            sort_by,
            descending,
        },
    )?;
    Ok(axum::Json(ActionList {
        status: "success",
        actions: page.actions,
        pagination: Pagination {
            total_items: page.total,
            limit,
            skip,
        },
    }))
}

/// An execution of an action, in brief.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionBrief {
    /// `exe_…` (`GET /v1/executions/{id}` has the whole record).
    id: String,
    /// 1 for the first attempt.
    attempt: u32,
    /// `pending`, `succeeded` or `failed`.
    status: ExecutionStatus,
    /// The failure's code, when it failed.
    error_code: Option<String>,
    /// The failure's message.
    error: Option<String>,
    started_at: String,
    finished_at: String,
    duration_ms: u64,
}

impl From<ExecutionRecord> for ExecutionBrief {
    fn from(record: ExecutionRecord) -> Self {
        Self {
            id: record.id,
            attempt: record.attempt,
            status: record.status,
            error_code: record.error.as_ref().map(|e| e.code.clone()),
            error: record.error.map(|e| e.message),
            started_at: record.started_at,
            finished_at: record.finished_at,
            duration_ms: record.duration_ms,
        }
    }
}

/// A transition the caller may ask for now (Flowdash's shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionView {
    /// `approve`, `reject`, `edit`, `cancel`, `execute`, `mark_succeeded`, `mark_failed`, `retry`.
    id: &'static str,
    /// `Approve`, …
    name: &'static str,
}

/// The full action: its record, executions and what may happen next.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionDetail {
    #[serde(flatten)]
    action: Action,
    /// Its attempts, oldest first.
    execution_records: Vec<ExecutionBrief>,
    /// What the caller may do to it now.
    transitions: Vec<TransitionView>,
}

/// The answer carrying one action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionAnswer {
    /// `success`.
    status: &'static str,
    /// The action.
    action: ActionDetail,
}

pub(super) fn scopes<S>(caller: &Authorized<S>) -> &[Scope] {
    &caller.principal.key.scopes
}

pub(super) fn transitions_for(status: ActionStatus, scopes: &[Scope]) -> Vec<TransitionView> {
    machine::requestable_from(status)
        .into_iter()
        .filter(|t| t.scope().is_none_or(|s| scopes.contains(&s)))
        .map(|t| TransitionView {
            id: t.id(),
            name: t.name(),
        })
        .collect()
}

fn detail(state: &AppState, action: Action, scopes: &[Scope]) -> Result<ActionAnswer, ApiError> {
    let execution_records = state
        .actions
        .executions(&action)?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(ActionAnswer {
        status: "success",
        action: ActionDetail {
            transitions: transitions_for(action.status, scopes),
            action,
            execution_records,
        },
    })
}

/// The full action: params and revisions, status, history, executions.
#[utoipa::path(
    get,
    path = "/v1/actions/{id}",
    tag = "actions",
    params(("id" = String, Path, description = "The action id")),
    responses((status = 200, body = ActionAnswer), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["actions:read"]), ("api_key" = ["actions:read"]))
)]
pub async fn actions_get(
    caller: Authorized<need::ActionsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ActionAnswer>, ApiError> {
    let action = state.actions.get(caller.tenant(), &id)?;
    Ok(axum::Json(detail(&state, action, scopes(&caller))?))
}

/// What the caller may do to the action now, given its status and the key's scopes.
#[utoipa::path(
    get,
    path = "/v1/actions/{id}/transitions",
    tag = "executions",
    params(("id" = String, Path, description = "The action id")),
    responses((status = 200, body = Vec<TransitionView>), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["actions:read"]), ("api_key" = ["actions:read"]))
)]
pub async fn actions_transitions(
    caller: Authorized<need::ActionsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Vec<TransitionView>>, ApiError> {
    let action = state.actions.get(caller.tenant(), &id)?;
    Ok(axum::Json(transitions_for(action.status, scopes(&caller))))
}

/// Executes a scheduled action now and answers once it ran.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/execute",
    tag = "actions",
    params(("id" = String, Path, description = "The action id")),
    responses(
        (status = 200, body = ActionAnswer, description = "It ran; `action.status` says how it went"),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "Not in a state that may execute; the error names the current one and the allowed transitions"),
        (status = 429, body = super::ErrorBody, description = "The tenant or the action's plugin is at its concurrency cap; nothing changed; retry after `Retry-After` seconds", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]))
)]
pub async fn actions_execute(
    caller: Authorized<need::ActionsExecute>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ActionAnswer>, ApiError> {
    let action = state
        .actions
        .execute(caller.tenant(), &id, &actor(&caller))
        .await?;
    Ok(axum::Json(detail(&state, action, scopes(&caller))?))
}

/// An optional comment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    /// Why.
    #[serde(default)]
    comment: Option<String>,
}

/// A JSON body that may be left out entirely.
pub(super) fn optional_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
) -> Result<T, ApiError> {
    // No body, or JSON `null`, is the same as `{}`.
    let text = bytes.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|err| {
        let status = if err.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            "invalid_input",
            format!("the body is not valid here: {err}"),
        )
    })
}

/// Cancels an action that has not run yet.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/cancel",
    tag = "actions",
    params(("id" = String, Path, description = "The action id")),
    request_body(content = Option<CommentBody>),
    responses((status = 200, body = ActionAnswer), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["actions:write"]), ("api_key" = ["actions:write"]))
)]
pub async fn actions_cancel(
    caller: Authorized<need::ActionsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<ActionAnswer>, ApiError> {
    let body: CommentBody = optional_body(&body)?;
    let action = state
        .actions
        .cancel(caller.tenant(), &id, &actor(&caller), body.comment)
        .await?;
    Ok(axum::Json(detail(&state, action, scopes(&caller))?))
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// Approve the current params.
    Approve,
    /// Refuse the action.
    Reject,
    /// Replace the params (`params`) and approve the new revision.
    Edit,
}

/// `POST /v1/actions/{id}/approve`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// `approve`, `reject` or `edit`.
    action: ReviewAction,
    /// Optional reviewer comment.
    #[serde(default)]
    comment: Option<String>,
    /// For `edit`: the new params.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
}

fn review_of(
    action: ReviewAction,
    params: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Review, ApiError> {
    Ok(match (action, params) {
        (ReviewAction::Approve, None) => Review::Approve,
        (ReviewAction::Reject, None) => Review::Reject,
        (ReviewAction::Edit, Some(params)) => Review::Edit(serde_json::Value::Object(params)),
        (ReviewAction::Edit, None) => {
            return Err(ApiError::invalid("`edit` needs `params`: the new params"));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "`params` goes with `edit` only; approve or reject the params as they are",
            ));
        }
    })
}

/// Approves, rejects, or edits and approves an action waiting for approval.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/approve",
    tag = "actions",
    params(("id" = String, Path, description = "The action id")),
    request_body = ApproveBody,
    responses((status = 200, body = ActionAnswer), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["actions:approve"]), ("api_key" = ["actions:approve"]))
)]
pub async fn actions_approve(
    caller: Authorized<need::ActionsApprove>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<axum::Json<ActionAnswer>, ApiError> {
    let review = review_of(body.action, body.params)?;
    let action = state
        .actions
        .review(caller.tenant(), &id, &actor(&caller), review, body.comment)
        .await?;
    Ok(axum::Json(detail(&state, action, scopes(&caller))?))
}

/// `POST /v1/actions/approve/bulk`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkApproveBody {
    /// `approve`, `reject` or `edit`.
    action: ReviewAction,
    /// The actions, 1 to 100.
    #[schema(schema_with = action_id_list)]
    action_ids: Vec<String>,
    /// Optional reviewer comment, for each.
    #[serde(default)]
    comment: Option<String>,
    /// For `edit`: the new params, for each.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// 1 to 100 action ids, none empty.
fn action_id_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        )
        .min_items(Some(1))
        .max_items(Some(100))
        .build()
}

/// One id's result in a bulk review.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// The action id as given.
    action_id: String,
    /// `success` or `error`.
    status: &'static str,
    /// Its status afterwards, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    action_status: Option<ActionStatus>,
    /// What went wrong, on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The error's code (`not_found`, `conflict`, …).
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
}

/// The answer to a bulk review.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkAnswer {
    /// `success` when every id succeeded, `partial` when some did, `error` when none did.
    status: &'static str,
    /// How many succeeded.
    succeeded: usize,
    /// How many failed.
    failed: usize,
    /// One result per id, in the order given.
    results: Vec<BulkResult>,
}

/// Approves, rejects or edits several actions; each id succeeds or fails on its own.
#[utoipa::path(
    post,
    path = "/v1/actions/approve/bulk",
    tag = "actions",
    request_body = BulkApproveBody,
    responses((status = 200, body = BulkAnswer), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["actions:approve"]), ("api_key" = ["actions:approve"]))
)]
pub async fn actions_approve_bulk(
    caller: Authorized<need::ActionsApprove>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BulkApproveBody>,
) -> Result<axum::Json<BulkAnswer>, ApiError> {
    if body.action_ids.iter().any(String::is_empty) {
        return Err(ApiError::invalid("action_ids must not hold an empty id"));
    }
    if body.action_ids.is_empty() || body.action_ids.len() > 100 {
        return Err(ApiError::invalid(format!(
            "action_ids must hold 1 to 100 ids, not {}",
            body.action_ids.len()
        )));
    }
    let review = review_of(body.action, body.params)?;
    let actor = actor(&caller);
    let mut results = Vec::with_capacity(body.action_ids.len());
    for id in body.action_ids {
        let outcome = state
            .actions
            .review(
                caller.tenant(),
                &id,
                &actor,
                review.clone(),
                body.comment.clone(),
            )
            .await;
        results.push(match outcome {
            Ok(action) => BulkResult {
                action_id: id,
                status: "success",
                action_status: Some(action.status),
                error: None,
                error_code: None,
            },
            Err(err) => {
                let err = ApiError::from(err);
                BulkResult {
                    action_id: id,
                    status: "error",
                    action_status: None,
                    error_code: Some(err.code),
                    error: Some(err.message),
                }
            }
        });
    }
    let succeeded = results.iter().filter(|r| r.status == "success").count();
    let failed = results.len() - succeeded;
    Ok(axum::Json(BulkAnswer {
        status: match (succeeded, failed) {
            (_, 0) => "success",
            (0, _) => "error",
            _ => "partial",
        },
        succeeded,
        failed,
        results,
    }))
}

/// `POST /v1/actions/{id}/resolve`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `mark_succeeded`, `mark_failed` or `retry`.
    action: Resolution,
    /// Optional operator comment.
    #[serde(default)]
    comment: Option<String>,
}

/// Settles an action whose outcome is unknown: it happened, it did not, or run it again.
#[utoipa::path(
    post,
    path = "/v1/actions/{id}/resolve",
    tag = "actions",
    params(("id" = String, Path, description = "The action id")),
    request_body = ResolveBody,
    responses((status = 200, body = ActionAnswer), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]))
)]
pub async fn actions_resolve(
    caller: Authorized<need::ActionsExecute>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<axum::Json<ActionAnswer>, ApiError> {
    let action = state
        .actions
        .resolve(
            caller.tenant(),
            &id,
            &actor(&caller),
            body.action,
            body.comment,
        )
        .await?;
    Ok(axum::Json(detail(&state, action, scopes(&caller))?))
}

/// `POST /v1/actions/process`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProcessParams {
    /// Most actions to run, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// What a process call did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessAnswer {
    /// `success`.
    status: &'static str,
    /// How many due actions ran.
    processed: usize,
    /// Each, with its status afterwards.
    actions: Vec<Processed>,
}

/// Runs up to `limit` of the tenant's due scheduled actions now, and reports each.
#[utoipa::path(
    post,
    path = "/v1/actions/process",
    tag = "actions",
    params(ProcessParams),
    responses((status = 200, body = ProcessAnswer), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]))
)]
pub async fn actions_process(
    caller: Authorized<need::ActionsExecute>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ProcessParams>,
) -> Result<axum::Json<ProcessAnswer>, ApiError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to 100, not {limit}"
        )));
    }
    let actions = state.actions.process(caller.tenant(), limit).await?;
    Ok(axum::Json(ProcessAnswer {
        status: "success",
        processed: actions.len(),
        actions,
    }))
}

/// The answer for a key that was seen before.
pub(super) fn claim_answer(claim: Claim) -> Result<Response, ApiError> {
    Err(match claim {
        Claim::New => return Err(ApiError::internal("claim_answer called for a new key")),
        Claim::Replay(first) => return Ok(replay(first)),
        Claim::Mismatch => ActionError::KeyReused.into(),
        Claim::InProgress => ActionError::KeyInProgress.into(),
        Claim::Interrupted { target } => ActionError::KeyInterrupted(target).into(),
    })
}
