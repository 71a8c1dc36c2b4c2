//! [`Store`] on sled, with grouped flushes and group commit.
//!
//! sled writes out a log buffer for every transaction and wakes its whole
//! I/O pool for each, so under load the cost of a write is mostly per
//! transaction, not per key. [`Store::commit`] therefore hands its body to
//! one committer thread, which runs every body waiting at that moment in a
//! single sled transaction, flushes once, and answers each. Each body runs
//! against its own staging layer ([`Staged`]), so one that fails leaves no
//! write behind while the others in its batch commit.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::{BoxFuture, CommitBody, Result, Store, StoreError, Tree, Tx, TxError, TxErrorKind};

/// The most commits one transaction carries; more wait for the next one.
const MAX_BATCH: usize = 512;

/// The most memory sled's page cache may hold unless configured
/// (`db_cache_bytes`). sled's own default is 1 GiB, which a busy server
/// fills with pages it has written (the soak benchmark grew from 138 to
/// 578 MiB in ten minutes at 900 executions per second); recent records and
/// the index heads fit well within this.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The file beside the database holding the generation the database reached
/// at its last clean open or close (see [`SledStore::seal`]).
const GENERATION_FILE: &str = "db.generation";
/// Where the database holds its own generation, in the meta tree.
const GENERATION_KEY: &[u8] = b"store.generation";

/// A storage conflict inside a transaction; sled retries the body.
pub(crate) struct Unabortable(UnabortableTransactionError);

/// The sled implementation of [`Store`].
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    path: PathBuf,
    records: sled::Tree,
    indexes: sled::Tree,
    meta: sled::Tree,
    /// Tickets handed to writers waiting for durability.
    requested: AtomicU64,
    /// The highest ticket known to be on disk.
    flushed: AtomicU64,
    /// One flush at a time; waiters queue here and most find their ticket done.
    flushing: tokio::sync::Mutex<()>,
    /// The committer's queue; `None` once the store is being dropped.
    commits: Option<mpsc::Sender<Commit>>,
    /// The committer thread, joined on drop so the database is closed when
    /// the store is gone.
    committer: Option<std::thread::JoinHandle<()>>,
    /// Set by the first write that could not be made durable.
    failure: Failure,
}

/// The first storage failure (of a write, or of a read: sled reports an I/O
/// error it met while writing to later reads too), after which the store refuses
/// every read and write until the process restarts.
///
/// sled cannot be trusted after an I/O error: its in-memory trees hold the
/// writes that never reached the disk (a reader would see an action whose
/// creation was refused), and once space is freed its next flush waits
/// forever (seen with a full disk: every later write hung). Recovery from
/// what is on disk, at the next start, is what sled does reliably.
#[derive(Clone, Default)]
struct Failure(Arc<OnceLock<String>>);

impl Failure {
    /// `Err` once a write has failed.
    fn check(&self) -> Result<()> {
        match self.0.get() {
            None => Ok(()),
            Some(cause) => Err(StoreError::Storage(format!(
                "{cause}; since then the store accepts no reads or writes: every write acknowledged before it is on disk. Free space or fix the disk, then restart the server"
            ))),
        }
    }

