//! Agent runs: selection, one model call per contact, validated proposals
//! stored as actions, approvals by (run, contact, index).
//!
//! **A contact's result, its proposed actions and the run's counts are
//! written in one transaction.** A run resumes (after a crash, at start-up)
//! with the planned contacts that have no result yet, so no contact is
//! proposed for twice in one run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Agent, AgentError, Agents, Result, action_type_of};
use crate::actions::{Action, ActionStatus, Actor, NewAction, Review};
use crate::contacts::{Contact, find as find_contact};
use crate::events::EventQuery;
use crate::runtime::FieldError;
use crate::runtime::model::{CompletionRequest, Message, Role, Tool, ToolCall, ToolChoice, Usage};
use crate::store::{IndexEntry, Record};
use crate::tenancy::{new_ordered_id, now};

/// The tool every evaluation forces.
pub const TOOL: &str = "propose_actions";

/// Settings of agent runs (`[agents]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunsConfig {
    /// Contacts of one run evaluated at once.
    pub concurrency: usize,
    /// Tokens one run may use; the contacts left when it is spent are not
    /// evaluated.
    pub run_token_budget: u64,
    /// How often schedules are looked at.
    #[serde(with = "humantime_serde")]
    pub schedule_poll: Duration,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            run_token_budget: 1_000_000,
            schedule_poll: Duration::from_secs(15),
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting to start.
    Queued,
    /// Evaluating contacts.
    Running,
    /// Every contact evaluated (or the token budget spent).
    Completed,
    /// Could not run (the agent was removed, the store failed).
    Failed,
    /// Cancelled before its end.
    Cancelled,
}

impl RunStatus {
    pub(super) fn active(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Ok(match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(format!(
                    "unknown run status {other:?}; one of queued, running, completed, failed, cancelled"
                ));
            }
        })
    }
}

/// A run's counts, in the seed's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// Contacts the model was asked about.
    pub contacts_evaluated: u32,
    /// Actions proposed and stored.
    pub actions_proposed: u32,
    /// Of those, approved by the agent's rule (scheduled at once).
    pub actions_auto_approved: u32,
    /// Of those, waiting for a person.
    pub actions_pending_approval: u32,
    /// Contacts that failed and proposals refused, each with its reason.
    pub errors: u32,
}

/// A run of an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRun {
    /// `run_…`, ordered by creation.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// Where it is.
    pub status: RunStatus,
    /// The contacts a trigger named, if it named any.
    pub requested: Option<Vec<String>>,
    /// The contacts chosen when it started, in evaluation order.
    pub planned: Vec<String>,
    /// The counts.
    pub summary: RunSummary,
    /// Tokens used.
    pub usage: Usage,
    /// Whether it stopped at its token budget.
    pub budget_exhausted: bool,
    /// Whether someone asked it to stop.
    pub cancel_requested: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub completed_at: Option<String>,
    /// The replica executing it (see [`crate::replica`]): while its lease
    /// is live no other replica takes the run; once it has expired, one
    /// of them resumes the run where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_on: Option<String>,
}

impl Record for AgentRun {
    const COLLECTION: &'static str = "agent_runs";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        let mut entries = vec![IndexEntry::multi(
            "runs_by_agent",
            format!("{}\0{}", self.tenant_id, self.agent_id),
        )];
        if self.status.active() {
            entries.push(IndexEntry::multi("runs_active", "all"));
        }
        entries
    }
}

/// What became of one contact in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultStatus {
    /// The model was asked.
    Evaluated,
    /// It does not match the filter: no model call.
    Skipped,
    /// The evaluation failed.
    Error,
}

/// One proposal of a contact's evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    /// Its place among the contact's proposals: the `actionIndex` of the
    /// approval endpoints.
    pub index: u32,
    /// The action type.
    pub action_type: String,
    /// The params as proposed (with `contact_id` set by the host).
    pub params: Value,
    /// The stored action, when the proposal was valid.
    pub action_id: Option<String>,
    /// Approved by the agent's rule.
    pub auto_approved: bool,
    /// Why it was refused, when it was.
    pub error: Option<String>,
}

