//! What erasing a contact (or deleting an agent) does to its actions:
//! those that have not run are cancelled, with a history entry that says
//! why; those that ran keep their audit record (for a contact, with its
//! email removed from it and from their execution records).

use super::{Action, ActionError, ActionStatus, Actions, Actor, Result, Transition};
use crate::contacts::erase::scrub;
use crate::executions::ExecutionRecord;

/// What happened to a contact's actions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Released {
    /// Cancelled before they ran.
    pub cancelled: usize,
    /// Kept, with the email removed.
    pub scrubbed: usize,
    /// Executing at that moment: they finish as they are.
    pub running: usize,
}

impl Actions {
    /// Releases the actions of an erased contact.
    pub async fn release_contact(
        &self,
        tenant_id: &str,
        contact_id: &str,
        email: Option<&str>,
    ) -> Result<Released> {
        let ids = self
            .records()
            .ids_by("actions_by_contact", &format!("{tenant_id}\0{contact_id}"))?;
        let reason = format!("the contact {contact_id} was deleted; this action will not run");
        let mut released = self
            .cancel_listed(tenant_id, &ids, "erasure", &reason)
            .await?;
        if let Some(email) = email {
            for id in &ids {
                if self.scrub(id, email).await? {
                    released.scrubbed += 1;
                }
            }
        }
        Ok(released)
    }

    /// Cancels the proposals of a deleted agent that have not run; returns
    /// how many.
    pub async fn cancel_for_agent(&self, tenant_id: &str, agent_id: &str) -> Result<usize> {
        let ids = self
            .records()
            .ids_by("actions_by_agent", &format!("{tenant_id}\0{agent_id}"))?;
        let reason = format!("the agent {agent_id} was deleted; this proposal will not run");
        Ok(self
            .cancel_listed(tenant_id, &ids, "agents", &reason)
            .await?
            .cancelled)
    }

    /// Cancels the actions of `ids` that have not run, each with `reason`
    /// in its history; counts them, and those executing now.
    async fn cancel_listed(
        &self,
        tenant_id: &str,
        ids: &[String],
        by: &str,
        reason: &str,
    ) -> Result<Released> {
        let mut released = Released::default();
        let actor = Actor::System { name: by.into() };
        for id in ids {
            let Some(action) = self.records().get::<Action>(id)? else {
                continue;
            };
            match action.status {
                ActionStatus::PendingApproval | ActionStatus::Scheduled => {
                    let (actor, reason) = (actor.clone(), reason.to_owned());
                    match self
                        .change(tenant_id, id, move |action| {
                            action.apply(Transition::Cancel, &actor, Some(reason.clone()))?;
                            Ok(())
                        })
                        .await
                    {
                        Ok(_) => released.cancelled += 1,
                        // Claimed by the scheduler in the meantime.
                        Err(ActionError::Forbidden(_)) => released.running += 1,
                        Err(err) => return Err(err),
                    }
                }
                ActionStatus::Executing => released.running += 1,
                _ => {}
            }
        }
        Ok(released)
    }

    /// Removes `email` from an action that is not executing and from its
    /// execution records; whether the action had run (or been refused).
    async fn scrub(&self, id: &str, email: &str) -> Result<bool> {
        let (id, email) = (id.to_owned(), email.to_owned());
        Ok(self
            .records()
            .commit(move |tx| {
                let Some(action) = tx.get::<Action>(&id)? else {
                    return Ok(false);
                };
                if action.status == ActionStatus::Executing {
                    return Ok(false);
                }
                let ran = !action.executions.is_empty();
                for execution in &action.executions {
                    if let Some(record) = tx.get::<ExecutionRecord>(execution)? {
                        let mut value = serde_json::to_value(&record)
                            .map_err(|err| crate::store::StoreError::Storage(err.to_string()))?;
                        if scrub(&mut value, &email) {
                            let clean: ExecutionRecord =
                                serde_json::from_value(value).map_err(|err| {
                                    crate::store::StoreError::Storage(err.to_string())
                                })?;
                            tx.put(&clean)?;
                        }
                    }
                }
                let mut value = serde_json::to_value(&action)
                    .map_err(|err| crate::store::StoreError::Storage(err.to_string()))?;
                if scrub(&mut value, &email) {
                    let clean: Action = serde_json::from_value(value)
                        .map_err(|err| crate::store::StoreError::Storage(err.to_string()))?;
                    tx.put(&clean)?;
                }
                Ok(ran)
            })
            .await?)
    }
}
