//! Stored actions: created, reviewed, scheduled and executed on behalf of
//! end users (the Pathbound Actions API and Flowdash's executions).
//!
//! How the pieces fit:
//!
//! - [`machine`] is the state machine; every status change here goes
//!   through [`machine::next`], inside the same store transaction that
//!   writes the new status and appends the [`HistoryEntry`]: an action's
//!   history can never disagree with its status.
//! - An action that needs approval (asked for, or demanded by the plugin's
//!   manifest) records the SHA-256 of the params a reviewer approved; the
//!   pipeline refuses to run params with another hash. An edit is a new
//!   revision, and the earlier one stays in `revisions`.
//! - A `scheduled` action has an entry in the time-ordered `actions_due`
//!   index (milliseconds, zero-padded); the [`scheduler`] reads the head
//!   of that index, never the whole collection.
//! - Running an action first *claims* it (`scheduled` → `executing`, one
//!   transaction, flushed before the plugin starts): two schedulers, or a
//!   scheduler and a caller, can never both run it. At start-up,
//!   [`Actions::recover`] settles actions a crash left `executing`.
//! - Attempts: a retryable failure goes back to `scheduled` with
//!   exponential backoff and jitter, at least the provider's Retry-After,
//!   until `max_attempts`; each attempt is its own execution record.

mod idempotency;
pub mod machine;
pub mod scheduler;

use crate::registry::ResolveError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use idempotency::{Claim, Idempotency, IdempotencyRecord, KeyedRequest, StoredResponse};
pub use machine::{ActionStatus, Forbidden, Transition};
pub use scheduler::SchedulerConfig;

use crate::accounts::Lookup;
use crate::executions::{
    Admission, ErrorInfo, ExecuteCommand, ExecutionRecord, ExecutionStatus, Pipeline,
    PipelineError, params_hash,
};
use crate::identity::{now, random_bytes};
use crate::runtime::FieldError;
use crate::store::{IndexEntry, Record, Records, StoreError};

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `act_` and a time-ordered suffix: 12 hex digits of milliseconds, then 8
/// random ones, so ids sort in creation order.
fn new_action_id() -> String {
    format!(
        "act_{:012x}{}",
        epoch_ms(SystemTime::now()),
        hex::encode(random_bytes::<4>())
    )
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
    fn system(name: &str) -> Self {
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
                entries.push(IndexEntry::multi("actions_executing", "all"));
            }
            _ => {}
        }
        entries
    }
}

impl Action {
    /// Applies a transition: checks it with the state machine, sets the
    /// status and appends the history entry. The only way a status changes.
    fn apply(
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
        if to != ActionStatus::Scheduled {
            self.due_ms = None;
            self.due_at = None;
        }
        Ok(self.history.last_mut().expect("just pushed"))
    }

    fn set_due(&mut self, due_ms: u64) {
        self.due_ms = Some(due_ms);
        self.due_at = Some(rfc3339_ms(due_ms));
    }

