//! Retention: execution records and finished actions older than the
//! operator's `[retention]` settings are removed in the background, in
//! small durable batches, so that the data folder stops growing while
//! serving goes on. (Events have their own sweep, [`crate::events`], whose
//! retention `[retention] events` sets, and which removes at the same
//! pace.)
//!
//! What a sweep reads:
//! - `executions_by_time` (`FINISHED_AT`, RFC 3339 with milliseconds,
//!   which sorts as time does): every execution record;
//! - `actions_finished` (`UPDATED_AT`): the actions in a final status
//!   (`succeeded`, `failed`, `cancelled`, `rejected`), by their last change.
//!
//! Both indexes list records from their oldest end, so a sweep reads only
//! what it removes. Records stored before these indexes existed get their
//! entries once, at the first start that has them ([`index_existing`]).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::actions::Action;
use crate::executions::ExecutionRecord;
use crate::store::{Record, Records, StoreError};

/// The records one write of a sweep removes.
const BATCH: usize = 200;

/// `[retention]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Execution records finished longer ago than this are removed
    /// (default: kept).
    #[serde(with = "humantime_serde")]
    pub executions: Option<Duration>,
    /// Actions that reached a final status longer ago than this are
    /// removed, with their history (default: kept).
    #[serde(with = "humantime_serde")]
    pub actions: Option<Duration>,
    /// Events that occurred longer ago than this are removed (default:
    /// `[events] retention`, 400 days).
    #[serde(with = "humantime_serde")]
    pub events: Option<Duration>,
    /// How often the executions and actions sweep runs (default 1 hour).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            executions: None,
            actions: None,
            events: None,
            sweep_interval: Duration::from_secs(3600),
        }
    }
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Execution records.
    pub executions: usize,
    /// Finished actions.
    pub actions: usize,
}

/// RFC 3339 with milliseconds, `age` before now: the bound of a sweep.
fn cutoff(age: Duration) -> String {
    let at = SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Removes what `config` says is past its retention; returns the counts.
pub async fn sweep(records: &Records, config: &RetentionConfig) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    if let Some(age) = config.executions {
        swept.executions =
            remove_paced::<ExecutionRecord>(records, "executions_by_time", &cutoff(age)).await?;
    }
    if let Some(age) = config.actions {
        swept.actions = remove_paced::<Action>(records, "actions_finished", &cutoff(age)).await?;
    }
    Ok(swept)
}

/// Removes the records of `R` that `index` lists below `upper`, oldest
/// first, [`BATCH`] per durable write. After each write it waits as long
/// as the write took, so that a sweep takes at most half of the store's
/// time and the writes of requests, which share its group commits, are
/// never queued behind a run of its batches.
pub async fn remove_paced<R: Record + 'static>(
    records: &Records,
    index: &'static str,
    upper: &str,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    loop {
        let ids: Vec<String> = records
            .index_range(index, "", None, Some(upper), false, 0, BATCH)?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        if ids.is_empty() {
            return Ok(removed);
        }
        removed += ids.len();
        let started = std::time::Instant::now();
        records
            .commit(move |tx| {
                for id in &ids {
                    tx.remove::<R>(id)?;
                }
                Ok(())
            })
            .await?;
        tokio::time::sleep(started.elapsed()).await;
    }
}

/// The sweep every `sweep_interval` until `stop`, when anything is to be
/// swept; each sweep that removed something says so in the log and the
/// metrics.
pub async fn run(
    records: Records,
    config: RetentionConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if config.executions.is_none() && config.actions.is_none() {
        return;
    }
    loop {
        let started = std::time::Instant::now();
        match sweep(&records, &config).await {
            Ok(swept) => {
                crate::metrics::retention_removed("executions", swept.executions);
                crate::metrics::retention_removed("actions", swept.actions);
                if swept != Swept::default() {
                    tracing::info!(
                        executions = swept.executions,
                        actions = swept.actions,
                        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "retention: removed execution records and finished actions past their retention"
                    );
                }
            }
            Err(err) => {
                tracing::error!(%err, "retention sweep failed; it runs again later");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.sweep_interval) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// The meta key that says existing records have their retention entries.
const INDEXED: &str = "retention_indexed";

/// Gives the execution records and finished actions stored before the
/// retention indexes existed their entries (once: a meta flag remembers),
/// in batches; returns how many records were written.
pub fn index_existing(records: &Records) -> Result<usize, StoreError> {
    if records.meta(INDEXED)?.is_some() {
        return Ok(0);
    }
    let mut written = 0;
    written += reindex::<ExecutionRecord>(records)?;
    written += reindex::<Action>(records)?;
    records.set_meta(INDEXED, b"1")?;
    if written > 0 {
        tracing::info!(
            written,
            "indexed existing executions and actions for retention"
        );
    }
    Ok(written)
}

/// Writes every record of `R` again, as it is stored at that moment, so
/// that its index entries are as its `indexes()` says today.
fn reindex<R: Record>(records: &Records) -> Result<usize, StoreError> {
    let mut after: Option<String> = None;
    let mut written = 0;
    loop {
        let ids = records.ids_after::<R>(after.as_deref(), BATCH)?;
        let Some(last) = ids.last() else {
            return Ok(written);
        };
        after = Some(last.clone());
        written += ids.len();
        records.transaction(|tx| {
            for id in &ids {
                if let Some(current) = tx.get::<R>(id)? {
                    tx.put(&current)?;
                }
            }
            Ok(())
        })?;
    }
}
