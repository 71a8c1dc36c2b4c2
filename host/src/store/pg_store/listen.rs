//! Signals between replicas over `LISTEN`/`NOTIFY`: one connection per
//! replica, outside the pool, listens on the `actionhost` channel and sends
//! this replica's signals as `NOTIFY` payloads `REPLICA_ID:TOPIC` (a
//! replica ignores its own). If the connection drops, it is opened again
//! every second; receivers get a resync each time it is up again.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::PgStore;
use crate::store::signals::{Signals, Topic};

/// The channel every replica listens on.
const CHANNEL: &str = "actionhost";

/// How long the sender gathers signals before the next `NOTIFY`s: a burst
/// of creations becomes one `due` per gap, not one per creation.
const GATHER: Duration = Duration::from_millis(10);

/// How long to wait before opening a dropped connection again.
const RECONNECT: Duration = Duration::from_secs(1);

impl PgStore {
    /// Starts this replica's signals on the current async runtime: a task
    /// that listens and sends until every clone of the result is dropped.
    pub fn signals(&self) -> Signals {
        let (out, queue) = mpsc::unbounded_channel();
        let inbound = broadcast::channel(256).0;
        let signals = Signals::shared(out, inbound.clone());
        tokio::spawn(run(self.clone(), queue, inbound));
        signals
    }
}

async fn run(
    store: PgStore,
    mut queue: mpsc::UnboundedReceiver<Topic>,
    inbound: broadcast::Sender<Topic>,
) {
    let me = crate::replica::id();
    let mut down = false;
    loop {
        match session(&store, me, &mut queue, &inbound, &mut down).await {
            Ok(()) => return,
            Err(err) if !down => {
                down = true;
                tracing::warn!(
                    target = %store.target(),
                    %err,
                    "the signals connection to PostgreSQL is down; replicas fall back to polling until it is back"
                );
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One connection's life: listens, forwards what others send and sends
/// what this replica queues. `Ok` once this replica's signals are dropped.
async fn session(
    store: &PgStore,
    me: &str,
    queue: &mut mpsc::UnboundedReceiver<Topic>,
    inbound: &broadcast::Sender<Topic>,
    down: &mut bool,
) -> Result<(), String> {
    let (client, mut connection) = store
        .inner
        .config
        .connect(NoTls)
        .await
        .map_err(|err| store.unavailable_message(&err))?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(note)) => {
                    let _ = notes_tx.send(note.payload().to_owned());
                }
                Ok(_) => {}
                Err(err) => return err.to_string(),
            }
        }
        "the connection closed".to_owned()
    });
    let _abort = AbortOnDrop(driver.abort_handle());
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|err| store.unavailable_message(&err))?;
    if std::mem::take(down) {
        tracing::info!("the signals connection to PostgreSQL is back");
    }
    tracing::debug!("listening for the signals of other replicas");
    // Whatever was sent while this connection was down.
    let _ = inbound.send(Topic::Resync);
    loop {
        tokio::select! {
            note = notes.recv() => {
                let Some(payload) = note else {
                    return Err("the signals connection ended".into());
                };
                if let Some((sender, topic)) = payload.split_once(':')
                    && sender != me
                    && let Some(topic) = Topic::parse(topic)
                {
                    let _ = inbound.send(topic);
                }
            }
            topic = queue.recv() => {
                let Some(topic) = topic else {
                    return Ok(());
                };
                tokio::time::sleep(GATHER).await;
                let mut topics = BTreeSet::from([topic]);
                while let Ok(topic) = queue.try_recv() {
                    topics.insert(topic);
                }
                for topic in topics {
                    client
                        .execute(
                            "SELECT pg_notify($1, $2)",
                            &[&CHANNEL, &format!("{me}:{}", topic.name())],
                        )
                        .await
                        .map_err(|err| store.unavailable_message(&err))?;
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
