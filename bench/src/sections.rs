//! The benchmarks, section by section, and the targets checked on them.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use serde::Serialize;

use crate::Settings;
use crate::load::{self, Work};
use crate::peers::Peer;
use crate::server::{Connection, Launch, Server, post, send_many};
use crate::stats::{Figure, Target, quantile};

/// Everything a run produced.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub mode: String,
    pub figures: Vec<Figure>,
    /// Ratios between figures of this run (unit `×`).
    pub ratios: Vec<Figure>,
    pub targets: Vec<Target>,
    /// Benchmarks not run, with the reason.
    pub skipped: Vec<String>,
}

impl Results {
    pub(crate) fn push(&mut self, figure: Figure) {
        println!(
            "  {:<78} {:>10.2} {:<8} [{:.2} – {:.2}] n={}",
            figure.name, figure.median, figure.unit, figure.low, figure.high, figure.samples
        );
        self.figures.push(figure);
    }

    fn get(&self, id: &str) -> Option<f64> {
        self.figures
            .iter()
            .chain(&self.ratios)
            .find(|f| f.id == id)
            .map(|f| f.median)
    }

    pub(crate) fn ratio(&mut self, id: &str, name: &str, numerator: &str, denominator: &str) {
        if let (Some(a), Some(b)) = (self.get(numerator), self.get(denominator)) {
            let figure = Figure::single(id, name, "×", a / b)
                .with_note(format!("{numerator} ÷ {denominator}"));
            println!("  {:<78} {:>10.2} ×", figure.name, figure.median);
            self.ratios.push(figure);
        }
    }
}

/// How long each kind of measurement runs.
pub(crate) struct Budget {
    pub(crate) inprocess: Duration,
    pub(crate) wrk: Duration,
    pub(crate) wrk_runs: usize,
    pub(crate) start_runs: usize,
    pub(crate) drain: usize,
    pub(crate) due: usize,
    pub(crate) soak: Duration,
}

impl Budget {
    fn of(settings: &Settings) -> Self {
        let mut budget = Self::default_for(settings);
        if let Some(seconds) = settings.soak_seconds {
            budget.soak = Duration::from_secs(seconds);
        }
        budget
    }

    fn default_for(settings: &Settings) -> Self {
        if settings.quick {
            Self {
                inprocess: Duration::from_millis(300),
                wrk: Duration::from_secs(1),
                wrk_runs: 1,
                start_runs: 1,
                drain: 300,
                due: 200,
                soak: Duration::from_secs(4),
            }
        } else {
            Self {
                inprocess: Duration::from_secs(5),
                wrk: Duration::from_secs(5),
                wrk_runs: 3,
                start_runs: 5,
                drain: 100_000,
                due: 10_000,
                soak: Duration::from_secs(600),
            }
        }
    }
}

pub(crate) fn artifact(settings: &Settings, path: &str) -> anyhow::Result<PathBuf> {
    let path = settings.root.join(path);
    ensure!(
        path.exists(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    Ok(path)
}

/// The compiled-code cache the suite's servers share.
pub(crate) fn cache(settings: &Settings) -> PathBuf {
    settings.root.join("target/bench-cache")
}

/// A fresh directory whose `plugins/` holds these components.
pub(crate) fn fresh_dir(plugins: &[PathBuf]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("plugins"))?;
    for plugin in plugins {
        let name = plugin.file_name().context("file name")?;
        std::fs::copy(plugin, dir.path().join("plugins").join(name))?;
    }
    Ok(dir)
}

/// A launch of this run's `actionhost` on `dir`, with no extra environment.
pub(crate) fn launch<'a>(settings: &'a Settings, dir: &'a Path, cache: &'a Path) -> Launch<'a> {
    Launch {
        binary: &settings.actionhost,
        dir,
        cache,
        env: Vec::new(),
    }
}

/// The environment of a server whose scheduler stays off.
pub(crate) fn scheduler_off() -> Vec<(&'static str, String)> {
    vec![("ACTIONHOST_SCHEDULER__ENABLED", "false".into())]
}

pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

