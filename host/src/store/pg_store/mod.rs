//! The PostgreSQL implementation of [`Store`]: the same trees, keys and
//! transactions as [`super::SledStore`], kept in a database that outlives
//! the machine.
//!
//! - **Layout.** One table per tree (`records`, `index_entries`, `meta`),
//!   each `(key bytea PRIMARY KEY, value bytea)`. `bytea` sorts as sled
//!   does (byte-wise), so every range read of the host is a B-tree range
//!   scan of the primary key. Beside them, the `actions` table (see
//!   [`ACTIONS_TABLE`]) has a row per action with the columns listings
//!   filter and sort by, kept by a trigger on `records`, so that
//!   `GET /v1/actions` filters, sorts and counts on its indexes.
//! - **Client.** `tokio-postgres`, chosen over sqlx because the host reads
//!   and transacts synchronously (a transaction body is a plain closure
//!   that may run again) and `tokio-postgres` separates a connection's
//!   driver from its client: each pooled connection has a single-threaded
//!   runtime of its own, run by whichever thread waits on it, so a round
//!   trip costs no hand-over between threads (that hand-over cost a
//!   quarter of the throughput). Callers on the server's runtime give up
//!   their worker while they wait ([`tokio::task::block_in_place`]). The
//!   build needs no database: queries are prepared at run time.
//! - **Transactions** are `READ COMMITTED` with every read of a present key
//!   taken `FOR UPDATE`, each key read once (later reads answer the same),
//!   and a key read as absent then written is written with a plain
//!   `INSERT`: two transactions that both saw it absent cannot both commit
//!   (the second meets the primary key and runs again). That is strict
//!   two-phase locking over the keys a transaction finds or creates. It is
//!   not serializable for a transaction that reads a key as absent and then
//!   does not write it (two such transactions, each writing the key the
//!   other read as absent, can both commit); the host's transactions write
//!   every key whose absence they check (unique index entries, idempotency
//!   keys, new records), and `SERIALIZABLE` would cost its predicate locks
//!   on every read. Writes are staged and sent pipelined before
//!   `COMMIT`. Serialization failures, deadlocks and those unique
//!   violations run the body again, as sled's conflicts do.
//! - **Durability.** A transaction is acknowledged once PostgreSQL has
//!   committed it (with `synchronous_commit` at its default, `on`, after
//!   the WAL is flushed), so [`Store::flush`] has nothing left to wait for.
//!   [`Store::commit`] groups as sled's does: a committer thread runs the
//!   bodies waiting at once in one transaction with one COMMIT, each
//!   body's writes kept apart until it succeeds.
//! - **Faults.** A lost connection is a [`StoreError::Storage`] (the API
//!   answers 503 `unavailable`); the next use opens a new one, so service
//!   resumes when the database does, without a restart.
//! - **Signals** between replicas (new due work, plugin changes) use
//!   `LISTEN`/`NOTIFY` on one connection of their own ([`listen`]).
//! - **Schema** migrations are versioned in `actionhost_schema` and run
//!   under an advisory lock, so replicas starting together apply each once;
//!   a database with a newer schema than this build is refused.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;

mod listen;
mod pool;
mod schema;
mod tables;
mod tx;

pub use schema::PG_SCHEMA_VERSION;
pub use tables::page_sql;

use pool::{Conn, Pool, blocking};
use schema::migrations;
use tx::{Waiting, committer};

use super::{
    BoxFuture, CommitBody, PageQuery, Result, Store, StoreError, Tree, Tx, TxError, TxErrorKind,
};

/// Connections a store opens at most, by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The advisory lock migrations run under (any fixed number; "actionhost").
const MIGRATION_LOCK: i64 = 0x6163_7469_6f6e_6801;
/// The advisory lock every serving replica holds shared, and `store copy`
/// exclusively.
const SERVING_LOCK: i64 = 0x6163_7469_6f6e_6802;

/// How long a caller waits for a free connection before the store answers
/// that it is unavailable.
const CHECKOUT_WAIT: Duration = Duration::from_secs(30);

