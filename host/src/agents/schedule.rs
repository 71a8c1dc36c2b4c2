//! Agents' schedules: a cron expression (croner: 5 fields as POSIX cron
//! reads them, so `0 14 * * 1-5` is 14:00 on weekdays; or 6 with seconds
//! first), in an optional IANA time zone.
//!
//! The loop looks, every `schedule_poll`, at each enabled agent with a
//! schedule: when the first tick after its last scheduled run has passed,
//! it starts one run and remembers the time. A server that was down over
//! several ticks starts one run at start-up, not one per tick missed.
//! Replicas sharing a store each look; the one whose compare-and-set of
//! the time wins starts the run.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeZone as _, Utc};
use croner::Cron;

use super::{Agent, Agents};
use crate::actions::epoch_ms;

/// A parsed schedule.
#[derive(Debug)]
pub struct Schedule {
    cron: Cron,
    zone: chrono_tz::Tz,
}

/// Parses a cron expression and time zone, or says what is wrong.
pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Schedule, String> {
    let fields = expression.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "{expression:?} has {fields} fields; a schedule has 5 (minute hour day-of-month month day-of-week, such as 0 14 * * 1-5) or 6 with seconds first"
        ));
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|err| format!("{expression:?} is not a cron expression: {err}"))?;
    let zone = match timezone {
        None => chrono_tz::UTC,
        Some(name) => chrono_tz::Tz::from_str(name).map_err(|_| {
            format!("unknown time zone {name:?}; use an IANA name such as Europe/Paris")
        })?,
    };
    Ok(Schedule { cron, zone })
}

impl Schedule {
    /// The first tick strictly after `after_ms`, in milliseconds.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = Utc
            .timestamp_millis_opt(i64::try_from(after_ms).ok()?)
            .single()?
            .with_timezone(&self.zone);
        let next: DateTime<chrono_tz::Tz> = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

impl Agents {
    /// Starts the runs whose schedules are due, every `schedule_poll`,
    /// until `stop`.
    pub async fn run_schedules(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(err) = self.start_due_schedules().await {
                tracing::error!(%err, "starting scheduled agent runs failed; tried again later");
            }
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.schedule_poll) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn start_due_schedules(&self) -> Result<(), super::AgentError> {
        let now = epoch_ms(SystemTime::now());
        let agents: Vec<Agent> = self.records().list_by("agents_scheduled", "all")?;
        for agent in agents {
            let Some(expression) = &agent.monitoring.schedule_cron else {
                continue;
            };
            let Ok(schedule) = parse(expression, agent.monitoring.timezone.as_deref()) else {
                continue;
            };
            let since = agent
                .scheduled_ms
                .unwrap_or_else(|| now.saturating_sub(Duration::from_secs(1).as_millis() as u64));
            if schedule.next_after(since).is_none_or(|next| next > now) {
                continue;
            }
            // Remembered first: a crash after this never starts it twice.
            // A compare-and-set on the time seen, so that of replicas
            // looking at once, one starts the run.
            let (id, tenant) = (agent.id.clone(), agent.tenant_id.clone());
            let seen = agent.scheduled_ms;
            let claimed = self
                .records()
                .commit(move |tx| {
                    let Some(mut agent) = tx.get::<Agent>(&id)? else {
                        return Ok(false);
                    };
                    if agent.scheduled_ms != seen {
                        return Ok(false);
                    }
                    agent.scheduled_ms = Some(now);
                    tx.put(&agent)?;
                    Ok(true)
                })
                .await?;
            if !claimed {
                continue;
            }
            match self.trigger(&tenant, &agent.id, None, "schedule").await {
                Ok(run) => {
                    tracing::info!(agent = %agent.id, run = %run.id, "scheduled agent run started")
                }
                Err(err) => {
                    tracing::warn!(agent = %agent.id, %err, "a scheduled agent run could not start")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn weekdays_at_two_in_the_afternoon_and_refusals_with_reasons() {
        let schedule = parse("0 14 * * 1-5", None).expect("parses");
        // Friday 2026-12-04 15:00 UTC: the next tick is Monday 14:00.
        let friday_afternoon = 1_796_396_400_000;
        let next = schedule.next_after(friday_afternoon).expect("a next tick");
        assert_eq!(next, 1_796_652_000_000, "Monday 2026-12-07 14:00 UTC");
        let paris = parse("0 14 * * 1-5", Some("Europe/Paris")).expect("parses");
        assert_eq!(paris.next_after(friday_afternoon), Some(1_796_648_400_000));
        assert!(parse("*/2 * * * * *", None).is_ok(), "seconds first");
        for bad in ["0 14 * *", "61 * * * *", "0 14 * * 1-5 * *", "hello"] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
        assert!(
            parse("0 14 * * *", Some("Mars/Olympus"))
                .expect_err("an unknown zone")
                .contains("time zone")
        );
    }
}
