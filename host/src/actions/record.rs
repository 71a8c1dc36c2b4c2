//! The stored action: its record and history, who changes it, and the
//! requests that change it. A status changes only through [`Action::apply`].

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::machine::{self, ActionStatus, Forbidden, Transition};
use crate::contacts::Contact;
use crate::executions::ErrorInfo;
use crate::store::{IndexEntry, Record};
use crate::tenancy::{new_ordered_id, now};

/// Parses an RFC 3339 time (any offset, any precision): the form of every
/// time the API takes. A time before 1970 is the epoch.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let time = chrono::DateTime::parse_from_rfc3339(text.trim()).map_err(|err| err.to_string())?;
    let ms = u64::try_from(time.timestamp_millis()).unwrap_or(0);
    Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `act_` and a time-ordered suffix, so ids sort in creation order.
pub(super) fn new_action_id() -> String {
    new_ordered_id("act")
}

/// When an action was created, from its id.
pub fn action_id_ms(id: &str) -> Option<u64> {
    crate::tenancy::ordered_id_ms(id)
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A caller with an API key (and the key's user).
    Key {
        /// The key.
        key_id: String,
        /// Its user.
        user_id: String,
    },
    /// A named user acting through a key (Flowdash's `performed_by`).
    User {
        /// The user.
        user_id: String,
        /// The user's e-mail address.
        email: String,
        /// The key that made the request.
        key_id: String,
    },
    /// The server itself: `scheduler` or `recovery`.
    System {
        /// Which part of it.
        name: String,
    },
}

impl Actor {
    pub(super) fn system(name: &str) -> Self {
        Self::System { name: name.into() }
    }

    /// The user on whose authority an execution runs (empty for the server).
    pub fn user_id(&self) -> &str {
        match self {
            Self::Key { user_id, .. } | Self::User { user_id, .. } => user_id,
            Self::System { .. } => "",
        }
    }

    /// The key behind the change (empty for the server).
    pub fn key_id(&self) -> &str {
        match self {
            Self::Key { key_id, .. } | Self::User { key_id, .. } => key_id,
            Self::System { .. } => "",
        }
    }
}

/// One transition in an action's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// RFC 3339, milliseconds.
    pub at: String,
    /// What happened (`approve`, `execute`, `reschedule`, …), or `create`.
    pub transition: String,
    /// The status before; none at creation.
    pub from: Option<ActionStatus>,
    /// The status after.
    pub to: ActionStatus,
    /// Who did it.
    pub actor: Actor,
    /// The reviewer's or operator's comment, or the server's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The params revision it concerned.
    pub revision: u32,
    /// The execution record, for `execute` and its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// The failure, for outcomes that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// An earlier revision of the params, replaced by an edit.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revision {
    /// 1 for the params the action was created with.
    pub revision: u32,
    /// The params of that revision.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Their SHA-256.
    pub params_hash: String,
    /// When the edit replaced them.
    pub replaced_at: String,
    /// Who replaced them.
    pub replaced_by: Actor,
}

