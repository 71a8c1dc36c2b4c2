//! Flowdash's executions (seed 003): a transition of a stored action,
//! started asynchronously and polled.
//!
//! At actionhost's own path, `POST /v1/executions` names the action and the
//! transition. At the seed's paths, a **workflow** is the actions of one
//! `list_id` (`default` for an action without one), a **task** is one of
//! those actions (its id), and a task's **actions** are the transitions the
//! caller may ask for now (`approve`, `execute`, …):
//!
//! - `GET /api/v1/workflows/{workflow_id}/tasks/{task_id}/actions`;
//! - `POST /api/v1/workflows/{workflow_id}/executions` with `{"task_id",
//!   "action_id", "performed_by"}`;
//! - `GET /api/v1/workflows/{workflow_id}/executions/{id}`.
//!
//! A task or an execution asked for under another workflow is a 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actions::{
    TransitionView, actor, claim_answer, keyed, respond, scopes, transitions_for,
};
use super::{ApiError, ApiJson, ApiPath, AppState, Authorized, IdempotencyKey, need, parse};
use crate::actions::{
    Action, ActionError, ActionStatus, Actor, Claim, KeyedRequest, StoredResponse, Transition,
    machine,
};
use crate::executions::{ErrorInfo, ExecutionStatus};
use crate::tenancy::Scope;

/// The workflow of an action without a `list_id`.
const DEFAULT_WORKFLOW: &str = "default";

fn workflow_of(action: &Action) -> &str {
    action.list_id.as_deref().unwrap_or(DEFAULT_WORKFLOW)
}

/// A 404 unless `action` is a task of `workflow`.
fn in_workflow(action: &Action, workflow: &str) -> Result<(), ApiError> {
    if workflow_of(action) == workflow {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "task",
            &format!("{} in workflow {workflow}", action.id),
        ))
    }
}

/// `POST /v1/executions`'s body (Flowdash's fields).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateExecution {
    /// The action.
    action_id: String,
    /// A transition id from `GET /v1/actions/{id}/transitions` (default `execute`).
    #[serde(default)]
    #[schema(pattern = "^(approve|reject|edit|cancel|execute|mark_succeeded|mark_failed|retry)$")]
    transition: Option<String>,
    /// The user performing it (e-mail or id); their keys' scopes must allow it.
    #[serde(default)]
    performed_by: Option<String>,
    /// Optional comment, for reviewer transitions.
    #[serde(default)]
    comment: Option<String>,
}

/// Flowdash's 422: every unmet requirement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unmet {
    /// `Fail`.
    status: &'static str,
    /// One message per unmet requirement.
    errors: Vec<String>,
}

/// Starts an execution of a transition on an action; `execute` runs asynchronously (poll `GET /v1/executions/{id}`).
#[utoipa::path(
    post,
    path = "/v1/executions",
    tag = "executions",
    request_body = CreateExecution,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeat of the same request")),
    responses(
        (status = 202, description = "`{\"id\", \"status\": \"Pending\"}`; `Success` for a reviewer's transition, which is done at once"),
        (status = 403, body = super::ErrorBody, description = "The key or `performed_by` lacks the transition's scope"),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody, description = "Not allowed in the current state"),
        (status = 422, body = Unmet, description = "Unmet requirements, every one listed"),
        (status = 429, body = super::ErrorBody, description = "The tenant or the action's plugin is at its concurrency cap; nothing changed; retry after `Retry-After` seconds", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]))
)]
pub async fn executions_create(
    caller: Authorized<need::ActionsExecute>,
    key: IdempotencyKey,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let keyed = keyed(&key, "POST", "/v1/executions", &body)?;
    let input: CreateExecution = parse(body)?;
    create(&caller, keyed, &state, input, None).await
}