pub fn run_all(settings: &Settings) -> anyhow::Result<Results> {
    let budget = Budget::of(settings);
    let mut results = Results {
        mode: if settings.quick { "quick" } else { "full" }.into(),
        ..Results::default()
    };
    std::fs::create_dir_all(cache(settings))?;
    if settings.wants("inprocess") {
        println!("== in-process execute");
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let figures = tokio.block_on(crate::inprocess::run(
            &settings.root.join("target/fixtures"),
            &cache(settings),
            budget.inprocess,
        ))?;
        for figure in figures {
            results.push(figure);
        }
        for (lang, mode) in [
            ("rust", "fresh"),
            ("javascript", "fresh"),
            ("javascript", "reused"),
            ("python", "fresh"),
            ("python", "reused"),
        ] {
            results.ratio(
                &format!("ratio.inprocess.{lang}_{mode}_vs_raw"),
                &format!("in-process execute, {lang} ({mode}) ÷ raw wasmtime loop"),
                &format!("inprocess.{lang}_{mode}"),
                "inprocess.raw_wasmtime",
            );
        }
    }
    if settings.wants("http") {
        println!("== HTTP");
        http(settings, &budget, &mut results)?;
    }
    if settings.wants("mcp") {
        println!("== MCP tools/call beside REST sync execute");
        mcp(settings, &budget, &mut results)?;
    }
    if settings.wants("composio") {
        println!("== Composio's client beside raw HTTP");
        crate::composio::run(settings, &mut results)?;
    }
    if settings.wants("scheduler") {
        println!("== scheduler");
        scheduler(settings, &budget, &mut results)?;
    }
    if settings.wants("store") {
        println!("== the stores: sled and PostgreSQL, beside pgbench");
        crate::store::run(settings, &budget, &mut results)?;
    }
    if settings.wants("hostile") {
        println!("== hostile plugins beside steady traffic");
        crate::hostile::run(settings, budget.wrk, budget.wrk_runs, &mut results)?;
    }
    if settings.wants("contacts") {
        println!("== contacts and events");
        crate::contacts::run(settings, &budget, &mut results)?;
    }
    if settings.wants("agents") {
        println!("== agent runs");
        crate::agents::run(settings, &mut results)?;
    }
    if settings.wants("console") {
        println!("== the console in Chromium");
        crate::console::run(settings, &budget, &mut results)?;
    }
    if settings.wants("retention") {
        println!("== retention under load");
        crate::retention::run(settings, &budget, &mut results)?;
    }
    if settings.wants("startup") {
        println!("== start-up and hot swap");
        startup(settings, &budget, &mut results)?;
    }
    if settings.wants("memory") {
        println!("== memory");
        memory(settings, &mut results)?;
    }
    if settings.wants("soak") {
        println!("== soak");
        soak(settings, &budget, &mut results)?;
    }
    targets(&mut results);
    Ok(results)
}

/// Sync execute, durable creation and the peers at 1, 8 and 64 connections.
fn http(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let launch = launch(settings, dir.path(), &cache);
    let mut server = launch.start()?;
    let auth = format!("Bearer {}", server.key);
    let json = || ("content-type", "application/json".to_owned());
    let execute = Work {
        method: "POST",
        path: "/api/v2/actions/noop/execute",
        headers: vec![("authorization", auth.clone()), json()],
        body: r#"{"input":{}}"#,
        expect_status: 200,
        expect_body: r#""successful":true"#,
    };
    let far = rfc3339(SystemTime::now() + Duration::from_secs(30 * 86_400));
    let create_body = format!(
        r#"{{"type":"noop","params":{{}},"identity_id":"bench","scheduled_time":"{far}"}}"#
    );
    let create = Work {
        method: "POST",
        path: "/v1/actions",
        headers: vec![("authorization", auth.clone()), json()],
        body: &create_body,
        expect_status: 200,
        expect_body: r#""action_id":"act_"#,
    };
    let hello = Work {
        method: "GET",
        path: "/",
        headers: Vec::new(),
        body: "",
        expect_status: 200,
        expect_body: "Hello, World!",
    };
    let wasi_noop = Work {
        method: "POST",
        path: "/",
        headers: vec![json()],
        body: r#"{"input":{}}"#,
        expect_status: 200,
        expect_body: r#""successful":true"#,
    };
    let axum = Peer::axum_hello()?;
    let wasmtime = match &settings.wasmtime {
        Some(wasmtime) => {
            let component = artifact(settings, "target/bench/noop-http.wasm")?;
            Some(Peer::wasmtime_serve(wasmtime, &component)?)
        }
        None => {
            results.skipped.push(
                "wasmtime serve: not installed (the full bench/run installs wasmtime-cli 48 into ~/.cache/actionhost-bench)"
                    .into(),
            );
            None
        }
    };
    let mut acknowledged = 0u64;
    for connections in [1usize, 8, 64] {
        let mut targets: Vec<(&str, &str, u16, &Work<'_>)> = vec![
            (
                "execute",
                "actionhost sync execute (no-op plugin, recorded durably)",
                server.port,
                &execute,
            ),
            (
                "create",
                "actionhost durable action creation",
                server.port,
                &create,
            ),
            ("axum_hello", "axum hello world", axum.port, &hello),
        ];
        if let Some(peer) = &wasmtime {
            targets.push((
                "wasmtime_serve",
                "wasmtime serve, no-op wasi:http component",
                peer.port,
                &wasi_noop,
            ));
        }
        for (id, name, port, work) in targets {
            let Measured { ok, middle } = wrk_runs(
                settings,
                budget,
                results,
                (port, work, connections),
                &format!("http.{id}.c{connections}"),
                &format!("{name}, {connections} conn"),
            )?;
            if id == "create" {
                acknowledged += ok;
            }
            results.push(Figure::single(
                &format!("http.{id}.c{connections}.p50_ms"),
                &format!("{name}, {connections} conn: p50 latency"),
                "ms",
                middle.p50_us / 1000.0,
            ));
        }
    }
    for peer in ["wasmtime_serve", "axum_hello"] {
        results.ratio(
            &format!("ratio.http.execute_vs_{peer}.c64"),
            &format!("sync execute ÷ {peer}, requests/s at 64 connections"),
            "http.execute.c64.rps",
            &format!("http.{peer}.c64.rps"),
        );
    }
    // Every acknowledged creation is on disk: kill -9 right after the load,
    // restart, count.
    server.kill_9()?;
    let restarted = launch.start()?;
    let found = restarted.count_actions(None)?;
    ensure!(
        found >= acknowledged,
        "after kill -9: {found} actions on disk, but {acknowledged} creations were acknowledged"
    );
    results.push(
        Figure::single(
            "http.create.lost_after_kill9",
            &format!("acknowledged creations lost after kill -9 ({acknowledged} acknowledged, {found} on disk)"),
            "actions",
            (acknowledged.saturating_sub(found)) as f64,
        )
        .with_note("counted after a kill -9 at the end of the creation load"),
    );
    Ok(())
}

