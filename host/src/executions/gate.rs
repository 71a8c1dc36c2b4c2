//! Caps on executions running at once, per plugin and per tenant, so that
//! one noisy tenant or one slow plugin cannot take every instance slot.
//!
//! An execution holds a [`Slot`] from the start of its checks (the plugin's
//! `validate` already runs in an instance) until its plugin returns. A
//! synchronous request that finds its tenant or its plugin at the cap is
//! refused at once (429, retry later), before it claims anything. The
//! scheduler takes a slot before it claims a due action and leaves the
//! action for a later pass when there is none, so it never holds its own
//! permits while it waits; only Flowdash's background executions wait.
//!
//! A plugin named in `[concurrency.plugins]` has that cap instead of
//! `per_plugin`: a plugin whose provider allows only a few connections at
//! once, say, or one trusted with more.
//!
//! A tenant may hold at most `per_tenant` slots. With `per_tenant` below
//! `per_plugin`, one tenant can therefore never fill a plugin: the rest of
//! the plugin's slots stay for the other tenants.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::replica::Place;
use tokio::sync::Notify;

/// The caps (`[concurrency]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// Executions of one plugin at once, all tenants together (default 256).
    pub per_plugin: usize,
    /// Executions of one tenant at once, all plugins together (default 128).
    pub per_tenant: usize,
    /// Caps of single plugins, by the name in their manifest, in place of
    /// `per_plugin` (`[concurrency.plugins]`, default none).
    pub plugins: BTreeMap<String, usize>,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            per_plugin: 256,
            per_tenant: 128,
            plugins: BTreeMap::new(),
        }
    }
}

impl ConcurrencyConfig {
    /// Refuses caps that would stop every execution.
    pub fn check(&self) -> Result<(), String> {
        if self.per_plugin == 0 || self.per_tenant == 0 {
            return Err(
                "concurrency.per_plugin and concurrency.per_tenant must be at least 1".into(),
            );
        }
        if let Some((name, _)) = self.plugins.iter().find(|(_, cap)| **cap == 0) {
            return Err(format!(
                "concurrency.plugins.{name} must be at least 1 (to stop a plugin, remove it)"
            ));
        }
        Ok(())
    }

    /// The cap of `plugin`, and the setting it comes from.
    fn cap_of(&self, plugin: &str) -> (usize, String) {
        match self.plugins.get(plugin) {
            Some(cap) => (*cap, format!("concurrency.plugins.{plugin}")),
            None => (self.per_plugin, "concurrency.per_plugin".into()),
        }
    }
}

/// Which cap refused an execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The tenant already runs its cap (its share of it on this replica).
    #[error("{}", busy("this tenant", *limit, "concurrency.per_tenant", *replicas))]
    Tenant {
        /// The cap.
        limit: usize,
        /// The live replicas sharing it.
        replicas: usize,
    },
    /// The plugin already runs its cap (its share of it on this replica).
    #[error("{}", busy(&format!("plugin {plugin}"), *limit, setting, *replicas))]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The cap.
        limit: usize,
        /// The setting the cap comes from.
        setting: String,
        /// The live replicas sharing it.
        replicas: usize,
    },
}

fn busy(who: &str, limit: usize, setting: &str, replicas: usize) -> String {
    if replicas <= 1 {
        format!(
            "{who} already has {limit} executions running, its cap ({setting}); retry when one has finished"
        )
    } else {
        format!(
            "{who} already has its share of executions running on this replica: its cap ({setting}) is {limit} across {replicas} replicas; retry when one has finished"
        )
    }
}

/// Counts the running executions against the caps.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    config: ConcurrencyConfig,
    /// The caps are the cluster's: this replica holds its share of each.
    place: Place,
    running: Mutex<Running>,
    freed: Notify,
}

#[derive(Default)]
struct Running {
    plugins: HashMap<String, usize>,
    tenants: HashMap<String, usize>,
}