/// A contact's result in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContactResult {
    /// `RUN:CONTACT`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The run.
    pub run_id: String,
    /// The contact's place in the run's plan.
    pub position: u32,
    /// The contact.
    pub contact_id: String,
    /// A few of the contact's fields as they were (`email`, `firstname`, …).
    pub contact: Map<String, Value>,
    /// What became of it.
    pub status: ResultStatus,
    /// The model's reasoning.
    pub reasoning: Option<String>,
    /// What it proposed.
    pub proposals: Vec<Proposal>,
    /// Every error, with its reason.
    pub errors: Vec<String>,
    /// Tokens used.
    pub usage: Usage,
    /// RFC 3339.
    pub evaluated_at: String,
}

impl ContactResult {
    /// The id of a contact's result in a run.
    pub fn id_of(run_id: &str, contact_id: &str) -> String {
        format!("{run_id}:{contact_id}")
    }
}

impl Record for ContactResult {
    const COLLECTION: &'static str = "agent_contact_results";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi(
            "results_by_run",
            format!("{}\0{:06}", self.run_id, self.position),
        )]
    }
}

/// A proposal that passed every check, ready to store.
struct Valid {
    index: u32,
    action_type: String,
    params: Value,
    auto: bool,
    info: crate::runtime::ActionTypeInfo,
}

/// An evaluation's outcome, before it is stored.
struct Evaluation {
    status: ResultStatus,
    reasoning: Option<String>,
    proposals: Vec<Proposal>,
    valid: Vec<Valid>,
    errors: Vec<String>,
    usage: Usage,
}

impl Evaluation {
    fn failed(error: String, usage: Usage) -> Self {
        Self {
            status: ResultStatus::Error,
            reasoning: None,
            proposals: Vec::new(),
            valid: Vec::new(),
            errors: vec![error],
            usage,
        }
    }
}

impl Agents {
    /// Queues a run of the agent, durably, and returns it. `contact_ids`
    /// (at most 1,000, each a contact of the tenant) replace the filter's
    /// selection; the filter still decides which of them are evaluated.
    pub async fn trigger(
        &self,
        tenant_id: &str,
        agent_id: &str,
        contact_ids: Option<Vec<String>>,
        trigger: &str,
    ) -> Result<AgentRun> {
        let agent = self.get(tenant_id, agent_id)?;
        if let Some(ids) = &contact_ids {
            let mut errors = Vec::new();
            if ids.is_empty() || ids.len() > 1000 {
                errors.push(FieldError::new(
                    "/contact_ids",
                    "must hold 1 to 1,000 contact ids",
                ));
            }
            for (index, id) in ids.iter().enumerate() {
                if find_contact(self.records(), tenant_id, id)?.is_none() {
                    errors.push(FieldError::new(
                        &format!("/contact_ids/{index}"),
                        &format!("no contact {id} in this tenant"),
                    ));
                }
            }
            if !errors.is_empty() {
                return Err(AgentError::Invalid {
                    message: format!("invalid trigger: {}", FieldError::summary(&errors)),
                    fields: errors,
                });
            }
        }
        let run = AgentRun {
            id: new_ordered_id("run"),
            tenant_id: tenant_id.to_owned(),
            agent_id: agent.id,
            trigger: trigger.to_owned(),
            status: RunStatus::Queued,
            requested: contact_ids,
            planned: Vec::new(),
            summary: RunSummary::default(),
            usage: Usage::default(),
            budget_exhausted: false,
            cancel_requested: false,
            error: None,
            created_at: now(),
            started_at: None,
            completed_at: None,
            running_on: None,
        };
        self.records().put_durably(run.clone()).await?;
        // A closed queue (shutting down) leaves it queued for the next start.
        let _ = self.inner.queue.send(run.id.clone());
        Ok(run)
    }

    /// A run of the tenant.
    pub fn run(&self, tenant_id: &str, run_id: &str) -> Result<AgentRun> {
        self.records()
            .get::<AgentRun>(run_id)?
            .filter(|r| r.tenant_id == tenant_id)
            .ok_or_else(|| AgentError::not_found("run", run_id))
    }

    /// A page of an agent's runs, newest first, and how many match.
    pub fn runs(
        &self,
        tenant_id: &str,
        agent_id: &str,
        status: Option<RunStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<AgentRun>, usize)> {
        self.get(tenant_id, agent_id)?;
        let mut runs: Vec<AgentRun> = self
            .records()
            .list_by::<AgentRun>("runs_by_agent", &format!("{tenant_id}\0{agent_id}"))?
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect();
        runs.reverse();
        let total = runs.len();
        Ok((runs.into_iter().skip(offset).take(limit).collect(), total))
    }

