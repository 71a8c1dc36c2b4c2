//! Pathbound's agents (`/v1/agents…`): agents, templates, runs, and the
//! approval of what a run proposed.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::actions::optional_body;
use super::contacts::page;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, need};
use crate::actions::{ActionStatus, Actor};
use crate::agents::templates::{self, Template};
use crate::agents::{
    Agent, AgentError, AgentRun, AgentSpec, LlmConfig, Monitoring, Playbook, RunStatus, RunSummary,
};
use crate::runtime::model::Usage;

impl From<AgentError> for ApiError {
    fn from(err: AgentError) -> Self {
        match err {
            AgentError::NotFound { kind, id } => ApiError::not_found(kind, &id),
            AgentError::Invalid { message, fields } => {
                ApiError::invalid(message).with_fields(fields)
            }
            AgentError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            AgentError::Store(err) => err.into(),
        }
    }
}

fn actor<S>(caller: &Authorized<S>) -> Actor {
    Actor::Key {
        key_id: caller.principal.key.id.clone(),
        user_id: caller.principal.user.id.clone(),
    }
}

/// An agent as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// `ag_…`.
    #[serde(rename = "_id")]
    id: String,
    name: String,
    description: Option<String>,
    /// The template it started from.
    playbook_template: Option<String>,
    playbook: Playbook,
    /// `email`, `linkedin`, `notes`, `crm_sync`, or action types.
    capabilities: Vec<String>,
    identity_id: Option<String>,
    monitoring: Monitoring,
    llm_config: LlmConfig,
    /// Action types whose proposals skip approval.
    auto_approve: Vec<String>,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        Self {
            id: agent.id,
            name: agent.name,
            description: agent.description,
            playbook_template: agent.playbook_template,
            playbook: agent.playbook,
            capabilities: agent.capabilities,
            identity_id: agent.identity_id,
            monitoring: agent.monitoring,
            llm_config: agent.llm_config,
            auto_approve: agent.auto_approve,
            enabled: agent.enabled,
            created_at: agent.created_at,
            updated_at: agent.updated_at,
        }
    }
}

/// The answer carrying one agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentAnswer {
    /// `success`.
    status: &'static str,
    agent: AgentView,
}

fn answer(agent: Agent) -> axum::Json<AgentAnswer> {
    axum::Json(AgentAnswer {
        status: "success",
        agent: agent.into(),
    })
}

/// An agent's fields (seed 002); in an update, send only what changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Pricing visitor follow-up", "description": "Drafts a personal email when a contact visits /pricing twice in 7 days.", "playbook": {"playbook_md": "You are an SDR. ..."}, "capabilities": ["email"], "identity_id": "id_123", "monitoring": {"filter": {"lifecycle_stage": "lead"}, "schedule_cron": "0 14 * * 1-5", "max_contacts_per_run": 25}, "llm_config": {"provider": "anthropic", "model": "claude-opus-4-7", "temperature": 0.4}, "enabled": true}))]
pub struct AgentBody {
    /// Display name (required to create).
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    description: Option<String>,
    /// A template to start from: `cold_outreach`, `pricing_visitor_followup`.
    playbook_template: Option<String>,
    /// `{playbook_md, …}`; in an update, the fields sent replace those stored.
    #[schema(value_type = Option<Object>)]
    playbook: Option<Map<String, Value>>,
    /// `email`, `linkedin`, `notes`, `crm_sync`, or action types.
    capabilities: Option<Vec<String>>,
    /// The identity its actions are performed as.
    identity_id: Option<String>,
    /// `{filter, schedule_cron, timezone, max_contacts_per_run}`.
    #[schema(value_type = Option<Object>)]
    monitoring: Option<Map<String, Value>>,
    /// `{provider, model, temperature, max_tokens, account_id}` (required to create).
    #[schema(value_type = Option<Object>)]
    llm_config: Option<Map<String, Value>>,
    /// Action types whose proposals skip approval, when their plugin allows it.
    auto_approve: Option<Vec<String>>,
    /// Whether its schedule runs (default false).
    enabled: Option<bool>,
}