/// A stored action.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Action {
    /// `act_…`, ordered by creation.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The action type, such as `send_email`.
    #[serde(rename = "type")]
    pub action_type: String,
    /// The current params (revision `revision`).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// 1, plus one per edit.
    pub revision: u32,
    /// SHA-256 of `params`.
    pub params_hash: String,
    /// Earlier revisions, oldest first.
    pub revisions: Vec<Revision>,
    /// The identity to act as: picks the connected account (`entityId`).
    pub identity_id: String,
    /// The contact it addresses, for a contact-bound type (its params'
    /// `contact_id`).
    #[serde(default)]
    pub contact_id: Option<String>,
    /// The agent that proposed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The agent run that proposed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Its place among the proposals for its contact in that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_index: Option<u32>,
    /// A plugin version to run (default: the loaded one).
    pub version: Option<String>,
    /// Run as soon as it may.
    pub direct: bool,
    /// When it was asked to run (RFC 3339).
    pub scheduled_time: Option<String>,
    /// Associated list.
    pub list_id: Option<String>,
    /// Associated list item.
    pub item_id: Option<String>,
    /// Human-readable description.
    pub description: Option<String>,
    /// Whether a reviewer must approve it (the request's wish, or the plugin's rule).
    pub require_approval: bool,
    /// `request` or `plugin`: who demanded the approval.
    pub approval_required_by: Option<String>,
    /// SHA-256 of the approved params; execution refuses anything else.
    pub approved_hash: Option<String>,
    /// The current status.
    pub status: ActionStatus,
    /// While executing: the replica running it (`rep_…`, see
    /// `GET /v1/replicas`). Its lease keeps the run its own; once the
    /// lease expires, any replica recovers the action by the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_on: Option<String>,
    /// While scheduled: when it is due (milliseconds since the epoch).
    pub due_ms: Option<u64>,
    /// While scheduled: when it is due (RFC 3339).
    pub due_at: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed before a retryable failure becomes final.
    pub max_attempts: u32,
    /// The last attempt's output, on success.
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// The last failure.
    pub last_error: Option<ErrorInfo>,
    /// Its execution records, oldest first.
    pub executions: Vec<String>,
    /// Every transition, oldest first.
    pub history: Vec<HistoryEntry>,
    /// A one-line summary of what it does ("Send email to ada@example.com").
    pub summary: String,
    /// The key the client created it with, passed to the plugin.
    pub idempotency_key: Option<String>,
    /// Who created it.
    pub created_by: Actor,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl Record for Action {
    const COLLECTION: &'static str = "actions";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        let tenant = &self.tenant_id;
        let mut entries = vec![
            IndexEntry::multi("actions_by_tenant", tenant.clone()),
            IndexEntry::multi("actions_by_status", format!("{tenant}\0{}", self.status)),
            IndexEntry::multi("actions_by_type", format!("{tenant}\0{}", self.action_type)),
            IndexEntry::multi(
                "actions_by_identity",
                format!("{tenant}\0{}", self.identity_id),
            ),
        ];
        if let Some(list) = &self.list_id {
            entries.push(IndexEntry::multi(
                "actions_by_list",
                format!("{tenant}\0{list}"),
            ));
        }
        if let Some(contact) = &self.contact_id {
            entries.push(IndexEntry::multi(
                "actions_by_contact",
                format!("{tenant}\0{contact}"),
            ));
        }
        if let Some(agent) = &self.agent_id {
            entries.push(IndexEntry::multi(
                "actions_by_agent",
                format!("{tenant}\0{agent}"),
            ));
        }
        if let Some(item) = &self.item_id {
            entries.push(IndexEntry::multi(
                "actions_by_item",
                format!("{tenant}\0{item}"),
            ));
        }
        match (self.status, self.due_ms) {
            (ActionStatus::Scheduled, Some(due)) => {
                // The tenant rides in the value, so the scheduler can pass
                // over a tenant at its cap without reading the record.
                entries.push(IndexEntry::multi(
                    "actions_due",
                    format!("{due:013}\0{tenant}"),
                ));
                entries.push(IndexEntry::multi(
                    "actions_due_by_tenant",
                    format!("{tenant}\0{due:013}"),
                ));
            }
            (ActionStatus::Executing, _) => {
                // By replica: recovery takes a dead replica's runs.
                entries.push(IndexEntry::multi(
                    "actions_executing",
                    self.running_on.as_deref().unwrap_or("all"),
                ));
            }
            (status, _) if status.is_final() => {
                // From the oldest end: what retention removes.
                entries.push(IndexEntry::multi("actions_finished", &self.updated_at));
            }
            _ => {}
        }
        entries
    }
}

impl Action {
    /// Applies a transition: checks it with the state machine, sets the
    /// status and appends the history entry. The only way a status changes.
    pub(super) fn apply(
        &mut self,
        transition: Transition,
        actor: &Actor,
        comment: Option<String>,
    ) -> Result<&mut HistoryEntry, Forbidden> {
        let to = machine::next(self.status, transition)?;
        let at = now();
        self.history.push(HistoryEntry {
            at: at.clone(),
            transition: transition.id().into(),
            from: Some(self.status),
            to,
            actor: actor.clone(),
            comment,
            revision: self.revision,
            execution_id: None,
            error: None,
        });
        self.status = to;
        self.updated_at = at;
        // Only this run's replica may finish what it claims.
        self.running_on = (to == ActionStatus::Executing).then(|| crate::replica::id().to_owned());
        if to != ActionStatus::Scheduled {
            self.due_ms = None;
            self.due_at = None;
        }
        Ok(self.history.last_mut().expect("just pushed"))
    }

