//! Durable storage: typed records in an embedded key-value store.
//!
//! **Architecture Invariant:** this is the only module that imports `sled`.
//! The rest of the host sees [`Store`] (bytes in named trees, transactions,
//! durability) and [`Records`], the typed layer on top of it.
//!
//! How the pieces are wired:
//!
//! - [`Store`] is the storage trait: `get`, `scan_prefix`, an atomic
//!   [`Store::transact`] over every tree, and [`Store::flush`]. [`SledStore`]
//!   implements it; its flushes are grouped (one `fsync` serves every write
//!   that was acknowledged while the previous one ran), so durability does not
//!   serialize the server.
//! - A [`Record`] is a serde type with a collection name, an id and its index
//!   entries. [`Records::put`] writes the record and replaces its index
//!   entries in one transaction, so an index never points at a missing record
//!   or misses a present one; a unique index refuses a second owner.
//! - The database carries a schema version ([`SCHEMA_VERSION`]); opening an
//!   older one runs the migrations in [`migrate`], a newer one is refused.

#[doc(hidden)]
pub mod conformance;
pub mod copy;
mod pg_store;
pub mod signals;
mod sled_store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use pg_store::{DEFAULT_POOL_SIZE, PG_SCHEMA_VERSION, PgStore, page_sql};
pub use signals::{Signals, Topic};
pub use sled_store::{DEFAULT_CACHE_BYTES, SledStore};

/// The version of the record layout this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The trees (keyspaces) of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Records, keyed `collection/id`.
    Records,
    /// Index entries: `index\0value` → id (unique) or `index\0value\0id` → "" (multi).
    Indexes,
    /// Store metadata such as the schema version.
    Meta,
}

impl Tree {
    fn name(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Indexes => "indexes",
            Self::Meta => "meta",
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying database failed (I/O, corruption, full disk).
    #[error("storage failure: {0}")]
    Storage(String),
    /// A stored record does not decode: the data is from another version or damaged.
    #[error("stored record {key} does not decode: {message}")]
    Corrupt {
        /// Its key.
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// A unique index already names another record.
    #[error("{index} {value:?} already belongs to {owner}")]
    Duplicate {
        /// The index.
        index: &'static str,
        /// The value.
        value: String,
        /// The id of the record holding it.
        owner: String,
    },
    /// The record is not there.
    #[error("{collection} {id} not found")]
    NotFound {
        /// The collection.
        collection: &'static str,
        /// The id.
        id: String,
    },
    /// The database was written by a newer actionhost.
    #[error(
        "the data directory has schema version {found}, newer than this build's {supported}; upgrade actionhost or use another --data-dir"
    )]
    TooNew {
        /// The stored version.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
    /// A precondition of an update failed; the message says which.
    #[error("{0}")]
    Rejected(String),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The inside of a transaction: reads see the transaction's own writes.
pub trait Tx {
    /// Reads a key.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, TxError>;
    /// Reads a key unless another transaction holds it (PostgreSQL's
    /// `SKIP LOCKED`): for claims that pass over what another replica is
    /// claiming. `None` when absent or held; do not write a key that read
    /// `None` so. Where one process owns the store, the same as `get`.
    fn get_unless_locked(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        self.get(tree, key)
    }
    /// Writes a key.
    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), TxError>;
    /// Removes a key.
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), TxError>;
}

/// Why a transaction body stopped: a store error to abort with, or a storage
/// conflict the store resolves by running the body again.
pub struct TxError(pub(crate) TxErrorKind);

pub(crate) enum TxErrorKind {
    Abort(StoreError),
    Storage(sled_store::Unabortable),
    /// A PostgreSQL read failed or conflicted: the store decides whether
    /// to run the body again.
    Retry,
}

impl From<StoreError> for TxError {
    fn from(error: StoreError) -> Self {
        Self(TxErrorKind::Abort(error))
    }
}

