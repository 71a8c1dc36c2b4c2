//! Running actions: the claim (`scheduled` → `executing`, durable before
//! the plugin starts), the run through the pipeline, and the outcome and its
//! execution record written in one transaction.

use std::time::SystemTime;

use serde::Serialize;

use super::{
    Action, ActionError, ActionStatus, Actions, Actor, Claim, Forbidden, KeyedRequest, Result,
    StoredResponse, Transition, epoch_ms, machine,
};
use crate::accounts::Lookup;
use crate::executions::{
    Admission, ExecuteCommand, ExecutionRecord, ExecutionStatus, Pipeline, PipelineError,
};
use crate::store::StoreError;
use crate::tenancy::now;

/// What `process` did with one action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Processed {
    /// The action.
    pub action_id: String,
    /// Its status afterwards.
    pub status: ActionStatus,
    /// The attempt's execution record.
    pub execution_id: Option<String>,
}

impl Actions {
    /// Executes an action now, on the caller's request, and returns it
    /// afterwards. Refused (409) unless it is `scheduled`.
    pub async fn execute(&self, tenant_id: &str, id: &str, actor: &Actor) -> Result<Action> {
        let action = self.get(tenant_id, id)?;
        // Refused (429) before the claim when a cap is full: nothing changes.
        let slot = self.pipeline().admit(tenant_id, &action.action_type)?;
        let claimed = self.claim(id, actor, None, false).await?;
        self.run_claimed_detached(claimed, actor, admission(slot))
            .await
    }

    /// Checks every requirement of running the action now (the account,
    /// the params, the approval), without running it. A full concurrency
    /// cap is [`PipelineError::Busy`], the only unmet requirement then.
    pub async fn requirements(&self, action: &Action) -> Vec<PipelineError> {
        let command = self.command(action, &Actor::system("check"), None);
        match self.pipeline().prepare(command).await {
            Ok(_) => Vec::new(),
            Err(unmet) => unmet,
        }
    }

    /// Claims a scheduled action and starts running it in the background
    /// under `execution_id`, whose record exists (as pending) from now on.
    pub async fn execute_async(
        &self,
        tenant_id: &str,
        id: &str,
        actor: &Actor,
        key: Option<&KeyedRequest>,
    ) -> Result<StoredResponse> {
        let action = self.get(tenant_id, id)?;
        let execution_id = crate::tenancy::new_id("exe");
        let pending = self.pending_record(&action, actor, &execution_id, Transition::Execute);
        let body = serde_json::json!({ "id": execution_id, "status": "Pending" });
        let response = StoredResponse { status: 202, body };
        let idempotency = &self.inner.idempotency;
        let outcome = self.records().transaction(|tx| {
            if let Some(key) = key {
                match idempotency.claim_in(
                    tx,
                    tenant_id,
                    key,
                    Some(response.clone()),
                    Some(execution_id.clone()),
                )? {
                    Claim::New => {}
                    Claim::Replay(first) => return Ok(Ok(Some(first))),
                    Claim::Mismatch => return Ok(Err(ActionError::KeyReused)),
                    Claim::InProgress => return Ok(Err(ActionError::KeyInProgress)),
                    Claim::Interrupted { target } => {
                        return Ok(Err(ActionError::KeyInterrupted(target)));
                    }
                }
            }
            let Some(mut action) = tx.get::<Action>(id)? else {
                return Ok(Err(ActionError::NotFound(id.to_owned())));
            };
            if let Err(forbidden) = claim_in(&mut action, actor, Some(&execution_id), false) {
                return Ok(Err(forbidden.into()));
            }
            tx.put(&action)?;
            tx.insert(&pending)?;
            Ok(Ok(None))
        })?;
        if let Some(first) = outcome? {
            return Ok(first);
        }
        self.records().durable().await?;
        let claimed = self.get(tenant_id, id)?;
        let this = self.clone();
        let actor = actor.clone();
        let run_id = execution_id.clone();
        self.inner.tasks.spawn(async move {
            // In the background, holding nothing else: it may wait for a slot.
            this.run_claimed(claimed, &actor, Some(run_id), Admission::Wait)
                .await;
        });
        Ok(response)
    }