impl From<AgentBody> for AgentSpec {
    fn from(body: AgentBody) -> Self {
        Self {
            name: body.name,
            description: body.description,
            playbook_template: body.playbook_template,
            playbook: body.playbook,
            capabilities: body.capabilities,
            identity_id: body.identity_id,
            monitoring: body.monitoring,
            llm_config: body.llm_config,
            auto_approve: body.auto_approve,
            enabled: body.enabled,
        }
    }
}

/// `GET /v1/agents`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentListParams {
    /// Only enabled (or disabled) agents.
    enabled: Option<bool>,
    /// Only agents from this template.
    playbook_template: Option<String>,
    /// Results per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Results to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    offset: Option<String>,
}

/// A page of agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    /// `success`.
    status: &'static str,
    agents: Vec<AgentView>,
    /// How many match.
    total: usize,
    limit: usize,
    offset: usize,
}

/// Lists the tenant's agents.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(AgentListParams),
    responses((status = 200, body = AgentList)),
    security(("bearer" = ["agents:read"]), ("api_key" = ["agents:read"])))]
pub async fn agents_list(
    caller: Authorized<need::AgentsRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AgentListParams>,
) -> Result<axum::Json<AgentList>, ApiError> {
    let (limit, offset) = page(params.limit.as_deref(), params.offset.as_deref())?;
    let agents = state.agents.list(
        caller.tenant(),
        params.enabled,
        params.playbook_template.as_deref(),
    )?;
    let total = agents.len();
    Ok(axum::Json(AgentList {
        status: "success",
        agents: agents
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(Into::into)
            .collect(),
        total,
        limit,
        offset,
    }))
}

/// Creates an agent (disabled unless `enabled` says otherwise).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentBody,
    responses((status = 201, body = AgentAnswer)),
    security(("bearer" = ["agents:write"]), ("api_key" = ["agents:write"])))]
pub async fn agents_create(
    caller: Authorized<need::AgentsWrite>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<(StatusCode, axum::Json<AgentAnswer>), ApiError> {
    let agent = state.agents.create(caller.tenant(), body.into()).await?;
    Ok((StatusCode::CREATED, answer(agent)))
}

/// One agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent id")),
    responses((status = 200, body = AgentAnswer)),
    security(("bearer" = ["agents:read"]), ("api_key" = ["agents:read"])))]
pub async fn agents_get(
    caller: Authorized<need::AgentsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<AgentAnswer>, ApiError> {
    Ok(answer(state.agents.get(caller.tenant(), &id)?))
}

/// Changes the fields sent; to revise the prompt, send
/// `{"playbook": {"playbook_md": "…"}}`.
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent id")), request_body = AgentBody,
    responses((status = 200, body = AgentAnswer)),
    security(("bearer" = ["agents:write"]), ("api_key" = ["agents:write"])))]
pub async fn agents_update(
    caller: Authorized<need::AgentsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<axum::Json<AgentAnswer>, ApiError> {
    Ok(answer(
        state
            .agents
            .update(caller.tenant(), &id, body.into())
            .await?,
    ))
}

/// What a deletion removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDeleted {
    /// `success`.
    status: &'static str,
    #[serde(rename = "_id")]
    id: String,
    /// Runs removed.
    runs_removed: usize,
    /// Proposals that had not run, cancelled (executed ones keep their `agent_id`).
    actions_cancelled: usize,
}

/// Deletes an agent and its runs; its proposals that have not run are
/// cancelled, each with a history entry.
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent id")),
    responses((status = 200, body = AgentDeleted)),
    security(("bearer" = ["agents:write"]), ("api_key" = ["agents:write"])))]
pub async fn agents_delete(
    caller: Authorized<need::AgentsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<AgentDeleted>, ApiError> {
    let (runs_removed, actions_cancelled) = state.agents.delete(caller.tenant(), &id).await?;
    Ok(axum::Json(AgentDeleted {
        status: "success",
        id,
        runs_removed,
        actions_cancelled,
    }))
}

/// The playbook templates.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// `success`.
    status: &'static str,
    templates: Vec<Template>,
}

