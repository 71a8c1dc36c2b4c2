//! HTTP load with wrk, the same tool and settings for every target: a Lua
//! script sets the request, checks every response's status and body, and
//! prints the counts and latency percentiles as JSON.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;

/// The work sent to a target.
pub struct Work<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Extra headers (authorization, content type).
    pub headers: Vec<(&'a str, String)>,
    pub body: &'a str,
    /// Every response must have this status ...
    pub expect_status: u16,
    /// ... and contain this text, or the run fails: a target that does not
    /// do the work must not look fast.
    pub expect_body: &'a str,
}

/// What wrk measured at one concurrency.
#[derive(Debug, Clone, Deserialize)]
pub struct Point {
    pub requests: u64,
    pub duration_us: u64,
    /// Responses with the expected status and body.
    pub ok: u64,
    /// Responses without them.
    pub bad: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Point {
    /// Correct responses per second.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / (self.duration_us as f64 / 1e6)
    }
}

/// Lua long-bracket quoting for literal text.
fn quote(text: &str) -> String {
    let mut level = 0;
    while text.contains(&format!("]{}]", "=".repeat(level))) {
        level += 1;
    }
    let eq = "=".repeat(level);
    format!("[{eq}[{text}]{eq}]")
}

fn script(work: &Work<'_>) -> String {
    let mut headers = String::new();
    for (name, value) in &work.headers {
        headers.push_str(&format!(
            "wrk.headers[ {} ] = {}\n",
            quote(name),
            quote(value)
        ));
    }
    format!(
        r#"wrk.method = {method}
wrk.body = {body}
{headers}
local expect_status = {status}
local expect_body = {expect}
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  ok = 0
  bad = 0
  sample = ""
end
function response(status, headers, body)
  if status == expect_status and string.find(body, expect_body, 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = tostring(status) .. " " .. string.sub(body, 1, 300)
    end
  end
end
function done(summary, latency, requests)
  local total_ok, total_bad, first = 0, 0, ""
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
    local s = t:get("sample")
    if s ~= nil and s ~= "" then first = s end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {{"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\n',
    summary.requests, summary.duration, total_ok, total_bad, e.connect, e.read, e.write, e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max)))
  io.write("WRK_SAMPLE " .. first .. "\n")
end
"#,
        method = quote(work.method),
        body = if work.body.is_empty() {
            "nil".to_owned()
        } else {
            quote(work.body)
        },
        status = work.expect_status,
        expect = quote(work.expect_body),
    )
}

/// Runs wrk against `port` with `connections` connections for `duration`
/// (whole seconds, at least one); fails if any response was wrong or any
/// socket error happened.
pub fn run(
    wrk: &Path,
    port: u16,
    work: &Work<'_>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Point> {
    let dir = tempfile::tempdir()?;
    let script_path = dir.path().join("work.lua");
    std::fs::write(&script_path, script(work))?;
    let threads = connections.min(2);
    let seconds = duration.as_secs().max(1);
    let output = Command::new(wrk)
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "10s"])
        .arg("-s")
        .arg(&script_path)
        .arg(format!("http://127.0.0.1:{port}{}", work.path))
        .output()
        .with_context(|| format!("running {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let Some(json) = stdout.lines().find_map(|l| l.strip_prefix("WRK_RESULT ")) else {
        bail!(
            "wrk printed no result: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let point: Point = serde_json::from_str(json).context("wrk's result line")?;
    let sample = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_SAMPLE "))
        .unwrap_or("");
    ensure!(
        point.bad == 0,
        "{} {} at {connections} connections: {} of {} responses were not {} with {:?}; the first: {sample}",
        work.method,
        work.path,
        point.bad,
        point.requests,
        work.expect_status,
        work.expect_body
    );
    ensure!(
        point.ok > 0,
        "{} {} at {connections} connections: no response at all",
        work.method,
        work.path
    );
    let socket_errors =
        point.connect_errors + point.read_errors + point.write_errors + point.timeouts;
    ensure!(
        socket_errors == 0,
        "{} {} at {connections} connections: socket errors {point:?}",
        work.method,
        work.path
    );
    Ok(point)
}

/// Finds wrk: `ACTIONHOST_BENCH_WRK`, else `wrk` on the PATH.
pub fn find_wrk() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("ACTIONHOST_BENCH_WRK") {
        return Ok(path.into());
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wrk"))
            .find(|candidate| candidate.is_file())
    });
    found.context("wrk is not installed: bench/run installs it (apt-get install wrk)")
}