    pub(super) fn pending_record(
        &self,
        action: &Action,
        actor: &Actor,
        execution_id: &str,
        transition: Transition,
    ) -> ExecutionRecord {
        let at = now();
        ExecutionRecord {
            id: execution_id.to_owned(),
            tenant_id: action.tenant_id.clone(),
            action_id: Some(action.id.clone()),
            transition: transition.id().into(),
            action_type: action.action_type.clone(),
            plugin: String::new(),
            plugin_version: String::new(),
            params: action.params.clone(),
            account_id: None,
            inline_credentials: false,
            attempt: action.attempts + 1,
            status: ExecutionStatus::Pending,
            output: None,
            error: None,
            log: Vec::new(),
            log_truncated_bytes: 0,
            trace: None,
            performed_by: actor.user_id().to_owned(),
            key_id: actor.key_id().to_owned(),
            session_info: None,
            text: None,
            idempotency_key: None,
            started_at: at.clone(),
            finished_at: at,
            duration_ms: 0,
            replica: Some(crate::replica::id().to_owned()),
        }
    }

    /// Claims an action for one run: `scheduled` → `executing`, durably.
    /// `due_only` (the scheduler) also refuses an action not yet due.
    pub(super) async fn claim(
        &self,
        id: &str,
        actor: &Actor,
        execution_id: Option<&str>,
        due_only: bool,
    ) -> Result<Action> {
        let action = self.claim_unflushed(id, actor, execution_id, due_only)?;
        // On disk before the plugin starts: a crash from here on is
        // recovered by the rule, never silently run twice.
        self.records().durable().await?;
        Ok(action)
    }

    /// Claims several due actions in one transaction, durably, for the
    /// scheduler: the claims are on disk before any of them starts, and they
    /// share their flush with the outcomes being written meanwhile (a group
    /// commit). Each result is the claimed action, or why it could not be
    /// claimed (claimed by a caller meanwhile, or not due after all).
    pub(crate) async fn claim_due_batch(
        &self,
        ids: Vec<String>,
        actor: &Actor,
    ) -> Result<Vec<Result<Action>>> {
        let actor = actor.clone();
        Ok(self
            .records()
            .commit(move |tx| {
                let mut claimed = Vec::with_capacity(ids.len());
                for id in &ids {
                    // Another replica claiming the same action holds it: it
                    // is theirs, and this one passes over it.
                    let Some(mut action) = tx.get_unless_locked::<Action>(id)? else {
                        claimed.push(Err(ActionError::NotFound(id.clone())));
                        continue;
                    };
                    match claim_in(&mut action, &actor, None, true) {
                        Ok(()) => {
                            tx.put(&action)?;
                            claimed.push(Ok(action));
                        }
                        Err(forbidden) => claimed.push(Err(forbidden.into())),
                    }
                }
                Ok(claimed)
            })
            .await?)
    }

    /// [`Actions::claim`] without the flush.
    pub(super) fn claim_unflushed(
        &self,
        id: &str,
        actor: &Actor,
        execution_id: Option<&str>,
        due_only: bool,
    ) -> Result<Action> {
        self.records().transaction(|tx| {
            let Some(mut action) = tx.get::<Action>(id)? else {
                return Ok(Err(ActionError::NotFound(id.to_owned())));
            };
            if let Err(forbidden) = claim_in(&mut action, actor, execution_id, due_only) {
                return Ok(Err(forbidden.into()));
            }
            tx.put(&action)?;
            Ok(Ok(action))
        })?
    }

