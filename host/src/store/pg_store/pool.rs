//! The connections: a bounded pool, each connection with the runtime
//! that drives it, leased to one caller at a time.

use std::cell::RefCell;
use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::tx::Pairs;
use super::{CHECKOUT_WAIT, Fault, PgStore, Result, StoreError, classify};

#[derive(Default)]
pub(super) struct Pool {
    pub(super) idle: Vec<Conn>,
    pub(super) open: usize,
}

/// One connection, with the single-threaded runtime that drives it: whoever
/// holds the connection runs its I/O on their own thread while they wait,
/// so a round trip costs no hand-over between threads.
pub(super) struct Conn {
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    pub(super) client: Client,
    pub(super) statements: RefCell<HashMap<String, Statement>>,
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

/// Runs `f`, which blocks on the database, without starving the async
/// runtime it may be called from. A single-threaded async runtime cannot
/// lend its thread, and is refused.
pub(super) fn blocking<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
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

impl PgStore {
    pub(super) fn connect(&self) -> Result<Conn> {
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
    pub(super) fn checkout(&self) -> Result<Lease<'_>> {
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
    pub(super) fn read<T>(
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
}

/// A pooled connection, returned to the pool when dropped (or closed, if
/// it failed or a panic unwinds through it mid-transaction).
pub(super) struct Lease<'a> {
    pub(super) store: &'a PgStore,
    pub(super) conn: Option<Conn>,
}

impl Lease<'_> {
    pub(super) fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }

    pub(super) fn discard(&mut self) {
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
    pub(super) fn discard_all(&mut self) {
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
    pub(super) fn wait<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("a connection keeps its runtime until dropped")
            .block_on(future)
    }

    /// The prepared statement for `sql`, prepared once per connection.
    pub(super) fn statement(
        &self,
        sql: &str,
    ) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.wait(self.client.prepare(sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn rows(
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
