//! HTTP benchmark: requests per second and latency percentiles of the sync
//! execute endpoint (`POST /api/v2/actions/noop/execute`, the no-op fixture,
//! every execution recorded durably) next to `GET /v1/auth/status` (the
//! floor of our HTTP and auth layers), on the same server in the same run,
//! at 1, 8 and 64 concurrent keep-alive connections.
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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let noop = root.join("target/fixtures/fixture-noop.wasm");
    assert!(
        noop.exists(),
        "{} is missing: run scripts/build-plugins",
        noop.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
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
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("start actionhost serve");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("listening on")
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
    let status = format!(
        "GET /v1/auth/status HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n\r\n"
    )
    .into_bytes();
    let body = r#"{"input":{}}"#;
    let execute = format!(
        "POST /api/v2/actions/noop/execute HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
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
    for (name, request) in [
        ("GET /v1/auth/status", &status),
        ("POST execute (noop)", &execute),
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
    if full {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-http.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&results).expect("json"))
            .expect("write results");
        println!("wrote {}", path.display());
    }
}