    pub(super) fn command(
        &self,
        action: &Action,
        actor: &Actor,
        execution_id: Option<String>,
    ) -> ExecuteCommand {
        ExecuteCommand {
            performed_by: actor.user_id().to_owned(),
            key_id: actor.key_id().to_owned(),
            version: action.version.clone(),
            lookup: Lookup {
                connected_account_id: None,
                entity_id: None,
                identity_id: Some(action.identity_id.clone()),
            },
            action_id: Some(action.id.clone()),
            attempt: action.attempts.max(1),
            idempotency_key: Some(
                action
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| action.id.clone()),
            ),
            execution_id,
            // Empty when never approved: the pipeline refuses it.
            approved_hash: action
                .require_approval
                .then(|| action.approved_hash.clone().unwrap_or_default()),
            ..ExecuteCommand::new(
                &action.tenant_id,
                &action.action_type,
                action.params.clone(),
            )
        }
    }

    /// Runs a claimed action through the pipeline and records the outcome.
    /// Never fails: whatever happens ends in a status and history entry
    /// (or, if even the store fails, stays `executing` for recovery).
    pub(super) async fn run_claimed(
        &self,
        action: Action,
        actor: &Actor,
        execution_id: Option<String>,
        admission: Admission,
    ) -> Action {
        self.run_claimed_holding(action, actor, execution_id, admission, ())
            .await
    }

    /// [`Actions::run_claimed`] in a task of its own, waited for: the run
    /// goes on and its outcome is recorded even when the caller (a request
    /// whose client went away) stops waiting, so a claimed action is never
    /// left `executing` until the next restart.
    pub(super) async fn run_claimed_detached(
        &self,
        action: Action,
        actor: &Actor,
        admission: Admission,
    ) -> Result<Action> {
        let (this, actor, id) = (self.clone(), actor.clone(), action.id.clone());
        self.inner
            .tasks
            .spawn(async move { this.run_claimed(action, &actor, None, admission).await })
            .await
            .map_err(|err| {
                StoreError::Storage(format!("the run of action {id} failed: {err}")).into()
            })
    }

    /// [`Actions::run_claimed`] holding `slots` (the scheduler's permit and
    /// tenant slot) until the plugin has finished, not until its outcome is
    /// on disk: the group commit of the outcome then overlaps the next claims
    /// instead of delaying them. Nobody hears of the outcome before it is
    /// durable, and until then a crash leaves the action `executing` for
    /// recovery, as during the run.
    pub(crate) async fn run_claimed_holding<S: Send>(
        &self,
        action: Action,
        actor: &Actor,
        execution_id: Option<String>,
        admission: Admission,
        slots: S,
    ) -> Action {
        let command = ExecuteCommand {
            admission,
            ..self.command(&action, actor, execution_id.clone())
        };
        // Not stored here: `complete` writes the record with the action's
        // outcome, one transaction and one fsync for both. Until then nobody
        // has been told of it, and a crash leaves the action to recovery.
        let record = match self.pipeline().prepare(command).await {
            Ok(prepared) => self.pipeline().run_unstored(prepared).await,
            Err(unmet) => {
                let command = self.command(&action, actor, execution_id);
                let first = unmet
                    .into_iter()
                    .next()
                    .expect("prepare reports at least one");
                tracing::info!(action = %action.id, error = %first, "action cannot run");
                Pipeline::refusal_record(&command, &first)
            }
        };
        match self.complete(&action.id, &record, slots).await {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(action = %action.id, %err, "the outcome could not be stored; the action stays executing until recovery");
                action
            }
        }
    }

    /// Moves an executing action to its outcome and stores the execution's
    /// record with it, in one transaction, durably; `slots` are given back
    /// first, since the plugin has finished.
    pub(super) async fn complete<S: Send>(
        &self,
        id: &str,
        record: &ExecutionRecord,
        slots: S,
    ) -> Result<Action> {
        let config = self.inner.config.clone();
        let id = id.to_owned();
        let record = record.clone();
        // The plugin has finished: its slots go back now, and the outcome is
        // written and flushed with other runs' outcomes (group commit).
        drop(slots);
        let outcome = self.records().commit(move |tx| {
            let Some(mut action) = tx.get::<Action>(&id)? else {
                return Ok(Err(ActionError::NotFound(id.clone())));
            };
            if action.running_on.as_deref() != Some(crate::replica::id()) {
                // This replica's lease lapsed and another recovered the
                // action: the outcome is in the execution record only.
                tx.put(&record)?;
                return Ok(Err(ActionError::LeaseLost(id.clone())));
            }
            let scheduler = Actor::system("scheduler");
            let error = record.error.clone();
            let (transition, comment, due) = match (&record.status, &error) {
                (ExecutionStatus::Succeeded, _) => (Transition::Succeed, None, None),
                (_, Some(e)) if e.code == "outcome_unknown" => (Transition::Unknown, None, None),
                (_, Some(e)) if e.retryable && action.attempts < action.max_attempts => {
                    let delay = config.backoff(action.attempts, e.retry_after_ms);
                    let due = epoch_ms(SystemTime::now())
                        + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    (
                        Transition::Reschedule,
                        Some(format!(
                            "attempt {} of {} failed ({}); next attempt in {} ms",
                            action.attempts,
                            action.max_attempts,
                            e.code,
                            delay.as_millis()
                        )),
                        Some(due),
                    )
                }
                (_, Some(e)) if e.retryable => (
                    Transition::Fail,
                    Some(format!(
                        "attempt {} of {} failed ({}); no attempts left",
                        action.attempts, action.max_attempts, e.code
                    )),
                    None,
                ),
                _ => (Transition::Fail, None, None),
            };
            let entry = match action.apply(transition, &scheduler, comment) {
                Ok(entry) => entry,
                Err(forbidden) => return Ok(Err(forbidden.into())),
            };
            entry.execution_id = Some(record.id.clone());
            entry.error = error.clone();
            if let Some(due) = due {
                action.set_due(due);
            }
            if !action.executions.contains(&record.id) {
                action.executions.push(record.id.clone());
            }
            action.output = record.output.clone();
            action.last_error = error;
            tx.put(&record)?;
            tx.put(&action)?;
            Ok(Ok(action))
        });
        let action = outcome.await??;
        tracing::info!(action = %action.id, status = %action.status, attempt = action.attempts, "action attempt finished");
        if action.status == ActionStatus::Scheduled {
            self.wake();
        }
        Ok(action)
    }

    /// Runs up to `limit` of the tenant's due actions now; returns what
    /// happened to each.
    pub async fn process(&self, tenant_id: &str, limit: usize) -> Result<Vec<Processed>> {
        let now_ms = epoch_ms(SystemTime::now());
        let prefix = format!("{tenant_id}\0");
        let due: Vec<String> = self
            .records()
            .scan_index(
                "actions_due_by_tenant",
                &prefix,
                limit.saturating_mul(2).max(16),
            )?
            .into_iter()
            .take_while(|(value, _)| {
                value
                    .strip_prefix(&prefix)
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .is_some_and(|ms| ms <= now_ms)
            })
            .map(|(_, id)| id)
            .collect();
        let actor = Actor::system("process");
        let mut runs = Vec::new();
        let mut claimed = 0;
        for id in due {
            if claimed == limit {
                break;
            }
            let Some(due) = self.records().get::<Action>(&id)? else {
                continue;
            };
            // At a concurrency cap: it stays due for a later call or the
            // scheduler.
            let Ok(slot) = self.pipeline().admit(tenant_id, &due.action_type) else {
                continue;
            };
            match self.claim(&id, &actor, None, true).await {
                Ok(action) => {
                    claimed += 1;
                    let this = self.clone();
                    let actor = actor.clone();
                    // Tasks of the tracker, not of a JoinSet: a request that
                    // goes away does not cut its runs short.
                    runs.push(self.inner.tasks.spawn(async move {
                        this.run_claimed(action, &actor, None, admission(slot))
                            .await
                    }));
                }
                // Claimed by the scheduler in the meantime.
                Err(ActionError::Forbidden(_) | ActionError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let mut processed = Vec::new();
        for run in runs {
            let action = run
                .await
                .map_err(|err| StoreError::Storage(format!("a run panicked: {err}")))?;
            processed.push(Processed {
                execution_id: action.executions.last().cloned(),
                action_id: action.id,
                status: action.status,
            });
        }
        processed.sort_by(|a, b| a.action_id.cmp(&b.action_id));
        Ok(processed)
    }
}

/// Claims `action` inside a transaction: the state machine's `execute`.
pub(super) fn claim_in(
    action: &mut Action,
    actor: &Actor,
    execution_id: Option<&str>,
    due_only: bool,
) -> Result<(), Forbidden> {
    if due_only
        && action.status == ActionStatus::Scheduled
        && action
            .due_ms
            .is_some_and(|due| due > epoch_ms(SystemTime::now()))
    {
        // Not due: refused as the scheduler would see it, an action that
        // is not claimable now.
        return Err(Forbidden {
            transition: Transition::Execute,
            current: action.status,
            allowed: machine::requestable_from(action.status),
        });
    }
    action.attempts += 1;
    let entry = action.apply(Transition::Execute, actor, None)?;
    entry.execution_id = execution_id.map(str::to_owned);
    Ok(())
}

/// The admission of a run whose slot was taken before its claim, or, for a
/// type no plugin provides (the run then says so), none.
pub(super) fn admission(slot: Option<crate::executions::Slot>) -> Admission {
    slot.map_or(Admission::Refuse, Admission::Held)
}
