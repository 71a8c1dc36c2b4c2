//! HTTP benchmark: requests per second and latency percentiles of the sync
//! execute endpoint (`POST /api/v2/actions/noop/execute`, the no-op fixture,
//! every execution recorded durably) next to `GET /v1/auth/status` (the
//! floor of our HTTP and auth layers) and durable action creation
//! (`POST /v1/actions`, acknowledged only once on disk), on the same server
//! in the same run, at 1, 8 and 64 concurrent keep-alive connections.
//!
//! Then the scheduler: the rate at which it drains N due no-op actions
//! (created with the scheduler off, drained after a restart with it on),
//! and the latency from due time to execution start of M actions due in
//! the same second (N = 100,000 and M = 10,000 with `--bench`).
//!
//! The load generator is a small closed-loop tokio client: each connection
//! sends a request, reads the whole response, and sends the next.
//!
//! `cargo bench -p actionhost --bench http` runs 5 s per point against the
//! release binary and writes `target/bench-http.json`; without `--bench`
//! (as `cargo test --all-targets` runs it) every point runs for a moment so
//! the harness never rots.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    child: Child,
    port: u16,
    key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    start_server_in(tempfile::tempdir().expect("temp dir"), &[])
}

fn start_server_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let noop = root.join("target/fixtures/fixture-noop.wasm");
    assert!(
        noop.exists(),
        "{} is missing: run scripts/build-plugins",
        noop.display()
    );
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(&noop, plugins.join("fixture-noop.wasm")).expect("copy");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log_path = dir.path().join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_actionhost"))
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--plugins-dir")
        .arg(&plugins)
        .arg("--cache-dir")
        .arg(root.join("target/test-cache"))
        .env("ACTIONHOST_LOG_LEVEL", "warn,actionhost::server=info")
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("log"),
        )
        .spawn()
        .expect("start actionhost serve");
    let starts = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .matches("plugins loaded; ready")
        .count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .matches("plugins loaded; ready")
        .count()
        <= starts
    {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let key = std::fs::read_to_string(dir.path().join("data/admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    Server {
        child,
        port,
        key,
        _dir: dir,
    }
}

/// Sends one request on a kept-alive connection and reads the whole answer;
/// returns the status.
async fn round_trip(stream: &mut TcpStream, request: &[u8], buffer: &mut Vec<u8>) -> u16 {
    stream.write_all(request).await.expect("write");
    buffer.clear();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            while buffer.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.expect("read body");
                assert!(n > 0, "the server closed the connection mid-body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let status = head[9..12].parse().expect("status");
            return status;
        }
    }
}

/// One request on a fresh connection; the status and the JSON body.
async fn call(port: u16, request: String) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut buffer = Vec::new();
    let status = round_trip(&mut stream, request.as_bytes(), &mut buffer).await;
    let end = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head");
    let body = serde_json::from_slice(&buffer[end + 4..]).unwrap_or(serde_json::Value::Null);
    (status, body)
}

fn get(path: &str, key: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n\r\n")
}

fn post(path: &str, key: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// How many of the tenant's actions are in `status`.
async fn count(port: u16, key: &str, status: &str) -> u64 {
    let (code, body) = call(
        port,
        get(&format!("/v1/actions?status={status}&limit=1"), key),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["pagination"]["total_items"].as_u64().expect("total")
}

/// Creates `n` actions with this body over 64 connections.
async fn create_many(port: u16, key: &str, body: &str, n: usize) {
    let request = std::sync::Arc::new(post("/v1/actions", key, body).into_bytes());
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (request, next) = (request.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let mut buffer = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let status = round_trip(&mut stream, &request, &mut buffer).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&buffer));
            }
        }));
    }
    for task in tasks {
        task.await.expect("creator");
    }
}

fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Drain: `n` due no-op actions created with the scheduler off, then the
/// server restarted with it on; returns actions per second.
fn scheduler_drain(runtime: &tokio::runtime::Runtime, n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let off = [("ACTIONHOST_SCHEDULER__ENABLED", "false")];
    let mut server = start_server_in(dir, &off);
    let key = server.key.clone();
    let body = r#"{"type":"noop","params":{},"identity_id":"bench"}"#;
    runtime.block_on(create_many(server.port, &key, body, n));
    assert_eq!(
        runtime.block_on(count(server.port, &key, "scheduled")),
        n as u64
    );
    // Restart on the same data with the scheduler on.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status();
    let _ = server.child.wait();
    let dir = std::mem::replace(&mut server._dir, tempfile::tempdir().expect("temp dir"));
    drop(server);
    assert!(path.exists());
    let server = start_server_in(dir, &[]);
    let started = Instant::now();
    runtime.block_on(async {
        while count(server.port, &key, "succeeded").await < n as u64 {
            // Counting walks an index: poll gently, not to slow the drain.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

/// Due-to-start latency: `m` no-op actions all due in the same second;
/// returns (p50, p99, max) in milliseconds.
fn due_latency(runtime: &tokio::runtime::Runtime, m: usize, create_rate: f64) -> (f64, f64, f64) {
    let server = start_server();
    let key = server.key.clone();
    // Due once they are surely all created.
    let lead = Duration::from_secs_f64(m as f64 / create_rate.max(100.0) * 2.0 + 2.0);
    let due = std::time::SystemTime::now() + lead;
    let body = format!(
        r#"{{"type":"noop","params":{{}},"identity_id":"bench","scheduled_time":"{}"}}"#,
        rfc3339(due)
    );
    runtime.block_on(create_many(server.port, &key, &body, m));
    assert!(
        std::time::SystemTime::now() < due,
        "creating {m} actions took longer than the lead of {lead:?}"
    );
    runtime.block_on(async {
        while count(server.port, &key, "succeeded").await < m as u64 {
            // Counting walks an index: poll gently, not to slow the drain.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut latencies = Vec::with_capacity(m);
    runtime.block_on(async {
        for skip in (0..m).step_by(100) {
            let (_, page) = call(
                server.port,
                get(&format!("/v1/actions?limit=100&skip={skip}"), &key),
            )
            .await;
            for action in page["actions"].as_array().expect("actions") {
                let scheduled = humantime::parse_rfc3339_weak(
                    action["scheduled_time"].as_str().expect("scheduled_time"),
                )
                .expect("time");
                let started = action["history"]
                    .as_array()
                    .expect("history")
                    .iter()
                    .find(|h| h["transition"] == "execute")
                    .and_then(|h| h["at"].as_str())
                    .expect("execute entry");
                let started = humantime::parse_rfc3339_weak(started).expect("time");
                let late = started.duration_since(scheduled).unwrap_or(Duration::ZERO);
                latencies.push(late.as_secs_f64() * 1000.0);
            }
        }
    });
    assert_eq!(latencies.len(), m);
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (pick(0.5), pick(0.99), latencies[latencies.len() - 1])
}

struct Point {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: usize,
}

async fn measure(
    port: u16,
    request: Vec<u8>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Point {
    let request = std::sync::Arc::new(request);
    let start = Instant::now() + warmup;
    let stop = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut buffer = Vec::with_capacity(4096);
            let mut latencies = Vec::new();
            loop {
                let sent = Instant::now();
                if sent >= stop {
                    break;
                }
                let status = round_trip(&mut stream, &request, &mut buffer).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&buffer));
                if sent >= start {
                    latencies.push(sent.elapsed());
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Point {
        rps: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        requests: latencies.len(),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (warmup, duration) = if full {
        (Duration::from_secs(1), Duration::from_secs(5))
    } else {
        (Duration::from_millis(50), Duration::from_millis(200))
    };
    let server = start_server();
    let key = &server.key;
    let status = get("/v1/auth/status", key).into_bytes();
    let execute = post("/api/v2/actions/noop/execute", key, r#"{"input":{}}"#).into_bytes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let mut results = Vec::new();
    println!(
        "{:<28} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "endpoint", "conns", "req/s", "p50 ms", "p99 ms", "requests"
    );
    let far = rfc3339(std::time::SystemTime::now() + Duration::from_secs(30 * 86_400));
    let create_body = format!(
        r#"{{"type":"noop","params":{{}},"identity_id":"bench","scheduled_time":"{far}"}}"#
    );
    let create = post("/v1/actions", key, &create_body).into_bytes();
    let mut create_rate: f64 = 0.0;
    for (name, request) in [
        ("GET /v1/auth/status", &status),
        ("POST execute (noop)", &execute),
        ("POST /v1/actions (durable)", &create),
    ] {
        for connections in [1usize, 8, 64] {
            let point = runtime.block_on(measure(
                server.port,
                request.clone(),
                connections,
                warmup,
                duration,
            ));
            println!(
                "{name:<28} {connections:>5} {:>10.0} {:>9.2} {:>9.2} {:>9}",
                point.rps, point.p50_ms, point.p99_ms, point.requests
            );
            assert!(
                point.requests > 0,
                "{name} at {connections} connections completed no request"
            );
            if name.starts_with("POST /v1/actions") {
                create_rate = create_rate.max(point.rps);
            }
            results.push(serde_json::json!({
                "endpoint": name,
                "connections": connections,
                "requests_per_second": point.rps,
                "p50_ms": point.p50_ms,
                "p99_ms": point.p99_ms,
                "requests": point.requests,
            }));
        }
    }
    drop(server);

    let (drain_n, due_m) = if full { (100_000, 10_000) } else { (200, 100) };
    let drained = scheduler_drain(&runtime, drain_n);
    println!("scheduler drain of {drain_n} due noop actions: {drained:.0} actions/s");
    let (p50, p99, max) = due_latency(&runtime, due_m, create_rate);
    println!(
        "due-to-start latency, {due_m} due in the same second: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    results.push(serde_json::json!({
        "scheduler_drain": { "actions": drain_n, "actions_per_second": drained },
        "due_to_start_ms": { "actions": due_m, "p50": p50, "p99": p99, "max": max },
    }));
    if full {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-http.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&results).expect("json"))
            .expect("write results");
        println!("wrote {}", path.display());
    }
}