    /// Records `err` as the failure, if it is the first, and returns it.
    fn record(&self, err: StoreError) -> StoreError {
        if let StoreError::Storage(cause) = &err
            && self.0.set(cause.clone()).is_ok()
        {
            tracing::error!(%cause, "storage failed: the store refuses reads and writes until the server restarts");
        }
        err
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.failure.0.get().is_some() {
            // sled flushes when its last handle to a tree drops, and after
            // an I/O error that flush never returns: keep a handle to each
            // alive for the rest of the process, which is ending anyway.
            // What was acknowledged is on disk already.
            std::mem::forget(self.db.clone());
            for tree in [&self.records, &self.indexes, &self.meta] {
                std::mem::forget(tree.clone());
            }
        }
        // Closing the queue ends the committer's loop.
        self.commits = None;
        if let Some(handle) = self.committer.take()
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

/// One [`Store::commit`] waiting for the committer.
struct Commit {
    body: CommitBody,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

fn storage(path: &Path, err: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(format!("{}: {err}", path.display()))
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with the default cache.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database in `dir`; its page cache holds at
    /// most `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|err| {
            StoreError::Storage(format!(
                "cannot create the data directory {}: {err}",
                dir.display()
            ))
        })?;
        let path = dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|err| match err {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock") => StoreError::Storage(format!(
                "the database {} is in use by another process (is a server already running on this --data-dir?)",
                path.display()
            )),
            sled::Error::Corruption { .. } => StoreError::Storage(format!(
                "the database {} is corrupt ({err}); restore the data directory from a backup, or move it aside to start empty",
                path.display()
            )),
            other => StoreError::Storage(format!("cannot open the database {}: {other}", path.display())),
        })?;
        let open_tree = |tree: Tree| db.open_tree(tree.name()).map_err(|err| storage(&path, err));
        let records = open_tree(Tree::Records)?;
        let indexes = open_tree(Tree::Indexes)?;
        let meta = open_tree(Tree::Meta)?;
        check_generation(dir, &path, &meta)?;
        let (commits, queue) = mpsc::channel();
        let failure = Failure::default();
        let committer = Committer {
            db: db.clone(),
            path: path.clone(),
            trees: (records.clone(), indexes.clone(), meta.clone()),
            failure: failure.clone(),
        };
        let committer = std::thread::Builder::new()
            .name("actionhost-commit".into())
            .spawn(move || committer.run(&queue))
            .map_err(|err| storage(&path, format!("cannot start the committer thread: {err}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                path,
                records,
                indexes,
                meta,
                requested: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                flushing: tokio::sync::Mutex::new(()),
                commits: Some(commits),
                committer: Some(committer),
                failure,
            }),
        };
        store.seal()?;
        Ok(store)
    }

    /// Flushes synchronously and seals the database, for shutdown.
    pub fn flush_blocking(&self) -> Result<()> {
        self.seal()
    }

    /// Records a new generation: in the database, flushed, and then in
    /// `db.generation` beside it. Done at every open and clean close, so
    /// that a database which later holds an older generation than the file
    /// (sled's recovery dropped what it could not read, or the files were
    /// replaced) is refused at the next open instead of served.
    fn seal(&self) -> Result<()> {
        let inner = &self.inner;
        inner.failure.check()?;
        let dir = inner.path.parent().unwrap_or(Path::new("."));
        let held = read_generation(&inner.meta).map_err(|err| storage(&inner.path, err))?;
        let recorded = read_generation_file(dir)?;
        let next = held.max(recorded).unwrap_or(0) + 1;
        inner
            .meta
            .insert(GENERATION_KEY, &next.to_be_bytes())
            .map_err(|err| storage(&inner.path, err))?;
        inner.db.flush().map_err(|err| storage(&inner.path, err))?;
        let file = dir.join(GENERATION_FILE);
        crate::files::write_durably(&file, &[format!("{next}\n").as_bytes()])
            .map_err(|err| storage(&file, err))
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        match tree {
            Tree::Records => &self.inner.records,
            Tree::Indexes => &self.inner.indexes,
            Tree::Meta => &self.inner.meta,
        }
    }
}

/// The generation the database holds, if it has one.
fn read_generation(meta: &sled::Tree) -> std::result::Result<Option<u64>, String> {
    match meta.get(GENERATION_KEY).map_err(|err| err.to_string())? {
        None => Ok(None),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| format!("its generation is {} bytes, not 8", bytes.len())),
    }
}