/// The playbook templates an agent may start from.
#[utoipa::path(get, path = "/v1/agents/templates", tag = "agents",
    responses((status = 200, body = TemplateList)),
    security(("bearer" = ["agents:read"]), ("api_key" = ["agents:read"])))]
pub async fn agents_templates(_caller: Authorized<need::AgentsRead>) -> axum::Json<TemplateList> {
    axum::Json(TemplateList {
        status: "success",
        templates: templates::all(),
    })
}

/// A trigger's body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Specific contacts (1 to 1,000); otherwise the monitoring filter chooses.
    #[schema(min_items = 1, max_items = 1000)]
    contact_ids: Option<Vec<String>>,
}

/// A queued run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Triggered {
    /// `success`.
    status: &'static str,
    /// The run's id (`run_…`): poll `GET /v1/agents/runs/{job_id}`.
    job_id: String,
}

/// Queues a run of the agent; it runs asynchronously.
#[utoipa::path(post, path = "/v1/agents/{id}/trigger", tag = "agents",
    params(("id" = String, Path, description = "The agent id")), request_body = TriggerBody,
    responses((status = 200, body = Triggered)),
    security(("bearer" = ["agents:trigger"]), ("api_key" = ["agents:trigger"])))]
pub async fn agents_trigger(
    caller: Authorized<need::AgentsTrigger>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<Triggered>, ApiError> {
    let body: TriggerBody = optional_body(&body)?;
    let run = state
        .agents
        .trigger(caller.tenant(), &id, body.contact_ids, "manual")
        .await?;
    Ok(axum::Json(Triggered {
        status: "success",
        job_id: run.id,
    }))
}

/// A run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// `run_…`.
    #[serde(rename = "_id")]
    id: String,
    agent_id: String,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    status: RunStatus,
    /// `manual` or `schedule`.
    trigger: String,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    summary: RunSummary,
    /// Tokens used, summed over its contacts.
    #[schema(value_type = Object)]
    usage: Usage,
    /// Whether it stopped at its token budget.
    budget_exhausted: bool,
    /// Why it failed.
    error: Option<String>,
    /// Full mode: up to 25 contacts' results, from `offset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_results: Option<Vec<ContactResultView>>,
    /// Full mode: how many contacts have a result.
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_results_total: Option<usize>,
    /// Full mode: the `offset` of the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_offset: Option<usize>,
}

impl From<AgentRun> for RunView {
    fn from(run: AgentRun) -> Self {
        Self {
            id: run.id,
            agent_id: run.agent_id,
            status: run.status,
            trigger: run.trigger,
            created_at: run.created_at,
            started_at: run.started_at,
            completed_at: run.completed_at,
            summary: run.summary,
            usage: run.usage,
            budget_exhausted: run.budget_exhausted,
            error: run.error,
            contact_results: None,
            contact_results_total: None,
            next_offset: None,
        }
    }
}

/// A proposal as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalView {
    /// Its `actionIndex`.
    index: u32,
    #[serde(rename = "type")]
    action_type: String,
    #[schema(value_type = Object)]
    params: Value,
    /// The action's status now (`pending_approval`, `scheduled`, …), or
    /// `refused` for a proposal that failed its checks.
    status: String,
    /// The stored action.
    action_id: Option<String>,
    /// Why it was refused.
    error: Option<String>,
}

/// A contact's result in a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactResultView {
    contact_id: String,
    /// A few of the contact's fields.
    #[schema(value_type = Object)]
    contact: Map<String, Value>,
    /// `evaluated`, `skipped` (did not match the filter) or `error`.
    #[schema(value_type = String)]
    result: crate::agents::run::ResultStatus,
    reasoning: Option<String>,
    proposed_actions: Vec<ProposalView>,
    /// Each error, with its reason.
    errors: Vec<String>,
    #[schema(value_type = Object)]
    usage: Usage,
}

/// The answer carrying one run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAnswer {
    /// `success`.
    status: &'static str,
    run: RunView,
}

/// `GET /v1/agents/runs/{runId}`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// `full` (the default: with up to 25 contacts' results) or `summary`.
    #[param(pattern = "^(summary|full)$")]
    mode: Option<String>,
    /// Full mode: the first contact result to show (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    offset: Option<String>,
}

