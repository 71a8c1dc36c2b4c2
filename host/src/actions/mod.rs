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

mod contact;
mod create;
mod idempotency;
mod list;
pub mod machine;
mod record;
mod recover;
mod review;
mod run;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use contact::Released;
pub use create::Created;
pub use idempotency::{Claim, Idempotency, IdempotencyRecord, KeyedRequest, StoredResponse};
pub use list::{ListQuery, Page, SortField};
pub use machine::{ActionStatus, Forbidden, Transition};
pub use record::{
    Action, Actor, HistoryEntry, NewAction, Resolution, Review, Revision, action_id_ms, epoch_ms,
    parse_time,
};
pub use run::Processed;
pub use scheduler::SchedulerConfig;

use create::check_params;
use record::{new_action_id, rfc3339_ms, summary};
use run::admission;

use crate::executions::{ExecutionRecord, Pipeline};
use crate::replica::Replicas;
use crate::runtime::FieldError;
use crate::store::{Records, StoreError, Topic};

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
    /// This replica's lease lapsed while it ran the action, and another
    /// replica recovered it; the run's outcome is in its execution record.
    #[error(
        "action {0} was recovered by another replica while this one ran it (this replica's lease lapsed); its outcome is in the execution record"
    )]
    LeaseLost(String),
    /// The tenant or the plugin is at its concurrency cap; nothing changed.
    #[error(transparent)]
    Busy(#[from] crate::executions::Busy),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = ActionError> = std::result::Result<T, E>;

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
    /// The leases of the replicas sharing the store.
    replicas: Replicas,
}

impl Actions {
    /// The actions in `records`, run through `pipeline`.
    pub fn new(
        records: Records,
        pipeline: Pipeline,
        config: SchedulerConfig,
        replicas: Replicas,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                idempotency: Idempotency::new(records.clone(), replicas.clone()),
                replicas,
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

    /// The leases of the replicas sharing the store.
    pub fn replicas(&self) -> &Replicas {
        &self.inner.replicas
    }

    pub(super) fn records(&self) -> &Records {
        &self.inner.records
    }

    /// Wakes the schedulers of this replica and, through a signal, of the
    /// others: an action became due.
    pub(super) fn wake(&self) {
        self.inner.wake.notify_one();
        self.replicas().signals().send(Topic::Due);
    }

    /// Wakes this replica's scheduler only: a slot of its own freed.
    pub(super) fn wake_local(&self) {
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

    /// Waits for every run in flight, for at most `timeout`.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}
