//! Contacts and events: ingestion acknowledged on disk (batches of 100 at 8
//! clients, single events at 64), contact creation beside action creation
//! at 64 clients, and the latency of a contact's latest 50 events with few
//! and with many events stored (one range read, whatever the total).

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, ensure};

use crate::Settings;
use crate::load::{self, Work};
use crate::sections::{Budget, Results, artifact, cache, fresh_dir, launch};
use crate::server::{Connection, post};
use crate::stats::Figure;

/// Events per request of the batch load.
const BATCH: usize = 100;

pub fn run(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let launch = launch(settings, dir.path(), &cache);
    let server = launch.start()?;
    let auth = format!("Bearer {}", server.key);
    let json = || ("content-type", "application/json".to_owned());
    let headers = || vec![("authorization", auth.clone()), json()];

    // Ingestion, on a fresh store: the same events as a site sends them.
    let event = r#"{"event":"pageview","url":"https://example.com/pricing","anonymous_id":"bench-visitor","properties":{"title":"Pricing"}}"#;
    let batch_body = format!(
        r#"{{"events":[{}]}}"#,
        std::iter::repeat_n(event, BATCH)
            .collect::<Vec<_>>()
            .join(",")
    );
    let expect_batch = format!(r#""accepted":{BATCH}"#);
    let batch = Work {
        method: "POST",
        path: "/v1/events",
        headers: headers(),
        body: &batch_body,
        expect_status: 201,
        expect_body: &expect_batch,
    };
    let single = Work {
        method: "POST",
        path: "/v1/events",
        headers: headers(),
        body: event,
        expect_status: 201,
        expect_body: r#""accepted":1"#,
    };
    let contact = Work {
        method: "POST",
        path: "/v1/contacts",
        headers: headers(),
        body: r#"{"properties":{"firstname":"Ada","lastname":"Lovelace","lifecyclestage":"lead"}}"#,
        expect_status: 201,
        expect_body: r#""_id":"ct_"#,
    };
    let far =
        humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(30 * 86_400));
    let action_body = format!(
        r#"{{"type":"noop","params":{{}},"identity_id":"bench","scheduled_time":"{far}"}}"#
    );
    let action = Work {
        method: "POST",
        path: "/v1/actions",
        headers: headers(),
        body: &action_body,
        expect_status: 200,
        expect_body: r#""action_id":"act_"#,
    };
    for (id, name, work, connections, per_request) in [
        (
            "events.batch100.c8",
            "events in batches of 100, 8 clients: events/s",
            &batch,
            8,
            BATCH,
        ),
        (
            "events.single.c64",
            "single events, 64 clients: events/s",
            &single,
            64,
            1,
        ),
        (
            "contacts.create.c64",
            "durable contact creation, 64 clients: contacts/s",
            &contact,
            64,
            1,
        ),
        (
            "contacts.action_create.c64",
            "durable action creation, same server, 64 clients: actions/s",
            &action,
            64,
            1,
        ),
    ] {
        let mut rates = Vec::new();
        for _ in 0..budget.wrk_runs {
            let point = load::run(&settings.wrk, server.port, work, connections, budget.wrk)
                .with_context(|| name.to_owned())?;
            rates.push(point.rps() * per_request as f64);
        }
        results.push(Figure::from_samples(id, name, "/s", &rates));
    }
    results.ratio(
        "ratio.contacts.create_vs_action_create",
        "contact creation ÷ action creation, 64 clients",
        "contacts.create.c64",
        "contacts.action_create.c64",
    );

    // A contact's latest 50 events: with the events of `contacts` contacts
    // stored, then with many more, read newest first at one connection.
    let (small, large, contacts) = if settings.quick {
        (2_000, 20_000, 20)
    } else {
        (10_000, 1_000_000, 1_000)
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows: Vec<String> = (0..contacts)
        .map(|i| format!(r#"{{"email":"c{i}@bench.example"}}"#))
        .collect();
    let (status, created) = server.call(
        "POST",
        "/v1/contacts/batch",
        &format!(r#"{{"contacts":[{}]}}"#, rows.join(",")),
    )?;
    ensure!(status == 200, "seeding contacts: {status} {created}");
    let ids: Vec<String> = created["results"]
        .as_array()
        .context("results")?
        .iter()
        .filter_map(|r| r["_id"].as_str().map(str::to_owned))
        .collect();
    ensure!(ids.len() == contacts, "seeding contacts: {created}");
    let target = ids[0].clone();
    let read = format!("/v1/events?contact_id={target}&limit=50");
    let latest = Work {
        method: "GET",
        path: &read,
        headers: vec![("authorization", auth.clone())],
        body: "",
        expect_status: 200,
        expect_body: r#""event":"pageview""#,
    };
    let mut stored = 0;
    for (total, label) in [(small, "few"), (large, "many")] {
        let started = std::time::Instant::now();
        tokio.block_on(seed(server.port, &server.key, &ids, stored, total))?;
        let seeded = total - stored;
        println!(
            "  seeded {seeded} events in {:.1} s ({:.0}/s)",
            started.elapsed().as_secs_f64(),
            seeded as f64 / started.elapsed().as_secs_f64()
        );
        stored = total;
        let point = load::run(&settings.wrk, server.port, &latest, 1, budget.wrk)
            .context("a contact's latest 50 events")?;
        results.push(
            Figure::single(
                &format!("events.latest50.{label}.p99_ms"),
                &format!("a contact's latest 50 events with {total} events stored: p99"),
                "ms",
                point.p99_us / 1000.0,
            )
            .with_note(format!("1 connection; {} reads/s", point.rps().round())),
        );
    }
    Ok(())
}

/// Stores events `from..to` (numbered across the run), 1,000 per request,
/// each request for one contact in turn, over 4 connections.
async fn seed(
    port: u16,
    key: &str,
    contacts: &[String],
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    const PER_REQUEST: usize = 1_000;
    let requests: Vec<Vec<u8>> = (from..to)
        .step_by(PER_REQUEST)
        .enumerate()
        .map(|(n, start)| {
            let contact = &contacts[n % contacts.len()];
            let count = PER_REQUEST.min(to - start);
            let event = format!(
                r#"{{"event":"pageview","url":"https://example.com/docs","contact_id":"{contact}"}}"#
            );
            let body = format!(
                r#"{{"events":[{}]}}"#,
                std::iter::repeat_n(event.as_str(), count).collect::<Vec<_>>().join(",")
            );
            post("/v1/events", key, &body)
        })
        .collect();
    let requests = std::sync::Arc::new(requests);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (requests, next) = (requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(port).await?;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(request) = requests.get(n) else {
                    return anyhow::Ok(());
                };
                let (status, body) = connection.round_trip(request).await?;
                ensure!(status == 201, "{status}: {}", String::from_utf8_lossy(body));
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