/// How often a transaction runs again on conflicts before giving up.
const MAX_ATTEMPTS: usize = 200;

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: tokio_postgres::Config,
    /// `host:port/database`, for messages (never the password).
    target: String,
    pool: Mutex<Pool>,
    freed: Condvar,
    max: usize,
    /// The connection holding [`SERVING_LOCK`], while this process serves
    /// (or copies).
    serving: Mutex<Option<Conn>>,
    /// Commits for the committer thread.
    commits: Mutex<std::sync::mpsc::Sender<Waiting>>,
}

/// What went wrong with one attempt at a database operation.
enum Fault {
    /// A conflict with another transaction: run it again.
    Retry,
    /// The connection is gone: open another (a read may run again at once).
    Gone(tokio_postgres::Error),
    /// Anything else the database said.
    Other(tokio_postgres::Error),
}

fn classify(err: tokio_postgres::Error) -> Fault {
    match err.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::UNIQUE_VIOLATION =>
        {
            Fault::Retry
        }
        // The server shutting down or restarting ends the session.
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW =>
        {
            Fault::Gone(err)
        }
        Some(_) => Fault::Other(err),
        None => Fault::Gone(err),
    }
}

fn table(tree: Tree) -> &'static str {
    match tree {
        Tree::Records => "records",
        Tree::Indexes => "index_entries",
        Tree::Meta => "meta",
    }
}