/// One run: summary counts, and in full mode up to 25 contacts' reasoning
/// and proposals (page on with `offset`).
#[utoipa::path(get, path = "/v1/agents/runs/{runId}", tag = "agents",
    params(("runId" = String, Path, description = "The run id"), RunParams),
    responses((status = 200, body = RunAnswer)),
    security(("bearer" = ["agents:read"]), ("api_key" = ["agents:read"])))]
pub async fn agents_run_get(
    caller: Authorized<need::AgentsRead>,
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<RunParams>,
) -> Result<axum::Json<RunAnswer>, ApiError> {
    let full = match params.mode.as_deref() {
        None | Some("full") => true,
        Some("summary") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "mode must be summary or full, not {other:?}"
            )));
        }
    };
    let (_, offset) = page(None, params.offset.as_deref())?;
    let run = state.agents.run(caller.tenant(), &run_id)?;
    let mut view = RunView::from(run.clone());
    if full {
        const PAGE: usize = 25;
        let (results, total) = state.agents.results(&run, offset, PAGE)?;
        let mut shown = Vec::with_capacity(results.len());
        for result in results {
            let proposed_actions = result
                .proposals
                .into_iter()
                .map(|p| ProposalView {
                    status: p
                        .action_id
                        .as_deref()
                        .and_then(|id| state.actions.get(caller.tenant(), id).ok())
                        .map_or_else(|| "refused".to_owned(), |a| a.status.as_str().to_owned()),
                    index: p.index,
                    action_type: p.action_type,
                    params: p.params,
                    action_id: p.action_id,
                    error: p.error,
                })
                .collect();
            shown.push(ContactResultView {
                contact_id: result.contact_id,
                contact: result.contact,
                result: result.status,
                reasoning: result.reasoning,
                proposed_actions,
                errors: result.errors,
                usage: result.usage,
            });
        }
        view.next_offset = (offset + shown.len() < total).then_some(offset + shown.len());
        view.contact_results = Some(shown);
        view.contact_results_total = Some(total);
    }
    Ok(axum::Json(RunAnswer {
        status: "success",
        run: view,
    }))
}

/// `GET /v1/agents/{id}/runs`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunListParams {
    /// Results per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Results to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    offset: Option<String>,
    /// Only runs in this status.
    #[param(pattern = "^(queued|running|completed|failed|cancelled)$")]
    status: Option<String>,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// `success`.
    status: &'static str,
    runs: Vec<RunView>,
    total: usize,
    limit: usize,
    offset: usize,
}

/// The agent's runs, newest first.
#[utoipa::path(get, path = "/v1/agents/{id}/runs", tag = "agents",
    params(("id" = String, Path, description = "The agent id"), RunListParams),
    responses((status = 200, body = RunList)),
    security(("bearer" = ["agents:read"]), ("api_key" = ["agents:read"])))]
pub async fn agents_runs(
    caller: Authorized<need::AgentsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<RunListParams>,
) -> Result<axum::Json<RunList>, ApiError> {
    let (limit, offset) = page(params.limit.as_deref(), params.offset.as_deref())?;
    let status = params
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(ApiError::invalid)?;
    let (runs, total) = state
        .agents
        .runs(caller.tenant(), &id, status, offset, limit)?;
    Ok(axum::Json(RunList {
        status: "success",
        runs: runs.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}

/// Cancels a queued or running run (a running one stops after the
/// contacts being evaluated).
#[utoipa::path(post, path = "/v1/agents/runs/{runId}/cancel", tag = "agents",
    params(("runId" = String, Path, description = "The run id")),
    responses((status = 200, body = RunAnswer), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["agents:trigger"]), ("api_key" = ["agents:trigger"])))]
pub async fn agents_run_cancel(
    caller: Authorized<need::AgentsTrigger>,
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
) -> Result<axum::Json<RunAnswer>, ApiError> {
    let run = state.agents.cancel(caller.tenant(), &run_id).await?;
    Ok(axum::Json(RunAnswer {
        status: "success",
        run: run.into(),
    }))
}

/// A decision's body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The reviewer's comment, kept in the action's history.
    comment: Option<String>,
}