/// The generation recorded in `dir/db.generation`, if the file exists.
fn read_generation_file(dir: &Path) -> Result<Option<u64>> {
    let file = dir.join(GENERATION_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|_| {
            StoreError::Storage(format!(
                "{} does not hold a generation number ({:?}); restore it from a backup, or delete it to skip the database's completeness check once",
                file.display(),
                text.chars().take(40).collect::<String>()
            ))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(storage(&file, err)),
    }
}

/// Refuses a database that holds an older generation than the one recorded
/// beside it at its last clean open or close: sled starts from whatever
/// prefix of its log it can read, so a damaged, truncated or replaced
/// database would otherwise be served with records silently missing (or
/// empty, with a new admin key written over the old one).
fn check_generation(dir: &Path, path: &Path, meta: &sled::Tree) -> Result<()> {
    let Some(recorded) = read_generation_file(dir)? else {
        return Ok(());
    };
    let held = read_generation(meta).map_err(|err| storage(path, err))?;
    if held.is_some_and(|held| held >= recorded) {
        return Ok(());
    }
    let held = held.map_or_else(|| "none".to_owned(), |g| g.to_string());
    Err(StoreError::Storage(format!(
        "the database {} is incomplete: it holds generation {held}, but it had reached generation {recorded} at its last clean start or stop (recorded in {}). Its files are damaged, truncated or were replaced, and what could not be read was dropped. Restore the data directory from a backup; or, to start with what is left (the rest stays lost), delete {}",
        path.display(),
        dir.join(GENERATION_FILE).display(),
        dir.join(GENERATION_FILE).display(),
    )))
}

/// The committer thread's side of the store.
struct Committer {
    db: sled::Db,
    path: PathBuf,
    trees: (sled::Tree, sled::Tree, sled::Tree),
    failure: Failure,
}

impl Committer {
    /// Takes every commit waiting, runs them in one transaction, flushes
    /// once and answers each; until the queue closes.
    fn run(&self, queue: &mpsc::Receiver<Commit>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(commit) => batch.push(commit),
                    Err(_) => break,
                }
            }
            let outcomes = self.apply(&batch);
            for (commit, outcome) in batch.into_iter().zip(outcomes) {
                // A caller that stopped waiting is no reason to stop.
                let _ = commit.done.send(outcome);
            }
        }
    }

    fn apply(&self, batch: &[Commit]) -> Vec<Result<()>> {
        if self.failure.check().is_err() {
            return batch.iter().map(|_| self.failure.check()).collect();
        }
        let outcomes: RefCell<Vec<Result<()>>> = RefCell::new(Vec::new());
        let (records, indexes, meta) = &self.trees;
        let committed = (records, indexes, meta).transaction(|(records, indexes, meta)| {
            let tx = SledTx {
                records,
                indexes,
                meta,
            };
            // A rerun after a conflict starts the batch over.
            let mut results = Vec::with_capacity(batch.len());
            for commit in batch {
                let staged = Staged::new(&tx);
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| (commit.body)(&staged)));
                match ran {
                    Ok(Ok(())) => {
                        staged.apply()?;
                        results.push(Ok(()));
                    }
                    Ok(Err(TxError(TxErrorKind::Abort(err)))) => results.push(Err(err)),
                    Ok(Err(TxError(TxErrorKind::Storage(Unabortable(err))))) => {
                        return Err(ConflictableTransactionError::from(err));
                    }
                    Ok(Err(TxError(TxErrorKind::Retry))) => results.push(Err(StoreError::Storage(
                        "a PostgreSQL conflict in a sled transaction".into(),
                    ))),
                    Err(_) => results.push(Err(StoreError::Storage(
                        "a transaction body panicked; nothing of it was written".into(),
                    ))),
                }
            }
            *outcomes.borrow_mut() = results;
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        });
        let mut outcomes = outcomes.into_inner();
        let failed = match committed {
            Ok(()) => self
                .db
                .flush()
                .err()
                .map(|err| self.failure.record(storage(&self.path, err))),
            Err(TransactionError::Storage(err)) => {
                Some(self.failure.record(storage(&self.path, err)))
            }
            Err(TransactionError::Abort(err)) => Some(err),
        };
        match failed {
            None => outcomes,
            Some(err) => {
                // Nothing of the batch is known to be durable.
                let message = err.to_string();
                outcomes.resize_with(batch.len(), || Ok(()));
                outcomes
                    .into_iter()
                    .map(|outcome| outcome.and(Err(StoreError::Storage(message.clone()))))
                    .collect()
            }
        }
    }
}

/// One commit's view of the batch transaction: reads see the batch so far
/// and this commit's own writes; its writes reach the transaction only if
/// the body succeeds.
struct Staged<'a> {
    tx: &'a SledTx<'a>,
    /// Each tree's writes, in the order of [`TREES`].
    writes: RefCell<[Writes; 3]>,
}

/// A tree's last write per key: a value, or `None` for a removal.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The trees in the order of [`Staged::writes`].
const TREES: [Tree; 3] = [Tree::Records, Tree::Indexes, Tree::Meta];

fn slot(tree: Tree) -> usize {
    match tree {
        Tree::Records => 0,
        Tree::Indexes => 1,
        Tree::Meta => 2,
    }
}

impl<'a> Staged<'a> {
    fn new(tx: &'a SledTx<'a>) -> Self {
        Self {
            tx,
            writes: RefCell::default(),
        }
    }

    fn apply(self) -> Result<(), UnabortableTransactionError> {
        for (tree, writes) in TREES.into_iter().zip(self.writes.into_inner()) {
            let tree = self.tx.tree(tree);
            for (key, value) in writes {
                match value {
                    Some(value) => drop(tree.insert(key, value)?),
                    None => drop(tree.remove(key)?),
                }
            }
        }
        Ok(())
    }
}

