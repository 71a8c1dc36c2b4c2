//! This process as one replica among those serving one store.
//!
//! Every run of `actionhost serve` has a replica id, new at each start
//! (`rep_` and 16 hex digits). It marks what the run holds: the actions it
//! has claimed (`running_on`) and the idempotency keys it is answering.
//! While it serves it renews its lease, a [`Replica`] record whose
//! `heartbeat_ms` it writes every third of `scheduler.lease`. What a
//! replica holds is its own while its lease is live; once the lease has
//! expired (the process died, or lost the database for longer than the
//! lease), any replica recovers it by SPEC.md's rule. A replica that
//! cannot renew its lease stops claiming work before it expires.
//!
//! On sled only one process opens the store, so every replica id but this
//! run's is dead from the start. On PostgreSQL the previous run from the
//! same data dir is dead too (the data dir is locked while a run serves),
//! so a restarted replica recovers its own runs at once, and those of a
//! replica that does not come back once its lease expires.
//!
//! Lease times are compared across replicas' clocks: keep them in sync
//! (NTP) to well within the lease.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::store::{Record, Records, Signals, StoreError};
use crate::tenancy::{now, random_bytes};

static ID: OnceLock<String> = OnceLock::new();

/// This run's replica id.
pub fn id() -> &'static str {
    ID.get_or_init(|| format!("rep_{}", hex::encode(random_bytes::<8>())))
}

fn now_ms() -> u64 {
    crate::actions::epoch_ms(SystemTime::now())
}

/// A replica's lease, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replica {
    /// `rep_…`, new at each start.
    pub id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it last renewed its lease (milliseconds since the epoch).
    pub heartbeat_ms: u64,
    /// How long the lease lasts past a heartbeat, in milliseconds.
    pub lease_ms: u64,
    /// The address it listens on.
    pub listen: String,
    /// The actionhost version.
    pub version: String,
}

impl Record for Replica {
    const COLLECTION: &'static str = "replicas";
    fn id(&self) -> &str {
        &self.id
    }
}

impl Replica {
    /// Whether its lease is live at `at` (milliseconds since the epoch).
    pub fn live_at(&self, at: u64) -> bool {
        at < self.heartbeat_ms.saturating_add(self.lease_ms)
    }
}

/// This replica's place among the live replicas: its rank in the order of
/// their ids and how many there are, updated at each renewal of its lease.
/// A cap of the whole cluster is split by it (see [`Place::share`]).
#[derive(Clone, Debug)]
pub struct Place(Arc<AtomicU64>);

impl Default for Place {
    /// Alone: rank 0 of 1.
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(1)))
    }
}

impl Place {
    /// `(rank, replicas)`.
    pub fn get(&self) -> (usize, usize) {
        let packed = self.0.load(Ordering::Relaxed);
        ((packed >> 32) as usize, (packed & 0xFFFF_FFFF) as usize)
    }

    #[cfg(test)]
    pub(crate) fn set_for_test(&self, rank: usize, replicas: usize) {
        self.set(rank, replicas);
    }

    fn set(&self, rank: usize, replicas: usize) {
        let rank = u64::try_from(rank).unwrap_or(u64::MAX) & 0xFFFF_FFFF;
        let replicas = u64::try_from(replicas.max(1)).unwrap_or(1) & 0xFFFF_FFFF;
        self.0.store(rank << 32 | replicas, Ordering::Relaxed);
    }

    /// This replica's part of a cap of the cluster, `cap`: an equal part,
    /// the first `cap % replicas` ranks one more, so that the parts add up
    /// to `cap`. A replica can get 0 when the cap is below the number of
    /// replicas.
    pub fn share(&self, cap: usize) -> usize {
        let (rank, replicas) = self.get();
        cap / replicas + usize::from(rank < cap % replicas)
    }
}

/// A named lock held through the store, so that it holds across replicas:
/// the holder's replica and when the hold lapses if never released (its
/// replica died holding it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreLock {
    /// The lock's name, such as `refresh/ACCOUNT_ID`.
    pub id: String,
    /// The replica holding it.
    pub holder: String,
    /// When the hold lapses (milliseconds since the epoch).
    pub until_ms: u64,
}