/// Starts the execution `input` asks for; with `workflow`, of an action
/// (a task) of that workflow only.
async fn create(
    caller: &Authorized<need::ActionsExecute>,
    keyed: Option<KeyedRequest>,
    state: &AppState,
    input: CreateExecution,
    workflow: Option<&str>,
) -> Result<Response, ApiError> {
    let transition_id = input.transition.as_deref().unwrap_or("execute");
    let transition = Transition::requestable(transition_id).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown transition {transition_id:?}; one of: {}",
            Transition::REQUESTABLE.map(Transition::id).join(", ")
        ))
    })?;
    let scope = transition.scope().unwrap_or(Scope::ActionsExecute);
    if !caller.holds(scope) {
        return Err(super::missing_scope(scope));
    }
    let actor = match &input.performed_by {
        None => actor(caller),
        Some(who) => {
            let (user, scopes) = state
                .tenancy
                .user_with_scopes(caller.tenant(), who)?
                .ok_or_else(|| {
                    ApiError::invalid(format!("performed_by: no user {who:?} in this tenant"))
                })?;
            if !scopes.contains(&scope) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "performed_by {} lacks the scope {scope} that {} needs; give one of their keys that scope",
                        user.email,
                        transition.id()
                    ),
                ));
            }
            Actor::User {
                user_id: user.id,
                email: user.email,
                key_id: caller.principal.key.id.clone(),
            }
        }
    };
    // A repeat is answered from the key before the action's state (which
    // the first request changed) is looked at.
    if let Some(keyed) = &keyed {
        match state.actions.idempotency().peek(caller.tenant(), keyed)? {
            Claim::New => {}
            other => return claim_answer(other),
        }
    }
    let action = state.actions.get(caller.tenant(), &input.action_id)?;
    if let Some(workflow) = workflow {
        in_workflow(&action, workflow)?;
    }
    if transition == Transition::Execute {
        // Flowdash's requirements: everything that would stop it running,
        // all at once. A state that can never execute is a 409 instead.
        if action.status != ActionStatus::PendingApproval {
            machine::next(action.status, Transition::Execute).map_err(ActionError::from)?;
        }
        let unmet = state.actions.requirements(&action).await;
        if let Some(crate::executions::PipelineError::Busy(busy)) = unmet.first() {
            return Err(busy.clone().into());
        }
        if !unmet.is_empty() {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(Unmet {
                    status: "Fail",
                    errors: unmet.iter().flat_map(requirement_messages).collect(),
                }),
            )
                .into_response());
        }
        let response = state
            .actions
            .execute_async(caller.tenant(), &action.id, &actor, keyed.as_ref())
            .await?;
        return Ok(respond(response));
    }
    if let Some(keyed) = &keyed {
        match state.actions.idempotency().claim(caller.tenant(), keyed)? {
            Claim::New => {}
            other => return claim_answer(other),
        }
    }
    let outcome = state
        .actions
        .transition_record(
            caller.tenant(),
            &action.id,
            &actor,
            transition,
            input.comment,
        )
        .await;
    let record = match outcome {
        Ok(record) => record,
        Err(err) => {
            if let Some(keyed) = &keyed {
                state
                    .actions
                    .idempotency()
                    .release(caller.tenant(), &keyed.key)?;
            }
            return Err(err.into());
        }
    };
    let response = StoredResponse {
        status: 202,
        body: serde_json::json!({ "id": record.id, "status": "Success" }),
    };
    if let Some(keyed) = &keyed {
        state
            .actions
            .idempotency()
            .complete(caller.tenant(), &keyed.key, response.clone())?;
    }
    Ok(respond(response))
}

/// One message per unmet requirement (each invalid field on its own line).
fn requirement_messages(error: &crate::executions::PipelineError) -> Vec<String> {
    match error {
        crate::executions::PipelineError::InvalidParams(fields) => {
            fields.iter().map(ToString::to_string).collect()
        }
        other => vec![other.to_string()],
    }
}

/// A task's available actions: the transitions the caller may ask for now.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{workflow_id}/tasks/{task_id}/actions",
    tag = "executions",
    params(
        ("workflow_id" = String, Path, description = "The workflow: a `list_id`, or `default` for actions without one"),
        ("task_id" = String, Path, description = "The task: an action id of that workflow"),
    ),
    responses((status = 200, body = Vec<TransitionView>), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["actions:read"]), ("api_key" = ["actions:read"]))
)]
pub async fn workflow_task_actions(
    caller: Authorized<need::ActionsRead>,
    State(state): State<AppState>,
    ApiPath((workflow, task)): ApiPath<(String, String)>,
) -> Result<axum::Json<Vec<TransitionView>>, ApiError> {
    let action = state.actions.get(caller.tenant(), &task)?;
    in_workflow(&action, &workflow)?;
    Ok(axum::Json(transitions_for(action.status, scopes(&caller))))
}