    /// When it should run once approved: its `scheduled_time`, or now.
    fn due_after_approval(&self) -> u64 {
        let now = epoch_ms(SystemTime::now());
        self.scheduled_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
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
    fn transition(&self) -> Transition {
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
    fn transition(self) -> Transition {
        match self {
            Self::MarkSucceeded => Transition::MarkSucceeded,
            Self::MarkFailed => Transition::MarkFailed,
            Self::Retry => Transition::Retry,
        }
    }
}

/// Why an action operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// Not found in the caller's tenant.
    #[error("action {0} not found")]
    NotFound(String),
    /// The state machine refused.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// The request is wrong.
    #[error("{message}")]
    Invalid {
        /// What to fix.
        message: String,
        /// Each failing field.
        fields: Vec<FieldError>,
    },
    /// The idempotency key was used for another request.
    #[error(
        "this Idempotency-Key was already used with a different request; use a new key for a new request"
    )]
    KeyReused,
    /// The first request with this key has not answered yet.
    #[error(
        "a request with this Idempotency-Key is still being processed; retry once it has answered"
    )]
    KeyInProgress,
    /// The first request with this key was cut short by a restart.
    #[error("the first request with this Idempotency-Key was interrupted by a server restart before it answered{}; check its state before retrying with a new key", .0.as_deref().map(|t| format!(" (it concerned {t})")).unwrap_or_default())]
    KeyInterrupted(Option<String>),
    /// The plugins are still loading after start-up.
    #[error("{0}")]
    Unavailable(String),
    /// The tenant or the plugin is at its concurrency cap; nothing changed.
    #[error(transparent)]
    Busy(#[from] crate::executions::Busy),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = ActionError> = std::result::Result<T, E>;

/// The outcome of a create: the action, and the response of an earlier
/// request with the same idempotency key to replay instead, if any.
#[derive(Debug)]
pub struct Created {
    /// The action (the earlier one on a replay).
    pub action: Option<Action>,
    /// The first response, on a replay.
    pub replay: Option<StoredResponse>,
}

/// A page of actions.
#[derive(Debug)]
pub struct Page {
    /// The actions of the page.
    pub actions: Vec<Action>,
    /// How many match the filters.
    pub total: usize,
}

/// Filters and order of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// By status.
    pub status: Option<ActionStatus>,
    /// By action type.
    pub action_type: Option<String>,
    /// By list.
    pub list_id: Option<String>,
    /// By list item.
    pub item_id: Option<String>,
    /// By identity.
    pub identity_id: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Offset.
    pub skip: usize,
    /// `created_at` (default), `updated_at`, `scheduled_time`, `due_at`, `status`, `type`.
    pub sort_by: SortField,
    /// Descending (default) or ascending.
    pub descending: bool,
}

/// A field actions can be sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortField {
    /// Creation time (the id order).
    #[default]
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// The requested time.
    ScheduledTime,
    /// The next due time.
    DueAt,
    /// Status name.
    Status,
    /// Action type.
    Type,
}

impl std::str::FromStr for SortField {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "scheduled_time" => Self::ScheduledTime,
            "due_at" => Self::DueAt,
            "status" => Self::Status,
            "type" => Self::Type,
            other => {
                return Err(format!(
                    "cannot sort by {other:?}; one of: created_at, updated_at, scheduled_time, due_at, status, type"
                ));
            }
        })
    }
}

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

/// The actions of every tenant, and the machinery that runs them.
#[derive(Clone)]
pub struct Actions {
    inner: Arc<Inner>,
}

struct Inner {
    records: Records,
    pipeline: Pipeline,
    config: SchedulerConfig,
    idempotency: Idempotency,
    /// Wakes the scheduler: something became due sooner, or a slot freed.
    wake: tokio::sync::Notify,
    /// Every run in flight, awaited at shutdown.
    tasks: tokio_util::task::TaskTracker,
    /// Scheduler runs in flight per tenant, for the per-tenant cap.
    per_tenant: Mutex<HashMap<String, usize>>,
}

