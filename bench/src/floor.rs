//! The store's memory floor for the soak: bare sled, in a process of its
//! own, storing execution records at the soak's rate.
//!
//! The soak's target (memory grows < 10 % in ten minutes at half of peak)
//! meets a property of sled: it keeps metadata in memory for every page it
//! has written, so its resident set grows with the data it holds, past its
//! page cache's cap. Every sync execute stores its record durably, so the
//! server holds at least what this writer holds. Running the same number of
//! records through sled with nothing else in the process measures the part
//! of the soak's growth no change to actionhost's own code can remove.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sled::Transactional;

/// The size of a no-op execution's stored record (key and JSON value),
/// measured over 72,298 records of a bench server's database.
pub const EXECUTION_RECORD_BYTES: usize = 640;

/// Records per transaction and flush: the group commit's batch under the
/// soak's load is of this order.
const BATCH: u64 = 50;

/// Writes `rate` records per second of `record_bytes` each for `seconds`
/// into a sled database in `dir` with the server's trees and `cache_bytes`
/// of page cache, each batch in one transaction followed by a flush, as
/// the server's group commit does. Keys are time-ordered, like execution ids.
pub fn write(
    dir: &Path,
    rate: f64,
    seconds: f64,
    record_bytes: usize,
    cache_bytes: u64,
) -> anyhow::Result<()> {
    let db = sled::Config::new()
        .path(dir.join("db"))
        .cache_capacity(cache_bytes)
        .open()
        .context("opening the floor's database")?;
    let records = db.open_tree("records")?;
    let indexes = db.open_tree("indexes")?;
    let meta = db.open_tree("meta")?;
    let key_bytes = "executions/exe_0000000000000000000000".len();
    let value = vec![b'x'; record_bytes.saturating_sub(key_bytes)];
    let start = Instant::now();
    let stop = Duration::from_secs_f64(seconds);
    let mut written = 0u64;
    while start.elapsed() < stop {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if written + BATCH > due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        (&records, &indexes, &meta)
            .transaction(|(records, _, _)| {
                for n in written..written + BATCH {
                    let key = format!("executions/exe_{n:022x}");
                    records.insert(key.as_bytes(), value.as_slice())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|err| anyhow::anyhow!("floor transaction: {err:?}"))?;
        db.flush()?;
        written += BATCH;
    }
    println!("{written}");
    Ok(())
}
