//! The stores side by side in one run: durable action creations at 64
//! connections and the scheduler's drain of due no-op actions, on sled and
//! on PostgreSQL (fsync on, the cluster `scripts/postgres` runs), beside
//! what PostgreSQL itself sustains on this machine (pgbench: single-row
//! inserts at 64 clients, and claim-and-complete cycles of a job table
//! with `FOR UPDATE SKIP LOCKED` at 16).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};

use crate::Settings;
use crate::load::Work;
use crate::sections::{
    Budget, Results, artifact, cache, fresh_dir, launch, rfc3339, scheduler_off, wrk_runs,
};
use crate::server::{Launch, post, send_many};
use crate::stats::Figure;

/// Connections per server: on 2 cores shared with PostgreSQL, 8 served
/// 64 clients best (4: 1,950, 8: 2,150, 16: 1,870, 32: 1,860 creations/s).
const POOL: usize = 8;

pub(crate) fn run(
    settings: &Settings,
    budget: &Budget,
    results: &mut Results,
) -> anyhow::Result<()> {
    let cluster = start_cluster(settings)?;
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let cache = cache(settings);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    // pgbench's floors, on databases of their own.
    let seconds = budget.wrk.as_secs().max(1);
    let inserts = pgbench_inserts(&cluster, 64, seconds)?;
    results.push(Figure::single(
        "store.pgbench.insert.c64.tps",
        "pgbench: durable single-row inserts, 64 clients",
        "tx/s",
        inserts,
    ));
    let cycles = pgbench_claims(&cluster, 16, budget.drain.min(20_000))?;
    results.push(Figure::single(
        "store.pgbench.claim_complete.c16.tps",
        "pgbench: claim (FOR UPDATE SKIP LOCKED) and complete of a job, 16 clients",
        "tx/s",
        cycles,
    ));

    for backend in ["sled", "postgres"] {
        let dir = fresh_dir(std::slice::from_ref(&noop))?;
        let mut env = Vec::new();
        if backend == "postgres" {
            env.push(("ACTIONHOST_STORE", database(&cluster, "bench_create")?));
            env.push(("ACTIONHOST_STORE_POOL_SIZE", POOL.to_string()));
        }
        let server = Launch {
            env,
            ..launch(settings, dir.path(), &cache)
        }
        .start()?;
        let far = rfc3339(SystemTime::now() + Duration::from_secs(30 * 86_400));
        let body = format!(
            r#"{{"type":"noop","params":{{}},"identity_id":"bench","scheduled_time":"{far}"}}"#
        );
        let create = Work {
            method: "POST",
            path: "/v1/actions",
            headers: vec![
                ("authorization", format!("Bearer {}", server.key)),
                ("content-type", "application/json".to_owned()),
            ],
            body: &body,
            expect_status: 200,
            expect_body: r#""action_id":"act_"#,
        };
        wrk_runs(
            settings,
            budget,
            results,
            (server.port, &create, 64),
            &format!("store.{backend}.create.c64"),
            &format!("durable action creation on {backend}, 64 conn"),
        )?;
        drop(server);

        let dir = fresh_dir(std::slice::from_ref(&noop))?;
        let mut env = scheduler_off();
        if backend == "postgres" {
            env.push(("ACTIONHOST_STORE", database(&cluster, "bench_drain")?));
            env.push(("ACTIONHOST_STORE_POOL_SIZE", POOL.to_string()));
        }
        let rate = drain(
            &tokio,
            Launch {
                env,
                ..launch(settings, dir.path(), &cache)
            },
            budget.drain,
            &[],
        )?;
        results.push(Figure::single(
            &format!("store.{backend}.drain_per_s"),
            &format!(
                "scheduler drain of {} due no-op actions on {backend}, one replica",
                budget.drain
            ),
            "actions/s",
            rate,
        ));
    }
    // Three replicas on one database share the drain.
    let dirs = [
        fresh_dir(std::slice::from_ref(&noop))?,
        fresh_dir(std::slice::from_ref(&noop))?,
        fresh_dir(std::slice::from_ref(&noop))?,
    ];
    let mut env = scheduler_off();
    env.push(("ACTIONHOST_STORE", database(&cluster, "bench_replicas")?));
    env.push(("ACTIONHOST_STORE_POOL_SIZE", POOL.to_string()));
    env.push(("ACTIONHOST_SECRET_KEY", SECRET_KEY.to_owned()));
    let rate = drain(
        &tokio,
        Launch {
            env,
            ..launch(settings, dirs[0].path(), &cache)
        },
        budget.drain,
        &[dirs[1].path(), dirs[2].path()],
    )?;
    results.push(Figure::single(
        "store.postgres.replicas3.drain_per_s",
        &format!(
            "scheduler drain of {} due no-op actions on PostgreSQL, three replicas",
            budget.drain
        ),
        "actions/s",
        rate,
    ));
    results.ratio(
        "ratio.store.postgres_create_vs_pgbench_insert",
        "creations/s on PostgreSQL ÷ pgbench single-row inserts/s (64 clients)",
        "store.postgres.create.c64.rps",
        "store.pgbench.insert.c64.tps",
    );
    results.ratio(
        "ratio.store.postgres_create_vs_sled",
        "creations/s on PostgreSQL ÷ on sled (64 connections)",
        "store.postgres.create.c64.rps",
        "store.sled.create.c64.rps",
    );
    results.ratio(
        "ratio.store.postgres_drain_vs_pgbench_claims",
        "drain/s on PostgreSQL (one replica) ÷ pgbench claim-and-complete/s (16 clients)",
        "store.postgres.drain_per_s",
        "store.pgbench.claim_complete.c16.tps",
    );
    results.ratio(
        "ratio.store.replicas3_drain_vs_pgbench_claims",
        "drain/s on PostgreSQL (three replicas) ÷ pgbench claim-and-complete/s (16 clients)",
        "store.postgres.replicas3.drain_per_s",
        "store.pgbench.claim_complete.c16.tps",
    );
    Ok(())
}

