//! The hostile matrix under steady traffic: a well-behaved plugin (the
//! no-op) serves wrk's load while one hostile behaviour after another runs
//! in a loop beside it. The figure is the no-op's p99 under each, against
//! its p99 with nothing hostile running just before (a paired baseline, so
//! that a slow patch of the machine shows in both); the target is at most
//! 2 ×. A single p99 on a shared 2-core machine swings by 2 × on its own, so
//! each pair is measured `runs` times (3 in the full run) and the ratio is
//! their median.
//!
//! Every hostile answer is checked as it comes (a plugin that is not
//! contained fails the run), and the server must keep the same process
//! throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};

use crate::Settings;
use crate::load::{self, Work};
use crate::peers::Peer;
use crate::sections::{Results, artifact, cache, fresh_dir, launch};
use crate::server::request;
use crate::stats::Figure;

/// Connections of the steady traffic: the server is busy but not saturated,
/// so that what the hostile plugin takes away shows in the latency.
const CONNECTIONS: usize = 4;

/// One hostile behaviour: how to start it, and a phrase every one of its
/// answers must hold.
struct Case {
    name: &'static str,
    /// A component to upload, again and again; otherwise an execute.
    upload: Option<Arc<Vec<u8>>>,
    path: String,
    body: String,
    answer: &'static str,
}

