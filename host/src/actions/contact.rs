//! What erasing a contact does to its actions: those that have not run are
//! cancelled, with a history entry that says why; those that ran keep their
//! audit record, with the contact's email removed from it (and from their
//! execution records).

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
        let mut released = Released::default();
        let eraser = Actor::System {
            name: "erasure".into(),
        };
        for id in ids {
            let Some(action) = self.records().get::<Action>(&id)? else {
                continue;
            };
            match action.status {
                ActionStatus::PendingApproval | ActionStatus::Scheduled => {
                    let (actor, contact) = (eraser.clone(), contact_id.to_owned());
                    match self
                        .change(tenant_id, &id, move |action| {
                            action.apply(
                                Transition::Cancel,
                                &actor,
                                Some(format!(
                                    "the contact {contact} was deleted; this action will not run"
                                )),
                            )?;
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
            if let Some(email) = email
                && self.scrub(&id, email).await?
            {
                released.scrubbed += 1;
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
