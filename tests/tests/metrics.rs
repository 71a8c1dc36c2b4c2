//! Prometheus metrics: the real server's `/metrics` on its own listen
//! address, scraped by the real Prometheus (Debian's `prometheus`), whose
//! query API then answers with the executions, HTTP requests, plugin loads
//! and sandbox faults the server did.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actionhost_tests::fixture;
use actionhost_tests::server::{Options, Server, free_port};
use serde_json::{Value, json};

/// A Prometheus scraping `target` every 200 ms; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("prometheus dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: actionhost\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (scripts/setup-test-tools installs Debian's package)");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The instant vector of `query`, once it is not empty (a minute at most).
    fn until(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            if let Ok(answer) = client
                .get(format!("{}/api/v1/query", self.url))
                .query(&[("query", query)])
                .send()
                .and_then(reqwest::blocking::Response::json::<Value>)
            {
                last = answer["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if done(&last) {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{query}: {last:?} after a minute");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn prometheus_scrapes_executions_requests_plugin_loads_and_faults_from_metrics() {
    let metrics_port = free_port();
    let server = Server::start_with(Options {
        plugins: Some(vec![
            fixture("fixture-noop"),
            fixture("fixture-hostile"),
            fixture("fixture-versioned"),
        ]),
        env: vec![
            (
                "ACTIONHOST_METRICS__LISTEN".into(),
                format!("127.0.0.1:{metrics_port}"),
            ),
            ("ACTIONHOST_LIMITS__DEADLINE".into(), "2s".into()),
        ],
        ..Options::default()
    });
    for n in 0..20 {
        let ran = server.post(
            "/api/v2/actions/noop/execute",
            &json!({ "input": { "echo": format!("n{n}") } }),
        );
        assert_eq!(ran.json["successful"], true, "{}", ran.text);
    }
    // A plugin that spins until its deadline: a sandbox fault.
    let spun = server.post("/api/v2/actions/spin/execute", &json!({ "input": {} }));
    assert_eq!(spun.json["successful"], false, "{}", spun.text);
    // Two stored actions: one due now (the scheduler runs it), one waiting
    // for a reviewer.
    for body in [
        json!({ "type": "noop", "params": {}, "identity_id": "ops" }),
        json!({ "type": "noop", "params": {}, "identity_id": "ops", "require_approval": true }),
    ] {
        let created = server.post("/v1/actions", &body);
        assert_eq!(created.status, 200, "{}", created.text);
    }
    let missing = server.get("/v1/actions/act_00000000000000000000");
    assert_eq!(missing.status, 404);
    // A new build over a plugin's file, as deploy tools write it: a swap.
    let temp = server.plugins_dir.join(".fixture-versioned.wasm.partial");
    std::fs::copy(fixture("fixture-versioned-v2"), &temp).expect("copy");
    std::fs::rename(&temp, server.plugins_dir.join("fixture-versioned.wasm")).expect("rename");

    // The text format, as any scraper reads it; no key, no secret.
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .and_then(reqwest::blocking::Response::text)
        .expect("GET /metrics");
    assert!(text.contains("actionhost_executions_total"), "{text}");
    assert!(
        !text.contains(&server.admin_key),
        "the admin key is in /metrics"
    );

    let prometheus = Prometheus::start(&format!("127.0.0.1:{metrics_port}"));
    // 20 synchronous executions and the stored action the scheduler ran.
    let executions = prometheus.until(
        r#"actionhost_executions_total{action_type="noop",outcome="succeeded"}"#,
        |v| v.iter().any(|s| value(s) == 21.0),
    );
    prometheus.until(
        r#"actionhost_execution_duration_seconds_count{action_type="noop"}"#,
        |v| v.iter().any(|s| value(s) == 21.0),
    );
    assert_eq!(executions[0]["metric"]["plugin"], "fixture-noop");
    let faults = prometheus.until("actionhost_sandbox_faults_total", |v| !v.is_empty());
    assert_eq!(
        faults[0]["metric"]["plugin"], "fixture-hostile",
        "{faults:?}"
    );
    // Routes by their template, never by the ids in the path.
    prometheus.until(
        r#"actionhost_http_requests_total{route="/api/v2/actions/{action}/execute",method="POST",status="200"}"#,
        |v| v.iter().any(|s| value(s) == 21.0),
    );
    prometheus.until(
        r#"actionhost_http_requests_total{route="/v1/actions/{id}",status="404"}"#,
        |v| !v.is_empty(),
    );
    let loads = prometheus.until(r#"actionhost_plugin_loads_total{outcome="loaded"}"#, |v| {
        v.iter().map(value).sum::<f64>() >= 2.0
    });
    assert!(!loads.is_empty());
    prometheus.until(
        r#"actionhost_plugin_swaps_total{plugin="fixture-versioned"}"#,
        |v| v.iter().any(|s| value(s) == 1.0),
    );
    // The scheduler's lag, and the actions by status (sampled every 15 s).
    prometheus.until("actionhost_scheduler_lag_seconds_count", |v| {
        v.iter().any(|s| value(s) >= 1.0)
    });
    prometheus.until(r#"actionhost_actions{status="pending_approval"}"#, |v| {
        v.iter().any(|s| value(s) == 1.0)
    });
    prometheus.until(r#"actionhost_actions{status="succeeded"}"#, |v| {
        v.iter().any(|s| value(s) == 1.0)
    });
    prometheus.until("actionhost_actions_due", |v| {
        v.iter().any(|s| value(s) == 0.0)
    });
    // The latency histogram: the median no-op execution, from its buckets.
    let median = prometheus.until(
        r#"histogram_quantile(0.5, sum by (le) (actionhost_execution_duration_seconds_bucket{action_type="noop"}))"#,
        |v| v.iter().any(|s| value(s).is_finite()),
    );
    assert!(value(&median[0]) < 10.0, "{median:?}");
}
