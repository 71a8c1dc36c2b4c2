//! Support for the black-box tests: where the built artifacts are, the real
//! local peers (an SMTP server, stand-ins for Gmail, LinkedIn and HubSpot),
//! and a runner for the `actionhost` binary.
//!
//! `scripts/test` builds the binary, the plugins (`target/plugins`) and the
//! fixtures (`target/fixtures`) and installs the peers' tools before running
//! these tests; each helper says so when something is missing.

pub mod exec;
pub mod faulty;
pub mod models;
pub mod postgres;
pub mod providers;
pub mod server;
pub mod smtp;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// A built artifact, or a panic that says how to build it.
fn artifact(path: PathBuf, how: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: {how} (scripts/test does it)",
        path.display()
    );
    path
}

/// The `actionhost` binary.
pub fn actionhost_bin() -> PathBuf {
    artifact(
        target_dir().join("debug").join("actionhost"),
        "run `cargo build -p actionhost`",
    )
}

/// The bundled plugins folder.
pub fn plugins_dir() -> PathBuf {
    artifact(target_dir().join("plugins"), "run scripts/build-plugins")
}

/// A bundled plugin's component.
pub fn plugin(name: &str) -> PathBuf {
    artifact(
        plugins_dir().join(format!("{name}.wasm")),
        "run scripts/build-plugins",
    )
}

/// A test fixture's component, such as `fixture-hostile`.
pub fn fixture(name: &str) -> PathBuf {
    artifact(
        target_dir().join("fixtures").join(format!("{name}.wasm")),
        "run scripts/build-plugins",
    )
}

/// A compiled-code cache shared by the tests, so each component compiles once.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("test-cache")
}

/// The Python with the test peers' packages.
pub fn python() -> PathBuf {
    let path = std::env::var_os("ACTIONHOST_TEST_PYTHON").map_or_else(
        || target_dir().join("test-tools/venv/bin/python"),
        PathBuf::from,
    );
    artifact(path, "run scripts/setup-test-tools")
}

/// Runs `tests/browser/SCRIPT` (Playwright driving Debian's Chromium) with
/// `args`, and returns the JSON report it prints as its last line; panics
/// with its output when it fails.
pub fn browser_script(script: &str, args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(python())
        .arg(workspace_root().join("tests/browser").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("run {script}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|err| panic!("{script}'s report {last:?}: {err}"))
}

/// The Python with Composio's client (composio-core) installed.
pub fn composio_python() -> PathBuf {
    artifact(
        target_dir().join("test-tools/composio-venv/bin/python"),
        "run scripts/setup-test-tools",
    )
}

/// Two clients sending the no-op fixture's sync executes back to back, as
/// steady traffic beside faults; each panics on the first answer that is
/// not the no-op's success.
pub struct SteadyTraffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl SteadyTraffic {
    /// Starts the clients against `server` and returns once they have
    /// been answered a few times.
    pub fn start(server: &server::Server) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        let workers = (0..2)
            .map(|worker| {
                let (url, key) = (server.url.clone(), server.admin_key.clone());
                let (stop, served) = (stop.clone(), served.clone());
                std::thread::spawn(move || steady_noop_traffic(&url, &key, worker, &stop, &served))
            })
            .collect();
        let traffic = Self {
            stop,
            served,
            workers,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while traffic.served() < 10 {
            assert!(
                std::time::Instant::now() < deadline
                    && traffic.workers.iter().all(|w| !w.is_finished()),
                "the steady traffic did not get going"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        traffic
    }

    /// Requests answered so far.
    pub fn served(&self) -> usize {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `fault` (something that takes a while: a hang until a
    /// deadline) and checks that the no-op was answered meanwhile, as it
    /// would not be if the fault held up other executions.
    pub fn beside<T>(&self, what: &str, fault: impl FnOnce() -> T) -> T {
        let before = self.served();
        let outcome = fault();
        let during = self.served() - before;
        assert!(
            during > 0,
            "{what}: no request of the steady traffic was answered while it ran"
        );
        outcome
    }

    /// Stops the clients; every request they sent was answered as it should
    /// be (or a client's panic is raised here). Returns how many.
    pub fn finish(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let served = self.served.clone();
        for worker in self.workers {
            worker.join().expect("the well-behaved plugin failed");
        }
        served.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Sends the no-op fixture's sync executes to the server at `url` back to
/// back until `stop`, as one steady client, counting each answer in
/// `served`; panics on the first answer that is not the no-op's success.
pub fn steady_noop_traffic(
    url: &str,
    key: &str,
    worker: usize,
    stop: &std::sync::atomic::AtomicBool,
    served: &std::sync::atomic::AtomicUsize,
) {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    let mut sent = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let echo = format!("steady-{worker}-{sent}");
        let response = client
            .post(format!("{url}/api/v2/actions/noop/execute"))
            .bearer_auth(key)
            .json(&serde_json::json!({ "input": { "echo": echo } }))
            .send()
            .unwrap_or_else(|e| panic!("request {sent} of worker {worker} failed: {e}"));
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().expect("a JSON answer");
        assert!(
            status == 200 && body["successful"] == true && body["data"]["echo"] == echo.as_str(),
            "the well-behaved plugin failed beside the faults: {status} {body}"
        );
        sent += 1;
        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
