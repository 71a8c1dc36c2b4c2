//! [`Store`] on sled, with grouped flushes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::{BoxFuture, Result, Store, StoreError, Tree, Tx, TxError, TxErrorKind};

/// The most memory sled's page cache may hold unless configured
/// (`db_cache_bytes`). sled's own default is 1 GiB, which a busy server
/// fills with pages it has written (the soak benchmark grew from 138 to
/// 578 MiB in ten minutes at 900 executions per second); recent records and
/// the index heads fit well within this.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

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
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                path,
                records,
                indexes,
                meta,
                requested: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                flushing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Flushes synchronously, for shutdown.
    pub fn flush_blocking(&self) -> Result<()> {
        self.inner
            .db
            .flush()
            .map(drop)
            .map_err(|err| storage(&self.inner.path, err))
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        match tree {
            Tree::Records => &self.inner.records,
            Tree::Indexes => &self.inner.indexes,
            Tree::Meta => &self.inner.meta,
        }
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
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree(tree)
            .get(key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|err| storage(&self.inner.path, err))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|err| storage(&self.inner.path, err))
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
        self.tree(tree)
            .range(start..)
            .take_while(|entry| entry.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|err| storage(&self.inner.path, err))
            })
            .collect()
    }

    fn transact(&self, body: &dyn Fn(&dyn Tx) -> Result<(), TxError>) -> Result<()> {
        let inner = &self.inner;
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
                })
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => Err(storage(&inner.path, err)),
        }
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let inner = &self.inner;
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
            flushed.map_err(|err| storage(&inner.path, err))?;
            inner.flushed.fetch_max(target, Ordering::SeqCst);
            Ok(())
        })
    }
}