/// The URL of the cluster `scripts/postgres` runs (starting it), through
/// its Unix socket: on one machine, the cheaper way in for both actionhost
/// and pgbench.
fn start_cluster(settings: &Settings) -> anyhow::Result<String> {
    let output = Command::new(settings.root.join("scripts/postgres"))
        .arg("socket-url")
        .output()
        .context("running scripts/postgres")?;
    ensure!(
        output.status.success(),
        "scripts/postgres start: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql")?;
    ensure!(
        output.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// A fresh database named after `what`; its URL.
fn database(cluster: &str, what: &str) -> anyhow::Result<String> {
    let name = format!(
        "{what}_{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis()
    );
    psql(
        &format!("{cluster}/postgres"),
        &format!("CREATE DATABASE {name}"),
    )?;
    Ok(format!("{cluster}/{name}"))
}

/// `tps = N (without initial connection time)` of pgbench's output.
fn tps(output: &std::process::Output) -> anyhow::Result<f64> {
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .with_context(|| format!("no tps in pgbench's output: {text}"))
}

fn pgbench(url: &str, script: &Path, args: &[String]) -> anyhow::Result<f64> {
    let output = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f"])
        .arg(script)
        .args(args)
        .arg(url)
        .output()
        .context("running pgbench")?;
    tps(&output)
}

/// Durable single-row inserts (a JSON body the size of an action's).
fn pgbench_inserts(cluster: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let url = database(cluster, "floor_insert")?;
    psql(
        &url,
        "CREATE TABLE t (key bytea PRIMARY KEY, value bytea NOT NULL)",
    )?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO t VALUES (convert_to(md5(random()::text) || clock_timestamp()::text, 'UTF8'), convert_to(repeat('x', 600), 'UTF8'));\n",
    )?;
    pgbench(
        &url,
        &script,
        &[
            format!("-c{clients}"),
            format!("-j{}", clients.min(4)),
            format!("-T{seconds}"),
        ],
    )
}

/// Claim-and-complete cycles of a job table: each transaction takes the
/// oldest pending job no one holds and marks it done.
fn pgbench_claims(cluster: &str, clients: usize, jobs: usize) -> anyhow::Result<f64> {
    let url = database(cluster, "floor_claim")?;
    psql(
        &url,
        &format!(
            "CREATE TABLE jobs (id bigserial PRIMARY KEY, due bigint NOT NULL, done boolean NOT NULL DEFAULT false);
             CREATE INDEX jobs_due ON jobs (due) WHERE NOT done;
             INSERT INTO jobs (due) SELECT g FROM generate_series(1, {}) g;",
            jobs * 2
        ),
    )?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("claim.sql");
    std::fs::write(
        &script,
        "UPDATE jobs SET done = true WHERE id = (SELECT id FROM jobs WHERE NOT done ORDER BY due LIMIT 1 FOR UPDATE SKIP LOCKED);\n",
    )?;
    pgbench(
        &url,
        &script,
        &[
            format!("-c{clients}"),
            format!("-j{}", clients.min(4)),
            format!("-t{}", (jobs / clients).max(1)),
        ],
    )
}

/// A key every replica of a drain shares (the no-op needs no credentials,
/// but replicas of one database must seal with one key).
const SECRET_KEY: &str = "4e1c9a7b2d6f8e0a3c5b7d9f1e2a4c6b8d0f2e4a6c8b0d2f4e6a8c0b2d4f6e8a";

/// Creates `n` due no-op actions with the scheduler off, restarts the server
/// with it on, alongside `extra` more replicas on fresh data dirs (same
/// store), and times the drain to the last success: actions per second.
fn drain(
    tokio: &tokio::runtime::Runtime,
    off: Launch<'_>,
    n: usize,
    extra: &[&Path],
) -> anyhow::Result<f64> {
    let mut server = off.start()?;
    let body = r#"{"type":"noop","params":{},"identity_id":"bench"}"#;
    tokio.block_on(send_many(
        server.port,
        post("/v1/actions", &server.key, body),
        n,
        64,
    ))?;
    ensure!(server.count_actions(Some("scheduled"))? == n as u64);
    server.terminate()?;
    let env: Vec<_> = off
        .env
        .iter()
        .filter(|(name, _)| *name != "ACTIONHOST_SCHEDULER__ENABLED")
        .cloned()
        .collect();
    let on = Launch { env, ..off };
    let key = std::fs::read_to_string(on.dir.join("data/admin.key"))?
        .trim()
        .to_owned();
    let mut servers = vec![on.spawn()?];
    for dir in extra {
        servers.push(Launch { dir, ..on.clone() }.spawn()?);
    }
    for server in &mut servers {
        server.until_ok("/readyz", Duration::from_secs(120))?;
        server.key.clone_from(&key);
    }
    let server = &servers[0];
    let began = Instant::now();
    loop {
        let succeeded = server.count_actions(Some("succeeded"))?;
        if succeeded >= n as u64 {
            break;
        }
        if began.elapsed() > Duration::from_secs(3600) {
            bail!("the drain did not finish: {succeeded} of {n}");
        }
        std::thread::sleep(Duration::from_millis(if n as u64 - succeeded > 2_000 {
            1_000
        } else {
            100
        }));
    }
    Ok(n as f64 / began.elapsed().as_secs_f64())
}
