//! The PostgreSQL implementation of [`Store`]: the same trees, keys and
//! transactions as [`super::SledStore`], kept in a database that outlives
//! the machine.
//!
//! - **Layout.** One table per tree (`records`, `index_entries`, `meta`),
//!   each `(key bytea PRIMARY KEY, value bytea)`. `bytea` sorts as sled
//!   does (byte-wise), so every range read of the host is a B-tree range
//!   scan of the primary key.
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
//! - **Schema** migrations are versioned in `actionhost_schema` and run
//!   under an advisory lock, so replicas starting together apply each once;
//!   a database with a newer schema than this build is refused.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::{BoxFuture, CommitBody, Result, Store, StoreError, Tree, Tx, TxError, TxErrorKind};

/// Connections a store opens at most, by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The PostgreSQL schema, one migration per version, in order: version N is
/// `MIGRATIONS[N - 1]`. Never edit a released migration; add one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE records (key bytea PRIMARY KEY, value bytea NOT NULL);
     CREATE TABLE index_entries (key bytea PRIMARY KEY, value bytea NOT NULL);
     CREATE TABLE meta (key bytea PRIMARY KEY, value bytea NOT NULL);",
];

/// The version of the PostgreSQL schema this build writes.
pub const PG_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock migrations run under (any fixed number; "actionhost").
const MIGRATION_LOCK: i64 = 0x6163_7469_6f6e_6801;
/// The advisory lock the serving process holds, one per database.
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
    /// The connection holding [`SERVING_LOCK`], while this process serves.
    serving: Mutex<Option<Conn>>,
    /// Commits for the committer thread.
    commits: Mutex<std::sync::mpsc::Sender<Waiting>>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    open: usize,
}

/// One connection, with the single-threaded runtime that drives it: whoever
/// holds the connection runs its I/O on their own thread while they wait,
/// so a round trip costs no hand-over between threads.
struct Conn {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // A connection may be dropped on an async thread, where
            // dropping a runtime the usual way would block.
            runtime.shutdown_background();
        }
    }
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