/// The first key after every key that starts with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `host:port/database` of a connection string, for messages.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{database}")
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// opening at most `pool_size` connections, and checks its schema:
    /// `migrate` brings an older one to this build's, otherwise an older
    /// schema is refused with a pointer to `actionhost migrate`.
    pub fn open(url: &str, pool_size: usize, migrate: bool) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|err| {
            StoreError::Storage(format!(
                "the store setting is not a PostgreSQL connection string (postgres://USER:PASSWORD@HOST:PORT/DATABASE): {err}"
            ))
        })?;
        let unencoded = config.get_hosts().iter().any(
            |host| matches!(host, tokio_postgres::config::Host::Tcp(name) if name.contains('@')),
        );
        if unencoded {
            return Err(StoreError::Storage(
                "the store setting's host part holds an '@': a password with '@' (or ':' or '/') must be percent-encoded (%40 for '@')".into(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A peer that vanishes without closing (a cut cable, a frozen VM)
        // is noticed within seconds rather than hours.
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(20));
        if config.get_application_name().is_none() {
            config.application_name("actionhost");
        }
        let (commits, queue) = std::sync::mpsc::channel();
        let store = Self {
            inner: Arc::new(Inner {
                commits: Mutex::new(commits),
                target: describe(&config),
                config,
                pool: Mutex::new(Pool::default()),
                freed: Condvar::new(),
                max: pool_size.max(1),
                serving: Mutex::new(None),
            }),
        };
        blocking(|| store.check_schema(migrate))?;
        let inner = Arc::downgrade(&store.inner);
        std::thread::Builder::new()
            .name("actionhost-pg-commit".into())
            .spawn(move || committer(inner, queue))
            .map_err(|err| StoreError::Storage(format!("cannot start the committer: {err}")))?;
        Ok(store)
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    fn unavailable(&self, err: &tokio_postgres::Error) -> StoreError {
        StoreError::Storage(self.unavailable_message(err))
    }

    fn unavailable_message(&self, err: &tokio_postgres::Error) -> String {
        // The source says what happened (refused, reset, timed out).
        let cause = std::error::Error::source(err)
            .map(|source| format!("{err}: {source}"))
            .unwrap_or_else(|| err.to_string());
        format!(
            "PostgreSQL at {} is unavailable: {cause}",
            self.inner.target
        )
    }

    fn failed(&self, err: &tokio_postgres::Error) -> StoreError {
        // A database error's own text is only "db error"; its source says
        // what the server answered.
        let cause = std::error::Error::source(err)
            .map(|source| source.to_string())
            .unwrap_or_else(|| err.to_string());
        StoreError::Storage(format!("PostgreSQL at {}: {cause}", self.inner.target))
    }

    /// Brings the schema to [`PG_SCHEMA_VERSION`] under the migration lock
    /// (or, without `migrate`, only checks it); returns the version found.
    fn check_schema(&self, migrate: bool) -> Result<i32> {
        let mut lease = self.checkout()?;
        let conn = lease.conn();
        let run = || -> std::result::Result<std::result::Result<i32, StoreError>, tokio_postgres::Error> {
            // The lock first: two processes creating the table at once
            // would collide in the catalog.
            conn.wait(conn.client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]))?;
            conn.wait(conn.client.batch_execute(
                "CREATE TABLE IF NOT EXISTS actionhost_schema (
                     version integer PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            ))?;
            let found: i32 = conn.wait(conn.client.query_one(
                "SELECT coalesce(max(version), 0) FROM actionhost_schema",
                &[],
            ))?
            .get(0);
            let outcome = if found > PG_SCHEMA_VERSION {
                Err(StoreError::TooNew {
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                    supported: PG_SCHEMA_VERSION as u32,
                })
            } else if found < PG_SCHEMA_VERSION && !migrate {
                Err(StoreError::Storage(format!(
                    "the database {} has schema version {found}, older than this build's {PG_SCHEMA_VERSION}, and migrations at start-up are switched off (store_migrate = false): run `actionhost migrate` first",
                    self.inner.target
                )))
            } else {
                for (n, sql) in migrations().iter().enumerate().skip(found as usize) {
                    let version = n as i32 + 1;
                    conn.wait(conn.client.batch_execute("BEGIN"))?;
                    conn.wait(conn.client.batch_execute(sql))?;
                    conn.wait(conn.client.execute(
                        "INSERT INTO actionhost_schema (version) VALUES ($1)",
                        &[&version],
                    ))?;
                    conn.wait(conn.client.batch_execute("COMMIT"))?;
                    tracing::info!(version, target = %self.inner.target, "migrated the PostgreSQL schema");
                }
                Ok(found)
            };
            conn.wait(conn.client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]))?;
            Ok(outcome)
        };
        match run() {
            Ok(outcome) => outcome,
            Err(err) => {
                lease.discard();
                Err(match classify(err) {
                    Fault::Gone(err) => self.unavailable(&err),
                    Fault::Retry => StoreError::Storage("migration conflicted".into()),
                    Fault::Other(err) => self.failed(&err),
                })
            }
        }
    }

    /// Brings the database's schema to this build's; returns the versions
    /// before and after.
    pub fn migrate(&self) -> Result<(i32, i32)> {
        let found = blocking(|| self.check_schema(true))?;
        Ok((found, PG_SCHEMA_VERSION))
    }

    /// Marks this process as one of the replicas serving the database (a
    /// shared hold on [`SERVING_LOCK`]), so that `store copy` refuses while
    /// any replica serves. The mark lasts as long as the store.
    pub fn claim_serving(&self) -> Result<()> {
        self.hold_serving_lock(
            "pg_try_advisory_lock_shared($1)",
            "`actionhost store copy` is filling the database; wait for it to finish",
        )
    }

    /// Holds the database for this process alone (an exclusive hold on
    /// [`SERVING_LOCK`]), refusing while any replica serves it: for
    /// `store copy`.
    pub fn claim_exclusive(&self) -> Result<()> {
        self.hold_serving_lock(
            "pg_try_advisory_lock($1)",
            "an actionhost replica is serving the database; stop every replica first",
        )
    }

    fn hold_serving_lock(&self, lock: &str, held_elsewhere: &str) -> Result<()> {
        blocking(|| {
            let conn = self.connect()?;
            let held: bool = conn
                .wait(
                    conn.client
                        .query_one(&format!("SELECT {lock}"), &[&SERVING_LOCK]),
                )
                .map_err(|err| self.failed(&err))?
                .get(0);
            if !held {
                return Err(StoreError::Storage(format!(
                    "the database {} is in use: {held_elsewhere}",
                    self.inner.target
                )));
            }
            *self.inner.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
            Ok(())
        })
    }
}