    /// A page of a run's contact results, in evaluation order.
    pub fn results(
        &self,
        run: &AgentRun,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<ContactResult>, usize)> {
        let prefix = format!("{}\0", run.id);
        let total = self
            .records()
            .index_count("results_by_run", &prefix, None, None)?;
        let mut results = Vec::new();
        for (_, id) in self.records().index_range(
            "results_by_run",
            &prefix,
            None,
            None,
            false,
            offset,
            limit,
        )? {
            if let Some(result) = self.records().get::<ContactResult>(&id)? {
                results.push(result);
            }
        }
        Ok((results, total))
    }

    /// Asks a run to stop: a queued one is cancelled at once, a running one
    /// after the contacts being evaluated.
    pub async fn cancel(&self, tenant_id: &str, run_id: &str) -> Result<AgentRun> {
        let (tenant, id) = (tenant_id.to_owned(), run_id.to_owned());
        self.records()
            .commit(move |tx| {
                let Some(mut run) = tx.get::<AgentRun>(&id)?.filter(|r| r.tenant_id == tenant)
                else {
                    return Ok(Err(AgentError::not_found("run", &id)));
                };
                match run.status {
                    RunStatus::Queued => {
                        run.status = RunStatus::Cancelled;
                        run.completed_at = Some(now());
                    }
                    RunStatus::Running => run.cancel_requested = true,
                    other => {
                        return Ok(Err(AgentError::Conflict(format!(
                            "run {id} is {}; only a queued or running run can be cancelled",
                            other.as_str()
                        ))));
                    }
                }
                tx.put(&run)?;
                Ok(Ok(run))
            })
            .await?
    }

    /// Approves or rejects the proposal `index` of `contact_id` in a run.
    pub async fn decide(
        &self,
        tenant_id: &str,
        (run_id, contact_id, index): (&str, &str, u32),
        approve: bool,
        actor: &Actor,
        comment: Option<String>,
    ) -> Result<Action> {
        self.run(tenant_id, run_id)?;
        let result = self
            .records()
            .get::<ContactResult>(&ContactResult::id_of(run_id, contact_id))?
            .filter(|r| r.tenant_id == tenant_id)
            .ok_or_else(|| {
                AgentError::not_found("contact result", &format!("{run_id}/{contact_id}"))
            })?;
        let proposal = result
            .proposals
            .iter()
            .find(|p| p.index == index)
            .ok_or_else(|| {
                AgentError::not_found("proposed action", &format!("{run_id}/{contact_id}/{index}"))
            })?;
        let Some(action_id) = &proposal.action_id else {
            return Err(AgentError::Conflict(format!(
                "proposal {index} was refused ({}); there is no action to decide",
                proposal.error.as_deref().unwrap_or("invalid")
            )));
        };
        let review = if approve {
            Review::Approve
        } else {
            Review::Reject
        };
        self.inner
            .actions
            .review(tenant_id, action_id, actor, review, comment)
            .await
            .map_err(|err| match err {
                crate::actions::ActionError::Forbidden(forbidden) => {
                    AgentError::Conflict(forbidden.to_string())
                }
                other => AgentError::Store(crate::store::StoreError::Storage(other.to_string())),
            })
    }

    /// Approves or rejects every proposal of a run still waiting for a
    /// person; returns each action with its status afterwards.
    pub async fn decide_run(
        &self,
        tenant_id: &str,
        run_id: &str,
        approve: bool,
        actor: &Actor,
        comment: Option<String>,
    ) -> Result<Vec<(String, ActionStatus)>> {
        let run = self.run(tenant_id, run_id)?;
        let (results, _) = self.results(&run, 0, usize::MAX)?;
        let mut decided = Vec::new();
        for proposal in results.iter().flat_map(|r| &r.proposals) {
            let Some(action_id) = &proposal.action_id else {
                continue;
            };
            let Ok(action) = self.inner.actions.get(tenant_id, action_id) else {
                continue;
            };
            if action.status != ActionStatus::PendingApproval {
                continue;
            }
            let review = if approve {
                Review::Approve
            } else {
                Review::Reject
            };
            match self
                .inner
                .actions
                .review(tenant_id, action_id, actor, review, comment.clone())
                .await
            {
                Ok(action) => decided.push((action.id, action.status)),
                // Decided by someone else meanwhile: left as it is.
                Err(crate::actions::ActionError::Forbidden(_)) => {}
                Err(err) => {
                    return Err(AgentError::Store(crate::store::StoreError::Storage(
                        err.to_string(),
                    )));
                }
            }
        }
        Ok(decided)
    }