/// Runs `f`, which blocks on the database, without starving the async
/// runtime it may be called from. A single-threaded async runtime cannot
/// lend its thread, and is refused.
fn blocking<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Err(_) => f(),
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => Err(StoreError::Storage(
            "the PostgreSQL store was called from a single-threaded async runtime; it needs a multi-thread one".into(),
        )),
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

    fn connect(&self) -> Result<Conn> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| {
                StoreError::Storage(format!("cannot start a PostgreSQL connection: {err}"))
            })?;
        let (client, connection) = runtime
            .block_on(self.inner.config.connect(NoTls))
            .map_err(|err| self.unavailable(&err))?;
        let target = self.inner.target.clone();
        runtime.spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(target = %target, %err, "a PostgreSQL connection ended");
            }
        });
        Ok(Conn {
            runtime: Some(runtime),
            client,
            statements: RefCell::default(),
        })
    }

    /// A connection from the pool, or a new one while fewer than the
    /// maximum are open.
    fn checkout(&self) -> Result<Lease<'_>> {
        let inner = &self.inner;
        let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = pool.idle.pop() {
                if conn.client.is_closed() {
                    pool.open -= 1;
                    continue;
                }
                return Ok(Lease {
                    store: self,
                    conn: Some(conn),
                });
            }
            if pool.open < inner.max {
                pool.open += 1;
                drop(pool);
                return match self.connect() {
                    Ok(conn) => Ok(Lease {
                        store: self,
                        conn: Some(conn),
                    }),
                    Err(err) => {
                        inner.pool.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
                        inner.freed.notify_one();
                        Err(err)
                    }
                };
            }
            let (guard, timeout) = inner
                .freed
                .wait_timeout(pool, CHECKOUT_WAIT)
                .unwrap_or_else(|e| e.into_inner());
            pool = guard;
            if timeout.timed_out() && pool.idle.is_empty() && pool.open >= inner.max {
                return Err(StoreError::Storage(format!(
                    "all {} connections to PostgreSQL at {} stayed busy for {}s",
                    inner.max,
                    inner.target,
                    CHECKOUT_WAIT.as_secs()
                )));
            }
        }
    }

    /// Runs a read on a pooled connection; a connection found dead is
    /// replaced and the read tried once more.
    fn read<T>(
        &self,
        f: impl Fn(&Conn) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        blocking(|| {
            let mut last = None;
            for _ in 0..2 {
                let mut lease = self.checkout()?;
                match f(lease.conn()) {
                    Ok(value) => return Ok(value),
                    Err(err) => match classify(err) {
                        Fault::Gone(err) => {
                            lease.discard_all();
                            last = Some(self.unavailable(&err));
                        }
                        Fault::Retry => {
                            last = Some(StoreError::Storage("a read conflicted".into()))
                        }
                        Fault::Other(err) => return Err(self.failed(&err)),
                    },
                }
            }
            Err(last.unwrap_or_else(|| StoreError::Storage("no connection".into())))
        })
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
                for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
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

    /// Marks this process as the one serving the database, refusing if
    /// another process does: this build runs one serving replica per
    /// database. The mark lasts as long as the store.
    pub fn claim_serving(&self) -> Result<()> {
        blocking(|| {
            let conn = self.connect()?;
            let held: bool = conn
                .wait(
                    conn.client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&SERVING_LOCK]),
                )
                .map_err(|err| self.failed(&err))?
                .get(0);
            if !held {
                return Err(StoreError::Storage(format!(
                    "another actionhost is serving the database {}: this version runs one serving replica per database; stop the other one first",
                    self.inner.target
                )));
            }
            *self.inner.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
            Ok(())
        })
    }

    /// Runs `body` in one transaction; see the module docs.
    fn run_transaction(&self, body: &dyn Fn(&dyn Tx) -> Result<(), TxError>) -> Result<()> {
        let mut gone = 0;
        for attempt in 0..MAX_ATTEMPTS {
            let mut lease = self.checkout()?;
            match self.attempt(lease.conn(), body) {
                Ok(()) => return Ok(()),
                Err(Attempt::Abort(err)) => return Err(err),
                Err(Attempt::Retry) => {
                    // Let the other transaction finish.
                    std::thread::sleep(Duration::from_micros(50 * (attempt as u64 + 1).min(40)));
                }
                Err(Attempt::Gone { err, committing }) => {
                    lease.discard_all();
                    gone += 1;
                    // A connection that died before COMMIT was sent lost
                    // nothing: try once more on a new one. After COMMIT the
                    // outcome is unknown; the caller must see the failure.
                    if committing || gone > 1 {
                        return Err(self.unavailable(&err));
                    }
                }
                Err(Attempt::Failed(err)) => {
                    lease.discard();
                    return Err(self.failed(&err));
                }
            }
        }
        Err(StoreError::Storage(format!(
            "a transaction conflicted {MAX_ATTEMPTS} times in a row"
        )))
    }

    fn attempt(
        &self,
        conn: &Conn,
        body: &dyn Fn(&dyn Tx) -> Result<(), TxError>,
    ) -> std::result::Result<(), Attempt> {
        let fault = |err: tokio_postgres::Error, committing: bool| match classify(err) {
            Fault::Retry => Attempt::Retry,
            Fault::Gone(err) => Attempt::Gone { err, committing },
            Fault::Other(err) => Attempt::Failed(err),
        };
        // BEGIN goes out with the first statement, and COMMIT with the
        // writes: a transaction that reads once and writes is two round
        // trips.
        let shared = Shared::new(conn);
        let tx = PgTx::new(&shared);
        let outcome = body(&tx);
        let rollback = |attempt: Attempt| {
            shared.rollback();
            Err(attempt)
        };
        if let Some(err) = shared.fault.borrow_mut().take() {
            return rollback(fault(err, false));
        }
        match outcome {
            Ok(()) => {}
            Err(TxError(TxErrorKind::Abort(err))) => return rollback(Attempt::Abort(err)),
            Err(TxError(TxErrorKind::Retry)) => return rollback(Attempt::Retry),
            Err(TxError(TxErrorKind::Storage(_))) => {
                return rollback(Attempt::Abort(StoreError::Storage(
                    "a sled conflict in a PostgreSQL transaction".into(),
                )));
            }
        }
        tx.accept();
        match shared.apply_and_commit() {
            Ok(()) => Ok(()),
            // COMMIT went out with the writes: once the connection is
            // lost, whether it was applied is unknown.
            Err(err) => rollback(fault(err, true)),
        }
    }

    /// Runs concurrent commits' bodies in one transaction with one COMMIT
    /// (one WAL flush), each body's writes kept apart until it succeeds, so
    /// a body that fails leaves nothing and the others go on. Whatever makes
    /// the shared transaction fail (a conflict, a lost connection before
    /// COMMIT) runs each body again in a transaction of its own.
    fn commit_batch(&self, batch: Vec<Waiting>) {
        let outcomes = if batch.len() == 1 {
            vec![None]
        } else {
            self.try_batch(&batch)
        };
        for (waiting, outcome) in batch.into_iter().zip(outcomes) {
            let outcome = match outcome {
                Some(outcome) => outcome,
                None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.run_transaction(&*waiting.body)
                }))
                .unwrap_or_else(|_| Err(panicked())),
            };
            let _ = waiting.done.send(outcome);
        }
    }

    /// The shared transaction of [`Self::commit_batch`]: each body's
    /// outcome, or `None` for every body when it must run alone.
    fn try_batch(&self, batch: &[Waiting]) -> Vec<Option<Result<()>>> {
        let alone = || batch.iter().map(|_| None).collect();
        let Ok(mut lease) = self.checkout() else {
            return alone();
        };
        let conn = lease.conn();
        let shared = Shared::new(conn);
        let mut outcomes = Vec::with_capacity(batch.len());
        for waiting in batch {
            let tx = PgTx::new(&shared);
            let ran =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (waiting.body)(&tx)));
            if shared.fault.borrow().is_some() {
                // The shared transaction is aborted.
                drop(tx);
                shared.rollback();
                if let Some(Fault::Gone(_)) = shared.fault.borrow_mut().take().map(classify) {
                    lease.discard_all();
                }
                return alone();
            }
            outcomes.push(Some(match ran {
                Ok(Ok(())) => {
                    tx.accept();
                    Ok(())
                }
                Ok(Err(TxError(TxErrorKind::Abort(err)))) => Err(err),
                Ok(Err(_)) => {
                    drop(tx);
                    shared.rollback();
                    return alone();
                }
                Err(_) => Err(panicked()),
            }));
        }
        match shared.apply_and_commit() {
            Ok(()) => outcomes,
            Err(err) => match classify(err) {
                // Nothing of the batch was written: each body alone.
                Fault::Retry => alone(),
                Fault::Gone(err) => {
                    lease.discard_all();
                    let unknown = self.unavailable_message(&err);
                    outcomes
                        .into_iter()
                        .map(|outcome| match outcome {
                            Some(Ok(())) => Some(Err(StoreError::Storage(unknown.clone()))),
                            other => other,
                        })
                        .collect()
                }
                // COMMIT after a failed write is a rollback, and a failed
                // COMMIT writes nothing: run each body alone, so only the
                // one at fault fails.
                Fault::Other(_) => alone(),
            },
        }
    }
}

