//! Registry benchmark, against the real `actionhost serve`:
//!
//! - start-up: time from spawning the server to `GET /healthz` answering and
//!   to `GET /readyz` answering 200, with the three bundled plugins, with an
//!   empty compiled-code cache (cold) and with a warm one;
//! - memory: resident set size once ready with no plugin and with the three
//!   bundled ones, and the difference per plugin;
//! - hot swap: time from renaming a new version of a plugin into the watched
//!   folder to the first execution that reports the new version, while one
//!   client executes back to back, with the new version's compiled code
//!   cached and not.
//!
//! `cargo bench -p actionhost --bench registry` repeats each figure 5 times
//! and prints the median and the range; without `--bench` (as `cargo test
//! --all-targets` runs it) each runs once, so the harness never rots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn artifact(path: &str) -> PathBuf {
    let path = root().join(path);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins",
        path.display()
    );
    path
}

const BUNDLED: [&str; 3] = [
    "target/plugins/send-email.wasm",
    "target/plugins/linkedin-message.wasm",
    "target/plugins/crm-sync.wasm",
];

struct Server {
    child: Child,
    port: u16,
    key: String,
    started: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, cache: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_actionhost"))
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--plugins-dir")
        .arg(dir.join("plugins"))
        .arg("--cache-dir")
        .arg(cache)
        .env("ACTIONHOST_LOG_LEVEL", "warn")
        .env("ACTIONHOST_ALLOW_PRIVATE_NETWORK", "true")
        .env("ACTIONHOST_EXTRA_HOSTS", "[\"http://127.0.0.1:*\"]")
        .env("ACTIONHOST_SCHEDULER__ENABLED", "false")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start actionhost serve");
    Server {
        child,
        port,
        key: String::new(),
        started,
    }
}

/// One request on a fresh connection: the status and the body.
fn request(port: u16, method: &str, path: &str, key: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let text = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Waits for `path` to answer 200; the time since the spawn.
fn until_ok(server: &Server, path: &str) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some((200, _)) = request(server.port, "GET", path, "", "") {
            return server.started.elapsed();
        }
        assert!(Instant::now() < deadline, "{path} never answered 200");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("/proc status (Linux only)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fresh_dir(plugins: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    for plugin in plugins {
        let name = plugin.file_name().expect("name");
        std::fs::copy(plugin, dir.path().join("plugins").join(name)).expect("copy");
    }
    dir
}

/// (to healthz, to readyz) for a start with `cache`.
fn start_up(dir: &Path, cache: &Path) -> (Duration, Duration, u64) {
    let server = start(dir, cache);
    let live = until_ok(&server, "/healthz");
    let ready = until_ok(&server, "/readyz");
    let rss = rss_kib(&server);
    (live, ready, rss)
}

/// A peer that answers every request 200 at once (the versioned plugin
/// reports to it).
fn start_peer() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind peer");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
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
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
                    );
                }
            });
        }
    });
    port
}