    pub(super) fn set_due(&mut self, due_ms: u64) {
        self.due_ms = Some(due_ms);
        self.due_at = Some(rfc3339_ms(due_ms));
    }

    /// When it should run once approved: its `scheduled_time`, or now.
    pub(super) fn due_after_approval(&self) -> u64 {
        let now = epoch_ms(SystemTime::now());
        self.scheduled_time
            .as_deref()
            .and_then(|t| parse_time(t).ok())
            .map_or(now, |t| epoch_ms(t).max(now))
    }
}

/// A new action, as the API takes it.
#[derive(Debug, Clone)]
pub struct NewAction {
    /// The action type.
    pub action_type: String,
    /// Its params.
    pub params: serde_json::Value,
    /// The identity to act as.
    pub identity_id: String,
    /// Run at once, without waiting for the scheduler.
    pub direct: bool,
    /// When to run (RFC 3339).
    pub scheduled_time: Option<String>,
    /// Associated list.
    pub list_id: Option<String>,
    /// Associated list item.
    pub item_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Whether a reviewer must approve it first.
    pub require_approval: bool,
    /// Plugin version to run.
    pub version: Option<String>,
}

/// A reviewer's decision.
#[derive(Debug, Clone)]
pub enum Review {
    /// Approve the current params.
    Approve,
    /// Refuse the action.
    Reject,
    /// Replace the params with these and approve them.
    Edit(serde_json::Value),
}

impl Review {
    pub(super) fn transition(&self) -> Transition {
        match self {
            Self::Approve => Transition::Approve,
            Self::Reject => Transition::Reject,
            Self::Edit(_) => Transition::Edit,
        }
    }
}

/// An operator's resolution of an `outcome_unknown` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// It did happen.
    MarkSucceeded,
    /// It did not happen and will not be retried.
    MarkFailed,
    /// Run it again.
    Retry,
}

impl Resolution {
    pub(super) fn transition(self) -> Transition {
        match self {
            Self::MarkSucceeded => Transition::MarkSucceeded,
            Self::MarkFailed => Transition::MarkFailed,
            Self::Retry => Transition::Retry,
        }
    }
}

impl Action {
    /// The summary with the status in words: "Send email to ada@example.com scheduled".
    pub fn summary_line(&self) -> String {
        format!("{} {}", self.summary, status_word(self.status))
    }
}

fn status_word(status: ActionStatus) -> &'static str {
    match status {
        ActionStatus::PendingApproval => "awaiting approval",
        ActionStatus::Scheduled => "scheduled",
        ActionStatus::Executing => "executing",
        ActionStatus::Succeeded => "sent",
        ActionStatus::Failed => "failed",
        ActionStatus::OutcomeUnknown => "outcome unknown",
        ActionStatus::Cancelled => "cancelled",
        ActionStatus::Rejected => "rejected",
    }
}

/// "Send email to contact@example.com": the type's title and the first
/// recipient-like param; responses add the status word.
pub(super) fn summary(action: &Action, title: &str, contact: Option<&Contact>) -> String {
    let addressee = contact.map(|c| c.email.clone().unwrap_or_else(|| c.display_name()));
    let target = addressee.or_else(|| {
        ["to", "recipients", "email", "channel", "url", "contacts"]
            .iter()
            .find_map(|field| match action.params.get(field)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(items) => items.first().and_then(|first| match first {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => {
                        o.get("email").and_then(|e| e.as_str()).map(str::to_owned)
                    }
                    _ => None,
                }),
                _ => None,
            })
    });
    let noun = if title.is_empty() {
        action.action_type.as_str()
    } else {
        title
    };
    match target {
        Some(target) => format!("{noun} to {target}"),
        None => noun.to_owned(),
    }
}