fn panicked() -> StoreError {
    StoreError::Storage("a transaction body panicked; nothing of it was written".into())
}

/// A commit waiting for the committer.
struct Waiting {
    body: CommitBody,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Bodies one shared transaction takes at most.
const MAX_BATCH: usize = 128;

/// The committer's loop: takes every commit waiting, runs them as one batch.
fn committer(inner: std::sync::Weak<Inner>, queue: std::sync::mpsc::Receiver<Waiting>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(waiting) => batch.push(waiting),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        PgStore { inner }.commit_batch(batch);
    }
}

enum Attempt {
    Abort(StoreError),
    Retry,
    Gone {
        err: tokio_postgres::Error,
        committing: bool,
    },
    Failed(tokio_postgres::Error),
}

/// A pooled connection, returned to the pool when dropped (or closed, if
/// it failed or a panic unwinds through it mid-transaction).
struct Lease<'a> {
    store: &'a PgStore,
    conn: Option<Conn>,
}

impl Lease<'_> {
    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }

    fn discard(&mut self) {
        if self.conn.take().is_some() {
            let inner = &self.store.inner;
            inner.pool.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
            inner.freed.notify_one();
        }
    }

    /// The connection is gone, and the idle ones most likely with it (the
    /// server restarted): close them all, so the next uses connect afresh
    /// rather than each meeting a dead connection first. (An idle
    /// connection's runtime is not driven, so it cannot notice by itself.)
    fn discard_all(&mut self) {
        self.discard();
        let inner = &self.store.inner;
        let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
        let idle = std::mem::take(&mut pool.idle);
        pool.open -= idle.len();
        drop(pool);
        drop(idle);
        inner.freed.notify_all();
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.discard();
            return;
        }
        if let Some(conn) = self.conn.take() {
            let inner = &self.store.inner;
            let mut pool = inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            if conn.client.is_closed() {
                pool.open -= 1;
            } else {
                pool.idle.push(conn);
            }
            drop(pool);
            inner.freed.notify_one();
        }
    }
}

