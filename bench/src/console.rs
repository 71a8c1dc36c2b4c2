//! The console in Chromium: its first load (bytes and time until the
//! sign-in form is ready) and the inbox's first page with many actions
//! waiting (time from the key's submission to 100 cards rendered), each
//! over fresh browser contexts (no cache) on loopback.

use anyhow::{Context as _, ensure};

use crate::Settings;
use crate::sections::{Budget, Results, artifact, cache, fresh_dir, launch};
use crate::server::{Connection, post};
use crate::stats::Figure;

pub fn run(settings: &Settings, _budget: &Budget, results: &mut Results) -> anyhow::Result<()> {
    let python = settings.root.join("target/test-tools/venv/bin/python");
    ensure!(
        python.is_file(),
        "{} is missing: run scripts/setup-test-tools (Playwright and Debian's chromium)",
        python.display()
    );
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let launch = launch(settings, dir.path(), &cache);
    let server = launch.start()?;
    let (waiting, rounds) = if settings.quick {
        (300, 1)
    } else {
        (10_000, 3)
    };

    // The actions waiting for a reviewer, over 4 connections.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let request = post(
        "/v1/actions",
        &server.key,
        r#"{"type":"noop","params":{"echo":"waiting for a reviewer"},"identity_id":"bench","require_approval":true}"#,
    );
    let port = server.port;
    tokio.block_on(async move {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let request = std::sync::Arc::new(request);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (next, request) = (next.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let mut connection = Connection::open(port).await?;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < waiting {
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

    let output = std::process::Command::new(&python)
        .arg(settings.root.join("bench/browser/console.py"))
        .args([
            &format!("http://127.0.0.1:{}", server.port),
            &server.key,
            &waiting.to_string(),
            &rounds.to_string(),
        ])
        .output()
        .context("run bench/browser/console.py")?;
    ensure!(
        output.status.success(),
        "bench/browser/console.py failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let measured: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("bench/browser/console.py's report")?;
    let samples = |name: &str| -> Vec<f64> {
        measured[name]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect()
            })
            .unwrap_or_default()
    };
    results.push(Figure::from_samples(
        "console.first_load.kib",
        "console first load (page, scripts, styles, session probe): KiB transferred",
        "KiB",
        &samples("first_load_bytes")
            .iter()
            .map(|bytes| bytes / 1024.0)
            .collect::<Vec<_>>(),
    ));
    results.push(Figure::from_samples(
        "console.first_load.ms",
        "console first load, navigation to the sign-in form ready",
        "ms",
        &samples("first_load_ms"),
    ));
    results.push(Figure::from_samples(
        "console.inbox.first_page.ms",
        &format!("console inbox with {waiting} waiting: sign-in to its first 100 cards rendered"),
        "ms",
        &samples("inbox_ms"),
    ));
    Ok(())
}
