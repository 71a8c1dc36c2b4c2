//! Creating an action: checks, the approval rule, the idempotency key, and
//! a direct run.

use std::time::SystemTime;

use super::{
    Action, ActionError, ActionStatus, Actions, Actor, Claim, HistoryEntry, KeyedRequest,
    NewAction, Result, StoredResponse, admission, epoch_ms, new_action_id, rfc3339_ms, summary,
};
use crate::accounts::missing_capability;
use crate::contacts::{self, Contact};
use crate::executions::{Pipeline, params_hash};
use crate::identities;
use crate::registry::ResolveError;
use crate::runtime::{ActionTypeInfo, AuthScheme, FieldError};
use crate::tenancy::now;

/// The outcome of a create: the action, and the response of an earlier
/// request with the same idempotency key to replay instead, if any.
#[derive(Debug)]
pub struct Created {
    /// The action (the earlier one on a replay).
    pub action: Option<Action>,
    /// The first response, on a replay.
    pub replay: Option<StoredResponse>,
}

impl Actions {
    /// Creates an action, durably. With a key, a repeat of the same request
    /// replays the first response instead.
    pub async fn create(
        &self,
        tenant_id: &str,
        actor: &Actor,
        new: NewAction,
        key: Option<&KeyedRequest>,
    ) -> Result<Created> {
        let plugin = self
            .pipeline()
            .registry()
            .resolve(&new.action_type, new.version.as_deref())
            .map_err(|err| match err {
                ResolveError::Loading => ActionError::Unavailable(err.to_string()),
                ResolveError::Unknown { .. } => ActionError::Invalid {
                    message: err.to_string(),
                    fields: vec![FieldError::new("/type", "unknown action type")],
                },
                ResolveError::Version { .. } => ActionError::Invalid {
                    message: err.to_string(),
                    fields: vec![FieldError::new("/version", "not an active version")],
                },
            })?;
        let manifest = plugin.manifest();
        let info = manifest
            .action_type(&new.action_type)
            .expect("the registry maps a type to the plugin that declares it");
        if !new.params.is_object() {
            return Err(ActionError::Invalid {
                message: "params must be a JSON object".into(),
                fields: vec![FieldError::new("/params", "expected an object")],
            });
        }
        if new.identity_id.trim().is_empty() {
            return Err(ActionError::Invalid {
                message: "identity_id must not be empty".into(),
                fields: vec![FieldError::new("/identity_id", "must not be empty")],
            });
        }
        let now_ms = epoch_ms(SystemTime::now());
        let scheduled_ms = match &new.scheduled_time {
            None => None,
            Some(text) => Some(
                super::parse_time(text)
                    .map(epoch_ms)
                    .map_err(|err| ActionError::Invalid {
                        message: format!(
                            "scheduled_time {text:?} is not an ISO 8601 / RFC 3339 time ({err}); for example 2026-01-31T09:00:00Z"
                        ),
                        fields: vec![FieldError::new("/scheduled_time", "not an RFC 3339 time")],
                    })?,
            ),
        };
        let contact = check_params(
            self.pipeline(),
            tenant_id,
            &new.action_type,
            &new.params,
            "/params",
        )
        .await?;
        self.check_identity(tenant_id, &new.identity_id, info, &manifest.name)?;

        let direct = new.direct;
        let action = self.record(
            tenant_id,
            actor,
            new,
            info,
            contact.as_ref(),
            scheduled_ms,
            key.map(|k| k.key.clone()),
        );
        let status = action.status;
        let run_now =
            direct && status == ActionStatus::Scheduled && scheduled_ms.is_none_or(|t| t <= now_ms);
        let first_response = StoredResponse {
            status: 200,
            body: created_body(&action),
        };

        let idempotency = &self.inner.idempotency;
        // Written and flushed together with the creations of other requests
        // (group commit), so the body owns copies of what it uses.
        let claim = {
            let idempotency = idempotency.clone();
            let tenant_id = tenant_id.to_owned();
            let key = key.cloned();
            let action = action.clone();
            self.records()
                .commit(move |tx| {
                    // The contact may have been erased since it was checked.
                    if let Some(contact) = &action.contact_id
                        && tx
                            .get::<Contact>(contact)?
                            .is_none_or(|c| c.tenant_id != tenant_id)
                    {
                        return Ok(Err(unknown_contact(contact, "/params")));
                    }
                    if let Some(key) = &key {
                        // A direct action answers after it ran: hold the key until then.
                        let response = (!run_now).then(|| first_response.clone());
                        match idempotency.claim_in(
                            tx,
                            &tenant_id,
                            key,
                            response,
                            Some(action.id.clone()),
                        )? {
                            Claim::New => {}
                            other => return Ok(Ok(other)),
                        }
                    }
                    tx.insert(&action)?;
                    Ok(Ok(Claim::New))
                })
                .await??
        };
        match claim {
            Claim::New => {}
            Claim::Replay(response) => {
                return Ok(Created {
                    action: None,
                    replay: Some(response),
                });
            }
            Claim::Mismatch => return Err(ActionError::KeyReused),
            Claim::InProgress => return Err(ActionError::KeyInProgress),
            Claim::Interrupted { target } => return Err(ActionError::KeyInterrupted(target)),
        }
        tracing::info!(action = %action.id, action_type = %action.action_type, status = %action.status, "action created");

        if run_now {
            let actor = actor.clone();
            let action = match self.pipeline().admit(tenant_id, &action.action_type) {
                // At a concurrency cap: it stays due, and the scheduler runs
                // it once a slot is free.
                Err(busy) => {
                    tracing::info!(action = %action.id, %busy, "direct action left to the scheduler");
                    self.wake();
                    action
                }
                Ok(slot) => match self.claim(&action.id, &actor, None, false).await {
                    Ok(claimed) => {
                        self.run_claimed_detached(claimed, &actor, admission(slot))
                            .await?
                    }
                    // The scheduler got it first; it runs there.
                    Err(ActionError::Forbidden(_)) => self.get(tenant_id, &action.id)?,
                    Err(err) => return Err(err),
                },
            };
            if let Some(key) = key {
                let response = StoredResponse {
                    status: 200,
                    body: created_body(&action),
                };
                idempotency.complete(tenant_id, &key.key, response)?;
                self.records().durable().await?;
            }
            return Ok(Created {
                action: Some(action),
                replay: None,
            });
        }
        if status == ActionStatus::Scheduled {
            self.wake();
        }
        Ok(Created {
            action: Some(action),
            replay: None,
        })
    }
}

