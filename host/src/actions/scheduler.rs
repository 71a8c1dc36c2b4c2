//! The scheduler inside the server: runs due `scheduled` actions by
//! themselves under a global and a per-tenant concurrency cap. Tenants with
//! due actions take turns (`actions_due_by_tenant`); each tenant's run
//! earliest due first. The time-ordered `actions_due` index gives the next
//! due time to sleep until.
//!
//! It sleeps until the earliest due time (or `poll_interval`, whichever is
//! sooner) and is woken early whenever an action becomes due sooner or a
//! run finishes. A tenant at its cap is passed over, not waited for, so one
//! busy tenant never holds up another's due actions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{ActionError, Actions, Actor, epoch_ms};
use crate::executions::{Busy, Slot};
use crate::store::Topic;
use crate::store::signals::next_of;

/// How many due entries one page of a tenant's turn reads.
const PASS: usize = 256;
/// How many tenants one pass visits at most; the next pass goes on from
/// the tenant after the last one visited.
const TENANTS_PER_PASS: usize = 64;
/// The shortest gap between passes: finishing runs wake the scheduler, and
/// a burst of them is served by one pass, not one pass each.
const MIN_GAP: Duration = Duration::from_millis(2);

/// Settings of the scheduler and of retries (`[scheduler]` in the config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Run due actions without being asked (default true). With false,
    /// only `POST /v1/actions/process` runs them.
    pub enabled: bool,
    /// Runs in flight at once, over all tenants (default 64).
    pub concurrency: usize,
    /// Runs in flight at once per tenant (default 16). A tenant may go past
    /// it while the others leave slots idle, as long as `per_tenant` slots
    /// stay free for them: a backlog uses the capacity nobody else wants,
    /// and another tenant's due action still finds a slot at once.
    pub per_tenant: usize,
    /// Attempts per action before a retryable failure is final (default 5).
    pub max_attempts: u32,
    /// The first retry's delay; each further one doubles it (default 1s).
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// The longest delay between attempts (default 5m).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// The longest the scheduler sleeps between looks at the due index (default 1s).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long idempotency keys are kept (default 24h; never less).
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// How long a replica's lease on what it runs lasts unrenewed (default
    /// 15s; at least 1s). Each replica renews its own every third of it;
    /// once a replica's lease has expired, the others recover its
    /// `executing` actions. Longer rides out longer database stalls;
    /// shorter recovers a dead replica's actions sooner.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 64,
            per_tenant: 16,
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(15),
        }
    }
}