/// Time from the new version's file landing in the folder to the first
/// execution on it. `cached`: compile the new version into the cache first.
fn hot_swap(peer: u16, cached: bool) -> Duration {
    let v1 = artifact("target/fixtures/fixture-versioned.wasm");
    let v2 = artifact("target/fixtures/fixture-versioned-v2.wasm");
    let dir = fresh_dir(std::slice::from_ref(&v1));
    let cache = dir.path().join("cache");
    if cached {
        let status = Command::new(env!("CARGO_BIN_EXE_actionhost"))
            .args(["plugin", "inspect"])
            .arg(&v2)
            .arg("--cache-dir")
            .arg(&cache)
            .stdout(Stdio::null())
            .status()
            .expect("plugin inspect");
        assert!(status.success());
    }
    let mut server = start(dir.path(), &cache);
    until_ok(&server, "/readyz");
    server.key = std::fs::read_to_string(dir.path().join("data/admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    let body = format!(r#"{{"input":{{"url":"http://127.0.0.1:{peer}/report"}}}}"#);
    let path = "/api/v2/actions/versioned_echo/execute";
    let version_of = |server: &Server| -> String {
        let (status, answer) =
            request(server.port, "POST", path, &server.key, &body).expect("execute answers");
        assert_eq!(status, 200, "{answer}");
        let json: serde_json::Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(json["successful"], true, "{answer}");
        json["data"]["version"]
            .as_str()
            .expect("version")
            .to_owned()
    };
    assert_eq!(version_of(&server), "1.0.0");
    let temp = dir.path().join("plugins/.swap.partial");
    std::fs::copy(&v2, &temp).expect("copy");
    let dropped = Instant::now();
    std::fs::rename(&temp, dir.path().join("plugins/fixture-versioned.wasm")).expect("rename");
    let deadline = dropped + Duration::from_secs(120);
    loop {
        if version_of(&server) == "2.0.0" {
            return dropped.elapsed();
        }
        assert!(Instant::now() < deadline, "2.0.0 never served");
    }
}

fn summary(name: &str, samples: &mut [f64], unit: &str) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "{name:<52} median {median:>8.1} {unit}  (min {:.1}, max {:.1}, n={})",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
    serde_json::json!({ "figure": name, "unit": unit, "median": median, "min": samples[0], "max": samples[samples.len() - 1], "n": samples.len() })
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 5 } else { 1 };
    let bundled: Vec<PathBuf> = BUNDLED.iter().map(|p| artifact(p)).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut results = Vec::new();

    // Start-up, cold then warm, each in a fresh data dir.
    let (mut live_cold, mut ready_cold, mut live_warm, mut ready_warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rss_bundled = Vec::new();
    for _ in 0..runs {
        let dir = fresh_dir(&bundled);
        let cache = dir.path().join("cache");
        let (live, ready, _) = start_up(dir.path(), &cache);
        live_cold.push(ms(live));
        ready_cold.push(ms(ready));
        let warm = fresh_dir(&bundled);
        let (live, ready, rss) = start_up(warm.path(), &cache);
        live_warm.push(ms(live));
        ready_warm.push(ms(ready));
        rss_bundled.push(rss as f64 / 1024.0);
    }
    results.push(summary(
        "start-up to /healthz, cold cache (3 bundled)",
        &mut live_cold,
        "ms",
    ));
    results.push(summary(
        "start-up to /readyz, cold cache (3 bundled)",
        &mut ready_cold,
        "ms",
    ));
    results.push(summary(
        "start-up to /healthz, warm cache (3 bundled)",
        &mut live_warm,
        "ms",
    ));
    results.push(summary(
        "start-up to /readyz, warm cache (3 bundled)",
        &mut ready_warm,
        "ms",
    ));

    // Memory: no plugin against the three bundled ones, both warm.
    let mut rss_none = Vec::new();
    for _ in 0..runs {
        let dir = fresh_dir(&[]);
        let cache = dir.path().join("cache");
        let (_, _, rss) = start_up(dir.path(), &cache);
        rss_none.push(rss as f64 / 1024.0);
    }
    let none = summary(
        "resident memory when ready, no plugin",
        &mut rss_none,
        "MiB",
    );
    let with = summary(
        "resident memory when ready, 3 bundled plugins",
        &mut rss_bundled,
        "MiB",
    );
    let per_plugin =
        (with["median"].as_f64().unwrap_or(0.0) - none["median"].as_f64().unwrap_or(0.0)) / 3.0;
    println!(
        "{:<52} {per_plugin:>15.1} MiB",
        "resident memory per loaded plugin"
    );
    results.extend([none, with, serde_json::json!({ "figure": "resident memory per loaded plugin", "unit": "MiB", "median": per_plugin })]);

    // Hot swap.
    let peer = start_peer();
    let mut swap_cached: Vec<f64> = (0..runs).map(|_| ms(hot_swap(peer, true))).collect();
    let mut swap_cold: Vec<f64> = (0..runs).map(|_| ms(hot_swap(peer, false))).collect();
    results.push(summary(
        "new file in folder to first execution on it, cached",
        &mut swap_cached,
        "ms",
    ));
    results.push(summary(
        "new file in folder to first execution on it, cold",
        &mut swap_cold,
        "ms",
    ));

    if full {
        let path = root().join("target/bench-registry.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&results).expect("json"))
            .expect("write results");
        println!("wrote {}", path.display());
    }
}
