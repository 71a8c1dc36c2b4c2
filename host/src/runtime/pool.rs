//! Reusable instances of the plugins that opt in (`reuse-policy`, WIT 0.1.2).
//!
//! Instantiating a JavaScript or Python component costs 1–2 ms (its
//! interpreter's memory image is laid out anew); calling an instance that
//! already exists costs microseconds. A plugin that declares a reuse policy
//! has its idle instances kept here, each tied to the connected account it
//! last ran for.
//!
//! **Invariant:** an instance only ever runs for one connected account.
//! Whatever a plugin keeps in its globals (params, outputs, response bodies)
//! can therefore only reach later executions of that same account.
//! Executions without an account never reuse an instance. An instance is
//! dropped after `max_calls` executions, after any fault (trap, deadline,
//! limit: the caller does not give it back), when the pool is full (the
//! least recently used goes first), and after [`IDLE_TTL`] unused. While it
//! waits idle it holds no credentials (`HostState::park`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::ReuseConfig;
use super::bindings::latest;
use super::state::HostState;
use super::types::ReusePolicy;

/// An instance with its store, ready for another execution.
pub(super) struct Warm {
    pub store: Store<HostState>,
    pub executor: latest::Executor,
    /// Executions it has served.
    pub calls: u32,
}

struct Idle {
    account: String,
    parked: Instant,
    warm: Warm,
}

/// How long an idle instance is kept: an account's data does not linger in
/// memory long after its last execution.
pub(super) const IDLE_TTL: Duration = Duration::from_secs(60);

/// Idle instances of one plugin version.
pub(super) struct ReusePool {
    /// The plugin and version, for the metrics.
    plugin: String,
    version: String,
    max_calls: u32,
    max_idle: usize,
    idle: Mutex<VecDeque<Idle>>,
    reused: AtomicU64,
    retired: AtomicU64,
}

/// Counters of a pool, for `inspect` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReuseStats {
    /// Executions that ran on a reused instance.
    pub reused: u64,
    /// Instances discarded after serving `max_calls` executions.
    pub retired: u64,
    /// Instances idle now.
    pub idle: usize,
}

impl ReusePool {
    /// A pool for `policy` within the operator's bounds, or `None` when reuse
    /// is off or would not happen (`max_calls` of 1, no idle room).
    pub fn new(
        plugin: &str,
        version: &str,
        policy: ReusePolicy,
        config: &ReuseConfig,
    ) -> Option<Self> {
        let max_calls = policy.max_calls.min(config.max_calls);
        let max_idle = match policy.max_idle {
            0 => config.max_idle,
            asked => asked.min(config.max_idle),
        };
        if !config.enabled || max_calls <= 1 || max_idle == 0 {
            return None;
        }
        Some(Self {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            max_calls,
            max_idle: max_idle as usize,
            idle: Mutex::new(VecDeque::new()),
            reused: AtomicU64::new(0),
            retired: AtomicU64::new(0),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // A panic while holding the lock cannot leave the queue half-updated
        // (every update is a single push or remove), so a poisoned lock is safe.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently used idle instance of `account`, if any.
    pub fn take(&self, account: &str) -> Option<Warm> {
        let (warm, expired) = {
            let mut idle = self.idle();
            // The oldest are at the front.
            let stale = idle
                .iter()
                .take_while(|entry| entry.parked.elapsed() >= IDLE_TTL)
                .count();
            let expired: Vec<Idle> = idle.drain(..stale).collect();
            let warm = idle
                .iter()
                .rposition(|entry| entry.account == account)
                .and_then(|at| idle.remove(at))
                .map(|entry| entry.warm);
            (warm, expired)
        };
        // Dropped outside the lock: freeing an instance is not free.
        drop(expired);
        if warm.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
            crate::metrics::instance(&self.plugin, &self.version, "reused");
        }
        warm
    }

    /// Keeps an instance that just finished an execution normally for the
    /// next execution of `account`, unless it has served its quota.
    pub fn give_back(&self, account: &str, warm: Warm) {
        if warm.calls >= self.max_calls {
            self.retired.fetch_add(1, Ordering::Relaxed);
            crate::metrics::instance(&self.plugin, &self.version, "retired");
            tracing::debug!(
                calls = warm.calls,
                "reused instance retired after its last call"
            );
            return;
        }
        let evicted = {
            let mut idle = self.idle();
            idle.push_back(Idle {
                account: account.to_owned(),
                parked: Instant::now(),
                warm,
            });
            (idle.len() > self.max_idle).then(|| idle.pop_front())
        };
        // Dropped outside the lock: freeing an instance is not free.
        drop(evicted);
    }

    /// The pool's counters.
    pub fn stats(&self) -> ReuseStats {
        ReuseStats {
            reused: self.reused.load(Ordering::Relaxed),
            retired: self.retired.load(Ordering::Relaxed),
            idle: self.idle().len(),
        }
    }
}