fn execute(action: &'static str, input: &str, answer: &'static str) -> Case {
    Case {
        name: action,
        upload: None,
        path: format!("/api/v2/actions/{action}/execute"),
        body: format!(r#"{{"input":{input}}}"#),
        answer,
    }
}

fn upload(name: &'static str, component: Vec<u8>, answer: &'static str) -> Case {
    Case {
        name,
        upload: Some(Arc::new(component)),
        path: "/v1/plugins".into(),
        body: String::new(),
        answer,
    }
}

fn cases(peer: u16) -> Vec<Case> {
    vec![
        execute("spin", "{}", "exceeded its deadline"),
        execute("host_call_flood", "{}", "exceeded its deadline"),
        execute("grow_memory", "{}", "grow its memory past the limit"),
        execute("deep_recursion", "{}", "overflowed its stack"),
        execute("trap", "{}", "plugin trapped"),
        execute("panic", r#"{"message":"boom"}"#, "plugin trapped"),
        execute("huge_output", r#"{"bytes":5000000}"#, "output"),
        execute("resource_flood", "{}", "host resources"),
        // WebAssembly text (fixture-wat), uploaded before the matrix.
        execute("table_grow", "{}", "grow a table past the limit"),
        execute("flood_log", r#"{"bytes":10000000}"#, r#""successful":true"#),
        execute("snoop", "{}", r#""env":[]"#),
        execute(
            "fetch",
            r#"{"url":"https://example.com/"}"#,
            "request denied by the host",
        ),
        // An allowed host (a loopback peer of its own), 100 times per
        // execution (the request budget), 1,000 asked for.
        execute(
            "outbound_flood",
            &format!(r#"{{"url":"http://127.0.0.1:{peer}/","count":1000}}"#),
            r#""answered":100"#,
        ),
    ]
}

/// Runs the section: the baseline, then each case.
pub fn run(
    settings: &Settings,
    wrk: Duration,
    runs: usize,
    results: &mut Results,
) -> anyhow::Result<()> {
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let hostile = artifact(settings, "target/fixtures/fixture-hostile.wasm")?;
    let describe_trap = std::fs::read(artifact(
        settings,
        "target/fixtures/fixture-versioned-describe-trap.wasm",
    )?)?;
    let dir = fresh_dir(&[noop, hostile])?;
    let cache = cache(settings);
    let mut launch = launch(settings, dir.path(), &cache);
    launch
        .env
        .push(("ACTIONHOST_LIMITS__DEADLINE", "2s".into()));
    let mut server = launch.start()?;
    let auth = format!("Bearer {}", server.key);
    let steady = Work {
        method: "POST",
        path: "/api/v2/actions/noop/execute",
        headers: vec![
            ("authorization", auth),
            ("content-type", "application/json".to_owned()),
        ],
        body: r#"{"input":{}}"#,
        expect_status: 200,
        expect_body: r#""successful":true"#,
    };

    let mut worst: (f64, &str) = (0.0, "");
    let peer = Peer::axum_hello()?;
    let (status, text) = crate::server::upload(
        server.port,
        &server.key,
        &fixture_wat::table_grow_component(),
    )?;
    ensure!(
        status == 201,
        "uploading the table fixture: {status} {text}"
    );
    let mut matrix = cases(peer.port);
    matrix.push(upload(
        "upload_describe_trap",
        describe_trap,
        "describe failed",
    ));
    matrix.push(upload(
        "upload_unknown_import",
        fixture_wat::unknown_import_component(),
        "evil:backdoor/shell",
    ));
    let mut baselines = Vec::new();
    for case in &matrix {
        let (mut p99s, mut ratios, mut attacks) = (Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let baseline = load::run(&settings.wrk, server.port, &steady, CONNECTIONS, wrk)
                .context("the no-op's baseline")?;
            let (point, made) = beside(settings, &server, &steady, case, wrk)?;
            baselines.push(baseline.p99_us / 1000.0);
            p99s.push(point.p99_us / 1000.0);
            ratios.push(point.p99_us / baseline.p99_us);
            attacks += made;
        }
        ratios.sort_by(f64::total_cmp);
        let ratio = crate::stats::median(&ratios);
        if ratio > worst.0 {
            worst = (ratio, case.name);
        }
        results.push(
            Figure::from_samples(
                &format!("hostile.{}.p99_ms", case.name),
                &format!("no-op p99 beside {} ({attacks} hostile calls)", case.name),
                "ms",
                &p99s,
            )
            .with_note(format!(
                "{ratio:.2} × its paired baseline (median of {runs})"
            )),
        );
    }
    results.push(Figure::from_samples(
        "hostile.baseline.p99_ms",
        &format!(
            "no-op sync execute, {CONNECTIONS} conn, nothing hostile: p99 latency (every paired baseline)"
        ),
        "ms",
        &baselines,
    ));
    ensure!(
        server.child.try_wait()?.is_none(),
        "the server did not survive the hostile matrix:\n{}",
        server.log_tail()
    );
    results.push(
        Figure::single(
            "hostile.worst_p99_ratio",
            &format!(
                "worst no-op p99 ÷ paired baseline across the hostile matrix ({})",
                worst.1
            ),
            "×",
            worst.0,
        )
        .with_note(format!("{} hostile behaviours", matrix.len())),
    );
    server.terminate()?;
    Ok(())
}

/// One measurement of the no-op beside `case`, run in a loop by an
/// attacker thread whose every answer is checked; returns the no-op's load
/// point and how many hostile calls finished.
fn beside(
    settings: &Settings,
    server: &crate::server::Server,
    steady: &Work<'_>,
    case: &Case,
    wrk: Duration,
) -> anyhow::Result<(load::Point, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        let (port, key) = (server.port, server.key.clone());
        let (component, path, body, answer) = (
            case.upload.clone(),
            case.path.clone(),
            case.body.clone(),
            case.answer,
        );
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut attacks = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, text) = match &component {
                    Some(component) => crate::server::upload(port, &key, component)?,
                    None => request(port, "POST", &path, &key, &body)?,
                };
                ensure!(
                    text.contains(answer),
                    "{path}: {status} {} lacks {answer:?}",
                    text.chars().take(300).collect::<String>()
                );
                attacks += 1;
            }
            Ok(attacks)
        })
    };
    // Let the first hostile call start before measuring.
    std::thread::sleep(Duration::from_millis(100));
    let point = load::run(&settings.wrk, server.port, steady, CONNECTIONS, wrk)
        .with_context(|| format!("the no-op beside {}", case.name));
    stop.store(true, Ordering::Relaxed);
    let attacks = attacker
        .join()
        .map_err(|_| anyhow::anyhow!("the {} attacker panicked", case.name))??;
    let point = point?;
    ensure!(attacks > 0, "{}: no hostile call finished", case.name);
    Ok((point, attacks))
}
