//! Recovery after a crash: actions left `executing` are settled by
//! SPEC.md's rule.

use std::time::SystemTime;

use super::{Action, ActionStatus, Actions, Actor, Result, Transition, epoch_ms};
use crate::executions::{ErrorInfo, ExecutionRecord, ExecutionStatus};
use crate::tenancy::now;

impl Actions {
    /// The actions left `executing` by replicas that are gone, with the
    /// replica each was running on: on sled, every one but this run's; on
    /// PostgreSQL, those of replicas whose lease has expired, and of the
    /// previous run from this data dir. At start-up this is read before
    /// the server accepts requests; afterwards, at every lease renewal.
    pub fn interrupted(&self) -> Result<Vec<(String, String)>> {
        let mut live = std::collections::HashMap::<String, bool>::new();
        let mut orphaned = Vec::new();
        for (replica, id) in self
            .records()
            .scan_index("actions_executing", "", usize::MAX)?
        {
            let alive = match live.get(&replica) {
                Some(alive) => *alive,
                None => {
                    let alive = self.replicas().is_live(&replica)?;
                    live.insert(replica.clone(), alive);
                    alive
                }
            };
            if !alive {
                orphaned.push((id, replica));
            }
        }
        Ok(orphaned)
    }

    /// Recovers the actions of replicas whose lease has expired, every
    /// third of the lease, until `stop`; once a minute it also forgets the
    /// leases of replicas long dead.
    pub async fn run_recovery(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let every = self.replicas().lease() / 3;
        let mut forgot = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.recover_expired().await {
                Ok((0, 0)) => {}
                Ok((rescheduled, unknown)) => tracing::warn!(
                    rescheduled,
                    outcome_unknown = unknown,
                    "recovered the actions of a replica whose lease expired: idempotent types run again, the others wait for an operator (POST /v1/actions/{{id}}/resolve)"
                ),
                Err(err) => {
                    tracing::warn!(%err, "recovering the actions of expired replicas failed; retrying")
                }
            }
            if forgot.elapsed() > std::time::Duration::from_secs(60) {
                forgot = std::time::Instant::now();
                if let Err(err) = self.replicas().forget_dead().await {
                    tracing::warn!(%err, "cannot remove the leases of dead replicas");
                }
            }
        }
    }

    /// Settles the actions of expired replicas ([`Actions::interrupted`]);
    /// see [`Actions::recover`].
    pub async fn recover_expired(&self) -> Result<(usize, usize)> {
        let orphaned = self.interrupted()?;
        if orphaned.is_empty() {
            return Ok((0, 0));
        }
        self.recover(orphaned).await
    }

    /// Settles the actions a crash left `executing` (`ids`, from
    /// [`Actions::interrupted`], each with the replica it was running on),
    /// by SPEC.md's rule: an idempotent type is scheduled again; any other
    /// becomes `outcome_unknown` with code `interrupted`, never run twice
    /// behind the user's back. An action that has moved on meanwhile, or
    /// runs on another replica now, is left alone. Returns how many of
    /// each.
    pub async fn recover(&self, ids: Vec<(String, String)>) -> Result<(usize, usize)> {
        let recovery = Actor::system("recovery");
        let (mut rescheduled, mut unknown) = (0, 0);
        for (id, replica) in ids {
            let Some(action) = self.records().get::<Action>(&id)? else {
                continue;
            };
            let idempotent = self
                .pipeline()
                .registry()
                .plugin_for(&action.action_type)
                .and_then(|p| {
                    p.manifest()
                        .action_type(&action.action_type)
                        .map(|t| t.idempotent)
                })
                .unwrap_or(false);
            let error = ErrorInfo {
                code: "interrupted".into(),
                message: format!(
                    "the server running this action (replica {replica}) stopped while it was executing"
                ),
                retryable: idempotent,
                retry_after_ms: None,
                fault: None,
                fields: Vec::new(),
            };
            let interrupted_execution = action.history.last().and_then(|h| h.execution_id.clone());
            let outcome = self.records().transaction(|tx| {
                let Some(mut action) = tx.get::<Action>(&id)? else {
                    return Ok(None);
                };
                if action.status != ActionStatus::Executing
                    || action.running_on.as_deref().unwrap_or("all") != replica
                {
                    return Ok(None);
                }
                let (transition, comment) = if idempotent {
                    (Transition::Reschedule, "the server stopped while this ran; the type is idempotent, so it runs again")
                } else {
                    (Transition::Unknown, "the server stopped while this ran; it may or may not have reached the provider: resolve it with mark_succeeded, mark_failed or retry")
                };
                let Ok(entry) = action.apply(transition, &recovery, Some(comment.into())) else {
                    return Ok(None);
                };
                entry.error = Some(error.clone());
                entry.execution_id = interrupted_execution.clone();
                if idempotent {
                    action.set_due(epoch_ms(SystemTime::now()));
                }
                action.last_error = Some(error.clone());
                if let Some(exe) = &interrupted_execution {
                    if let Some(mut record) = tx.get::<ExecutionRecord>(exe)?
                        && record.status == ExecutionStatus::Pending
                    {
                        record.status = ExecutionStatus::Failed;
                        record.error = Some(error.clone());
                        record.finished_at = now();
                        tx.put(&record)?;
                    }
                    if !action.executions.contains(exe) {
                        action.executions.push(exe.clone());
                    }
                }
                tx.put(&action)?;
                Ok(Some(action.status))
            })?;
            match outcome {
                Some(ActionStatus::Scheduled) => rescheduled += 1,
                Some(_) => unknown += 1,
                None => {}
            }
        }
        self.records().durable().await?;
        if rescheduled > 0 {
            self.wake();
        }
        Ok((rescheduled, unknown))
    }
}
