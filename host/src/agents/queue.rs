//! Which replica executes an agent run: the queue of triggered runs, the
//! claim that marks a run with the replica executing it, and the look for
//! runs whose replica died (see [`super::run::AgentRun::running_on`]).

use super::run::{AgentRun, RunStatus};
use super::{Agents, Result};
use crate::tenancy::now;

impl Agents {
    /// Runs queued runs until `stop`: first the ones a stopped server left
    /// queued or running, then each as it is triggered. With other
    /// replicas, it also looks every lease for runs whose replica died
    /// (or that this one stopped when it lost its lease) and resumes them.
    pub async fn run_queue(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut receiver) = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        self.resume_orphans();
        let replicas = self.inner.actions.replicas().clone();
        let look = replicas.lease();
        loop {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(id) => self.spawn_run(id),
                    None => return,
                },
                () = tokio::time::sleep(look), if replicas.shared() => self.resume_orphans(),
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Spawns every active run that no live replica executes.
    fn resume_orphans(&self) {
        let replicas = self.inner.actions.replicas();
        let ids = match self.records().ids_by("runs_active", "all") {
            Ok(ids) => ids,
            Err(err) => {
                tracing::error!(%err, "cannot read the runs to resume");
                return;
            }
        };
        for id in ids {
            let holder = match self.records().get::<AgentRun>(&id) {
                Ok(Some(run)) => run.running_on,
                Ok(None) => continue,
                Err(err) => {
                    tracing::error!(run = %id, %err, "cannot read a run to resume");
                    continue;
                }
            };
            let orphaned = match holder.as_deref() {
                None => true,
                Some(me) if me == crate::replica::id() => !self.is_running_here(&id),
                Some(other) => !replicas.is_live(other).unwrap_or(true),
            };
            if orphaned {
                self.spawn_run(id);
            }
        }
    }

    fn is_running_here(&self, id: &str) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    fn spawn_run(&self, id: String) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if !this
                .inner
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone())
            {
                return;
            }
            let result = this.execute_run(&id).await;
            this.inner
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Err(err) = result {
                tracing::error!(run = %id, %err, "agent run failed");
                let message = err.to_string();
                let me = crate::replica::id().to_owned();
                let _ = this
                    .records()
                    .commit(move |tx| {
                        if let Some(mut run) = tx.get::<AgentRun>(&id)?
                            && run.status.active()
                            && run.running_on.as_deref() == Some(me.as_str())
                        {
                            run.status = RunStatus::Failed;
                            run.error = Some(message.clone());
                            run.completed_at = Some(now());
                            tx.put(&run)?;
                        }
                        Ok(())
                    })
                    .await;
            }
        });
    }

    /// Takes run `id` for this replica: unless it has finished, or a live
    /// replica (another, or this one before it lost its lease and stopped)
    /// holds it. The take is a compare-and-set on the holder, so of two
    /// replicas resuming a dead one's run, one gets it.
    pub(super) async fn claim_run(&self, id: &str) -> Result<Option<AgentRun>> {
        let Some(run) = self.records().get::<AgentRun>(id)? else {
            return Ok(None);
        };
        if !run.status.active() {
            return Ok(None);
        }
        let me = crate::replica::id();
        let seen = run.running_on;
        if let Some(holder) = seen.as_deref()
            && holder != me
            && self.inner.actions.replicas().is_live(holder)?
        {
            return Ok(None);
        }
        let (id, me) = (id.to_owned(), me.to_owned());
        Ok(self
            .records()
            .commit(move |tx| {
                let Some(mut run) = tx.get::<AgentRun>(&id)? else {
                    return Ok(None);
                };
                if !run.status.active() || run.running_on != seen {
                    return Ok(None);
                }
                run.running_on = Some(me.clone());
                tx.put(&run)?;
                Ok(Some(run))
            })
            .await?)
    }
}
