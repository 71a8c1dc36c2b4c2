//! The benchmark suite: actionhost measured side by side with its peers in
//! one run, on the same machine, on the same work.
//!
//! `bench/run` builds everything in release and runs this with the full
//! settings; `bench/run --quick` (called by `scripts/test`) runs every
//! benchmark briefly so that none of them rots. See `BENCHMARKS.md`.

mod agents;
mod composio;
mod console;
mod contacts;
mod floor;
mod hostile;
mod inprocess;
mod load;
mod peers;
mod report;
mod retention;
mod sections;
mod server;
mod stats;
mod store;

use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// Settings of a run.
pub struct Settings {
    /// Brief runs (the test suite's mode).
    pub quick: bool,
    /// The repository root.
    pub root: PathBuf,
    /// The `actionhost` binary beside this one.
    pub actionhost: PathBuf,
    pub wrk: PathBuf,
    /// `wasmtime` from wasmtime-cli 48, if installed.
    pub wasmtime: Option<PathBuf>,
    /// Sections to run (all when empty).
    pub only: Vec<String>,
    /// Where the JSON results go.
    pub out: PathBuf,
    /// The Markdown file whose results table is regenerated, if any.
    pub markdown: Option<PathBuf>,
    /// Overrides the soak's length (10 minutes in the full run).
    pub soak_seconds: Option<u64>,
}

impl Settings {
    pub fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

const USAGE: &str = "usage: actionhost-bench [--quick] [--only SECTION]... [--out FILE] [--markdown FILE] [--wasmtime PATH] [--soak-seconds N]
       actionhost-bench hello-server --port PORT
       actionhost-bench sled-floor DIR RATE SECONDS RECORD_BYTES CACHE_BYTES
sections: inprocess, http, mcp, composio, scheduler, store, contacts, agents, console, retention, startup, memory, hostile, soak
(--only writes target/bench-partial/results.json unless --out says otherwise:
a partial run never replaces bench/results.json)";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = std::env::current_exe()?;
    let mut settings = Settings {
        quick: false,
        actionhost: exe.with_file_name("actionhost"),
        root: root.canonicalize().unwrap_or(root),
        wrk: PathBuf::new(),
        wasmtime: std::env::var_os("ACTIONHOST_BENCH_WASMTIME").map(PathBuf::from),
        only: Vec::new(),
        out: PathBuf::new(),
        markdown: None,
        soak_seconds: None,
    };
    let mut out = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "hello-server" => {
                let port = match (args.next().as_deref(), args.next()) {
                    (Some("--port"), Some(port)) => port.parse().context("--port")?,
                    _ => bail!("{USAGE}"),
                };
                return peers::hello_server(port);
            }
            "sled-floor" => {
                let mut next = |name: &str| args.next().with_context(|| format!("{name}\n{USAGE}"));
                let dir = PathBuf::from(next("DIR")?);
                let rate = next("RATE")?.parse().context("RATE")?;
                let seconds = next("SECONDS")?.parse().context("SECONDS")?;
                let record_bytes = next("RECORD_BYTES")?.parse().context("RECORD_BYTES")?;
                let cache_bytes = next("CACHE_BYTES")?.parse().context("CACHE_BYTES")?;
                return floor::write(&dir, rate, seconds, record_bytes, cache_bytes);
            }
            "--quick" => settings.quick = true,
            "--only" => settings.only.push(args.next().context(USAGE)?),
            "--out" => out = Some(PathBuf::from(args.next().context(USAGE)?)),
            "--markdown" => settings.markdown = Some(args.next().context(USAGE)?.into()),
            "--wasmtime" => settings.wasmtime = Some(args.next().context(USAGE)?.into()),
            "--soak-seconds" => {
                settings.soak_seconds = Some(
                    args.next()
                        .context(USAGE)?
                        .parse()
                        .context("--soak-seconds")?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    settings.out = out.unwrap_or_else(|| {
        if settings.quick {
            settings.root.join("target/bench-quick/results.json")
        } else if !settings.only.is_empty() {
            settings.root.join("target/bench-partial/results.json")
        } else {
            settings.root.join("bench/results.json")
        }
    });
    if !settings.actionhost.is_file() {
        bail!(
            "{} is missing: build it in the same profile as this binary (bench/run does)",
            settings.actionhost.display()
        );
    }
    settings.wrk = load::find_wrk()?;
    if let Some(path) = &settings.wasmtime
        && !path.is_file()
    {
        bail!("--wasmtime {}: no such file", path.display());
    }
    let results = sections::run_all(&settings)?;
    report::write(&settings, &results)?;
    let missed = results.targets.iter().filter(|t| !t.met).count();
    println!(
        "\n{} figures, {} ratios, targets met: {} of {}; wrote {}",
        results.figures.len(),
        results.ratios.len(),
        results.targets.len() - missed,
        results.targets.len(),
        settings.out.display()
    );
    Ok(())
}
