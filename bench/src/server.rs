//! The processes under test: `actionhost serve` on a fresh data dir, and a
//! small HTTP/1.1 client for setting them up and reading their state.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `actionhost serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The admin key (read once the server has written it).
    pub key: String,
    /// The data dir, plugins folder and log live here.
    pub dir: PathBuf,
    /// When the process was spawned.
    pub spawned: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start a server.
#[derive(Clone)]
pub struct Launch<'a> {
    pub binary: &'a Path,
    /// Holds `data/`, `plugins/` and `server.log`; kept across restarts.
    pub dir: &'a Path,
    pub cache: &'a Path,
    pub env: Vec<(&'a str, String)>,
}

impl Launch<'_> {
    /// Spawns the server and returns at once (nothing is ready yet).
    pub fn spawn(&self) -> anyhow::Result<Server> {
        let port = free_port()?;
        std::fs::create_dir_all(self.dir.join("plugins"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let spawned = Instant::now();
        let child = Command::new(self.binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--plugins-dir")
            .arg(self.dir.join("plugins"))
            .arg("--cache-dir")
            .arg(self.cache)
            .env("ACTIONHOST_LOG_LEVEL", "warn")
            .env("ACTIONHOST_ALLOW_PRIVATE_NETWORK", "true")
            .env("ACTIONHOST_EXTRA_HOSTS", "[\"http://127.0.0.1:*\"]")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(Server {
            child,
            port,
            key: String::new(),
            dir: self.dir.to_path_buf(),
            spawned,
        })
    }

    /// Spawns the server and waits until `/readyz` answers 200.
    pub fn start(&self) -> anyhow::Result<Server> {
        let mut server = self.spawn()?;
        server.until_ok("/readyz", Duration::from_secs(300))?;
        server.key = std::fs::read_to_string(self.dir.join("data/admin.key"))
            .context("admin.key")?
            .trim()
            .to_owned();
        Ok(server)
    }
}

impl Server {
    /// Waits for `path` to answer 200; the time since the spawn.
    pub fn until_ok(&mut self, path: &str, limit: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = request(self.port, "GET", path, "", "") {
                return Ok(self.spawned.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited ({status}): {}", self.log_tail());
            }
            ensure!(
                Instant::now() < deadline,
                "{path} did not answer 200 within {limit:?}: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log[log.floor_char_boundary(start)..].to_owned()
    }

    /// Resident set size, MiB.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        rss_mib(self.child.id())
    }

    /// A request on a fresh connection: the status and the JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let (status, text) = request(self.port, method, path, &self.key, body)?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// How many of the tenant's actions are in `status` (or all of them).
    pub fn count_actions(&self, status: Option<&str>) -> anyhow::Result<u64> {
        let path = match status {
            Some(status) => format!("/v1/actions?status={status}&limit=1"),
            None => "/v1/actions?limit=1".to_owned(),
        };
        let (code, body) = self.call("GET", &path, "")?;
        ensure!(code == 200, "listing actions: {code} {body}");
        body["pagination"]["total_items"]
            .as_u64()
            .context("pagination.total_items")
    }

    /// Stops the process with SIGKILL and waits for it.
    pub fn kill_9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Stops the process with SIGTERM (a clean shutdown) and waits for it.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Resident set size of a process, MiB (Linux `/proc`).
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/PID/status (Linux only)")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}

/// One request on a fresh connection (`connection: close`): the status and
/// the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    send(port, method, path, key, "application/json", body.as_bytes())
}

/// A plugin upload, as [`request`] sends it.
pub fn upload(port: u16, key: &str, component: &[u8]) -> anyhow::Result<(u16, String)> {
    send(
        port,
        "POST",
        "/v1/plugins",
        key,
        "application/wasm",
        component,
    )
}

fn send(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let auth = if key.is_empty() {
        String::new()
    } else {
        format!("authorization: Bearer {key}\r\n")
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}content-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A keep-alive HTTP/1.1 connection for closed-loop setup traffic.
pub struct Connection {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn open(port: u16) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(8192),
        })
    }

    /// Sends a prepared request and reads the whole answer: its status and
    /// body.
    pub async fn round_trip(&mut self, request: &[u8]) -> anyhow::Result<(u16, &[u8])> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let mut chunk = [0u8; 8192];
        loop {
            let n = self.stream.read(&mut chunk).await?;
            ensure!(n > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .context("no content-length")?;
                while self.buffer.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await?;
                    ensure!(n > 0, "the server closed the connection mid-body");
                    self.buffer.extend_from_slice(&chunk[..n]);
                }
                let status = head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .context("status")?;
                return Ok((status, &self.buffer[end + 4..end + 4 + length]));
            }
        }
    }
}

/// A POST request with a JSON body, as bytes.
pub fn post(path: &str, key: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` `n` times over `connections` keep-alive connections;
/// every answer must be 200.
pub async fn send_many(
    port: u16,
    request: Vec<u8>,
    n: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (request, next) = (request.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(port).await?;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let (status, body) = connection.round_trip(&request).await?;
                ensure!(status == 200, "{status}: {}", String::from_utf8_lossy(body));
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
