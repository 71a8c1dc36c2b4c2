//! Recovery after a crash: actions left `executing` are settled by
//! SPEC.md's rule.

use std::time::SystemTime;

use super::{Action, ActionStatus, Actions, Actor, Result, Transition, epoch_ms};
use crate::executions::{ErrorInfo, ExecutionRecord, ExecutionStatus};
use crate::tenancy::now;

impl Actions {
    /// The actions the last run left `executing`: read at start-up before
    /// the server accepts requests, so that actions started by this run are
    /// never mistaken for them.
    pub fn interrupted(&self) -> Result<Vec<String>> {
        Ok(self.records().ids_by("actions_executing", "all")?)
    }

    /// Settles the actions a crash left `executing` (`ids`, from
    /// [`Actions::interrupted`]), by SPEC.md's rule: an idempotent type is
    /// scheduled again; any other becomes `outcome_unknown` with code
    /// `interrupted`, never run twice behind the user's back. Returns how
    /// many of each.
    pub async fn recover(&self, ids: Vec<String>) -> Result<(usize, usize)> {
        let recovery = Actor::system("recovery");
        let (mut rescheduled, mut unknown) = (0, 0);
        for id in ids {
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
                message: "the server stopped while this action was executing".into(),
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
        Ok((rescheduled, unknown))
    }
}
