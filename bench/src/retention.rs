//! Retention under load: the p99 of sync execute at one connection on a
//! server holding many execution records, then again while the retention
//! sweep removes all of them (restarted with `[retention] executions`
//! shorter than their age), and how long the sweep took.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::Settings;
use crate::load::{self, Work};
use crate::sections::{Budget, Results, artifact, cache, fresh_dir, launch};
use crate::server::{Connection, post};
use crate::stats::Figure;

pub fn run(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let mut launch = launch(settings, dir.path(), &cache);
    let records = if settings.quick { 5_000 } else { 1_000_000 };
    let mut server = launch.start()?;

    // The records to sweep: sync executions of the no-op, 16 at a time.
    let started = Instant::now();
    let request = post(
        "/api/v2/actions/noop/execute",
        &server.key,
        r#"{"input":{}}"#,
    );
    let port = server.port;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let request = std::sync::Arc::new(request);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (next, request) = (next.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let mut connection = Connection::open(port).await?;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < records {
                    let (status, body) = connection.round_trip(&request).await?;
                    ensure!(status == 200, "{status}: {}", String::from_utf8_lossy(body));
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })?;
    let (status, last) = server.call("POST", "/api/v2/actions/noop/execute", r#"{"input":{}}"#)?;
    ensure!(status == 200, "{status}: {last}");
    let newest = last["logId"].as_str().context("logId")?.to_owned();
    println!(
        "  stored {records} execution records in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let auth = format!("Bearer {}", server.key);
    let execute = Work {
        method: "POST",
        path: "/api/v2/actions/noop/execute",
        headers: vec![
            ("authorization", auth.clone()),
            ("content-type", "application/json".to_owned()),
        ],
        body: r#"{"input":{}}"#,
        expect_status: 200,
        expect_body: r#""successful":true"#,
    };
    let quiet = load::run(&settings.wrk, server.port, &execute, 1, budget.wrk)
        .context("sync execute without a sweep")?;
    drop(server);

    // Restarted with a retention shorter than the records' age: the sweep
    // starts at once and removes them all, 500 per durable write.
    std::thread::sleep(Duration::from_secs(2));
    launch
        .env
        .push(("ACTIONHOST_RETENTION__EXECUTIONS", "1s".to_owned()));
    launch
        .env
        .push(("ACTIONHOST_RETENTION__SWEEP_INTERVAL", "1h".to_owned()));
    let swept_from = Instant::now();
    server = launch.start()?;
    let during = load::run(&settings.wrk, server.port, &execute, 1, budget.wrk)
        .context("sync execute during the sweep")?;
    let measured_within = swept_from.elapsed();
    let gone = format!("/v1/executions/{newest}");
    loop {
        let (status, _) = server.call("GET", &gone, "")?;
        if status == 404 {
            break;
        }
        ensure!(
            swept_from.elapsed() < Duration::from_secs(1800),
            "the sweep did not finish in 30 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sweep = swept_from.elapsed();
    let overlapped = if measured_within <= sweep {
        "the measurement ran within the sweep"
    } else {
        "the sweep ended before the measurement did"
    };
    results.push(Figure::single(
        "retention.execute.quiet.p99_ms",
        &format!("sync execute, 1 connection, {records} execution records stored: p99"),
        "ms",
        quiet.p99_us / 1000.0,
    ));
    results.push(
        Figure::single(
            "retention.execute.sweeping.p99_ms",
            &format!("the same during the retention sweep of those {records}: p99"),
            "ms",
            during.p99_us / 1000.0,
        )
        .with_note(format!(
            "{overlapped}; {} req/s against {} without",
            during.rps().round(),
            quiet.rps().round()
        )),
    );
    results.push(Figure::single(
        "retention.sweep.records_per_s",
        &format!("retention sweep of {records} execution records (from the restart)"),
        "records/s",
        records as f64 / sweep.as_secs_f64(),
    ));
    results.ratio(
        "ratio.retention.p99_sweeping_vs_quiet",
        "sync execute p99 during a retention sweep ÷ without",
        "retention.execute.sweeping.p99_ms",
        "retention.execute.quiet.p99_ms",
    );
    Ok(())
}