impl Tx for Staged<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        if let Some(value) = self.writes.borrow()[slot(tree)].get(key) {
            return Ok(value.clone());
        }
        self.tx.get(tree, key)
    }

    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.writes.borrow_mut()[slot(tree)].insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), TxError> {
        self.writes.borrow_mut()[slot(tree)].insert(key.to_vec(), None);
        Ok(())
    }
}

struct SledTx<'a> {
    records: &'a TransactionalTree,
    indexes: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

impl SledTx<'_> {
    fn tree(&self, tree: Tree) -> &TransactionalTree {
        match tree {
            Tree::Records => self.records,
            Tree::Indexes => self.indexes,
            Tree::Meta => self.meta,
        }
    }
}

fn conflict(err: UnabortableTransactionError) -> TxError {
    TxError(TxErrorKind::Storage(Unabortable(err)))
}

impl Tx for SledTx<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        self.tree(tree)
            .get(key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(conflict)
    }

    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.tree(tree)
            .insert(key, value)
            .map(drop)
            .map_err(conflict)
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), TxError> {
        self.tree(tree).remove(key).map(drop).map_err(conflict)
    }
}

impl Store for SledStore {
    fn failure(&self) -> Option<String> {
        self.inner.failure.check().err().map(|err| err.to_string())
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.failure.check()?;
        self.tree(tree)
            .get(key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|err| self.inner.failure.record(storage(&self.inner.path, err)))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.failure.check()?;
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|err| self.inner.failure.record(storage(&self.inner.path, err)))
            })
            .collect()
    }

    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.failure.check()?;
        self.tree(tree)
            .range(start..)
            .take_while(|entry| entry.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|err| self.inner.failure.record(storage(&self.inner.path, err)))
            })
            .collect()
    }

    fn scan_range(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        descending: bool,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.failure.check()?;
        if start >= end {
            return Ok(Vec::new());
        }
        let range = self.tree(tree).range(start..end);
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
        entries
            .skip(skip)
            .take(limit)
            .map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|err| self.inner.failure.record(storage(&self.inner.path, err)))
            })
            .collect()
    }

    fn count_range(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<usize> {
        self.inner.failure.check()?;
        if start >= end {
            return Ok(0);
        }
        let mut count = 0;
        for entry in self.tree(tree).range(start..end) {
            entry.map_err(|err| self.inner.failure.record(storage(&self.inner.path, err)))?;
            count += 1;
        }
        Ok(count)
    }

    fn transact(&self, body: &dyn Fn(&dyn Tx) -> Result<(), TxError>) -> Result<()> {
        let inner = &self.inner;
        inner.failure.check()?;
        let result = (&inner.records, &inner.indexes, &inner.meta).transaction(
            |(records, indexes, meta)| {
                let tx = SledTx {
                    records,
                    indexes,
                    meta,
                };
                body(&tx).map_err(|TxError(kind)| match kind {
                    TxErrorKind::Abort(err) => ConflictableTransactionError::Abort(err),
                    TxErrorKind::Storage(Unabortable(err)) => err.into(),
                    TxErrorKind::Retry => ConflictableTransactionError::Abort(StoreError::Storage(
                        "a PostgreSQL conflict in a sled transaction".into(),
                    )),
                })
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => {
                Err(inner.failure.record(storage(&inner.path, err)))
            }
        }
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.failure.check()?;
            // Every write before this ticket is covered by a flush that
            // starts after the ticket was taken.
            let ticket = inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
            let _turn = inner.flushing.lock().await;
            if inner.flushed.load(Ordering::SeqCst) >= ticket {
                return Ok(());
            }
            let target = inner.requested.load(Ordering::SeqCst);
            let db = inner.db.clone();
            let flushed = tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|err| StoreError::Storage(format!("flush task failed: {err}")))?;
            flushed.map_err(|err| inner.failure.record(storage(&inner.path, err)))?;
            inner.flushed.fetch_max(target, Ordering::SeqCst);
            Ok(())
        })
    }

    fn commit(&self, body: CommitBody) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner.failure.check()?;
            let gone = || StoreError::Storage("the store's committer has stopped".into());
            let (done, answer) = tokio::sync::oneshot::channel();
            self.inner
                .commits
                .as_ref()
                .ok_or_else(gone)?
                .send(Commit { body, done })
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }
}