/// The seed's execution request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"task_id": "act_0123456789abcdef0123", "action_id": "execute", "performed_by": "harry@hogwarts.edu"}))]
pub struct WorkflowExecution {
    /// The task: an action id of the workflow.
    task_id: String,
    /// One of the task's actions (a transition id, such as `execute` or `approve`).
    action_id: String,
    /// The user performing it (e-mail or id); their keys' scopes must allow it.
    #[serde(default)]
    performed_by: Option<String>,
    /// Optional comment, for reviewer transitions.
    #[serde(default)]
    comment: Option<String>,
}

/// Executes one of a task's actions; `execute` runs asynchronously (poll
/// `GET /api/v1/workflows/{workflow_id}/executions/{id}`).
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{workflow_id}/executions",
    tag = "executions",
    request_body = WorkflowExecution,
    params(
        ("workflow_id" = String, Path, description = "The workflow: a `list_id`, or `default`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeat of the same request"),
    ),
    responses(
        (status = 202, description = "`{\"id\", \"status\": \"Pending\"}`; `Success` for a reviewer's transition, which is done at once"),
        (status = 403, body = super::ErrorBody, description = "The key or `performed_by` lacks the transition's scope"),
        (status = 404, body = super::ErrorBody, description = "No such task in this workflow"),
        (status = 409, body = super::ErrorBody, description = "Not allowed in the current state"),
        (status = 422, body = Unmet, description = "Unmet requirements, every one listed as a string"),
        (status = 429, body = super::ErrorBody, description = "The tenant or the action's plugin is at its concurrency cap; retry after `Retry-After` seconds", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = ["actions:execute"]), ("api_key" = ["actions:execute"]))
)]
pub async fn workflow_executions_create(
    caller: Authorized<need::ActionsExecute>,
    key: IdempotencyKey,
    State(state): State<AppState>,
    ApiPath(workflow): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let keyed = keyed(
        &key,
        "POST",
        &format!("/api/v1/workflows/{workflow}/executions"),
        &body,
    )?;
    let input: WorkflowExecution = parse(body)?;
    let input = CreateExecution {
        action_id: input.task_id,
        transition: Some(input.action_id),
        performed_by: input.performed_by,
        comment: input.comment,
    };
    create(&caller, keyed, &state, input, Some(&workflow)).await
}

/// An execution in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowExecutionView {
    /// The execution id.
    id: String,
    /// `Pending`, `Success` or `Fail`.
    status: &'static str,
    /// With `Fail`: what failed, as strings (the seed's shape).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
    /// With `Fail`: the same, with the error's code and whether a retry may
    /// succeed (`GET /v1/executions/{id}` has the whole record).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    error_details: Vec<ErrorInfo>,
    /// The task (action) it belongs to.
    task_id: Option<String>,
}

/// An execution's status.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{workflow_id}/executions/{id}",
    tag = "executions",
    params(
        ("workflow_id" = String, Path, description = "The workflow: a `list_id`, or `default`"),
        ("id" = String, Path, description = "The execution id"),
    ),
    responses((status = 200, body = WorkflowExecutionView), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["actions:read"]), ("api_key" = ["actions:read"]))
)]
pub async fn workflow_executions_get(
    caller: Authorized<need::ActionsRead>,
    State(state): State<AppState>,
    ApiPath((workflow, id)): ApiPath<(String, String)>,
) -> Result<axum::Json<WorkflowExecutionView>, ApiError> {
    let missing = || ApiError::not_found("execution", &format!("{id} in workflow {workflow}"));
    let record = state
        .pipeline
        .record(caller.tenant(), &id)?
        .ok_or_else(missing)?;
    let action = match &record.action_id {
        Some(action_id) => state
            .actions
            .get(caller.tenant(), action_id)
            .map_err(|_| missing())?,
        // A one-off execution belongs to no workflow.
        None => return Err(missing()),
    };
    if workflow_of(&action) != workflow {
        return Err(missing());
    }
    let status = match record.status {
        ExecutionStatus::Pending => "Pending",
        ExecutionStatus::Succeeded => "Success",
        ExecutionStatus::Failed => "Fail",
    };
    Ok(axum::Json(WorkflowExecutionView {
        id: record.id,
        status,
        errors: record.error.iter().map(|e| e.message.clone()).collect(),
        error_details: record.error.into_iter().collect(),
        task_id: record.action_id,
    }))
}