    /// One run, from wherever it is.
    pub(super) async fn execute_run(&self, id: &str) -> Result<()> {
        let Some(run) = self.claim_run(id).await? else {
            return Ok(());
        };
        let agent = match self.get(&run.tenant_id, &run.agent_id) {
            Ok(agent) => agent,
            Err(AgentError::NotFound { .. }) => {
                return Err(AgentError::Conflict("the agent was deleted".into()));
            }
            Err(err) => return Err(err),
        };
        let run = if run.status == RunStatus::Queued {
            let planned = self.select(&agent, run.requested.as_deref())?;
            let id = run.id.clone();
            self.records()
                .commit(move |tx| {
                    let Some(mut run) = tx.get::<AgentRun>(&id)? else {
                        return Ok(None);
                    };
                    if run.status != RunStatus::Queued {
                        return Ok(Some(run));
                    }
                    run.status = RunStatus::Running;
                    run.planned = planned.clone();
                    run.started_at = Some(now());
                    tx.put(&run)?;
                    Ok(Some(run))
                })
                .await?
        } else {
            Some(run)
        };
        let Some(run) = run.filter(|r| r.status == RunStatus::Running) else {
            return Ok(());
        };
        tracing::info!(run = %run.id, agent = %agent.id, contacts = run.planned.len(), "agent run started");
        // Resumed where it stopped: the contacts with a result are done.
        let done: BTreeSet<String> = self
            .results(&run, 0, usize::MAX)?
            .0
            .into_iter()
            .map(|r| r.contact_id)
            .collect();
        let pending: Vec<(u32, String)> = run
            .planned
            .iter()
            .enumerate()
            .filter(|(_, c)| !done.contains(*c))
            .map(|(i, c)| (u32::try_from(i).unwrap_or(u32::MAX), c.clone()))
            .collect();
        let agent = Arc::new(agent);
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.inner.config.concurrency.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let mut stopped = false;
        for (position, contact_id) in pending {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| AgentError::Conflict("the run's permits closed".into()))?;
            let current = self.run(&run.tenant_id, &run.id)?;
            let replicas = self.inner.actions.replicas();
            if current.running_on.as_deref() != Some(crate::replica::id())
                || (replicas.shared() && !replicas.holds_lease())
            {
                // Taken over, or about to be: its lease is not renewed.
                // The evaluations under way finish; the replica holding
                // the run (this one once its lease is back) goes on.
                while tasks.join_next().await.is_some() {}
                tracing::warn!(run = %run.id, "agent run left to the replica that holds it");
                return Ok(());
            }
            if current.cancel_requested || current.budget_exhausted {
                stopped = true;
                break;
            }
            if current.usage.input_tokens + current.usage.output_tokens
                >= self.inner.config.run_token_budget
            {
                self.mark_budget(&run.id).await?;
                stopped = true;
                break;
            }
            let (this, agent, run_id) = (self.clone(), agent.clone(), run.id.clone());
            tasks.spawn(async move {
                let _permit = permit;
                this.evaluate_and_store(&agent, &run_id, position, &contact_id)
                    .await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined
                .map_err(|err| AgentError::Conflict(format!("an evaluation panicked: {err}")))??;
        }
        let id = run.id.clone();
        let finished = self
            .records()
            .commit(move |tx| {
                let Some(mut run) = tx.get::<AgentRun>(&id)? else {
                    return Ok(None);
                };
                if run.running_on.as_deref() != Some(crate::replica::id()) {
                    return Ok(None);
                }
                run.status = if run.cancel_requested {
                    RunStatus::Cancelled
                } else {
                    RunStatus::Completed
                };
                run.completed_at = Some(now());
                tx.put(&run)?;
                Ok(Some(run))
            })
            .await?;
        if let Some(run) = finished {
            tracing::info!(run = %run.id, status = run.status.as_str(), stopped, summary = ?run.summary, "agent run finished");
        }
        Ok(())
    }

    async fn mark_budget(&self, run_id: &str) -> Result<()> {
        let id = run_id.to_owned();
        self.records()
            .commit(move |tx| {
                if let Some(mut run) = tx.get::<AgentRun>(&id)? {
                    run.budget_exhausted = true;
                    tx.put(&run)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The contacts a run evaluates: those a trigger named, or the newest
    /// contacts matching the filter, at most `max_contacts_per_run`.
    fn select(&self, agent: &Agent, requested: Option<&[String]>) -> Result<Vec<String>> {
        let max = agent.monitoring.max_contacts_per_run as usize;
        if let Some(ids) = requested {
            return Ok(ids.iter().take(max).cloned().collect());
        }
        let filter = &agent.monitoring.filter;
        let tenant = &agent.tenant_id;
        let candidates: Vec<Contact> = match &filter.lifecycle_stage {
            Some(stage) => self.records().list_by(
                "contacts_by_stage",
                &format!("{tenant}\0{}", stage.to_lowercase()),
            )?,
            None => self.records().list_by("contacts_by_tenant", tenant)?,
        };
        let events = self.inner.contacts.events();
        let mut chosen = Vec::new();
        // Newest contacts first.
        for contact in candidates.into_iter().rev() {
            if chosen.len() == max {
                break;
            }
            let matches = filter.matches(events, &contact).map_err(|err| {
                AgentError::Store(crate::store::StoreError::Storage(err.to_string()))
            })?;
            if matches {
                chosen.push(contact.id);
            }
        }
        Ok(chosen)
    }

    /// Evaluates one contact and stores its result, its actions and the
    /// run's counts in one transaction.
    async fn evaluate_and_store(
        &self,
        agent: &Agent,
        run_id: &str,
        position: u32,
        contact_id: &str,
    ) -> Result<()> {
        let contact = find_contact(self.records(), &agent.tenant_id, contact_id)?;
        let evaluation = match &contact {
            None => Evaluation::failed(
                format!("contact {contact_id} was deleted before it was evaluated"),
                Usage::default(),
            ),
            Some(contact) => {
                let matches = agent
                    .monitoring
                    .filter
                    .matches(self.inner.contacts.events(), contact)
                    .map_err(|err| {
                        AgentError::Store(crate::store::StoreError::Storage(err.to_string()))
                    })?;
                if matches {
                    self.evaluate(agent, contact).await
                } else {
                    Evaluation {
                        status: ResultStatus::Skipped,
                        reasoning: Some("the contact does not match the agent's monitoring filter; the model was not asked".into()),
                        proposals: Vec::new(),
                        valid: Vec::new(),
                        errors: Vec::new(),
                        usage: Usage::default(),
                    }
                }
            }
        };
        let actor = Actor::System {
            name: format!("agent {}", agent.id),
        };
        let mut actions = Vec::new();
        let mut proposals = evaluation.proposals;
        if let Some(contact) = &contact {
            for valid in evaluation.valid {
                let action = self.inner.actions.proposed(
                    &agent.tenant_id,
                    &actor,
                    NewAction {
                        action_type: valid.action_type.clone(),
                        params: valid.params.clone(),
                        identity_id: agent
                            .identity_id
                            .clone()
                            .unwrap_or_else(|| agent.id.clone()),
                        direct: false,
                        scheduled_time: None,
                        list_id: None,
                        item_id: None,
                        description: Some(format!("Proposed by agent {}", agent.name)),
                        require_approval: !valid.auto,
                        version: None,
                    },
                    &valid.info,
                    contact,
                    (&agent.id, run_id, valid.index),
                );
                if let Some(proposal) = proposals.iter_mut().find(|p| p.index == valid.index) {
                    proposal.action_id = Some(action.id.clone());
                    proposal.auto_approved = action.status == ActionStatus::Scheduled;
                }
                actions.push(action);
            }
        }
        let mut counts = RunSummary {
            contacts_evaluated: u32::from(
                evaluation.status != ResultStatus::Skipped && contact.is_some(),
            ),
            errors: u32::try_from(evaluation.errors.len()).unwrap_or(u32::MAX),
            ..RunSummary::default()
        };
        for action in &actions {
            counts.actions_proposed += 1;
            if action.status == ActionStatus::Scheduled {
                counts.actions_auto_approved += 1;
            } else {
                counts.actions_pending_approval += 1;
            }
        }
        let snapshot = contact.as_ref().map(snapshot).unwrap_or_default();
        let result = ContactResult {
            id: ContactResult::id_of(run_id, contact_id),
            tenant_id: agent.tenant_id.clone(),
            run_id: run_id.to_owned(),
            position,
            contact_id: contact_id.to_owned(),
            contact: snapshot,
            status: evaluation.status,
            reasoning: evaluation.reasoning,
            proposals,
            errors: evaluation.errors,
            usage: evaluation.usage,
            evaluated_at: now(),
        };
        let any_scheduled = actions.iter().any(|a| a.status == ActionStatus::Scheduled);
        let run = run_id.to_owned();
        let stored = self
            .records()
            .commit(move |tx| {
                if tx.get::<ContactResult>(&result.id)?.is_some() {
                    // Evaluated already (a resumed run racing itself): keep the first.
                    return Ok(false);
                }
                let Some(mut run) = tx.get::<AgentRun>(&run)? else {
                    return Ok(false);
                };
                for action in &actions {
                    tx.insert(action)?;
                }
                tx.put(&result)?;
                let summary = &mut run.summary;
                summary.contacts_evaluated += counts.contacts_evaluated;
                summary.actions_proposed += counts.actions_proposed;
                summary.actions_auto_approved += counts.actions_auto_approved;
                summary.actions_pending_approval += counts.actions_pending_approval;
                summary.errors += counts.errors;
                run.usage += result.usage;
                tx.put(&run)?;
                Ok(true)
            })
            .await?;
        if stored && any_scheduled {
            self.inner.actions.notify_scheduled();
        }
        Ok(())
    }

    /// One contact: the model call, the proposals checked, once more with
    /// the errors when some are invalid.
    async fn evaluate(&self, agent: &Agent, contact: &Contact) -> Evaluation {
        let types = agent.action_types();
        let registry = self.inner.actions.pipeline().registry();
        let tool = match propose_tool(registry, &types) {
            Ok(tool) => tool,
            Err(error) => return Evaluation::failed(error, Usage::default()),
        };
        let context = match self.context(agent, contact) {
            Ok(context) => context,
            Err(error) => return Evaluation::failed(error.to_string(), Usage::default()),
        };
        let system = format!(
            "{}\n\n---\nYou evaluate one contact at a time. Answer by calling the `{TOOL}` tool once: \
             `reasoning` says what you saw and why you propose what you propose; `actions` lists the \
             actions to propose (an empty list when none is warranted), each of one of these types: {}. \
             The host sets each action's `contact_id` to this contact.",
            agent.playbook.playbook_md,
            types.join(", ")
        );
        let mut messages = vec![Message::user(context.to_string())];
        let mut usage = Usage::default();
        for attempt in 0..2 {
            let request = CompletionRequest {
                model: agent.llm_config.model.clone(),
                system: Some(system.clone()),
                messages: messages.clone(),
                tools: vec![tool.clone()],
                tool_choice: ToolChoice::Tool(TOOL.into()),
                temperature: agent.llm_config.temperature,
                max_tokens: agent.llm_config.max_tokens.unwrap_or(1024),
                account: None,
            };
            let answer = match self
                .inner
                .models
                .complete(
                    &agent.tenant_id,
                    &agent.llm_config.provider,
                    agent.llm_config.account_id.as_deref(),
                    request,
                )
                .await
            {
                Ok(answer) => answer,
                Err(err) => {
                    return Evaluation::failed(format!("the model call failed: {err}"), usage);
                }
            };
            crate::metrics::model_tokens(&agent.id, &answer.usage);
            usage += answer.usage;
            let call = answer
                .completion
                .tool_calls
                .iter()
                .find(|c| c.name == TOOL)
                .cloned();
            let checked = match &call {
                None => Err(format!(
                    "the model answered without calling {TOOL}{}",
                    if answer.completion.content.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it said: {})",
                            answer
                                .completion
                                .content
                                .chars()
                                .take(200)
                                .collect::<String>()
                        )
                    }
                )),
                Some(call) => self.check_proposals(agent, contact, call).await,
            };
            let (reasoning, proposals, valid, problems) = match checked {
                Ok(checked) => checked,
                Err(problem) => (None, Vec::new(), Vec::new(), vec![problem]),
            };
            if problems.is_empty() || attempt == 1 {
                return Evaluation {
                    status: if valid.is_empty() && !problems.is_empty() && proposals.is_empty() {
                        ResultStatus::Error
                    } else {
                        ResultStatus::Evaluated
                    },
                    reasoning,
                    proposals,
                    valid,
                    errors: problems,
                    usage,
                };
            }
            // Once more, with the errors: the model may correct itself.
            let call = call.unwrap_or(ToolCall {
                id: "none".into(),
                name: TOOL.into(),
                arguments: json!({}),
            });
            messages.push(Message {
                role: Role::Assistant,
                content: answer.completion.content.clone(),
                tool_calls: vec![call.clone()],
                tool_call_id: None,
            });
            messages.push(Message {
                role: Role::Tool,
                content: format!(
                    "The proposal was refused: {}. Call {TOOL} again with every action corrected (or left out).",
                    problems.join("; ")
                ),
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id),
            });
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Reads a `propose_actions` call: its reasoning, each proposal checked
    /// by its type's schema and its plugin's `validate`. Returns the
    /// reasoning, every proposal, the valid ones, and each problem.
    #[allow(clippy::type_complexity)]
    async fn check_proposals(
        &self,
        agent: &Agent,
        contact: &Contact,
        call: &ToolCall,
    ) -> std::result::Result<(Option<String>, Vec<Proposal>, Vec<Valid>, Vec<String>), String> {
        let arguments = match &call.arguments {
            Value::String(text) => serde_json::from_str::<Value>(text)
                .map_err(|err| format!("the arguments of {TOOL} are not JSON: {err}"))?,
            other => other.clone(),
        };
        let reasoning = arguments
            .get("reasoning")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(items) = arguments.get("actions").and_then(Value::as_array) else {
            return Err(format!("the arguments of {TOOL} have no `actions` list"));
        };
        let types = agent.action_types();
        let registry = self.inner.actions.pipeline().registry();
        let mut proposals = Vec::new();
        let mut valid = Vec::new();
        let mut problems = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let action_type = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut params = item.get("params").cloned().unwrap_or(Value::Null);
            let refuse = |message: String,
                          params: Value,
                          proposals: &mut Vec<Proposal>,
                          problems: &mut Vec<String>| {
                problems.push(format!("/actions/{index}: {message}"));
                proposals.push(Proposal {
                    index,
                    action_type: action_type.clone(),
                    params,
                    action_id: None,
                    auto_approved: false,
                    error: Some(message),
                });
            };
            if !types.contains(&action_type) {
                refuse(
                    format!(
                        "{action_type:?} is not one of the agent's action types ({})",
                        types.join(", ")
                    ),
                    params,
                    &mut proposals,
                    &mut problems,
                );
                continue;
            }
            let Some(object) = params.as_object_mut() else {
                refuse(
                    "params must be an object".into(),
                    params,
                    &mut proposals,
                    &mut problems,
                );
                continue;
            };
            let Some(plugin) = registry.plugin_for(&action_type) else {
                refuse(
                    format!("no loaded plugin serves {action_type}"),
                    params,
                    &mut proposals,
                    &mut problems,
                );
                continue;
            };
            let Some(info) = plugin.manifest().action_type(&action_type).cloned() else {
                continue;
            };
            if info.contact_bound() {
                object.insert("contact_id".into(), Value::String(contact.id.clone()));
            }
            let fields = match plugin.check_params(&action_type, &params) {
                Err(fields) => fields,
                Ok(()) => match plugin.validate(&action_type, &params).await {
                    Ok(Ok(())) => Vec::new(),
                    Ok(Err(fields)) => fields,
                    Err(fault) => vec![FieldError::new(
                        "",
                        &format!("the plugin failed validating: {}", fault.kind),
                    )],
                },
            };
            if !fields.is_empty() {
                refuse(
                    format!("invalid params: {}", FieldError::summary(&fields)),
                    params,
                    &mut proposals,
                    &mut problems,
                );
                continue;
            }
            let auto = agent.auto_approve.contains(&action_type) && !info.requires_approval;
            proposals.push(Proposal {
                index,
                action_type: action_type.clone(),
                params: params.clone(),
                action_id: None,
                auto_approved: auto,
                error: None,
            });
            valid.push(Valid {
                index,
                action_type,
                params,
                auto,
                info,
            });
        }
        Ok((reasoning, proposals, valid, problems))
    }

    /// What the model reads about a contact: the contact, its recent events,
    /// actions and notes (its timeline), and who acts.
    fn context(&self, agent: &Agent, contact: &Contact) -> std::result::Result<Value, AgentError> {
        let tenant = &agent.tenant_id;
        let events = self
            .inner
            .contacts
            .events()
            .list(
                tenant,
                &EventQuery {
                    contact_id: Some(contact.id.clone()),
                    limit: 50,
                    descending: true,
                    ..EventQuery::default()
                },
            )
            .map_err(|err| AgentError::Store(crate::store::StoreError::Storage(err.to_string())))?;
        let (timeline, _) = self
            .inner
            .contacts
            .timeline(tenant, &contact.id, 0, 100)
            .map_err(|err| AgentError::Store(crate::store::StoreError::Storage(err.to_string())))?;
        let recent_actions: Vec<Value> = timeline
            .iter()
            .filter_map(|entry| entry.action.as_ref())
            .take(20)
            .map(|a| json!({"type": a.action_type, "status": a.status, "summary": a.summary, "params": a.params, "created_at": a.created_at}))
            .collect();
        let notes: Vec<Value> = timeline
            .iter()
            .filter_map(|entry| entry.note.as_ref())
            .take(10)
            .map(|n| json!({"body": n.body, "created_at": n.created_at}))
            .collect();
        let identity = agent
            .identity_id
            .as_deref()
            .and_then(|id| {
                crate::identities::find(self.records(), tenant, id)
                    .ok()
                    .flatten()
            })
            .map(|i| json!({"name": i.name, "email": i.email}));
        Ok(json!({
            "now": now(),
            "contact": {"id": contact.id, "email": contact.email, "properties": contact.properties},
            "events": events.iter().map(|e| json!({"event": e.event, "url": e.url, "occurred_at": e.occurred_at, "properties": e.properties})).collect::<Vec<_>>(),
            "recent_actions": recent_actions,
            "notes": notes,
            "identity": identity,
        }))
    }
}

/// The `propose_actions` tool for `types`: `reasoning`, and `actions`, each
/// one of the types with its params schema (less `contact_id`, which the
/// host sets).
pub fn propose_tool(
    registry: &crate::registry::PluginRegistry,
    types: &[String],
) -> std::result::Result<Tool, String> {
    let mut variants = Vec::new();
    let mut definitions = Map::new();
    for action_type in types {
        let plugin = registry
            .plugin_for(action_type)
            .ok_or_else(|| format!("no loaded plugin serves {action_type}"))?;
        let info = plugin
            .manifest()
            .action_type(action_type)
            .ok_or_else(|| format!("no loaded plugin serves {action_type}"))?;
        let mut params = info.params_schema.clone();
        if let Some(object) = params.as_object_mut() {
            for key in ["$defs", "definitions"] {
                if let Some(Value::Object(defs)) = object.remove(key) {
                    definitions.extend(defs);
                }
            }
            object.remove("$schema");
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                properties.remove("contact_id");
            }
            if let Some(Value::Array(required)) = object.get_mut("required") {
                required.retain(|r| r != "contact_id");
            }
        }
        variants.push(json!({
            "type": "object",
            "description": format!("{}: {}", info.title, info.description),
            "properties": {"type": {"const": action_type_of(action_type)}, "params": params},
            "required": ["type", "params"],
            "additionalProperties": false,
        }));
    }
    let mut schema = json!({
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "description": "What you saw in the contact's timeline, and why you propose what you propose (or nothing)."},
            "actions": {"type": "array", "items": {"anyOf": variants}},
        },
        "required": ["reasoning", "actions"],
    });
    if !definitions.is_empty() {
        schema["$defs"] = Value::Object(definitions);
    }
    Ok(Tool {
        name: TOOL.into(),
        description: "Propose the actions to take for this contact (none when nothing is warranted), with your reasoning.".into(),
        parameters: schema,
    })
}

/// The fields of a contact a run's result keeps for the reader.
fn snapshot(contact: &Contact) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(email) = &contact.email {
        fields.insert("email".into(), Value::String(email.clone()));
    }
    for name in ["firstname", "lastname", "company"] {
        if let Some(value) = contact.properties.get(name) {
            fields.insert(name.into(), value.clone());
        }
    }
    fields
}
