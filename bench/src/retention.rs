//! Retention under load: the p99 of sync execute at one connection on a
//! server holding many execution records, then again while the retention
//! sweep removes all of them (restarted with `[retention] executions`
//! shorter than their age), and how long the sweep took; then a soak with
//! a retention set, and the data folder's size half way and at the end.

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
    drop(server);
    soak(settings, results)
}

/// A soak at a steady rate with `[retention] executions` of a quarter of
/// it: the data folder's size once the first records have aged out (half
/// way) and at the end, which should be level.
fn soak(settings: &Settings, results: &mut Results) -> anyhow::Result<()> {
    let (window, rate) = if settings.quick {
        (Duration::from_secs(2), 200.0)
    } else {
        (Duration::from_secs(60), 1_000.0)
    };
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let mut launch = launch(settings, dir.path(), &cache);
    launch.env.push((
        "ACTIONHOST_RETENTION__EXECUTIONS",
        format!("{}ms", window.as_millis()),
    ));
    launch.env.push((
        "ACTIONHOST_RETENTION__SWEEP_INTERVAL",
        format!("{}ms", window.as_millis() / 6),
    ));
    let server = launch.start()?;
    let data = dir.path().join("data");
    let length = window * 4;
    let request = std::sync::Arc::new(post(
        "/api/v2/actions/noop/execute",
        &server.key,
        r#"{"input":{}}"#,
    ));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = Instant::now() + length;
    let connections = 8usize;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (request, port) = (request.clone(), server.port);
        tasks.push(tokio.spawn(async move {
            let mut connection = Connection::open(port).await?;
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(connections as f64 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = 0u64;
            while Instant::now() < stop {
                tick.tick().await;
                let (status, body) = connection.round_trip(&request).await?;
                ensure!(status == 200, "{status}: {}", String::from_utf8_lossy(body));
                sent += 1;
            }
            anyhow::Ok(sent)
        }));
    }
    let began = Instant::now();
    let mut half = None;
    while Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(250));
        if half.is_none() && began.elapsed() >= length / 2 {
            half = Some(dir_bytes(&data)?);
        }
    }
    let mut sent = 0;
    for task in tasks {
        sent += tokio.block_on(task)??;
    }
    let end = dir_bytes(&data)?;
    let half = half.context("no sample half way")?;
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    let name = format!(
        "soak with [retention] executions = {} s at {rate:.0} executes/s for {} s",
        window.as_secs_f64(),
        length.as_secs()
    );
    results.push(Figure::single(
        "retention.soak.data_half_mib",
        &format!("{name}: data folder half way"),
        "MiB",
        mib(half),
    ));
    results.push(
        Figure::single(
            "retention.soak.data_end_mib",
            &format!("{name}: data folder at the end"),
            "MiB",
            mib(end),
        )
        .with_note(format!("{sent} executions recorded in all")),
    );
    results.push(Figure::single(
        "retention.soak.data_growth_pct",
        &format!("{name}: data folder growth over the second half"),
        "%",
        (mib(end) - mib(half)) / mib(half) * 100.0,
    ));
    Ok(())
}

/// The bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