impl Record for StoreLock {
    const COLLECTION: &'static str = "locks";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A [`StoreLock`] this run holds, released when dropped.
pub struct HeldLock {
    records: Option<Records>,
    name: String,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let Some(records) = &self.records else {
            return;
        };
        // Unreleased (the store is out of reach), it lapses by itself.
        let released = records.transaction(|tx| {
            if tx
                .get::<StoreLock>(&self.name)?
                .is_some_and(|lock| lock.holder == id())
            {
                tx.remove::<StoreLock>(&self.name)?;
            }
            Ok(())
        });
        if let Err(err) = released {
            tracing::warn!(lock = %self.name, %err, "cannot release a store lock; it lapses by itself");
        }
    }
}

/// The data dir's hold on this run: a lock that keeps a second `serve`
/// from using the same data dir, and the file naming the replica id of the
/// run that held it last.
pub struct DataDirLock {
    _file: std::fs::File,
    /// The replica id of the previous run from this data dir, if any.
    pub previous: Option<String>,
}

impl DataDirLock {
    /// Locks `data_dir` for this run and records this run's replica id.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|err| anyhow::anyhow!("cannot open {}: {err}", path.display()))?;
        if let Err(err) = file.try_lock() {
            anyhow::bail!(
                "another actionhost is serving from the data dir {} ({err}); give every replica a data dir of its own",
                data_dir.display()
            );
        }
        let id_path = replica_file(data_dir);
        let previous = std::fs::read_to_string(&id_path)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| text.starts_with("rep_"));
        crate::files::write_durably(&id_path, &[id().as_bytes(), b"\n"])
            .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", id_path.display()))?;
        Ok(Self {
            _file: file,
            previous,
        })
    }
}

fn replica_file(data_dir: &Path) -> PathBuf {
    data_dir.join("replica.id")
}

/// The leases of the replicas sharing the store.
#[derive(Clone)]
pub struct Replicas {
    inner: Arc<Inner>,
}

struct Inner {
    records: Records,
    lease: Duration,
    /// Whether other processes may share the store (PostgreSQL).
    shared: bool,
    /// When this run's lease was last renewed (ms since the epoch); 0 before.
    renewed_ms: AtomicU64,
    /// The previous run from this data dir: dead, whatever its lease says.
    previous: Option<String>,
    listen: String,
    /// Signals to and from the other replicas.
    signals: Signals,
    /// This run's place among the live replicas.
    place: Place,
}

