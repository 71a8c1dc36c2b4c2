//! A reviewer's and an operator's decisions: approve, reject, edit,
//! cancel, resolve; and Flowdash's transitions recorded as executions.

use std::time::SystemTime;

use super::{
    Action, ActionError, ActionStatus, Actions, Actor, Forbidden, Resolution, Result, Review,
    Revision, Transition, check_params, epoch_ms, machine,
};
use crate::executions::{ExecutionRecord, ExecutionStatus, params_hash};
use crate::runtime::FieldError;
use crate::tenancy::now;

impl Actions {
    /// Applies a reviewer's decision, durably.
    pub async fn review(
        &self,
        tenant_id: &str,
        id: &str,
        actor: &Actor,
        review: Review,
        comment: Option<String>,
    ) -> Result<Action> {
        let current = self.get(tenant_id, id)?;
        let mut edited_contact = current.contact_id.clone();
        if let Review::Edit(params) = &review {
            // Fail early with the right error when the edit is impossible anyway.
            machine::next(current.status, Transition::Edit)?;
            if !params.is_object() {
                return Err(ActionError::Invalid {
                    message: "an edit needs `params`: the new params, a JSON object".into(),
                    fields: vec![FieldError::new("/params", "expected an object")],
                });
            }
            edited_contact = check_params(
                self.pipeline(),
                tenant_id,
                &current.action_type,
                params,
                "/params",
            )
            .await?
            .map(|contact| contact.id);
        }
        let actor = actor.clone();
        let action = self
            .change(tenant_id, id, move |action| {
                let transition = review.transition();
                match &review {
                    Review::Approve => {
                        action.apply(transition, &actor, comment.clone())?;
                        action.approved_hash = Some(action.params_hash.clone());
                    }
                    Review::Reject => {
                        action.apply(transition, &actor, comment.clone())?;
                    }
                    Review::Edit(params) => {
                        machine::next(action.status, transition)?;
                        let at = now();
                        action.revisions.push(Revision {
                            revision: action.revision,
                            params: action.params.clone(),
                            params_hash: action.params_hash.clone(),
                            replaced_at: at,
                            replaced_by: actor.clone(),
                        });
                        action.revision += 1;
                        action.params = params.clone();
                        action.params_hash = params_hash(params);
                        action.contact_id.clone_from(&edited_contact);
                        action.approved_hash = Some(action.params_hash.clone());
                        action.apply(transition, &actor, comment.clone())?;
                    }
                }
                if action.status == ActionStatus::Scheduled {
                    let due = action.due_after_approval();
                    action.set_due(due);
                }
                Ok(())
            })
            .await?;
        if action.status == ActionStatus::Scheduled {
            self.wake();
        }
        Ok(action)
    }

    /// Cancels an action that has not run, durably.
    pub async fn cancel(
        &self,
        tenant_id: &str,
        id: &str,
        actor: &Actor,
        comment: Option<String>,
    ) -> Result<Action> {
        let actor = actor.clone();
        let action = self
            .change(tenant_id, id, move |action| {
                action.apply(Transition::Cancel, &actor, comment.clone())?;
                Ok(())
            })
            .await?;
        Ok(action)
    }

    /// Settles an `outcome_unknown` action, durably.
    pub async fn resolve(
        &self,
        tenant_id: &str,
        id: &str,
        actor: &Actor,
        resolution: Resolution,
        comment: Option<String>,
    ) -> Result<Action> {
        let actor = actor.clone();
        let action = self
            .change(tenant_id, id, move |action| {
                action.apply(resolution.transition(), &actor, comment.clone())?;
                if resolution == Resolution::Retry {
                    // The operator's retry is one more attempt, whatever the count.
                    action.max_attempts = action.max_attempts.max(action.attempts + 1);
                    action.set_due(epoch_ms(SystemTime::now()));
                }
                Ok(())
            })
            .await?;
        if action.status == ActionStatus::Scheduled {
            self.wake();
        }
        Ok(action)
    }

    /// Reads, changes and writes an action of the tenant in one transaction,
    /// durably (a group commit: see [`Records::commit`]).
    pub(super) async fn change(
        &self,
        tenant_id: &str,
        id: &str,
        change: impl Fn(&mut Action) -> Result<(), Forbidden> + Send + Sync + 'static,
    ) -> Result<Action> {
        let (tenant_id, id) = (tenant_id.to_owned(), id.to_owned());
        self.records()
            .commit(move |tx| {
                let Some(mut action) = tx.get::<Action>(&id)?.filter(|a| a.tenant_id == tenant_id)
                else {
                    return Ok(Err(ActionError::NotFound(id.clone())));
                };
                if let Err(forbidden) = change(&mut action) {
                    return Ok(Err(forbidden.into()));
                }
                tx.put(&action)?;
                Ok(Ok(action))
            })
            .await?
    }

    /// Records a reviewer's transition asked for through `POST
    /// /v1/executions`: applies it and stores a finished execution record.
    pub async fn transition_record(
        &self,
        tenant_id: &str,
        id: &str,
        actor: &Actor,
        transition: Transition,
        comment: Option<String>,
    ) -> Result<ExecutionRecord> {
        let action = match transition {
            Transition::Approve => {
                self.review(tenant_id, id, actor, Review::Approve, comment)
                    .await?
            }
            Transition::Reject => {
                self.review(tenant_id, id, actor, Review::Reject, comment)
                    .await?
            }
            Transition::Cancel => self.cancel(tenant_id, id, actor, comment).await?,
            Transition::MarkSucceeded => {
                self.resolve(tenant_id, id, actor, Resolution::MarkSucceeded, comment)
                    .await?
            }
            Transition::MarkFailed => {
                self.resolve(tenant_id, id, actor, Resolution::MarkFailed, comment)
                    .await?
            }
            Transition::Retry => {
                self.resolve(tenant_id, id, actor, Resolution::Retry, comment)
                    .await?
            }
            other => {
                return Err(ActionError::Invalid {
                    message: format!("the transition {} cannot be asked for this way", other.id()),
                    fields: vec![FieldError::new("/transition", "not available here")],
                });
            }
        };
        let mut record =
            self.pending_record(&action, actor, &crate::tenancy::new_id("exe"), transition);
        record.status = ExecutionStatus::Succeeded;
        record.output = Some(serde_json::json!({ "action_status": action.status }));
        self.records().insert(&record)?;
        self.records().durable().await?;
        Ok(record)
    }
}
