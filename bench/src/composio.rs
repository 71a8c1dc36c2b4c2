//! The cost of Composio's own Python client over raw HTTP: executions of
//! the no-op action through `composio-core` beside raw POSTs of the body it
//! sends, one at a time, to the same server and endpoint
//! (bench/peers/composio_calls.py). The difference is the client's own work
//! per call plus the compatibility routes it adds before its first one.

use anyhow::{Context as _, ensure};

use crate::Settings;
use crate::sections::{Results, artifact, cache, fresh_dir, launch};
use crate::stats::Figure;

pub fn run(settings: &Settings, results: &mut Results) -> anyhow::Result<()> {
    let python = settings
        .root
        .join("target/test-tools/composio-venv/bin/python");
    if !python.is_file() {
        results.skipped.push(format!(
            "composio: {} is missing (scripts/setup-test-tools installs Composio's client)",
            python.display()
        ));
        return Ok(());
    }
    let noop = artifact(settings, "target/fixtures/fixture-noop.wasm")?;
    let dir = fresh_dir(&[noop])?;
    let cache = cache(settings);
    let server = launch(settings, dir.path(), &cache).start()?;
    let calls = if settings.quick { 30 } else { 1000 };
    let output = std::process::Command::new(&python)
        .arg(settings.root.join("bench/peers/composio_calls.py"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(&server.key)
        .arg(calls.to_string())
        .output()
        .context("run Composio's client")?;
    ensure!(
        output.status.success(),
        "Composio's client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the client's report")?;
    for (id, name) in [
        (
            "client",
            "Composio's Python client, actions.execute of the no-op",
        ),
        ("raw", "raw HTTP (Python requests), the same POST"),
    ] {
        let samples: Vec<f64> = report[format!("{id}_ms")]
            .as_array()
            .context("samples")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        ensure!(samples.len() == calls, "{id}: {} samples", samples.len());
        let total_s: f64 = samples.iter().sum::<f64>() / 1000.0;
        let latency = Figure::from_samples(
            &format!("composio.{id}.ms"),
            &format!("{name}, latency, 1 connection"),
            "ms",
            &samples,
        );
        results.push(latency);
        let rate = Figure::single(
            &format!("composio.{id}.rps"),
            &format!("{name}, calls/s, 1 connection"),
            "req/s",
            calls as f64 / total_s,
        );
        results.push(rate);
    }
    results.ratio(
        "ratio.composio.client_vs_raw",
        "Composio's client ÷ raw HTTP, calls/s at 1 connection",
        "composio.client.rps",
        "composio.raw.rps",
    );
    Ok(())
}