impl Actions {
    /// The record of a new action, checked already: its status by the
    /// approval rule, its due time, its summary.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        tenant_id: &str,
        actor: &Actor,
        new: NewAction,
        info: &ActionTypeInfo,
        contact: Option<&Contact>,
        scheduled_ms: Option<u64>,
        idempotency_key: Option<String>,
    ) -> Action {
        let now_ms = epoch_ms(SystemTime::now());
        let (require_approval, approval_required_by) =
            match (new.require_approval, info.requires_approval) {
                (_, true) => (true, Some("plugin".to_owned())),
                (true, false) => (true, Some("request".to_owned())),
                (false, false) => (false, None),
            };
        let status = if require_approval {
            ActionStatus::PendingApproval
        } else {
            ActionStatus::Scheduled
        };
        let hash = params_hash(&new.params);
        let at = now();
        let mut action = Action {
            id: new_action_id(),
            tenant_id: tenant_id.to_owned(),
            action_type: new.action_type.clone(),
            revision: 1,
            params_hash: hash,
            revisions: Vec::new(),
            identity_id: new.identity_id,
            contact_id: contact.map(|c| c.id.clone()),
            agent_id: None,
            run_id: None,
            action_index: None,
            version: new.version,
            direct: new.direct,
            scheduled_time: scheduled_ms.map(rfc3339_ms),
            list_id: new.list_id,
            item_id: new.item_id,
            description: new.description,
            require_approval,
            approval_required_by,
            approved_hash: None,
            status,
            running_on: None,
            due_ms: None,
            due_at: None,
            attempts: 0,
            max_attempts: self.inner.config.max_attempts,
            output: None,
            last_error: None,
            executions: Vec::new(),
            history: vec![HistoryEntry {
                at: at.clone(),
                transition: "create".into(),
                from: None,
                to: status,
                actor: actor.clone(),
                comment: None,
                revision: 1,
                execution_id: None,
                error: None,
            }],
            summary: String::new(),
            idempotency_key,
            created_by: actor.clone(),
            created_at: at.clone(),
            updated_at: at,
            params: new.params,
        };
        if status == ActionStatus::Scheduled {
            action.set_due(if new.direct {
                now_ms
            } else {
                scheduled_ms.map_or(now_ms, |t| t.max(now_ms))
            });
        }
        action.summary = summary(&action, &info.title, contact);
        action
    }

    /// An action an agent proposes for `contact`, its params checked
    /// already: pending approval, or scheduled now when the agent
    /// auto-approves it (`require_approval: false`) and the plugin allows
    /// it. Not stored: the caller writes it with the contact's result.
    pub(crate) fn proposed(
        &self,
        tenant_id: &str,
        actor: &Actor,
        new: NewAction,
        info: &ActionTypeInfo,
        contact: &Contact,
        (agent_id, run_id, index): (&str, &str, u32),
    ) -> Action {
        let mut action = self.record(tenant_id, actor, new, info, Some(contact), None, None);
        action.agent_id = Some(agent_id.to_owned());
        action.run_id = Some(run_id.to_owned());
        action.action_index = Some(index);
        action
    }

    /// Wakes the scheduler: actions became due outside this module.
    pub(crate) fn notify_scheduled(&self) {
        self.wake();
    }

    /// An `identity_id` that names an identity must have an account for
    /// the type's capability (unless the type needs none). Any other value
    /// keeps its older meaning (an account or entity id), resolved at run.
    fn check_identity(
        &self,
        tenant_id: &str,
        identity_id: &str,
        info: &ActionTypeInfo,
        app: &str,
    ) -> Result<()> {
        let Some(identity) = identities::find(self.records(), tenant_id, identity_id)? else {
            return Ok(());
        };
        let needs_account =
            !info.auth_schemes.is_empty() && !info.auth_schemes.contains(&AuthScheme::None);
        if needs_account && identity.account_for(&info.name, app).is_none() {
            let message = missing_capability(&identity, &info.name, app);
            return Err(ActionError::Invalid {
                fields: vec![FieldError::new("/identity_id", &message)],
                message,
            });
        }
        Ok(())
    }
}

