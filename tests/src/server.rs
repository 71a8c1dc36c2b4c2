//! The real `actionhost serve` process, on a free loopback port, with a
//! fresh data directory, and a small HTTP client that remembers every
//! response body (for the credential-leak checks).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Reuse this data directory (for restarts); default: a fresh one.
    pub data_dir: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Components to serve; default: the bundled Rust plugins and the no-op fixture.
    pub plugins: Option<Vec<PathBuf>>,
    /// Names the server resolves to these addresses, as `/etc/hosts` lines
    /// (`"169.254.169.254 metadata.test"`): the server runs in a mount
    /// namespace of its own (`unshare`) where a copy of `/etc/hosts` with
    /// these lines is mounted over the real one, so that its real resolver
    /// (getaddrinfo) answers them. Needs root, as the tests have.
    pub hosts: Vec<String>,
    /// The PostgreSQL database to store in; default: none (sled in the
    /// data dir), or a fresh one with `ACTIONHOST_TEST_STORE=postgres`.
    /// Kept across restarts.
    pub store: Option<String>,
    /// The admin key, for a replica joining a store another one
    /// bootstrapped (it writes no `admin.key` of its own).
    pub admin_key: Option<String>,
}

/// A running server. Stopped (SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bootstrap admin key.
    pub admin_key: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The watched plugins folder.
    pub plugins_dir: PathBuf,
    log_path: PathBuf,
    _temp: Arc<tempfile::TempDir>,
    client: reqwest::blocking::Client,
    bodies: Arc<Mutex<Vec<String>>>,
    options: Options,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// The raw body.
    pub text: String,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON of a 200 or 201, or a panic with the answer.
    pub fn ok(&self) -> &Value {
        assert!(
            self.status == 201 || self.status == 200,
            "expected success, got {}: {}",
            self.status,
            self.text
        );
        &self.json
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts a server with a fresh data directory.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server as `options` say.
    pub fn start_with(options: Options) -> Self {
        let temp = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::launch(options, temp)
    }

    fn launch(mut options: Options, temp: Arc<tempfile::TempDir>) -> Self {
        if options.store.is_none() && crate::postgres::enabled() {
            options.store = Some(crate::postgres::database());
        }
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("data"));
        let plugins_dir = temp.path().join("plugins");
        if !plugins_dir.exists() {
            std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
            let plugins = options.plugins.clone().unwrap_or_else(|| {
                vec![
                    crate::plugin("send-email"),
                    crate::plugin("linkedin-message"),
                    crate::plugin("crm-sync"),
                    crate::plugin("notes"),
                    crate::fixture("fixture-noop"),
                ]
            });
            for plugin in plugins {
                let name = plugin.file_name().expect("file name");
                std::fs::copy(&plugin, plugins_dir.join(name)).expect("copy plugin");
            }
        }
        let log_path = temp.path().join(format!(
            "server-{}.log",
            std::fs::read_dir(temp.path())
                .map(|d| d.count())
                .unwrap_or(0)
        ));
        let log = std::fs::File::create(&log_path).expect("log file");
        let port = free_port();
        let mut command = if options.hosts.is_empty() {
            Command::new(crate::actionhost_bin())
        } else {
            let hosts = temp.path().join("hosts");
            let mut lines = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for line in &options.hosts {
                lines.push_str(line);
                lines.push('\n');
            }
            std::fs::write(&hosts, lines).expect("write the hosts file");
            let mut command = Command::new("unshare");
            command
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                .arg(&hosts)
                .arg(crate::actionhost_bin());
            command
        };
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--plugins-dir")
            .arg(&plugins_dir)
            .arg("--cache-dir")
            .arg(crate::shared_cache_dir())
            .args(&options.args)
            .env_remove("RUST_LOG")
            .env("ACTIONHOST_ALLOW_PRIVATE_NETWORK", "true")
            .env("ACTIONHOST_EXTRA_HOSTS", "[\"http://127.0.0.1:*\"]")
            .env("ACTIONHOST_LOG_LEVEL", "info,actionhost=debug")
            .envs(
                options
                    .store
                    .iter()
                    .map(|url| ("ACTIONHOST_STORE", url.as_str())),
            )
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().expect("start actionhost serve");
        let mut server = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            admin_key: String::new(),
            data_dir,
            plugins_dir,
            log_path,
            _temp: temp,
            client: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            bodies: Arc::new(Mutex::new(Vec::new())),
            options,
        };
        server.wait_until_listening();
        server.admin_key = match server.options.admin_key.clone() {
            Some(key) => key,
            None => std::fs::read_to_string(server.data_dir.join("admin.key"))
                .expect("admin.key written at first start")
                .trim()
                .to_owned(),
        };
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            // Listening comes first; ready once the plugins are loaded.
            if std::fs::read_to_string(&self.log_path)
                .unwrap_or_default()
                .contains("plugins loaded; ready")
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("actionhost serve exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "actionhost serve did not start listening:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The server's whole log so far (every start of this server).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self._temp.path()) {
            let mut logs: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                text.push_str(&std::fs::read_to_string(log).unwrap_or_default());
            }
        }
        text
    }

    /// This start's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("actionhost serve did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL, as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (unless already stopped or killed) and starts it
    /// again on the same data directory.
    pub fn restart(self) -> Self {
        self.restart_with(|_| {})
    }

    /// [`Self::restart`] with `change` made to the options first (extra
    /// environment, say).
    pub fn restart_with(mut self, change: impl FnOnce(&mut Options)) -> Self {
        self.stop();
        let mut options = self.options.clone();
        change(&mut options);
        options.data_dir = Some(self.data_dir.clone());
        let bodies = self.bodies.clone();
        let mut server = Self::launch(options, self._temp.clone());
        server.bodies = bodies;
        server
    }

    /// The PostgreSQL database this server stores in, if not sled.
    pub fn store(&self) -> Option<&str> {
        self.options.store.as_deref()
    }

    /// Every response body received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A request with `key` (as a bearer token) and an optional JSON body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request)
    }

    /// Sends a prepared request and records its body.
    pub fn send(&self, request: reqwest::blocking::RequestBuilder) -> Answer {
        let response = request.send().expect("the server answers");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let text = response.text().unwrap_or_default();
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text.clone());
        Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            headers,
        }
    }

    /// A request builder for raw requests (headers, bodies) to `path`.
    pub fn request(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// GET with the admin key.
    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(&self.admin_key), None)
    }

    /// POST JSON with the admin key.
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.call("POST", path, Some(&self.admin_key), Some(body))
    }

    /// Asserts that none of `secrets` appears in any response body, the
    /// server's log, or the bytes of its database.
    pub fn assert_no_leak(&self, secrets: &[&str]) {
        for secret in secrets {
            register_secret(secret);
        }
        for body in self.bodies() {
            if let Some(secret) = crate::providers::contains_secret(&body, secrets) {
                panic!("a response body carries the credential {secret:?}: {body}");
            }
        }
        self.assert_not_stored(secrets);
    }

    /// Asserts that none of `secrets` appears in the server's log or, in
    /// plain text, in the bytes of its database.
    pub fn assert_not_stored(&self, secrets: &[&str]) {
        let log = self.log();
        if let Some(secret) = crate::providers::contains_secret(&log, secrets) {
            panic!("the server log carries the credential {secret:?}");
        }
        if let Some(url) = &self.options.store {
            let bytes = crate::postgres::dump(url);
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "the database {url} holds the credential {secret:?} in plain text"
                );
            }
        }
        for entry in walk(&self.data_dir.join("db")) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} holds the credential {secret:?} in plain text",
                    entry.display()
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Adds `secret` to the credentials that no response body and no log line
/// of any server of this test binary may carry (checked when each server is
/// dropped).
pub fn register_secret(secret: &str) {
    known_secrets()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(secret.to_owned());
}

/// Every provider credential the tests hand to a server: the stand-ins'
/// fixed ones, whatever a test passed to [`Server::assert_no_leak`], and
/// whatever it passed to [`register_secret`].
fn known_secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: std::sync::OnceLock<Mutex<Vec<String>>> = std::sync::OnceLock::new();
    SECRETS.get_or_init(|| {
        Mutex::new(
            [
                crate::providers::TOKEN,
                crate::providers::WEBHOOK_SECRET,
                crate::providers::CLIENT_SECRET,
            ]
            .map(str::to_owned)
            .to_vec(),
        )
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The leak check of the whole run: every server of every test, every
        // response body it gave and every line it logged, against every
        // credential the tests use. Not while a test is already failing.
        if std::thread::panicking() {
            return;
        }
        let secrets = known_secrets()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        for body in self.bodies() {
            if let Some(secret) = crate::providers::contains_secret(&body, &secrets) {
                panic!("a response body carries the credential {secret:?}: {body}");
            }
        }
        if let Some(secret) = crate::providers::contains_secret(&self.log(), &secrets) {
            panic!("the server log carries the credential {secret:?}");
        }
    }
}