impl Gate {
    /// A gate with these caps, of which this replica holds its share
    /// at `place` (alone, all of them).
    pub fn new(config: ConcurrencyConfig, place: Place) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                place,
                running: Mutex::new(Running::default()),
                freed: Notify::new(),
            }),
        }
    }

    /// Takes a slot of `tenant` and `plugin`, or says which cap is full.
    pub fn try_enter(&self, tenant: &str, plugin: &str) -> Result<Slot, Busy> {
        let config = &self.inner.config;
        let place = &self.inner.place;
        let mut running = self.counts();
        let tenant_count = running.tenants.get(tenant).copied().unwrap_or(0);
        if tenant_count >= place.share(config.per_tenant) {
            return Err(Busy::Tenant {
                limit: config.per_tenant,
                replicas: place.get().1,
            });
        }
        let plugin_count = running.plugins.get(plugin).copied().unwrap_or(0);
        let (cap, setting) = config.cap_of(plugin);
        if plugin_count >= place.share(cap) {
            return Err(Busy::Plugin {
                plugin: plugin.to_owned(),
                limit: cap,
                setting,
                replicas: place.get().1,
            });
        }
        running.tenants.insert(tenant.to_owned(), tenant_count + 1);
        running.plugins.insert(plugin.to_owned(), plugin_count + 1);
        Ok(Slot {
            inner: self.inner.clone(),
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
        })
    }

    /// Takes a slot of `tenant` and `plugin`, waiting until both have room.
    pub async fn enter(&self, tenant: &str, plugin: &str) -> Slot {
        loop {
            // Registered before the attempt, so that a slot freed between
            // the attempt and the wait still wakes this one.
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_enter(tenant, plugin) {
                Ok(slot) => return slot,
                Err(_) => freed.await,
            }
        }
    }

    /// How many executions run now: (of the tenant, of the plugin).
    pub fn running(&self, tenant: &str, plugin: &str) -> (usize, usize) {
        let running = self.counts();
        (
            running.tenants.get(tenant).copied().unwrap_or(0),
            running.plugins.get(plugin).copied().unwrap_or(0),
        )
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Running> {
        // The counts stay consistent under a panic elsewhere: every change
        // is a single insert or remove.
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One running execution's place under both caps; given back on drop.
pub struct Slot {
    inner: Arc<Inner>,
    tenant: String,
    plugin: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut running = self
                .inner
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Running { plugins, tenants } = &mut *running;
            for (counts, key) in [(tenants, &self.tenant), (plugins, &self.plugin)] {
                if let Some(count) = counts.get_mut(key.as_str()) {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(key.as_str());
                    }
                }
            }
        }
        self.inner.freed.notify_waiters();
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("tenant", &self.tenant)
            .field("plugin", &self.plugin)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(per_plugin: usize, per_tenant: usize) -> Gate {
        Gate::new(
            ConcurrencyConfig {
                per_plugin,
                per_tenant,
                plugins: BTreeMap::new(),
            },
            Place::default(),
        )
    }

    #[test]
    fn a_tenant_at_its_cap_leaves_the_rest_of_the_plugin_to_others() {
        let gate = gate(3, 2);
        let noisy: Vec<Slot> = (0..2)
            .map(|_| gate.try_enter("noisy", "crm").expect("under the caps"))
            .collect();
        assert_eq!(
            gate.try_enter("noisy", "crm").expect_err("at its cap"),
            Busy::Tenant {
                limit: 2,
                replicas: 1
            }
        );
        // Another plugin does not help a tenant past its own cap.
        assert!(gate.try_enter("noisy", "mail").is_err());
        let quiet = gate.try_enter("quiet", "crm").expect("the plugin has room");
        assert_eq!(
            gate.try_enter("third", "crm")
                .expect_err("the plugin is full"),
            Busy::Plugin {
                plugin: "crm".into(),
                limit: 3,
                setting: "concurrency.per_plugin".into(),
                replicas: 1,
            }
        );
        assert_eq!(gate.running("noisy", "crm"), (2, 3));
        drop(noisy);
        drop(quiet);
        assert_eq!(gate.running("noisy", "crm"), (0, 0));
        let counts = gate.counts();
        assert!(counts.tenants.is_empty() && counts.plugins.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_that_is_given_back() {
        let gate = gate(1, 1);
        let held = gate.try_enter("t", "p").expect("free");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter("t", "p").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "entered past a full cap");
        drop(held);
        let slot = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken when the slot was given back")
            .expect("the waiter did not panic");
        assert_eq!(gate.running("t", "p"), (1, 1));
        drop(slot);
    }

    #[test]
    fn a_plugin_named_in_the_config_has_its_own_cap() {
        let gate = Gate::new(
            ConcurrencyConfig {
                per_plugin: 4,
                per_tenant: 10,
                plugins: BTreeMap::from([("linkedin".to_owned(), 1)]),
            },
            Place::default(),
        );
        let held = gate.try_enter("t", "linkedin").expect("free");
        assert_eq!(
            gate.try_enter("u", "linkedin").expect_err("at its own cap"),
            Busy::Plugin {
                plugin: "linkedin".into(),
                limit: 1,
                setting: "concurrency.plugins.linkedin".into(),
                replicas: 1,
            }
        );
        let others: Vec<Slot> = (0..4)
            .map(|_| gate.try_enter("t", "crm").expect("per_plugin for the rest"))
            .collect();
        assert!(gate.try_enter("t", "crm").is_err());
        drop((held, others));
        assert_eq!(gate.running("t", "linkedin"), (0, 0));
    }

    #[test]
    fn the_shares_of_a_cap_add_up_to_it_across_replicas() {
        let place = Place::default();
        assert_eq!(place.share(8), 8);
        for (cap, replicas) in [(8, 3), (2, 3), (1, 2), (128, 5), (3, 3)] {
            let shares: Vec<usize> = (0..replicas)
                .map(|rank| {
                    place.set_for_test(rank, replicas);
                    place.share(cap)
                })
                .collect();
            assert_eq!(
                shares.iter().sum::<usize>(),
                cap,
                "{cap} over {replicas}: {shares:?}"
            );
            let (least, most) = (shares.iter().min(), shares.iter().max());
            assert!(
                most.zip(least)
                    .is_some_and(|(most, least)| most - least <= 1),
                "{shares:?}"
            );
        }
        // Two replicas, a plugin cap of 3: this one (rank 1) runs one.
        let gate = Gate::new(
            ConcurrencyConfig {
                per_plugin: 3,
                per_tenant: 10,
                plugins: BTreeMap::new(),
            },
            place.clone(),
        );
        place.set_for_test(1, 2);
        let held = gate.try_enter("t", "crm").expect("its share");
        let refused = gate.try_enter("t", "crm").expect_err("past its share");
        assert!(
            refused
                .to_string()
                .contains("its cap (concurrency.per_plugin) is 3 across 2 replicas"),
            "{refused}"
        );
        drop(held);
    }

    #[test]
    fn a_zero_cap_for_a_plugin_is_refused_by_name() {
        let config = ConcurrencyConfig {
            plugins: BTreeMap::from([("crm".to_owned(), 0)]),
            ..ConcurrencyConfig::default()
        };
        let err = config.check().expect_err("refused");
        assert!(err.contains("concurrency.plugins.crm"), "{err}");
    }
}