/// The refusal of a `contact_id` that names no contact of the tenant.
fn unknown_contact(id: &str, prefix: &str) -> ActionError {
    let message = format!("no contact {id} in this tenant (unknown or deleted)");
    ActionError::Invalid {
        fields: vec![FieldError::new(&format!("{prefix}/contact_id"), &message)],
        message: format!("invalid params: {prefix}/contact_id: {message}"),
    }
}

/// The schema check, the plugin's `validate`, and for a contact-bound type
/// the contact, as field errors under `prefix`. Returns the contact.
pub(super) async fn check_params(
    pipeline: &Pipeline,
    tenant_id: &str,
    action_type: &str,
    params: &serde_json::Value,
    prefix: &str,
) -> Result<Option<Contact>> {
    let Some(plugin) = pipeline.registry().plugin_for(action_type) else {
        return Ok(None);
    };
    let fields = match plugin.check_params(action_type, params) {
        Err(fields) => fields,
        Ok(()) => match plugin.validate(action_type, params).await {
            Ok(Ok(())) => {
                let bound = plugin
                    .manifest()
                    .action_type(action_type)
                    .is_some_and(ActionTypeInfo::contact_bound);
                let id = params.get("contact_id").and_then(serde_json::Value::as_str);
                return match (bound, id) {
                    (true, Some(id)) => match contacts::find(pipeline.records(), tenant_id, id)? {
                        Some(contact) => Ok(Some(contact)),
                        None => Err(unknown_contact(id, prefix)),
                    },
                    _ => Ok(None),
                };
            }
            Ok(Err(fields)) => fields,
            Err(fault) => {
                return Err(ActionError::Invalid {
                    message: format!(
                        "the plugin failed while validating the params: {}",
                        fault.kind
                    ),
                    fields: Vec::new(),
                });
            }
        },
    };
    let fields: Vec<FieldError> = fields
        .into_iter()
        .map(|f| FieldError::new(&format!("{prefix}{}", f.path), &f.message))
        .collect();
    Err(ActionError::Invalid {
        message: format!("invalid params: {}", FieldError::summary(&fields)),
        fields,
    })
}

/// The create response's body.
pub(super) fn created_body(action: &Action) -> serde_json::Value {
    serde_json::json!({
        "status": "success",
        "action_id": action.id,
        "action_summary": action.summary_line(),
        "action_status": action.status,
    })
}