/// A boxed future, for the object-safe [`Store`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The body of a [`Store::commit`]: owned, because another thread runs it.
pub type CommitBody = Box<dyn Fn(&dyn Tx) -> Result<(), TxError> + Send + Sync + 'static>;

/// The storage trait: bytes in trees, atomic multi-key transactions, and a
/// durability barrier.
pub trait Store: Send + Sync + 'static {
    /// Reads a key.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every key starting with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// At most `limit` keys starting with `prefix` and not below `start`, in key order.
    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// At most `limit` keys in `[start, end)`, ascending or (with
    /// `descending`) descending, after skipping the first `skip` of them.
    fn scan_range(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        descending: bool,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// How many keys lie in `[start, end)`.
    fn count_range(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<usize>;
    /// Runs `body` atomically; it may run more than once on a conflict.
    fn transact(&self, body: &dyn Fn(&dyn Tx) -> Result<(), TxError>) -> Result<()>;
    /// Resolves once every write made before the call is on disk.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;
    /// Runs `body` atomically and resolves once its writes are on disk: a
    /// [`Store::transact`] and a [`Store::flush`] in one. Concurrent commits
    /// share one transaction and one flush (group commit), each still all or
    /// nothing: a body that fails leaves no write, whatever the others do.
    /// `body` may run more than once on a conflict.
    fn commit(&self, body: CommitBody) -> BoxFuture<'_, Result<()>>;
    /// Why the store refuses every read and write until the process
    /// restarts (a write could not be made durable), if it does.
    fn failure(&self) -> Option<String> {
        None
    }
    /// One page of a tenant's records, and how many match, from a table the
    /// store keeps for their collection with its own indexes (PostgreSQL's
    /// `actions`): the ids in order and the count. `None` where the store
    /// keeps no such table; the caller then reads its index entries.
    fn select_page(&self, query: &PageQuery<'_>) -> Option<Result<(Vec<String>, usize)>> {
        let _ = query;
        None
    }
    /// The indexes whose entries this store does not keep, because a table
    /// of its own answers every read of them ([`Store::select_page`]).
    /// [`Records`] writes no entry of these, and `store copy` copies none.
    fn answered_by_tables(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A page of one tenant's records, for [`Store::select_page`].
#[derive(Debug, Clone)]
pub struct PageQuery<'a> {
    /// The collection, such as `actions`.
    pub collection: &'static str,
    /// The owning tenant.
    pub tenant: &'a str,
    /// Column = value, all of them.
    pub filters: Vec<(&'static str, &'a str)>,
    /// A number column between two bounds, each inclusive and optional.
    pub between: Option<(&'static str, Option<i64>, Option<i64>)>,
    /// The column to sort by, ties in id (creation) order; `None` for the
    /// id order alone. Absent values sort first.
    pub sort: Option<&'static str>,
    /// Descending instead of ascending.
    pub descending: bool,
    /// Rows skipped.
    pub skip: usize,
    /// Rows at most.
    pub limit: usize,
    /// Whether to count every matching row (else the count is 0).
    pub count: bool,
}

/// One index entry of a record.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The index name, such as `accounts_by_entity`.
    pub index: &'static str,
    /// The indexed value (several parts joined by `\0`).
    pub value: String,
    /// Whether a value may belong to one record only.
    pub unique: bool,
}

impl IndexEntry {
    /// A unique entry.
    pub fn unique(index: &'static str, value: impl Into<String>) -> Self {
        Self {
            index,
            value: value.into(),
            unique: true,
        }
    }

    /// An entry several records may share.
    pub fn multi(index: &'static str, value: impl Into<String>) -> Self {
        Self {
            index,
            value: value.into(),
            unique: false,
        }
    }

    fn key(&self, id: &str) -> Vec<u8> {
        let mut key = format!("{}\0{}", self.index, self.value).into_bytes();
        if !self.unique {
            key.push(0);
            key.extend_from_slice(id.as_bytes());
        }
        key
    }
}

/// A typed record kept in the store.
pub trait Record: Serialize + DeserializeOwned + Send + Sync {
    /// The collection name, such as `accounts`.
    const COLLECTION: &'static str;
    /// The record's id, unique in its collection.
    fn id(&self) -> &str;
    /// Its index entries.
    fn indexes(&self) -> Vec<IndexEntry> {
        Vec::new()
    }
}

fn record_key(collection: &str, id: &str) -> Vec<u8> {
    format!("{collection}/{id}").into_bytes()
}

fn decode<R: Record>(key: &[u8], bytes: &[u8]) -> Result<R> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: err.to_string(),
    })
}

