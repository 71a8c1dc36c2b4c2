//! Signals between the replicas sharing a store: a topic that one replica
//! sends and every other receives, so that they look at once rather than
//! at their next poll. On PostgreSQL they travel by `LISTEN`/`NOTIFY`
//! ([`super::PgStore::signals`]); on sled, where one process owns the
//! store, they go nowhere.
//!
//! A signal is a hint, never the data: every receiver also polls, so a lost
//! signal (the listening connection was down) costs latency, not
//! correctness. When the listening connection (re)connects, receivers get
//! [`Topic::Resync`]: signals may have been missed, look again.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    /// An action became due (created, approved, retried or recovered).
    Due,
    /// Uploaded plugins changed (installed, enabled, disabled, removed).
    Plugins,
    /// Signals may have been missed: look at everything again.
    Resync,
}

impl Topic {
    /// The topic's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Plugins => "plugins",
            Self::Resync => "resync",
        }
    }

    /// The topic of a name on the wire, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "due" => Some(Self::Due),
            "plugins" => Some(Self::Plugins),
            "resync" => Some(Self::Resync),
            _ => None,
        }
    }
}

/// This replica's end of the signals. Cheap to clone.
#[derive(Clone)]
pub struct Signals {
    inner: Arc<Inner>,
}

struct Inner {
    /// To the sender of this replica's signals; `None` when nothing shares
    /// the store.
    out: Option<mpsc::UnboundedSender<Topic>>,
    /// The signals of the other replicas, to every receiver here.
    inbound: broadcast::Sender<Topic>,
}

impl Signals {
    /// Signals of a store no other process shares: sent nowhere, never
    /// received.
    pub fn local() -> Self {
        Self {
            inner: Arc::new(Inner {
                out: None,
                inbound: broadcast::channel(16).0,
            }),
        }
    }

    /// Signals sent through `out` and received from `inbound`.
    pub(super) fn shared(
        out: mpsc::UnboundedSender<Topic>,
        inbound: broadcast::Sender<Topic>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                out: Some(out),
                inbound,
            }),
        }
    }

    /// Tells the other replicas that `topic` changed. Never waits: sends
    /// close together go out as one.
    pub fn send(&self, topic: Topic) {
        if let Some(out) = &self.inner.out {
            let _ = out.send(topic);
        }
    }

    /// The signals of the other replicas from now on. A receiver that falls
    /// behind gets [`broadcast::error::RecvError::Lagged`]: treat it as
    /// [`Topic::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Topic> {
        self.inner.inbound.subscribe()
    }
}

/// Waits for the next signal on `topics` (or a resync, or a lag), from
/// `receiver`. Returns false once no more can come.
pub async fn next_of(receiver: &mut broadcast::Receiver<Topic>, topics: &[Topic]) -> bool {
    loop {
        match receiver.recv().await {
            Ok(topic) if topic == Topic::Resync || topics.contains(&topic) => return true,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return true,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_their_names() {
        for topic in [Topic::Due, Topic::Plugins, Topic::Resync] {
            assert_eq!(Topic::parse(topic.name()), Some(topic));
        }
        assert_eq!(Topic::parse("other"), None);
    }

    #[tokio::test]
    async fn local_signals_reach_no_one() {
        let signals = Signals::local();
        let mut receiver = signals.subscribe();
        signals.send(Topic::Due);
        assert!(matches!(
            receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }
}