impl Store for PgStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let sql = format!("SELECT value FROM {} WHERE key = $1", table(tree));
        self.read(|conn| {
            let statement = conn.statement(&sql)?;
            Ok(conn
                .wait(conn.client.query_opt(&statement, &[&key]))?
                .map(|row| row.get(0)))
        })
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_range_open(
            tree,
            prefix,
            prefix_end(prefix).as_deref(),
            false,
            0,
            usize::MAX,
        )
    }

    fn scan_from(
        &self,
        tree: Tree,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = start.max(prefix);
        self.scan_range_open(tree, start, prefix_end(prefix).as_deref(), false, 0, limit)
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
        if start >= end {
            return Ok(Vec::new());
        }
        self.scan_range_open(tree, start, Some(end), descending, skip, limit)
    }

    fn count_range(&self, tree: Tree, start: &[u8], end: &[u8]) -> Result<usize> {
        if start >= end {
            return Ok(0);
        }
        let sql = format!(
            "SELECT count(*) FROM {} WHERE key >= $1 AND key < $2",
            table(tree)
        );
        self.read(|conn| {
            let statement = conn.statement(&sql)?;
            let count: i64 = conn
                .wait(conn.client.query_one(&statement, &[&start, &end]))?
                .get(0);
            Ok(usize::try_from(count).unwrap_or(0))
        })
    }

    fn transact(&self, body: &dyn Fn(&dyn Tx) -> Result<(), TxError>) -> Result<()> {
        blocking(|| self.run_transaction(body))
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        // Every transaction was durable when it returned.
        Box::pin(async { Ok(()) })
    }

    fn select_page(&self, query: &PageQuery<'_>) -> Option<Result<(Vec<String>, usize)>> {
        self.select(query)
    }

    fn answered_by_tables(&self) -> &'static [&'static str] {
        schema::ANSWERED_BY_TABLES
    }

    fn commit(&self, body: CommitBody) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let gone = || StoreError::Storage("the store's committer has stopped".into());
            let (done, answer) = tokio::sync::oneshot::channel();
            self.inner
                .commits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(Waiting { body, done })
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }
}

impl PgStore {
    fn scan_range_open(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        descending: bool,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let order = if descending { "DESC" } else { "ASC" };
        let name = table(tree);
        let (limit, skip) = (clamp(limit), clamp(skip));
        match end {
            Some(end) => {
                let sql = format!(
                    "SELECT key, value FROM {name} WHERE key >= $1 AND key < $2 \
                     ORDER BY key {order} LIMIT $3 OFFSET $4"
                );
                self.read(|conn| conn.rows(&sql, &[&start, &end, &limit, &skip]))
            }
            None => {
                let sql = format!(
                    "SELECT key, value FROM {name} WHERE key >= $1 \
                     ORDER BY key {order} LIMIT $2 OFFSET $3"
                );
                self.read(|conn| conn.rows(&sql, &[&start, &limit, &skip]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xFF"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xFF\xFF"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn messages_name_the_database_and_never_the_password() {
        let config: tokio_postgres::Config = "postgres://ada:s3cret@db.example:6543/actions"
            .parse()
            .expect("parses");
        assert_eq!(describe(&config), "db.example:6543/actions");
        let err = PgStore::open(
            "postgres://ada:s3cret@db.example:6543/actions?sslmode=bogus",
            1,
            true,
        )
        .err()
        .expect("a bad option is refused");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = PgStore::open("postgres://ada:p@ss@db.example:6543/actions", 1, true)
            .err()
            .expect("an unencoded '@' is refused");
        assert!(err.to_string().contains("percent-encoded"), "{err}");
        assert!(!err.to_string().contains("ss@db"), "{err}");
    }
}