fn encode<R: Record>(record: &R) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|err| StoreError::Storage(format!("encoding: {err}")))
}

/// The typed layer: records and their indexes, kept consistent.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl Records {
    /// Typed access to `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// See [`Store::select_page`].
    pub fn select_page(&self, query: &PageQuery<'_>) -> Option<Result<(Vec<String>, usize)>> {
        self.store.select_page(query)
    }

    /// See [`Store::failure`].
    pub fn store_failure(&self) -> Option<String> {
        self.store.failure()
    }

    /// The record with this id.
    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>> {
        let key = record_key(R::COLLECTION, id);
        match self.store.get(Tree::Records, &key)? {
            Some(bytes) => decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The id a unique index holds for `value`.
    pub fn find_unique(&self, index: &'static str, value: &str) -> Result<Option<String>> {
        let key = IndexEntry::unique(index, value).key("");
        Ok(self
            .store
            .get(Tree::Indexes, &key)?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// The record a unique index names for `value`.
    pub fn get_by<R: Record>(&self, index: &'static str, value: &str) -> Result<Option<R>> {
        match self.find_unique(index, value)? {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    /// The records a multi index holds under `value`, in id order.
    pub fn list_by<R: Record>(&self, index: &'static str, value: &str) -> Result<Vec<R>> {
        let prefix = IndexEntry::multi(index, value).key("");
        let mut records = Vec::new();
        for (key, _) in self.store.scan_prefix(Tree::Indexes, &prefix)? {
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(record) = self.get::<R>(&id)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Every record of a collection, in id order: for the small ones.
    pub fn list_all<R: Record>(&self) -> Result<Vec<R>> {
        let prefix = record_key(R::COLLECTION, "");
        self.store
            .scan_prefix(Tree::Records, &prefix)?
            .iter()
            .map(|(key, bytes)| decode(key, bytes))
            .collect()
    }

    /// At most `limit` ids of a collection after `after` (from the first
    /// without it), in id order: for walking a large collection in pages.
    pub fn ids_after<R: Record>(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let prefix = record_key(R::COLLECTION, "");
        let start = match after {
            // The first key after `after`'s: its key with a zero byte added.
            Some(id) => {
                let mut key = record_key(R::COLLECTION, id);
                key.push(0);
                key
            }
            None => prefix.clone(),
        };
        Ok(self
            .store
            .scan_from(Tree::Records, &prefix, &start, limit)?
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect())
    }

    /// The ids a multi index holds under `value`, in id order.
    pub fn ids_by(&self, index: &'static str, value: &str) -> Result<Vec<String>> {
        let prefix = IndexEntry::multi(index, value).key("");
        Ok(self
            .store
            .scan_prefix(Tree::Indexes, &prefix)?
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect())
    }

    /// The first `limit` entries of a multi index whose value is not below
    /// `from`, in (value, id) order: `(value, id)` pairs. Values must not
    /// contain `\0` for the split to be exact; ordered indexes (such as due
    /// times) use fixed-width values.
    pub fn scan_index(
        &self,
        index: &'static str,
        from: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let prefix = format!("{index}\0").into_bytes();
        let start = format!("{index}\0{from}").into_bytes();
        Ok(self
            .store
            .scan_from(Tree::Indexes, &prefix, &start, limit)?
            .into_iter()
            .filter_map(|(key, _)| {
                let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let (value, id) = rest.rsplit_once('\0')?;
                Some((value.to_owned(), id.to_owned()))
            })
            .collect())
    }

    /// Entries of a multi index whose value starts with `prefix`, in
    /// (value, id) order or its reverse: `(value, id)` pairs, `skip` of them
    /// skipped, at most `limit`. `lower` (inclusive) and `upper` (exclusive)
    /// bound what follows the prefix, such as zero-padded times: an index
    /// valued `TENANT\0MS` read with prefix `TENANT\0` and bounds on `MS` is a
    /// time range. Values must not contain `\0` after the prefix for the
    /// split to be exact.
    #[allow(clippy::too_many_arguments)]
    pub fn index_range(
        &self,
        index: &'static str,
        prefix: &str,
        lower: Option<&str>,
        upper: Option<&str>,
        descending: bool,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(String, String)>> {
        let (start, end) = index_bounds(index, prefix, lower, upper);
        let head = format!("{index}\0").len();
        Ok(self
            .store
            .scan_range(Tree::Indexes, &start, &end, descending, skip, limit)?
            .into_iter()
            .filter_map(|(key, _)| {
                let rest = String::from_utf8_lossy(key.get(head..)?).into_owned();
                let (value, id) = rest.rsplit_once('\0')?;
                Some((value.to_owned(), id.to_owned()))
            })
            .collect())
    }

    /// How many entries [`Records::index_range`] would walk with no limit.
    pub fn index_count(
        &self,
        index: &'static str,
        prefix: &str,
        lower: Option<&str>,
        upper: Option<&str>,
    ) -> Result<usize> {
        let (start, end) = index_bounds(index, prefix, lower, upper);
        self.store.count_range(Tree::Indexes, &start, &end)
    }

    /// Removes the records of type `R` that a multi index lists under
    /// `prefix` (below `upper`), in durable writes of at most `batch`, so a
    /// long removal never holds the store for long; returns how many.
    pub async fn remove_listed<R: Record + 'static>(
        &self,
        index: &'static str,
        prefix: &str,
        upper: Option<&str>,
        batch: usize,
    ) -> Result<usize> {
        let mut removed = 0;
        loop {
            let ids: Vec<String> = self
                .index_range(index, prefix, None, upper, false, 0, batch)?
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            if ids.is_empty() {
                return Ok(removed);
            }
            removed += ids.len();
            self.commit(move |tx| {
                for id in &ids {
                    tx.remove::<R>(id)?;
                }
                Ok(())
            })
            .await?;
            // Serving shares the store: let waiting requests in.
            tokio::task::yield_now().await;
        }
    }

    /// Runs `body` as one atomic transaction over any records. `body` may run
    /// more than once on a conflict, so it must not have side effects outside
    /// the transaction. A domain-level refusal is best returned as
    /// `Ok(Err(..))` *before* any write, which commits nothing.
    pub fn transaction<T>(&self, body: impl Fn(&RecordTx<'_>) -> Result<T, TxError>) -> Result<T> {
        let result = std::sync::Mutex::new(None);
        let skipped = self.store.answered_by_tables();
        self.store.transact(&|tx| {
            let value = body(&RecordTx { tx, skipped })?;
            *result.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
            Ok(())
        })?;
        result
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .ok_or_else(|| StoreError::Storage("transaction ended without a result".into()))
    }

    /// Writes a new record; fails if its id or a unique index value is taken.
    pub fn insert<R: Record>(&self, record: &R) -> Result<()> {
        self.write(record, true)
    }

    /// Writes a record, replacing the stored one and its index entries.
    pub fn put<R: Record>(&self, record: &R) -> Result<()> {
        self.write(record, false)
    }

    /// Reads, changes and writes a record atomically. `change` may run more
    /// than once; it returns `Err` to leave the record as it is.
    pub fn update<R: Record>(&self, id: &str, change: impl Fn(&mut R) -> Result<()>) -> Result<R> {
        self.transaction(|tx| {
            let mut record = tx.get::<R>(id)?.ok_or_else(|| StoreError::NotFound {
                collection: R::COLLECTION,
                id: id.to_owned(),
            })?;
            change(&mut record)?;
            tx.put(&record)?;
            Ok(record)
        })
    }

    fn write<R: Record>(&self, record: &R, must_be_new: bool) -> Result<()> {
        self.transaction(|tx| {
            if must_be_new {
                tx.insert(record)
            } else {
                tx.put(record)
            }
        })
    }

    /// Removes a record and its index entries.
    pub fn remove<R: Record>(&self, id: &str) -> Result<Option<R>> {
        self.transaction(|tx| tx.remove::<R>(id))
    }

    /// [`Records::transaction`] and [`Records::durable`] in one: runs `body`
    /// atomically and returns once its writes are on disk. Concurrent commits
    /// are grouped into one transaction and one flush, which is what makes
    /// the hot write paths (creating an action, recording an execution)
    /// cheap; each body still commits all or nothing on its own. `body` may
    /// run more than once, on another thread, so it owns what it uses.
    pub async fn commit<T: Send + 'static>(
        &self,
        body: impl Fn(&RecordTx<'_>) -> Result<T, TxError> + Send + Sync + 'static,
    ) -> Result<T> {
        let result = Arc::new(std::sync::Mutex::new(None));
        let slot = Arc::clone(&result);
        let skipped = self.store.answered_by_tables();
        self.store
            .commit(Box::new(move |tx| {
                let value = body(&RecordTx { tx, skipped })?;
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                Ok(())
            }))
            .await?;
        let value = result.lock().unwrap_or_else(|e| e.into_inner()).take();
        value.ok_or_else(|| StoreError::Storage("commit ended without a result".into()))
    }

    /// Writes a record over the stored one and returns once it is on disk,
    /// grouped with concurrent commits (see [`Records::commit`]).
    pub async fn put_durably<R: Record + 'static>(&self, record: R) -> Result<()> {
        self.commit(move |tx| tx.put(&record)).await
    }

    /// Resolves once every write made so far is on disk.
    pub async fn durable(&self) -> Result<()> {
        self.store.flush().await
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.store.get(Tree::Meta, key.as_bytes())
    }

    /// Sets a metadata value.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.store
            .transact(&|tx| tx.insert(Tree::Meta, key.as_bytes(), value))
    }

    /// Sets a metadata value unless one is there already, in one
    /// transaction (of replicas starting at once, one sets it); returns the
    /// value now stored.
    pub fn set_meta_once(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        self.store.transact(&|tx| {
            if tx.get(Tree::Meta, key.as_bytes())?.is_none() {
                tx.insert(Tree::Meta, key.as_bytes(), value)?;
            }
            Ok(())
        })?;
        self.meta(key)?
            .ok_or_else(|| StoreError::Storage(format!("the metadata value {key} was not kept")))
    }
}

/// The key range of an index's values under `prefix`, bounded by `lower`
/// and `upper`. Without `upper` the range ends after every value starting
/// with the prefix (`0xFF` follows any UTF-8 byte).
fn index_bounds(
    index: &str,
    prefix: &str,
    lower: Option<&str>,
    upper: Option<&str>,
) -> (Vec<u8>, Vec<u8>) {
    let base = format!("{index}\0{prefix}");
    let start = format!("{base}{}", lower.unwrap_or_default()).into_bytes();
    let end = match upper {
        Some(upper) => format!("{base}{upper}").into_bytes(),
        None => {
            let mut end = base.into_bytes();
            end.push(0xFF);
            end
        }
    };
    (start, end)
}

/// Typed records inside [`Records::transaction`].
pub struct RecordTx<'a> {
    tx: &'a dyn Tx,
    /// The store's [`Store::answered_by_tables`].
    skipped: &'static [&'static str],
}

impl RecordTx<'_> {
    /// The record with this id, as the transaction sees it.
    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>, TxError> {
        let key = record_key(R::COLLECTION, id);
        match self.tx.get(Tree::Records, &key)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The record with this id, unless another transaction holds it (see
    /// [`Tx::get_unless_locked`]): `None` when absent or held.
    pub fn get_unless_locked<R: Record>(&self, id: &str) -> Result<Option<R>, TxError> {
        let key = record_key(R::COLLECTION, id);
        match self.tx.get_unless_locked(Tree::Records, &key)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The id a unique index holds for `value`, as the transaction sees it.
    pub fn find_unique(&self, index: &'static str, value: &str) -> Result<Option<String>, TxError> {
        let key = IndexEntry::unique(index, value).key("");
        Ok(self
            .tx
            .get(Tree::Indexes, &key)?
            .map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    /// Writes a new record; fails if its id or a unique index value is taken.
    pub fn insert<R: Record>(&self, record: &R) -> Result<(), TxError> {
        if self
            .tx
            .get(Tree::Records, &record_key(R::COLLECTION, record.id()))?
            .is_some()
        {
            return Err(StoreError::Duplicate {
                index: R::COLLECTION,
                value: record.id().to_owned(),
                owner: record.id().to_owned(),
            }
            .into());
        }
        write_in::<R>(self.tx, self.skipped, None, record)
    }

    /// Writes a record over the stored one, moving its index entries.
    pub fn put<R: Record>(&self, record: &R) -> Result<(), TxError> {
        let old = self.get::<R>(record.id())?;
        write_in(self.tx, self.skipped, old.as_ref(), record)
    }

    /// Removes a record and its index entries.
    pub fn remove<R: Record>(&self, id: &str) -> Result<Option<R>, TxError> {
        let Some(old) = self.get::<R>(id)? else {
            return Ok(None);
        };
        for entry in kept(old.indexes(), self.skipped) {
            self.tx.remove(Tree::Indexes, &entry.key(id))?;
        }
        self.tx
            .remove(Tree::Records, &record_key(R::COLLECTION, id))?;
        Ok(Some(old))
    }
}

/// Writes `new` over `old` inside a transaction, moving its index entries.
fn write_in<R: Record>(
    tx: &dyn Tx,
    skipped: &[&str],
    old: Option<&R>,
    new: &R,
) -> Result<(), TxError> {
    let id = new.id();
    let entries: Vec<(Vec<u8>, IndexEntry)> = kept(new.indexes(), skipped)
        .map(|entry| (entry.key(id), entry))
        .collect();
    // An entry both versions have stays as it is: most updates (a status
    // moving on) change one or two entries of many.
    let mut unchanged = std::collections::HashSet::new();
    if let Some(old) = old {
        for entry in kept(old.indexes(), skipped) {
            let key = entry.key(id);
            if entries.iter().any(|(new_key, _)| *new_key == key) {
                unchanged.insert(key);
            } else {
                tx.remove(Tree::Indexes, &key)?;
            }
        }
    }
    for (key, entry) in entries {
        if unchanged.contains(&key) {
            continue;
        }
        if entry.unique
            && let Some(owner) = tx.get(Tree::Indexes, &key)?
            && owner != id.as_bytes()
        {
            return Err(StoreError::Duplicate {
                index: entry.index,
                value: entry.value.clone(),
                owner: String::from_utf8_lossy(&owner).into_owned(),
            }
            .into());
        }
        let value: &[u8] = if entry.unique { id.as_bytes() } else { b"" };
        tx.insert(Tree::Indexes, &key, value)?;
    }
    tx.insert(Tree::Records, &record_key(R::COLLECTION, id), &encode(new)?)
}

/// The index entries a store keeps: all but those of `skipped`.
fn kept(entries: Vec<IndexEntry>, skipped: &[&str]) -> impl Iterator<Item = IndexEntry> {
    entries
        .into_iter()
        .filter(move |entry| !skipped.contains(&entry.index))
}

/// Brings a database to [`SCHEMA_VERSION`]: the migration hook. Each step
/// upgrades one version inside the store; a newer database is refused.
pub fn migrate(records: &Records) -> Result<u32> {
    let found = match records.meta("schema_version")? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            text.parse::<u32>().map_err(|_| StoreError::Corrupt {
                key: "meta/schema_version".into(),
                message: format!("{text:?} is not a version number"),
            })?
        }
        None => 0,
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let mut version = found;
    while version < SCHEMA_VERSION {
        // Version 0 is an empty database: nothing to convert. Later versions
        // add their conversion here, one arm per step.
        version += 1;
        tracing::info!(version, "migrated the store");
    }
    if version != found {
        records.set_meta("schema_version", version.to_string().as_bytes())?;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::conformance;
    use super::*;

    fn records() -> (tempfile::TempDir, Records) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        (dir, Records::new(Arc::new(store)))
    }

    #[test]
    fn indexes_follow_their_records() {
        conformance::indexes_follow_their_records(&records().1);
    }

    #[test]
    fn index_ranges_read_both_ways_with_bounds_skip_and_count() {
        conformance::index_ranges_read_both_ways_with_bounds_skip_and_count(&records().1);
    }

    #[test]
    fn a_unique_value_has_one_owner_and_a_failed_write_leaves_nothing() {
        conformance::a_unique_value_has_one_owner_and_a_failed_write_leaves_nothing(&records().1);
    }

    #[tokio::test]
    async fn concurrent_commits_each_land_or_leave_nothing() {
        conformance::concurrent_commits_each_land_or_leave_nothing(&records().1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_updates_lose_nothing_and_one_claim_wins() {
        conformance::racing_updates_lose_nothing_and_one_claim_wins(&records().1).await;
    }

    #[tokio::test]
    async fn removals_in_batches_take_what_is_listed() {
        conformance::removals_in_batches_take_what_is_listed(&records().1).await;
    }

    #[tokio::test]
    async fn a_committed_write_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Dropping a store joins its committer and closes the database.
        conformance::a_committed_write_survives_reopening(|| {
            Records::new(Arc::new(SledStore::open(dir.path()).expect("open")))
        })
        .await;
    }

    #[tokio::test]
    async fn schema_version_is_stored_and_a_newer_one_refused() {
        conformance::schema_version_is_stored_and_a_newer_one_refused(&records().1).await;
    }

    #[test]
    fn an_older_copy_of_the_database_is_refused_until_its_marker_is_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let copy_dir = |from: &std::path::Path, to: &std::path::Path| {
            std::fs::create_dir_all(to).expect("mkdir");
            for entry in std::fs::read_dir(from).expect("read dir") {
                let entry = entry.expect("entry");
                if entry.file_type().expect("type").is_file() {
                    std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
                }
            }
        };
        let old = tempfile::tempdir().expect("temp dir");
        {
            let store = SledStore::open(dir.path()).expect("open");
            store.flush_blocking().expect("close");
        }
        copy_dir(&dir.path().join("db"), old.path());
        // Opened and closed cleanly twice more: the marker moves on.
        for _ in 0..2 {
            let store = SledStore::open(dir.path()).expect("reopen");
            store.flush_blocking().expect("close");
        }
        // The older copy put back in place is not served as if it were whole.
        std::fs::remove_dir_all(dir.path().join("db")).expect("remove");
        copy_dir(old.path(), &dir.path().join("db"));
        let err = SledStore::open(dir.path())
            .err()
            .expect("an older database is refused");
        assert!(err.to_string().contains("is incomplete"), "{err}");
        std::fs::remove_file(dir.path().join("db.generation")).expect("remove marker");
        SledStore::open(dir.path()).expect("opens without the marker");
    }
}