impl Conn {
    /// Waits for `future`, driving this connection meanwhile.
    fn wait<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("a connection keeps its runtime until dropped")
            .block_on(future)
    }

    /// The prepared statement for `sql`, prepared once per connection.
    fn statement(&self, sql: &str) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.wait(self.client.prepare(sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Pairs, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        Ok(self
            .wait(self.client.query(&statement, params))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }
}

/// Per tree, keys and their new values (`None`: removed).
type Staged = [BTreeMap<Vec<u8>, Option<Vec<u8>>>; 3];
/// Per tree, keys and what a read found.
type Seen = [HashMap<Vec<u8>, Option<Vec<u8>>>; 3];
/// Key-value pairs.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A transaction in progress on one connection, for one body or a batch
/// of them: reads go to the database (locking what they find), and the
/// writes of the bodies that succeeded wait in `staged` until COMMIT.
struct Shared<'a> {
    conn: &'a Conn,
    /// Whether BEGIN was sent.
    begun: Cell<bool>,
    staged: RefCell<Staged>,
    /// What this transaction's reads found: later reads of a key answer
    /// the same (present keys are locked; an absent one that appears in
    /// the meantime makes the commit's `INSERT` fail and the body run again).
    seen: RefCell<Seen>,
    /// The first database error of the reads; the transaction is aborted.
    fault: RefCell<Option<tokio_postgres::Error>>,
}

/// One body's view: its own writes over the shared transaction's.
struct PgTx<'a> {
    shared: &'a Shared<'a>,
    staged: RefCell<Staged>,
}

impl<'a> PgTx<'a> {
    fn new(shared: &'a Shared<'a>) -> Self {
        Self {
            shared,
            staged: RefCell::default(),
        }
    }

    /// The body succeeded: its writes join the transaction's.
    fn accept(self) {
        let mut shared = self.shared.staged.borrow_mut();
        for (tree, writes) in self.staged.into_inner().into_iter().enumerate() {
            shared[tree].extend(writes);
        }
    }
}

fn slot(tree: Tree) -> usize {
    match tree {
        Tree::Records => 0,
        Tree::Indexes => 1,
        Tree::Meta => 2,
    }
}

const TREES: [Tree; 3] = [Tree::Records, Tree::Indexes, Tree::Meta];

impl<'a> Shared<'a> {
    fn new(conn: &'a Conn) -> Self {
        Self {
            conn,
            begun: Cell::new(false),
            staged: RefCell::default(),
            seen: RefCell::default(),
            fault: RefCell::new(None),
        }
    }

    /// Ends the transaction without writing.
    fn rollback(&self) {
        if self.begun.replace(false) {
            // A failed ROLLBACK leaves the connection useless; the next
            // statement on it fails and it is replaced then.
            let _ = self.conn.wait(self.conn.client.batch_execute("ROLLBACK"));
        }
    }