/// What [`wrk_runs`] saw: the responses that were right, all runs
/// together, and the median run.
pub(crate) struct Measured {
    pub(crate) ok: u64,
    pub(crate) middle: load::Point,
}

/// `budget.wrk_runs` wrk runs of `work` at `port` with `connections`
/// connections; pushes `ID.rps` (every run) and `ID.p99_ms` (the median
/// run's), named `NAME: …`.
pub(crate) fn wrk_runs(
    settings: &Settings,
    budget: &Budget,
    results: &mut Results,
    (port, work, connections): (u16, &Work<'_>, usize),
    id: &str,
    name: &str,
) -> anyhow::Result<Measured> {
    let mut points = Vec::new();
    for _ in 0..budget.wrk_runs {
        points.push(
            load::run(&settings.wrk, port, work, connections, budget.wrk)
                .with_context(|| name.to_owned())?,
        );
    }
    let rps: Vec<f64> = points.iter().map(load::Point::rps).collect();
    let ok = points.iter().map(|p| p.ok).sum();
    points.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
    let middle = points.swap_remove(points.len() / 2);
    results.push(Figure::from_samples(
        &format!("{id}.rps"),
        &format!("{name}: requests/s"),
        "req/s",
        &rps,
    ));
    results.push(Figure::single(
        &format!("{id}.p99_ms"),
        &format!("{name}: p99 latency"),
        "ms",
        middle.p99_us / 1000.0,
    ));
    Ok(Measured { ok, middle })
}

/// MCP `tools/call` of the no-op type (the stateless 2026-07-28 revision,
/// one JSON-RPC request per HTTP request, as a client that keeps no session
/// sends it) beside REST sync execute of the same type, on one server, at 8
/// and 64 connections. Both run through the one pipeline and record the
/// execution durably before answering.
fn mcp(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let server = launch(settings, dir.path(), &cache).start()?;
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
    let call = Work {
        method: "POST",
        path: "/mcp",
        headers: vec![
            ("authorization", auth.clone()),
            ("content-type", "application/json".to_owned()),
            ("accept", "application/json, text/event-stream".to_owned()),
            ("mcp-protocol-version", "2026-07-28".to_owned()),
            ("mcp-method", "tools/call".to_owned()),
            ("mcp-name", "noop".to_owned()),
        ],
        body: r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"noop","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        expect_status: 200,
        expect_body: r#""isError":false"#,
    };
    for connections in [8usize, 64] {
        for (id, name, work) in [
            ("rest_execute", "REST sync execute (no-op plugin)", &execute),
            (
                "tools_call",
                "MCP tools/call, stateless (no-op plugin)",
                &call,
            ),
        ] {
            wrk_runs(
                settings,
                budget,
                results,
                (server.port, work, connections),
                &format!("mcp.{id}.c{connections}"),
                &format!("{name}, {connections} conn"),
            )?;
        }
        results.ratio(
            &format!("ratio.mcp.tools_call_vs_rest_execute.c{connections}"),
            &format!("MCP tools/call ÷ REST sync execute, requests/s at {connections} connections"),
            &format!("mcp.tools_call.c{connections}.rps"),
            &format!("mcp.rest_execute.c{connections}.rps"),
        );
    }
    Ok(())
}

/// Drain of N due actions and due-to-start latency of M due at once.
fn scheduler(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    // Drain: N due actions created with the scheduler off, then a restart
    // with it on.
    let n = budget.drain;
    let dir = fresh_dir(std::slice::from_ref(&noop))?;
    let cache = cache(settings);
    let off = Launch {
        env: scheduler_off(),
        ..launch(settings, dir.path(), &cache)
    };
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
    let on = Launch {
        env: Vec::new(),
        ..off
    };
    let mut server = on.spawn()?;
    let ready = server.until_ok("/readyz", Duration::from_secs(120))?;
    server.key = std::fs::read_to_string(dir.path().join("data/admin.key"))?
        .trim()
        .to_owned();
    let began = Instant::now();
    // A count is a scan of its index, which costs the server CPU in
    // proportion to the count: polled every 100 ms over the growing
    // `succeeded` index it took a third of the drain rate. So the shrinking
    // `scheduled` count is polled, once a second while it is large and every
    // 100 ms near the end.
    loop {
        let left = server.count_actions(Some("scheduled"))?;
        if left == 0 {
            break;
        }
        ensure!(
            began.elapsed() < Duration::from_secs(3600),
            "the drain did not finish"
        );
        std::thread::sleep(Duration::from_millis(if left > 2_000 {
            1_000
        } else {
            100
        }));
    }
    while server.count_actions(Some("succeeded"))? < n as u64 {
        ensure!(
            began.elapsed() < Duration::from_secs(3600),
            "the drain did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let drain_rate = n as f64 / began.elapsed().as_secs_f64();
    results.push(
        Figure::single(
            "scheduler.drain_per_s",
            &format!("scheduler drain of {n} due no-op actions"),
            "actions/s",
            drain_rate,
        )
        .with_note(format!(
            "timed from ready ({} ms after spawn) to the last success; the scheduled count polled every second, every 100 ms below 2,000",
            ready.as_millis()
        )),
    );
    drop(server);
    results.ratio(
        "ratio.scheduler.drain_vs_execute",
        "scheduler drain ÷ sync execute at 64 connections",
        "scheduler.drain_per_s",
        "http.execute.c64.rps",
    );

    // Due-to-start: M actions due at the same instant.
    let m = budget.due;
    let dir = fresh_dir(&[noop])?;
    let launch = launch(settings, dir.path(), &cache);
    let server = launch.start()?;
    let lead = Duration::from_secs_f64(m as f64 / 500.0 + 3.0);
    let due = SystemTime::now() + lead;
    let body = format!(
        r#"{{"type":"noop","params":{{}},"identity_id":"bench","scheduled_time":"{}"}}"#,
        rfc3339(due)
    );
    tokio.block_on(send_many(
        server.port,
        post("/v1/actions", &server.key, &body),
        m,
        64,
    ))?;
    ensure!(
        SystemTime::now() < due,
        "creating {m} actions took longer than the lead of {lead:?}"
    );
    let began = Instant::now();
    while server.count_actions(Some("succeeded"))? < m as u64 {
        ensure!(
            began.elapsed() < Duration::from_secs(3600),
            "the due actions did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut late_ms = Vec::with_capacity(m);
    for skip in (0..m).step_by(100) {
        let (status, page) =
            server.call("GET", &format!("/v1/actions?limit=100&skip={skip}"), "")?;
        ensure!(status == 200, "{page}");
        for action in page["actions"].as_array().context("actions")? {
            let scheduled = humantime::parse_rfc3339_weak(
                action["scheduled_time"]
                    .as_str()
                    .context("scheduled_time")?,
            )?;
            let started = action["history"]
                .as_array()
                .context("history")?
                .iter()
                .find(|h| h["transition"] == "execute")
                .and_then(|h| h["at"].as_str())
                .context("no execute entry in the history")?;
            let started = humantime::parse_rfc3339_weak(started)?;
            let late = started.duration_since(scheduled).unwrap_or(Duration::ZERO);
            late_ms.push(late.as_secs_f64() * 1000.0);
        }
    }
    ensure!(
        late_ms.len() == m,
        "{} of {m} actions listed",
        late_ms.len()
    );
    late_ms.sort_by(f64::total_cmp);
    for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
        results.push(Figure::single(
            &format!("scheduler.due_to_start.{label}_ms"),
            &format!("due-to-start latency, {m} actions due at once: {label}"),
            "ms",
            quantile(&late_ms, q),
        ));
    }
    results.push(Figure::single(
        "scheduler.due_to_start.max_ms",
        &format!("due-to-start latency, {m} actions due at once: max"),
        "ms",
        late_ms[late_ms.len() - 1],
    ));
    Ok(())
}

/// The bundled plugins: every component in `target/plugins`.
fn bundled(settings: &Settings) -> anyhow::Result<Vec<PathBuf>> {
    let mut plugins: Vec<PathBuf> = std::fs::read_dir(settings.root.join("target/plugins"))
        .context("target/plugins: run scripts/build-plugins")?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    plugins.sort();
    ensure!(!plugins.is_empty(), "target/plugins has no component");
    Ok(plugins)
}

/// Cold and warm start with every bundled plugin, idle memory, hot swap.
fn startup(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let plugins = bundled(settings)?;
    let count = plugins.len();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut cold, mut warm, mut warm_live, mut idle, mut empty) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..budget.start_runs {
        let cache = tempfile::tempdir()?;
        let dir = fresh_dir(&plugins)?;
        let launch = launch(settings, dir.path(), cache.path());
        let mut server = launch.spawn()?;
        cold.push(ms(server.until_ok("/readyz", Duration::from_secs(600))?));
        drop(server);
        let warm_dir = fresh_dir(&plugins)?;
        let launch = Launch {
            dir: warm_dir.path(),
            ..launch
        };
        let mut server = launch.spawn()?;
        warm_live.push(ms(server.until_ok("/healthz", Duration::from_secs(60))?));
        warm.push(ms(server.until_ok("/readyz", Duration::from_secs(60))?));
        std::thread::sleep(Duration::from_millis(500));
        idle.push(server.rss_mib()?);
        drop(server);
        let none = fresh_dir(&[])?;
        let launch = Launch {
            dir: none.path(),
            ..launch
        };
        let server = launch.start()?;
        std::thread::sleep(Duration::from_millis(500));
        empty.push(server.rss_mib()?);
    }
    let names = plugins
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()))
        .collect::<Vec<_>>()
        .join(", ");
    results.push(
        Figure::from_samples(
            "startup.cold_ready_ms",
            &format!("cold start to ready, {count} bundled plugins, empty cache"),
            "ms",
            &cold,
        )
        .with_note(format!("plugins: {names}")),
    );
    results.push(Figure::from_samples(
        "startup.warm_live_ms",
        &format!("warm start to /healthz, {count} bundled plugins"),
        "ms",
        &warm_live,
    ));
    results.push(Figure::from_samples(
        "startup.warm_ready_ms",
        &format!("warm start to ready, {count} bundled plugins, cached code"),
        "ms",
        &warm,
    ));
    results.push(Figure::from_samples(
        "memory.idle_all_plugins_mib",
        &format!("resident memory, idle, {count} bundled plugins loaded"),
        "MiB",
        &idle,
    ));
    results.push(Figure::from_samples(
        "memory.idle_no_plugin_mib",
        "resident memory, idle, no plugin",
        "MiB",
        &empty,
    ));
    let per_plugin = (results.get("memory.idle_all_plugins_mib").unwrap_or(0.0)
        - results.get("memory.idle_no_plugin_mib").unwrap_or(0.0))
        / count as f64;
    results.push(Figure::single(
        "memory.per_plugin_mib",
        "resident memory per loaded plugin (difference ÷ count)",
        "MiB",
        per_plugin,
    ));

    let peer = ReportPeer::start(Duration::ZERO)?;
    for cached in [true, false] {
        let mut samples = Vec::new();
        for _ in 0..budget.start_runs {
            samples.push(ms(hot_swap(settings, peer.port, cached)?));
        }
        let (id, name) = if cached {
            (
                "startup.hot_swap_cached_ms",
                "hot swap: new version's file in the folder to first execution on it, code cached",
            )
        } else {
            (
                "startup.hot_swap_cold_ms",
                "hot swap: new version's file in the folder to first execution on it, compiled",
            )
        };
        results.push(Figure::from_samples(id, name, "ms", &samples));
    }
    Ok(())
}

/// Time from fixture-versioned 2.0.0 landing in the folder to the first
/// execution on it; `cached`: its code compiled into the cache first.
fn hot_swap(settings: &Settings, peer: u16, cached: bool) -> anyhow::Result<Duration> {
    let v1 = artifact(settings, "target/fixtures/fixture-versioned.wasm")?;
    let v2 = artifact(settings, "target/fixtures/fixture-versioned-v2.wasm")?;
    let dir = fresh_dir(std::slice::from_ref(&v1))?;
    let cache = dir.path().join("cache");
    if cached {
        let status = std::process::Command::new(&settings.actionhost)
            .args(["plugin", "inspect"])
            .arg(&v2)
            .arg("--cache-dir")
            .arg(&cache)
            .stdout(std::process::Stdio::null())
            .status()?;
        ensure!(status.success(), "plugin inspect failed");
    }
    let launch = Launch {
        env: scheduler_off(),
        ..launch(settings, dir.path(), &cache)
    };
    let server = launch.start()?;
    let body = format!(r#"{{"input":{{"url":"http://127.0.0.1:{peer}/report"}}}}"#);
    let version_of = |server: &Server| -> anyhow::Result<String> {
        let (status, answer) =
            server.call("POST", "/api/v2/actions/versioned_echo/execute", &body)?;
        ensure!(
            status == 200 && answer["successful"] == true,
            "{status} {answer}"
        );
        Ok(answer["data"]["version"]
            .as_str()
            .context("version")?
            .to_owned())
    };
    ensure!(version_of(&server)? == "1.0.0");
    let temp = dir.path().join("plugins/.swap.partial");
    std::fs::copy(&v2, &temp)?;
    let dropped = Instant::now();
    std::fs::rename(&temp, dir.path().join("plugins/fixture-versioned.wasm"))?;
    loop {
        if version_of(&server)? == "2.0.0" {
            return Ok(dropped.elapsed());
        }
        ensure!(
            dropped.elapsed() < Duration::from_secs(120),
            "2.0.0 never served"
        );
    }
}

/// A peer that fixture-versioned reports to: answers `{}` after `delay`.
struct ReportPeer {
    port: u16,
}

impl ReportPeer {
    fn start(delay: Duration) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve_reports(stream, delay));
            }
        });
        Ok(Self { port })
    }
}

