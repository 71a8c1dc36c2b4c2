//! Transactions: one body in a transaction of its own, or the bodies of
//! concurrent commits in one shared transaction (the group commit).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::pool::Conn;
use super::{
    CommitBody, Fault, Inner, MAX_ATTEMPTS, PgStore, Result, StoreError, Tree, Tx, TxError,
    TxErrorKind, classify, table,
};

impl PgStore {
    /// Runs `body` in one transaction; see the module docs.
    pub(super) fn run_transaction(
        &self,
        body: &dyn Fn(&dyn Tx) -> Result<(), TxError>,
    ) -> Result<()> {
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

    pub(super) fn attempt(
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
    pub(super) fn commit_batch(&self, batch: Vec<Waiting>) {
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
    pub(super) fn try_batch(&self, batch: &[Waiting]) -> Vec<Option<Result<()>>> {
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

pub(super) fn panicked() -> StoreError {
    StoreError::Storage("a transaction body panicked; nothing of it was written".into())
}

/// A commit waiting for the committer.
pub(super) struct Waiting {
    pub(super) body: CommitBody,
    pub(super) done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Bodies one shared transaction takes at most.
pub(super) const MAX_BATCH: usize = 128;

/// The committer's loop: takes every commit waiting, runs them as one batch.
pub(super) fn committer(inner: std::sync::Weak<Inner>, queue: std::sync::mpsc::Receiver<Waiting>) {
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

pub(super) enum Attempt {
    Abort(StoreError),
    Retry,
    Gone {
        err: tokio_postgres::Error,
        committing: bool,
    },
    Failed(tokio_postgres::Error),
}

/// Per tree, keys and their new values (`None`: removed).
pub(super) type Staged = [BTreeMap<Vec<u8>, Option<Vec<u8>>>; 3];
/// Per tree, keys and what a read found.
pub(super) type Seen = [HashMap<Vec<u8>, Option<Vec<u8>>>; 3];
/// Key-value pairs.
pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A transaction in progress on one connection, for one body or a batch
/// of them: reads go to the database (locking what they find), and the
/// writes of the bodies that succeeded wait in `staged` until COMMIT.
pub(super) struct Shared<'a> {
    pub(super) conn: &'a Conn,
    /// Whether BEGIN was sent.
    pub(super) begun: Cell<bool>,
    pub(super) staged: RefCell<Staged>,
    /// What this transaction's reads found: later reads of a key answer
    /// the same (present keys are locked; an absent one that appears in
    /// the meantime makes the commit's `INSERT` fail and the body run again).
    pub(super) seen: RefCell<Seen>,
    /// The first database error of the reads; the transaction is aborted.
    pub(super) fault: RefCell<Option<tokio_postgres::Error>>,
}

/// One body's view: its own writes over the shared transaction's.
pub(super) struct PgTx<'a> {
    pub(super) shared: &'a Shared<'a>,
    pub(super) staged: RefCell<Staged>,
}

impl<'a> PgTx<'a> {
    pub(super) fn new(shared: &'a Shared<'a>) -> Self {
        Self {
            shared,
            staged: RefCell::default(),
        }
    }

    /// The body succeeded: its writes join the transaction's.
    pub(super) fn accept(self) {
        let mut shared = self.shared.staged.borrow_mut();
        for (tree, writes) in self.staged.into_inner().into_iter().enumerate() {
            shared[tree].extend(writes);
        }
    }
}

pub(super) fn slot(tree: Tree) -> usize {
    match tree {
        Tree::Records => 0,
        Tree::Indexes => 1,
        Tree::Meta => 2,
    }
}

pub(super) const TREES: [Tree; 3] = [Tree::Records, Tree::Indexes, Tree::Meta];

impl<'a> Shared<'a> {
    pub(super) fn new(conn: &'a Conn) -> Self {
        Self {
            conn,
            begun: Cell::new(false),
            staged: RefCell::default(),
            seen: RefCell::default(),
            fault: RefCell::new(None),
        }
    }

    /// Ends the transaction without writing.
    pub(super) fn rollback(&self) {
        if self.begun.replace(false) {
            // A failed ROLLBACK leaves the connection useless; the next
            // statement on it fails and it is replaced then.
            let _ = self.conn.wait(self.conn.client.batch_execute("ROLLBACK"));
        }
    }

    /// Sends the staged writes and COMMIT, pipelined (with BEGIN first if
    /// no read sent it). A transaction that wrote nothing only ends.
    pub(super) fn apply_and_commit(&self) -> std::result::Result<(), tokio_postgres::Error> {
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
        self.read(tree, key, false)
    }

    fn get_unless_locked(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        self.read(tree, key, true)
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

impl PgTx<'_> {
    /// Reads and locks a key; with `skip_locked`, a key another
    /// transaction holds reads as absent (and is not remembered as such).
    fn read(&self, tree: Tree, key: &[u8], skip_locked: bool) -> Result<Option<Vec<u8>>, TxError> {
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
            "SELECT value FROM {} WHERE key = $1 FOR UPDATE{}",
            table(tree),
            if skip_locked { " SKIP LOCKED" } else { "" }
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
                if value.is_some() || !skip_locked {
                    shared.seen.borrow_mut()[slot(tree)].insert(key.to_vec(), value.clone());
                }
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
}