/// The decided action.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    /// `success`.
    status: &'static str,
    action_id: String,
    /// Its status now (`scheduled` once approved, `rejected`).
    action_status: ActionStatus,
}

async fn decide(
    caller: &Authorized<need::AgentsApprove>,
    state: &AppState,
    (run_id, contact_id, index): (String, String, u32),
    approve: bool,
    body: &[u8],
) -> Result<axum::Json<Decided>, ApiError> {
    let comment = optional_body::<DecisionBody>(body)?.comment;
    let action = state
        .agents
        .decide(
            caller.tenant(),
            (&run_id, &contact_id, index),
            approve,
            &actor(caller),
            comment,
        )
        .await?;
    Ok(axum::Json(Decided {
        status: "success",
        action_id: action.id,
        action_status: action.status,
    }))
}

/// Approves one proposal of a run, by (run, contact, index): the action is
/// then scheduled.
#[utoipa::path(post, path = "/v1/agents/runs/{runId}/contacts/{contactId}/actions/{actionIndex}/approve", tag = "agents",
    params(("runId" = String, Path, description = "The run id"), ("contactId" = String, Path, description = "The contact id"), ("actionIndex" = u32, Path, description = "The proposal's index")),
    request_body(content = DecisionBody),
    responses((status = 200, body = Decided), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["agents:approve"]), ("api_key" = ["agents:approve"])))]
pub async fn agents_action_approve(
    caller: Authorized<need::AgentsApprove>,
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String, u32)>,
    body: axum::body::Bytes,
) -> Result<axum::Json<Decided>, ApiError> {
    decide(&caller, &state, path, true, &body).await
}

/// Rejects one proposal of a run: it will not run.
#[utoipa::path(post, path = "/v1/agents/runs/{runId}/contacts/{contactId}/actions/{actionIndex}/reject", tag = "agents",
    params(("runId" = String, Path, description = "The run id"), ("contactId" = String, Path, description = "The contact id"), ("actionIndex" = u32, Path, description = "The proposal's index")),
    request_body(content = DecisionBody),
    responses((status = 200, body = Decided), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["agents:approve"]), ("api_key" = ["agents:approve"])))]
pub async fn agents_action_reject(
    caller: Authorized<need::AgentsApprove>,
    State(state): State<AppState>,
    ApiPath(path): ApiPath<(String, String, u32)>,
    body: axum::body::Bytes,
) -> Result<axum::Json<Decided>, ApiError> {
    decide(&caller, &state, path, false, &body).await
}

/// A bulk decision over a run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunDecisionBody {
    /// `approve` or `reject`.
    #[schema(pattern = "^(approve|reject)$")]
    action: String,
    /// The reviewer's comment, kept in each action's history.
    comment: Option<String>,
}

/// What a bulk decision did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDecided {
    /// `success`.
    status: &'static str,
    /// How many proposals were decided.
    decided: usize,
    /// Each, with its status now.
    actions: Vec<Decided>,
}

/// Approves (or rejects) every proposal of a run still waiting for a
/// person: the approval at scale seed 002 recommends.
#[utoipa::path(post, path = "/v1/agents/runs/{runId}/approve", tag = "agents",
    params(("runId" = String, Path, description = "The run id")), request_body = RunDecisionBody,
    responses((status = 200, body = RunDecided)),
    security(("bearer" = ["agents:approve"]), ("api_key" = ["agents:approve"])))]
pub async fn agents_run_approve(
    caller: Authorized<need::AgentsApprove>,
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<RunDecisionBody>,
) -> Result<axum::Json<RunDecided>, ApiError> {
    let approve = match body.action.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::invalid(format!(
                "action must be approve or reject, not {other:?}"
            )));
        }
    };
    let decided = state
        .agents
        .decide_run(
            caller.tenant(),
            &run_id,
            approve,
            &actor(&caller),
            body.comment,
        )
        .await?;
    Ok(axum::Json(RunDecided {
        status: "success",
        decided: decided.len(),
        actions: decided
            .into_iter()
            .map(|(action_id, action_status)| Decided {
                status: "success",
                action_id,
                action_status,
            })
            .collect(),
    }))
}