fn serve_reports(mut stream: std::net::TcpStream, delay: Duration) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut seen = Vec::new();
    loop {
        let Ok(n) = stream.read(&mut buffer) else {
            return;
        };
        if n == 0 {
            return;
        }
        seen.extend_from_slice(&buffer[..n]);
        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if seen.len() < end + 4 + length {
            continue;
        }
        seen.drain(..end + 4 + length);
        std::thread::sleep(delay);
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        );
    }
}

/// Memory per concurrent execution: executions held open by a slow peer.
fn memory(settings: &Settings, results: &mut Results) -> anyhow::Result<()> {
    let concurrent = 32usize;
    let v1 = artifact(settings, "target/fixtures/fixture-versioned.wasm")?;
    let dir = fresh_dir(&[v1])?;
    let cache = cache(settings);
    let launch = Launch {
        env: scheduler_off(),
        ..launch(settings, dir.path(), &cache)
    };
    let server = launch.start()?;
    let slow = ReportPeer::start(Duration::from_secs(3))?;
    let fast = ReportPeer::start(Duration::ZERO)?;
    let execute = |port: u16| {
        let body = format!(r#"{{"input":{{"url":"http://127.0.0.1:{port}/report"}}}}"#);
        server.call("POST", "/api/v2/actions/versioned_echo/execute", &body)
    };
    for _ in 0..5 {
        let (status, answer) = execute(fast.port)?;
        ensure!(status == 200 && answer["successful"] == true, "{answer}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss_mib()?;
    let during = std::thread::scope(|scope| -> anyhow::Result<f64> {
        let handles: Vec<_> = (0..concurrent)
            .map(|_| scope.spawn(|| execute(slow.port)))
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let during = server.rss_mib()?;
        for handle in handles {
            let (status, answer) = handle.join().expect("client thread")?;
            ensure!(status == 200 && answer["successful"] == true, "{answer}");
        }
        Ok(during)
    })?;
    results.push(
        Figure::single(
            "memory.per_execution_mib",
            &format!(
                "resident memory per concurrent execution ({concurrent} held open by a slow peer)"
            ),
            "MiB",
            (during - before) / concurrent as f64,
        )
        .with_note(format!("{before:.1} MiB before, {during:.1} MiB during")),
    );
    Ok(())
}

/// The soak: sync executes at half the peak rate; memory growth.
fn soak(settings: &Settings, budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let launch = launch(settings, dir.path(), &cache);
    let server = launch.start()?;
    let peak = results.get("http.execute.c64.rps").unwrap_or(1000.0);
    let rate = (peak / 2.0).max(10.0);
    let connections = 16usize;
    let request = Arc::new(post(
        "/api/v2/actions/noop/execute",
        &server.key,
        r#"{"input":{}}"#,
    ));
    let done = Arc::new(AtomicU64::new(0));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = Instant::now() + budget.soak;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (request, done, port) = (request.clone(), done.clone(), server.port);
        tasks.push(tokio.spawn(async move {
            let mut connection = Connection::open(port).await?;
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(connections as f64 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while Instant::now() < stop {
                tick.tick().await;
                let (status, body) = connection.round_trip(&request).await?;
                ensure!(status == 200, "{status}: {}", String::from_utf8_lossy(body));
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let warm_up = budget.soak / 10;
    let began = Instant::now();
    let mut samples = Vec::new();
    while Instant::now() < stop {
        std::thread::sleep(
            Duration::from_millis(250).min(stop.saturating_duration_since(Instant::now())),
        );
        samples.push((began.elapsed(), server.rss_mib()?));
    }
    for task in tasks {
        tokio.block_on(task)??;
    }
    let executed = done.load(Ordering::Relaxed);
    let (after_warm_up, last, peak_rss) = growth(&samples, warm_up);
    let seconds = budget.soak.as_secs_f64();
    results.push(Figure::single("soak.rate", &format!("soak: sync executes per second over {seconds:.0} s (aimed at half of peak, {rate:.0}/s)"), "req/s", executed as f64 / seconds));
    results.push(Figure::single(
        "soak.rss_after_warmup_mib",
        "soak: resident memory after the first tenth",
        "MiB",
        after_warm_up,
    ));
    results.push(
        Figure::single(
            "soak.rss_end_mib",
            "soak: resident memory at the end",
            "MiB",
            last,
        )
        .with_note(format!("peak {peak_rss:.1} MiB")),
    );
    results.push(Figure::single(
        "soak.growth_pct",
        "soak: memory growth from after the first tenth to the end",
        "%",
        (last - after_warm_up) / after_warm_up * 100.0,
    ));
    drop(server);

    // The store's share: bare sled in a process of its own, storing as many
    // execution records in the same time with the server's page cache.
    let floor_dir = tempfile::tempdir()?;
    let cache_bytes = std::env::var("ACTIONHOST_DB_CACHE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(actionhost::store::DEFAULT_CACHE_BYTES);
    let mut floor = std::process::Command::new(std::env::current_exe()?)
        .arg("sled-floor")
        .arg(floor_dir.path())
        .arg(format!("{}", executed as f64 / seconds))
        .arg(format!("{seconds}"))
        .arg(crate::floor::EXECUTION_RECORD_BYTES.to_string())
        .arg(cache_bytes.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the sled floor")?;
    let began = Instant::now();
    let mut floor_samples = Vec::new();
    while floor.try_wait()?.is_none() {
        if let Ok(rss) = crate::server::rss_mib(floor.id()) {
            floor_samples.push((began.elapsed(), rss));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let output = floor.wait_with_output()?;
    ensure!(
        output.status.success(),
        "the sled floor failed: {}",
        output.status
    );
    let stored: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("the sled floor's record count")?;
    ensure!(
        !floor_samples.is_empty() && stored as f64 >= executed as f64 * 0.9,
        "the sled floor stored {stored} records, the soak {executed}"
    );
    let (floor_after, floor_last, _) = growth(&floor_samples, warm_up);
    results.push(
        Figure::single(
            "soak.sled_floor_growth_mib",
            &format!(
                "soak floor: bare sled storing {stored} execution records of {} bytes in the same time, growth after the first tenth",
                crate::floor::EXECUTION_RECORD_BYTES
            ),
            "MiB",
            floor_last - floor_after,
        )
        .with_note(format!("{floor_after:.1} → {floor_last:.1} MiB")),
    );
    results.push(Figure::single(
        "soak.sled_floor_pct",
        "soak floor: that growth as a share of the server's memory after the first tenth (the least growth the server can show)",
        "%",
        (floor_last - floor_after) / after_warm_up * 100.0,
    ));
    Ok(())
}

/// Resident memory after `warm_up`, at the end, and at its peak.
fn growth(samples: &[(Duration, f64)], warm_up: Duration) -> (f64, f64, f64) {
    let after_warm_up = samples
        .iter()
        .find(|(at, _)| *at >= warm_up)
        .map_or(samples[0].1, |(_, rss)| *rss);
    let last = samples.last().map_or(after_warm_up, |(_, rss)| *rss);
    let peak = samples.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    (after_warm_up, last, peak)
}

/// The issue's targets, each against this run's figures.
fn targets(results: &mut Results) {
    let mut targets = Vec::new();
    let get = |id: &str| results.get(id);
    if let Some(v) = get("ratio.inprocess.rust_fresh_vs_raw") {
        targets.push(Target::at_most(
            "in-process no-op Rust execute ≤ 1.5 × the raw wasmtime loop",
            format!("{v:.2} ×"),
            v,
            1.5,
        ));
    }
    if let Some(v) = get("ratio.http.execute_vs_wasmtime_serve.c64") {
        targets.push(Target::at_least(
            "sync execute ≥ 0.8 × wasmtime serve at 64 connections",
            format!("{v:.2} ×"),
            v,
            0.8,
        ));
    }
    if let Some(v) = get("ratio.http.execute_vs_axum_hello.c64") {
        targets.push(Target::at_least(
            "sync execute ≥ 0.5 × axum hello world at 64 connections",
            format!("{v:.2} ×"),
            v,
            0.5,
        ));
    }
    if let Some(v) = get("http.create.c64.rps") {
        targets.push(Target::at_least(
            "durable creation ≥ 5,000/s at 64 clients",
            format!("{v:.0}/s"),
            v,
            5000.0,
        ));
    }
    if let Some(v) = get("http.create.lost_after_kill9") {
        targets.push(Target::at_most(
            "no acknowledged creation lost at that load (kill -9)",
            format!("{v:.0} lost"),
            v,
            0.0,
        ));
    }
    if let Some(v) = get("events.batch100.c8") {
        targets.push(Target::at_least(
            "events acknowledged ≥ 20,000/s in batches of 100 at 8 clients",
            format!("{v:.0}/s"),
            v,
            20_000.0,
        ));
    }
    if let Some(v) = get("events.single.c64") {
        targets.push(Target::at_least(
            "single events acknowledged ≥ 3,000/s at 64 clients",
            format!("{v:.0}/s"),
            v,
            3_000.0,
        ));
    }
    if let Some(v) = get("agents.instant.contacts_per_s") {
        targets.push(Target::at_least(
            "agent contacts evaluated ≥ 200/s with the model answering at once",
            format!("{v:.0}/s"),
            v,
            200.0,
        ));
    }
    if let Some(v) = get("ratio.scheduler.drain_vs_execute") {
        targets.push(Target::at_least(
            "scheduler drain ≥ 0.5 × sync execute",
            format!("{v:.2} ×"),
            v,
            0.5,
        ));
    }
    if let Some(v) = get("scheduler.due_to_start.p99_ms") {
        targets.push(Target::at_most(
            "due-to-start p99 < 100 ms with the due actions at once",
            format!("{v:.0} ms"),
            v,
            100.0,
        ));
    }
    if let Some(v) = get("hostile.worst_p99_ratio") {
        targets.push(Target::at_most(
            "a well-behaved plugin's p99 ≤ 2 × its baseline beside each hostile plugin",
            format!("{v:.2} ×"),
            v,
            2.0,
        ));
    }
    if let Some(v) = get("startup.warm_ready_ms") {
        targets.push(Target::at_most(
            "warm start with every bundled plugin < 150 ms",
            format!("{v:.0} ms"),
            v,
            150.0,
        ));
    }
    if let Some(v) = get("startup.hot_swap_cached_ms") {
        targets.push(Target::at_most(
            "hot swap of a cached plugin < 50 ms",
            format!("{v:.0} ms"),
            v,
            50.0,
        ));
    }
    if let Some(v) = get("memory.idle_all_plugins_mib") {
        targets.push(Target::at_most(
            "idle resident memory with all bundled plugins < 50 MiB",
            format!("{v:.1} MiB"),
            v,
            50.0,
        ));
    }
    if let Some(v) = get("soak.growth_pct") {
        let measured = match get("soak.sled_floor_pct") {
            Some(floor) => format!("{v:.1} % (bare sled storing the same records: {floor:.1} %)"),
            None => format!("{v:.1} %"),
        };
        targets.push(Target::at_most(
            "soak at half of peak grows memory < 10 %",
            measured,
            v,
            10.0,
        ));
    }
    println!("== targets");
    for target in &targets {
        println!(
            "  [{}] {}: {}",
            if target.met { "met" } else { "MISSED" },
            target.target,
            target.measured
        );
    }
    results.targets = targets;
}