impl SchedulerConfig {
    /// Checks the values, naming a bad one.
    pub fn check(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.per_tenant == 0 {
            return Err("scheduler.concurrency and scheduler.per_tenant must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return Err("scheduler.max_attempts must be at least 1".into());
        }
        if self.poll_interval.is_zero() {
            return Err("scheduler.poll_interval must be more than 0".into());
        }
        if self.lease < Duration::from_secs(1) {
            return Err("scheduler.lease must be at least 1s".into());
        }
        if self.idempotency_ttl < Duration::from_secs(24 * 3600) {
            return Err("scheduler.idempotency_ttl must be at least 24h".into());
        }
        Ok(())
    }

    /// The delay before the attempt after `attempt`: exponential from
    /// `backoff_base`, capped at `backoff_max`, with full jitter over its
    /// upper half, and never less than the provider's Retry-After.
    pub fn backoff(&self, attempt: u32, retry_after_ms: Option<u64>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        let fraction = f64::from(u32::from_le_bytes(crate::tenancy::random_bytes::<4>()))
            / f64::from(u32::MAX);
        let jittered = ceiling.mul_f64(0.5 + 0.5 * fraction);
        let floor = Duration::from_millis(retry_after_ms.unwrap_or(0));
        jittered.max(floor)
    }
}

impl Actions {
    /// Runs the scheduler until `stop` turns true.
    pub async fn run_scheduler(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let config = self.config().clone();
        if !config.enabled {
            tracing::info!("scheduler disabled: due actions run on POST /v1/actions/process only");
            return;
        }
        let global = Arc::new(tokio::sync::Semaphore::new(config.concurrency));
        let mut last_sweep = std::time::Instant::now();
        // Where the next pass's round of the tenants starts.
        let mut cursor = String::new();
        tracing::info!(
            concurrency = config.concurrency,
            per_tenant = config.per_tenant,
            "scheduler started"
        );
        let mut without_lease = false;
        // Due work from other replicas wakes this one as its own does.
        let mut signals = self.replicas().signals().subscribe();
        loop {
            if *stop.borrow() {
                break;
            }
            // A replica that cannot renew its lease claims nothing: once it
            // expires, the others recover what this one holds.
            let holds_lease = self.replicas().holds_lease();
            if holds_lease == without_lease {
                without_lease = !holds_lease;
                if without_lease {
                    tracing::warn!(
                        "this replica cannot renew its lease: it claims no due actions until it can"
                    );
                } else {
                    tracing::info!("lease renewed: claiming due actions again");
                }
            }
            let passed = if holds_lease {
                self.pass(&global, &mut cursor).await
            } else {
                Ok(None)
            };
            let next_due = match passed {
                Ok(next) => next,
                Err(err) => {
                    tracing::error!(%err, "scheduler pass failed; retrying shortly");
                    None
                }
            };
            if last_sweep.elapsed() > Duration::from_secs(60) {
                last_sweep = std::time::Instant::now();
                match self.idempotency().sweep(config.idempotency_ttl) {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "expired idempotency keys removed"),
                    Err(err) => tracing::warn!(%err, "idempotency key sweep failed"),
                }
            }
            let now = epoch_ms(SystemTime::now());
            let sleep = next_due
                .map_or(config.poll_interval, |due| {
                    Duration::from_millis(due.saturating_sub(now))
                })
                .min(config.poll_interval);
            tokio::time::sleep(MIN_GAP).await;
            tokio::select! {
                () = self.inner.wake.notified() => {}
                true = next_of(&mut signals, &[Topic::Due]) => {}
                () = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// One round of the tenants with due actions: claims and starts what it
    /// may. Returns the next due time still in the future.
    async fn pass(
        &self,
        global: &Arc<tokio::sync::Semaphore>,
        cursor: &mut String,
    ) -> Result<Option<u64>, ActionError> {
        let now = epoch_ms(SystemTime::now());
        let scheduler = Actor::System {
            name: "scheduler".into(),
        };
        // Claims are made in a batch and committed once, before any of them
        // starts: the claim is on disk before its plugin runs, without an
        // fsync per action on the scheduler's path.
        let mut batch = Vec::new();
        let next = self
            .claim_batch(global, now, cursor, &scheduler, &mut batch)
            .await;
        if !batch.is_empty() {
            for (claimed, held) in batch {
                let this = self.clone();
                let actor = scheduler.clone();
                self.inner.tasks.spawn(async move {
                    let admission = super::admission(held.gate);
                    this.run_claimed_holding(
                        claimed,
                        &actor,
                        None,
                        admission,
                        (held.permit, held.tenant),
                    )
                    .await;
                });
            }
        }
        next
    }

    /// Claims (durably, in one transaction) what may start now, into
    /// `batch`; returns the next due time still in the future, if it saw one.
    async fn claim_batch(
        &self,
        global: &Arc<tokio::sync::Semaphore>,
        now: u64,
        cursor: &mut String,
        scheduler: &Actor,
        batch: &mut Vec<(super::Action, Held)>,
    ) -> Result<Option<u64>, ActionError> {
        let mut ids = Vec::new();
        let mut held = Vec::new();
        let next = self.pick_due(global, now, cursor, &mut ids, &mut held)?;
        if ids.is_empty() {
            return Ok(next);
        }
        let claimed = self.claim_due_batch(ids, scheduler).await?;
        for (result, held) in claimed.into_iter().zip(held) {
            match result {
                Ok(action) => batch.push((action, held)),
                // Claimed by a caller meanwhile, or not due after all: the
                // permit and the slot go back.
                Err(ActionError::Forbidden(_) | ActionError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(next)
    }

    /// The due actions that may start now, with a global permit and a
    /// tenant slot held for each; returns the next due time still in the
    /// future, if there is one.
    ///
    /// Tenants take turns: the pass visits the tenants with scheduled
    /// actions in `actions_due_by_tenant`, from `cursor` (just past the last
    /// tenant the previous pass served) round to where it started, and each
    /// takes its due actions, earliest first, while its slots allow. However
    /// deep one tenant's backlog, another's due action waits for at most one
    /// turn, and the pass reads one index entry per tenant visited, not the
    /// backlog of the tenants at their cap.
    fn pick_due(
        &self,
        global: &Arc<tokio::sync::Semaphore>,
        now: u64,
        cursor: &mut String,
        ids: &mut Vec<String>,
        held: &mut Vec<Held>,
    ) -> Result<Option<u64>, ActionError> {
        let next = self
            .records()
            .scan_index("actions_due", &format!("{:013}", now + 1), 1)?
            .into_iter()
            .find_map(|(value, _)| value.split_once('\0')?.0.parse::<u64>().ok());
        let start = cursor.clone();
        let mut from = start.clone();
        let mut wrapped = start.is_empty();
        for _visit in 0..TENANTS_PER_PASS {
            if global.available_permits() == 0 {
                break;
            }
            let first = self
                .records()
                .scan_index("actions_due_by_tenant", &from, 1)?
                .into_iter()
                .next();
            let Some((value, _)) = first else {
                if wrapped {
                    break;
                }
                // Past the last tenant: once round to the first.
                wrapped = true;
                from.clear();
                continue;
            };
            let tenant = value.split_once('\0').map_or(value.as_str(), |(t, _)| t);
            if wrapped && !start.is_empty() && tenant >= start.as_str() {
                break;
            }
            self.pick_tenant(global, now, tenant, ids, held)?;
            from = after_tenant(tenant);
            cursor.clone_from(&from);
        }
        Ok(next)
    }

    /// One tenant's turn in [`Self::pick_due`]: its due actions, earliest
    /// first, while a global permit and one of its slots are to be had.
    fn pick_tenant(
        &self,
        global: &Arc<tokio::sync::Semaphore>,
        now: u64,
        tenant: &str,
        ids: &mut Vec<String>,
        held: &mut Vec<Held>,
    ) -> Result<(), ActionError> {
        let prefix = format!("{tenant}\0");
        let mut from = prefix.clone();
        let mut at_cap = 0;
        loop {
            let page = self
                .records()
                .scan_index("actions_due_by_tenant", &from, PASS)?;
            let full = page.len() == PASS;
            for (value, id) in page {
                let due = value
                    .strip_prefix(&prefix)
                    .and_then(|ms| ms.parse::<u64>().ok());
                // Past this tenant's entries, or not due yet.
                if due.is_none_or(|due| due > now) {
                    return Ok(());
                }
                from = format!("{value}\0{id}\0");
                if global.available_permits() == 0 {
                    // At the global cap: a finishing run wakes us.
                    return Ok(());
                }
                // The concurrency caps first: an action whose tenant or
                // plugin is full stays due for a later pass, and the
                // scheduler holds none of its own slots for it meanwhile.
                let Some(action) = self.records().get::<super::Action>(&id)? else {
                    continue;
                };
                let gate = match self.pipeline().admit(tenant, &action.action_type) {
                    Ok(gate) => gate,
                    Err(Busy::Tenant { .. }) => return Ok(()),
                    Err(Busy::Plugin { .. }) => {
                        // Others of the tenant's may be for other plugins;
                        // the look for them is bounded.
                        at_cap += 1;
                        if at_cap == PASS {
                            return Ok(());
                        }
                        continue;
                    }
                };
                let Ok(permit) = global.clone().try_acquire_owned() else {
                    return Ok(());
                };
                let Some(tenant_slot) = self.tenant_slot(tenant, global.available_permits()) else {
                    return Ok(());
                };
                if let Some(due) = due {
                    crate::metrics::scheduler_lag(now.saturating_sub(due));
                }
                ids.push(id);
                held.push(Held {
                    permit,
                    tenant: tenant_slot,
                    gate,
                });
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// What a picked action holds until its plugin has finished: a global
/// permit, a slot of its tenant's, and its place under the concurrency caps
/// (none for a type no plugin provides: the run says so).
pub(super) struct Held {
    permit: tokio::sync::OwnedSemaphorePermit,
    tenant: TenantSlot,
    gate: Option<Slot>,
}

/// The first `actions_due_by_tenant` value past every entry of `tenant`
/// (its entries are `tenant\0due`, and `\x01` sorts right after `\0`).
fn after_tenant(tenant: &str) -> String {
    format!("{tenant}\x01")
}

impl Actions {
    /// One of the tenant's run slots, if it may start one more run while
    /// `free` global slots would be left (see [`may_start`]).
    fn tenant_slot(&self, tenant: &str, free: usize) -> Option<TenantSlot> {
        let mut per_tenant = self
            .inner
            .per_tenant
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let running = per_tenant.entry(tenant.to_owned()).or_default();
        if !may_start(*running, free, self.config().per_tenant) {
            return None;
        }
        *running += 1;
        Some(TenantSlot {
            actions: self.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

/// Whether a tenant with `running` runs in flight may start one more,
/// leaving `free` global slots: below its cap always, past it only while
/// `cap` slots stay free for the other tenants.
fn may_start(running: usize, free: usize, cap: usize) -> bool {
    running < cap || free >= cap
}

/// A tenant's running count, given back when the run ends; also wakes the
/// scheduler, which may have passed over that tenant's due actions.
struct TenantSlot {
    actions: Actions,
    tenant: String,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut per_tenant = self
            .actions
            .inner
            .per_tenant
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(running) = per_tenant.get_mut(&self.tenant) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                per_tenant.remove(&self.tenant);
            }
        }
        drop(per_tenant);
        self.actions.wake_local();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_caps_and_honours_retry_after() {
        let config = SchedulerConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..SchedulerConfig::default()
        };
        for _ in 0..50 {
            let first = config.backoff(1, None);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = config.backoff(3, None);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = config.backoff(30, None);
            assert!(capped >= Duration::from_millis(500) && capped <= Duration::from_millis(1000));
            assert!(config.backoff(1, Some(5000)) >= Duration::from_millis(5000));
        }
    }

    #[test]
    fn a_tenant_borrows_idle_slots_but_always_leaves_its_cap_free_for_others() {
        // Global 64, per tenant 16: alone, a tenant grows to 48 runs.
        let (global, cap) = (64, 16);
        let mut running = 0;
        while may_start(running, global - running - 1, cap) {
            running += 1;
        }
        assert_eq!(running, global - cap);
        // Another tenant then finds its whole cap free, and starts it all.
        let free = global - running;
        let mut other = 0;
        while other < free && may_start(other, free - other - 1, cap) {
            other += 1;
        }
        assert_eq!(other, cap);
        // The first cannot borrow again until the second's slots free up.
        assert!(!may_start(running, 0, cap));
        // Below its cap a tenant always may start, however full the rest.
        assert!(may_start(cap - 1, 0, cap));
    }

    #[test]
    fn bad_settings_are_named() {
        let zero = SchedulerConfig {
            max_attempts: 0,
            ..SchedulerConfig::default()
        };
        assert!(zero.check().expect_err("refused").contains("max_attempts"));
        let short = SchedulerConfig {
            idempotency_ttl: Duration::from_secs(60),
            ..SchedulerConfig::default()
        };
        assert!(
            short
                .check()
                .expect_err("refused")
                .contains("idempotency_ttl")
        );
    }
}