impl Replicas {
    /// The leases in `records`; `shared` when other processes may serve
    /// the same store, which `signals` reach.
    pub fn new(
        records: Records,
        lease: Duration,
        shared: bool,
        previous: Option<String>,
        listen: String,
        signals: Signals,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                records,
                lease,
                shared,
                renewed_ms: AtomicU64::new(0),
                previous,
                listen,
                signals,
                place: Place::default(),
            }),
        }
    }

    /// Signals to and from the other replicas.
    pub fn signals(&self) -> &Signals {
        &self.inner.signals
    }

    /// Whether other processes may share the store (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.inner.shared
    }

    /// The lease's length.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.inner.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes this run's lease, durably.
    pub async fn renew(&self) -> Result<(), StoreError> {
        let at = now_ms();
        let record = match self.inner.records.get::<Replica>(id())? {
            Some(mut record) => {
                record.heartbeat_ms = at;
                record
            }
            None => Replica {
                id: id().to_owned(),
                started_at: now(),
                heartbeat_ms: at,
                lease_ms: self.lease_ms(),
                listen: self.inner.listen.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        };
        self.inner.records.put_durably(record).await?;
        self.inner.renewed_ms.fetch_max(at, Ordering::Relaxed);
        if self.inner.shared {
            let mut live: Vec<String> = self
                .list()?
                .into_iter()
                .filter(|r| r.live_at(at) || r.id == id())
                .map(|r| r.id)
                .collect();
            live.sort();
            if let Some(rank) = live.iter().position(|r| r == id()) {
                self.inner.place.set(rank, live.len());
            }
        }
        Ok(())
    }

    /// This run's place among the live replicas, kept current.
    pub fn place(&self) -> Place {
        self.inner.place.clone()
    }

    /// Renews this run's lease every third of its length until `stop`.
    pub async fn run_renewals(&self, stop: tokio_util::sync::CancellationToken) {
        let every = self.inner.lease / 3;
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.renew().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("replica lease renewed again");
                }
                Ok(()) => {}
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(%err, "cannot renew this replica's lease; retrying");
                }
                Err(_) => {}
            }
        }
    }

    /// Takes the lock `name` for this run, across replicas: waits while
    /// another live holder has it, for at most `wait`; the hold lapses after
    /// `hold` if this run dies holding it. `Ok(None)` when `wait` ran out.
    /// Where no other process shares the store, the process's own locking
    /// suffices and nothing is written.
    pub async fn lock(
        &self,
        name: &str,
        hold: Duration,
        wait: Duration,
    ) -> Result<Option<HeldLock>, StoreError> {
        if !self.inner.shared {
            return Ok(Some(HeldLock {
                records: None,
                name: name.to_owned(),
            }));
        }
        let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        let deadline = std::time::Instant::now() + wait;
        loop {
            let at = now_ms();
            let taken = self.inner.records.transaction(|tx| {
                if let Some(lock) = tx.get::<StoreLock>(name)?
                    && lock.holder != id()
                    && lock.until_ms > at
                {
                    return Ok(false);
                }
                tx.put(&StoreLock {
                    id: name.to_owned(),
                    holder: id().to_owned(),
                    until_ms: at.saturating_add(hold_ms),
                })?;
                Ok(true)
            })?;
            if taken {
                return Ok(Some(HeldLock {
                    records: Some(self.inner.records.clone()),
                    name: name.to_owned(),
                }));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether this run may take on work: its lease has at least a third
    /// of its length left, so the work is its own for a while yet.
    pub fn holds_lease(&self) -> bool {
        let renewed = self.inner.renewed_ms.load(Ordering::Relaxed);
        renewed > 0 && now_ms() < renewed.saturating_add(self.lease_ms() * 2 / 3)
    }

    /// Whether what replica `replica` holds is still its own: it is this
    /// run, or another whose lease is live. On sled, no other run is.
    pub fn is_live(&self, replica: &str) -> Result<bool, StoreError> {
        if replica == id() {
            return Ok(true);
        }
        if !self.inner.shared || self.inner.previous.as_deref() == Some(replica) {
            return Ok(false);
        }
        Ok(self
            .inner
            .records
            .get::<Replica>(replica)?
            .is_some_and(|r| r.live_at(now_ms())))
    }

    /// Every replica's lease, live or not, by id.
    pub fn list(&self) -> Result<Vec<Replica>, StoreError> {
        self.inner.records.list_all::<Replica>()
    }

    /// Forgets the leases of replicas that have been dead for ten leases:
    /// what they held was recovered long since.
    pub async fn forget_dead(&self) -> Result<usize, StoreError> {
        let at = now_ms();
        let mut forgotten = 0;
        for replica in self.list()? {
            let grace = replica.lease_ms.saturating_mul(10);
            if replica.id != id() && at > replica.heartbeat_ms.saturating_add(grace) {
                self.inner.records.remove::<Replica>(&replica.id)?;
                forgotten += 1;
            }
        }
        if forgotten > 0 {
            self.inner.records.durable().await?;
        }
        Ok(forgotten)
    }

    /// Removes this run's lease at a clean shutdown, once nothing it holds
    /// is left running: the others need not wait for it to expire.
    pub async fn release(&self) -> Result<(), StoreError> {
        self.inner.records.remove::<Replica>(id())?;
        self.inner.records.durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_live_until_its_length_past_the_heartbeat() {
        let replica = Replica {
            id: "rep_1".into(),
            started_at: now(),
            heartbeat_ms: 1_000,
            lease_ms: 500,
            listen: String::new(),
            version: String::new(),
        };
        assert!(replica.live_at(1_000));
        assert!(replica.live_at(1_499));
        assert!(!replica.live_at(1_500));
    }

    #[test]
    fn a_second_run_from_one_data_dir_is_refused_and_the_first_is_remembered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = DataDirLock::acquire(dir.path()).expect("first");
        assert_eq!(first.previous, None);
        let refused = DataDirLock::acquire(dir.path())
            .err()
            .expect("a second hold is refused");
        assert!(
            refused
                .to_string()
                .contains("another actionhost is serving")
        );
        drop(first);
        let second = DataDirLock::acquire(dir.path()).expect("after the first let go");
        assert_eq!(second.previous.as_deref(), Some(id()));
    }
}