impl Actions {
    /// The actions in `records`, run through `pipeline`.
    pub fn new(records: Records, pipeline: Pipeline, config: SchedulerConfig) -> Self {
        let boot_id = hex::encode(random_bytes::<8>());
        Self {
            inner: Arc::new(Inner {
                idempotency: Idempotency::new(records.clone(), boot_id),
                records,
                pipeline,
                config,
                wake: tokio::sync::Notify::new(),
                tasks: tokio_util::task::TaskTracker::new(),
                per_tenant: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The idempotency keys.
    pub fn idempotency(&self) -> &Idempotency {
        &self.inner.idempotency
    }

    /// Runs `work` in a task of its own that shutdown waits for, and
    /// returns its handle: for a request's work that must be finished and
    /// recorded even if the client goes away.
    pub fn detach<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.inner.tasks.spawn(work)
    }

    /// The pipeline actions run through.
    pub fn pipeline(&self) -> &Pipeline {
        &self.inner.pipeline
    }

    /// The scheduler's settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    fn records(&self) -> &Records {
        &self.inner.records
    }

    fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// An action of the tenant.
    pub fn get(&self, tenant_id: &str, id: &str) -> Result<Action> {
        self.records()
            .get::<Action>(id)?
            .filter(|a| a.tenant_id == tenant_id)
            .ok_or_else(|| ActionError::NotFound(id.to_owned()))
    }

    /// The execution records of an action, oldest first.
    pub fn executions(&self, action: &Action) -> Result<Vec<ExecutionRecord>> {
        let mut records = Vec::with_capacity(action.executions.len());
        for id in &action.executions {
            if let Some(record) = self.records().get::<ExecutionRecord>(id)? {
                records.push(record);
            }
        }
        Ok(records)
    }

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
                humantime::parse_rfc3339_weak(text)
                    .map(epoch_ms)
                    .map_err(|err| ActionError::Invalid {
                        message: format!(
                            "scheduled_time {text:?} is not an ISO 8601 / RFC 3339 time ({err}); for example 2026-01-31T09:00:00Z"
                        ),
                        fields: vec![FieldError::new("/scheduled_time", "not an RFC 3339 time")],
                    })?,
            ),
        };
        check_params(self.pipeline(), &new.action_type, &new.params, "/params").await?;

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
            idempotency_key: key.map(|k| k.key.clone()),
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
        action.summary = summary(&action, &info.title);
        let run_now = new.direct
            && status == ActionStatus::Scheduled
            && scheduled_ms.is_none_or(|t| t <= now_ms);
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
                            other => return Ok(other),
                        }
                    }
                    tx.insert(&action)?;
                    Ok(Claim::New)
                })
                .await?
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

    /// One page of the tenant's actions.
    pub fn list(&self, tenant_id: &str, query: &ListQuery) -> Result<Page> {
        let records = self.records();
        // The most selective index the filters name; the rest filter in memory.
        let (index, value) = if let Some(status) = query.status {
            ("actions_by_status", format!("{tenant_id}\0{status}"))
        } else if let Some(item) = &query.item_id {
            ("actions_by_item", format!("{tenant_id}\0{item}"))
        } else if let Some(list) = &query.list_id {
            ("actions_by_list", format!("{tenant_id}\0{list}"))
        } else if let Some(identity) = &query.identity_id {
            ("actions_by_identity", format!("{tenant_id}\0{identity}"))
        } else if let Some(action_type) = &query.action_type {
            ("actions_by_type", format!("{tenant_id}\0{action_type}"))
        } else {
            ("actions_by_tenant", tenant_id.to_owned())
        };
        let filters_used = [
            query.status.is_some(),
            query.item_id.is_some(),
            query.list_id.is_some(),
            query.identity_id.is_some(),
            query.action_type.is_some(),
        ]
        .into_iter()
        .filter(|used| *used)
        .count();
        // Ids are time-ordered, so the index order is the creation order.
        let mut ids = records.ids_by(index, &value)?;
        if filters_used <= 1 && query.sort_by == SortField::CreatedAt {
            let total = ids.len();
            if query.descending {
                ids.reverse();
            }
            let mut actions = Vec::new();
            for id in ids.iter().skip(query.skip).take(query.limit) {
                if let Some(action) = records.get::<Action>(id)? {
                    actions.push(action);
                }
            }
            return Ok(Page { actions, total });
        }
        let mut matching = Vec::new();
        for id in &ids {
            let Some(action) = records.get::<Action>(id)? else {
                continue;
            };
            let keep = query.status.is_none_or(|s| action.status == s)
                && query
                    .action_type
                    .as_ref()
                    .is_none_or(|t| &action.action_type == t)
                && query
                    .list_id
                    .as_ref()
                    .is_none_or(|l| action.list_id.as_ref() == Some(l))
                && query
                    .item_id
                    .as_ref()
                    .is_none_or(|i| action.item_id.as_ref() == Some(i))
                && query
                    .identity_id
                    .as_ref()
                    .is_none_or(|i| &action.identity_id == i);
            if keep {
                matching.push(action);
            }
        }
        // A stable sort on top of the creation order: ties stay in it.
        match query.sort_by {
            SortField::CreatedAt => {}
            SortField::UpdatedAt => matching.sort_by(|a, b| a.updated_at.cmp(&b.updated_at)),
            SortField::ScheduledTime => {
                matching.sort_by(|a, b| a.scheduled_time.cmp(&b.scheduled_time));
            }
            SortField::DueAt => matching.sort_by_key(|a| a.due_ms),
            SortField::Status => matching.sort_by(|a, b| a.status.as_str().cmp(b.status.as_str())),
            SortField::Type => matching.sort_by(|a, b| a.action_type.cmp(&b.action_type)),
        }
        if query.descending {
            matching.reverse();
        }
        let total = matching.len();
        let actions = matching
            .into_iter()
            .skip(query.skip)
            .take(query.limit)
            .collect();
        Ok(Page { actions, total })
    }

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
        if let Review::Edit(params) = &review {
            // Fail early with the right error when the edit is impossible anyway.
            machine::next(current.status, Transition::Edit)?;
            if !params.is_object() {
                return Err(ActionError::Invalid {
                    message: "an edit needs `params`: the new params, a JSON object".into(),
                    fields: vec![FieldError::new("/params", "expected an object")],
                });
            }
            check_params(self.pipeline(), &current.action_type, params, "/params").await?;
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
    async fn change(
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
        let execution_id = crate::identity::new_id("exe");
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
            self.pending_record(&action, actor, &crate::identity::new_id("exe"), transition);
        record.status = ExecutionStatus::Succeeded;
        record.output = Some(serde_json::json!({ "action_status": action.status }));
        self.records().insert(&record)?;
        self.records().durable().await?;
        Ok(record)
    }

    fn pending_record(
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
            idempotency_key: None,
            started_at: at.clone(),
            finished_at: at,
            duration_ms: 0,
        }
    }

    /// Claims an action for one run: `scheduled` → `executing`, durably.
    /// `due_only` (the scheduler) also refuses an action not yet due.
    async fn claim(
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
                    let Some(mut action) = tx.get::<Action>(id)? else {
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
    fn claim_unflushed(
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

    fn command(
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
    async fn run_claimed(
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
    async fn run_claimed_detached(
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
    async fn complete<S: Send>(
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

    /// Waits for every run in flight, for at most `timeout`.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}

/// Claims `action` inside a transaction: the state machine's `execute`.
fn claim_in(
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

/// The schema check and the plugin's `validate`, as field errors under `prefix`.
async fn check_params(
    pipeline: &Pipeline,
    action_type: &str,
    params: &serde_json::Value,
    prefix: &str,
) -> Result<()> {
    let Some(plugin) = pipeline.registry().plugin_for(action_type) else {
        return Ok(());
    };
    let fields = match plugin.check_params(action_type, params) {
        Err(fields) => fields,
        Ok(()) => match plugin.validate(action_type, params).await {
            Ok(Ok(())) => return Ok(()),
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
        message: format!(
            "invalid params: {}",
            fields
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        fields,
    })
}

/// The create response's body.
fn created_body(action: &Action) -> serde_json::Value {
    serde_json::json!({
        "status": "success",
        "action_id": action.id,
        "action_summary": action.summary_line(),
        "action_status": action.status,
    })
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
fn summary(action: &Action, title: &str) -> String {
    let target = ["to", "recipients", "email", "channel", "url", "contacts"]
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

/// The admission of a run whose slot was taken before its claim, or, for a
/// type no plugin provides (the run then says so), none.
fn admission(slot: Option<crate::executions::Slot>) -> Admission {
    slot.map_or(Admission::Refuse, Admission::Held)
}