    /// Sends the staged writes and COMMIT, pipelined (with BEGIN first if
    /// no read sent it). A transaction that wrote nothing only ends.
    fn apply_and_commit(&self) -> std::result::Result<(), tokio_postgres::Error> {
        let staged = self.staged.borrow();
        let seen = self.seen.borrow();
        let mut prepared = Vec::new();
        for tree in TREES {
            if staged[slot(tree)].is_empty() {
                continue;
            }
            let name = table(tree);
            let insert = self
                .conn
                .statement(&format!("INSERT INTO {name} (key, value) VALUES ($1, $2)"))?;
            let upsert = self.conn.statement(&format!(
                "INSERT INTO {name} (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ))?;
            let delete = self
                .conn
                .statement(&format!("DELETE FROM {name} WHERE key = $1"))?;
            for (key, value) in &staged[slot(tree)] {
                let statement = match value {
                    None => delete.clone(),
                    // Read as absent: a concurrent writer of the same key
                    // must make one of the two run again.
                    Some(_) if matches!(seen[slot(tree)].get(key), Some(None)) => insert.clone(),
                    Some(_) => upsert.clone(),
                };
                prepared.push((statement, key, value));
            }
        }
        if prepared.is_empty() && !self.begun.get() {
            return Ok(());
        }
        let client = &self.conn.client;
        let begin = async {
            if self.begun.get() {
                Ok(())
            } else {
                client.batch_execute("BEGIN").await
            }
        };
        let writes = prepared.iter().map(|(statement, key, value)| async move {
            match value {
                Some(value) => client.execute(statement, &[key, value]).await,
                None => client.execute(statement, &[key]).await,
            }
        });
        // Requests go out in the order they are first polled: BEGIN, the
        // writes, COMMIT. After a failed write, PostgreSQL answers COMMIT
        // with a rollback, and the write's error is the one reported.
        let (begun, written, committed) = self.conn.wait(futures_util::future::join3(
            begin,
            futures_util::future::try_join_all(writes),
            client.batch_execute("COMMIT"),
        ));
        self.begun.set(false);
        begun?;
        written?;
        committed
    }
}

impl Tx for PgTx<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        if let Some(value) = self.staged.borrow()[slot(tree)].get(key) {
            return Ok(value.clone());
        }
        let shared = self.shared;
        if let Some(value) = shared.staged.borrow()[slot(tree)].get(key) {
            return Ok(value.clone());
        }
        if let Some(value) = shared.seen.borrow()[slot(tree)].get(key) {
            return Ok(value.clone());
        }
        if shared.fault.borrow().is_some() {
            return Err(TxError(TxErrorKind::Retry));
        }
        let sql = format!(
            "SELECT value FROM {} WHERE key = $1 FOR UPDATE",
            table(tree)
        );
        let client = &shared.conn.client;
        let found = shared.conn.statement(&sql).and_then(|statement| {
            if shared.begun.get() {
                shared.conn.wait(client.query_opt(&statement, &[&key]))
            } else {
                shared.begun.set(true);
                shared
                    .conn
                    .wait(futures_util::future::try_join(
                        client.batch_execute("BEGIN"),
                        client.query_opt(&statement, &[&key]),
                    ))
                    .map(|((), row)| row)
            }
        });
        match found {
            Ok(row) => {
                let value: Option<Vec<u8>> = row.map(|row| row.get(0));
                shared.seen.borrow_mut()[slot(tree)].insert(key.to_vec(), value.clone());
                Ok(value)
            }
            Err(err) => {
                // The transaction is aborted; the attempt sorts out whether
                // to run it again.
                *shared.fault.borrow_mut() = Some(err);
                Err(TxError(TxErrorKind::Retry))
            }
        }
    }

    fn insert(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.staged.borrow_mut()[slot(tree)].insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, tree: Tree, key: &[u8]) -> Result<(), TxError> {
        self.staged.borrow_mut()[slot(tree)].insert(key.to_vec(), None);
        Ok(())
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
