//! Hostile fixture plugins in the real sandbox. Each misbehaviour must end in
//! its documented fault, and the same runtime must then run a good plugin.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actionhost::runtime::{
    Credentials, ExecuteError, ExecuteRequest, Execution, FaultKind, HostRule, Limits, Plugin,
    PluginFault, PluginOptions, Runtime, RuntimeConfig,
};
use serde_json::{Value, json};

struct Sandbox {
    hostile: Plugin,
    good: Plugin,
}

impl Sandbox {
    async fn new(limits: Limits, allow_private_network: bool, extra_hosts: &[&str]) -> Self {
        let mut config = RuntimeConfig::new(actionhost_tests::shared_cache_dir());
        config.allow_private_network = allow_private_network;
        config.limits = limits;
        let runtime = Runtime::new(config).expect("runtime");
        let extra_hosts: Vec<HostRule> = extra_hosts
            .iter()
            .map(|r| r.parse().expect("rule"))
            .collect();
        let load = |name: &str, extra_hosts: Vec<HostRule>| {
            let runtime = runtime.clone();
            let bytes = std::fs::read(actionhost_tests::fixture(name)).expect("fixture");
            async move {
                runtime
                    .load(
                        bytes.into(),
                        PluginOptions {
                            extra_hosts,
                            ..PluginOptions::default()
                        },
                    )
                    .await
                    .expect("load")
            }
        };
        let hostile = load("fixture-hostile", extra_hosts).await;
        let good = load("fixture-noop", Vec::new()).await;
        Self { hostile, good }
    }

    async fn run(&self, action_type: &str, params: Value) -> Result<Execution, PluginFault> {
        self.hostile
            .execute(
                request(action_type, params),
                Arc::new(Credentials::None.into()),
            )
            .await
    }

    async fn fault(&self, action_type: &str, params: Value) -> PluginFault {
        match self.run(action_type, params).await {
            Ok(execution) => panic!(
                "{action_type} should have faulted, returned {:?}",
                execution.outcome
            ),
            Err(fault) => fault,
        }
    }

    /// The good plugin still runs on the same runtime.
    async fn still_serves(&self) {
        let execution = self
            .good
            .execute(
                request("noop", json!({ "echo": "still here" })),
                Arc::new(Credentials::None.into()),
            )
            .await
            .expect("the good plugin runs");
        assert_eq!(execution.outcome.expect("succeeds")["echo"], "still here");
    }
}

fn request(action_type: &str, params: Value) -> ExecuteRequest {
    ExecuteRequest {
        action_id: "act_test".into(),
        action_type: action_type.into(),
        params,
        attempt: 1,
        idempotency_key: "act_test".into(),
        account: None,
        reuse_key: None,
    }
}

#[tokio::test]
async fn an_infinite_loop_ends_at_the_deadline() {
    let deadline = Duration::from_millis(500);
    let sandbox = Sandbox::new(
        Limits {
            deadline,
            ..Limits::default()
        },
        false,
        &[],
    )
    .await;
    let started = Instant::now();
    let fault = sandbox.fault("spin", json!({})).await;
    let elapsed = started.elapsed();
    assert_eq!(fault.kind, FaultKind::Deadline { limit: deadline });
    assert!(elapsed >= deadline, "stopped early, after {elapsed:?}");
    // Generous on purpose: the loop never ends by itself, so any bound proves the
    // deadline stopped it; how closely it stops is measured in the benches.
    assert!(
        elapsed <= deadline + Duration::from_secs(10),
        "stopped {elapsed:?} after start, deadline {deadline:?}"
    );
    assert!(
        fault.to_string().contains("spinning"),
        "report includes the guest's log: {fault}"
    );
    sandbox.still_serves().await;
}

#[tokio::test]
async fn growing_memory_past_the_cap_fails_that_call() {
    let limit = 32 << 20;
    let sandbox = Sandbox::new(
        Limits {
            memory_bytes: limit,
            ..Limits::default()
        },
        false,
        &[],
    )
    .await;
    let fault = sandbox.fault("grow_memory", json!({})).await;
    assert_eq!(fault.kind, FaultKind::MemoryLimit { limit_bytes: limit });
    assert!(fault.to_string().contains("holding 16 MiB"), "{fault}");
    sandbox.still_serves().await;
}

#[tokio::test]
async fn a_trap_reports_the_last_log_lines() {
    let sandbox = Sandbox::new(Limits::default(), false, &[]).await;
    let fault = sandbox.fault("trap", json!({})).await;
    assert_eq!(fault.kind.code(), "trap");
    let report = fault.to_string();
    assert!(
        report.contains("step 1: starting") && report.contains("step 2: about to trap"),
        "{report}"
    );
    sandbox.still_serves().await;
}

#[tokio::test]
async fn a_rust_panic_reports_its_message_and_the_log() {
    let sandbox = Sandbox::new(Limits::default(), false, &[]).await;
    let fault = sandbox
        .fault("panic", json!({ "message": "deliberate panic 7f3a" }))
        .await;
    assert_eq!(fault.kind.code(), "trap");
    let report = fault.to_string();
    assert!(report.contains("about to panic"), "{report}");
    assert!(report.contains("deliberate panic 7f3a"), "{report}");
    sandbox.still_serves().await;
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let sandbox = Sandbox::new(Limits::default(), false, &[]).await;
    let fault = sandbox.fault("deep_recursion", json!({})).await;
    assert_eq!(fault.kind, FaultKind::StackOverflow);
    sandbox.still_serves().await;
}

/// A listener that must never see a connection.
struct Untouched(std::net::TcpListener);

impl Untouched {
    fn bind() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Self(listener)
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/steal",
            self.0.local_addr().expect("addr").port()
        )
    }

    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the listener saw a connection: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_host_outside_the_allow_list_is_refused_before_connecting() {
    // Loopback is allowed, so only the allow-list stands in the way.
    let sandbox = Sandbox::new(Limits::default(), true, &[]).await;
    let listener = Untouched::bind();
    let execution = sandbox
        .run("fetch", json!({ "url": listener.url() }))
        .await
        .expect("no fault");
    match execution.outcome {
        Err(ExecuteError::Permanent(message)) => assert!(message.contains("denied"), "{message}"),
        other => panic!("expected a denied request, got {other:?}"),
    }
    assert!(
        execution
            .log
            .tail(5)
            .contains("not on the plugin's allow-list"),
        "{}",
        execution.log.tail(5)
    );
    listener.assert_untouched();
    sandbox.still_serves().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_the_operator_allows_them() {
    let sandbox = Sandbox::new(
        Limits::default(),
        false,
        &["http://127.0.0.1:*", "http://localhost:*"],
    )
    .await;
    let listener = Untouched::bind();
    for url in [
        listener.url(),
        listener.url().replace("127.0.0.1", "localhost"),
    ] {
        let execution = sandbox
            .run("fetch", json!({ "url": url }))
            .await
            .expect("no fault");
        assert!(
            matches!(execution.outcome, Err(ExecuteError::Permanent(ref m)) if m.contains("denied")),
            "{:?}",
            execution.outcome
        );
        assert!(
            execution
                .log
                .tail(5)
                .contains("private or reserved address"),
            "{}",
            execution.log.tail(5)
        );
    }
    listener.assert_untouched();
}

#[tokio::test]
async fn the_guest_finds_no_environment_and_no_files() {
    let sandbox = Sandbox::new(Limits::default(), false, &[]).await;
    // The host process has variables and files, so finding none proves that
    // the sandbox hides them.
    assert!(std::env::vars().count() > 0);
    let execution = sandbox.run("snoop", json!({})).await.expect("no fault");
    let findings = execution.outcome.expect("snoop returns its findings");
    assert_eq!(findings["env"], json!([]), "{findings}");
    assert_eq!(findings["args"], json!([]), "{findings}");
    assert_eq!(findings["files"], json!([]), "{findings}");
    assert_eq!(
        findings["errors"].as_array().map(Vec::len),
        Some(8),
        "every attempt failed: {findings}"
    );
    assert!(!std::path::Path::new("/tmp/actionhost-escape").exists());
    sandbox.still_serves().await;
}

#[tokio::test]
async fn ten_megabytes_of_log_are_truncated_at_the_cap() {
    let cap = 64 << 10;
    let sandbox = Sandbox::new(
        Limits {
            max_log_bytes: cap,
            ..Limits::default()
        },
        false,
        &[],
    )
    .await;
    let execution = sandbox
        .run("flood_log", json!({ "bytes": 10 << 20 }))
        .await
        .expect("no fault");
    assert!(
        execution.outcome.is_ok(),
        "a long log is not a failure: {:?}",
        execution.outcome
    );
    assert!(
        execution.log.bytes() <= cap,
        "kept {} bytes",
        execution.log.bytes()
    );
    assert!(
        execution.log.bytes() >= cap - 2048,
        "kept only {} bytes",
        execution.log.bytes()
    );
    assert!(
        execution.log.truncated_bytes >= (9 << 20),
        "dropped {} bytes",
        execution.log.truncated_bytes
    );
    sandbox.still_serves().await;
}

/// A loopback HTTP peer that answers every request `200 ok` and keeps each
/// request's head (request line and headers).
struct Recorder {
    port: u16,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Self {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                seen.lock()
                    .expect("heads")
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Self { port, heads }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/probe", self.port)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

#[tokio::test]
async fn validate_has_no_network_and_no_credentials_even_in_the_instance_that_executes() {
    let sandbox = Sandbox::new(Limits::default(), true, &["http://127.0.0.1:*"]).await;
    let peer = Recorder::start();
    let params = json!({ "url": peer.url() });
    let token = "tok_validate_probe_5f1c9e";
    let grant = || {
        let credentials: Credentials =
            serde_json::from_value(json!({ "type": "bearer", "token": token })).expect("bearer");
        Arc::new(credentials.into())
    };

    // The pipeline's path: validate keeps its instance, execute runs in it.
    let kept = sandbox
        .hostile
        .validate_keeping("fetch_from_validate", &params)
        .await
        .expect("validate does not fault")
        .expect("the params are valid");
    assert!(
        kept.is_some(),
        "a plugin on the newest WIT keeps its instance"
    );
    let execution = sandbox
        .hostile
        .execute_in(
            request("fetch_from_validate", params.clone()),
            grant(),
            kept,
        )
        .await
        .expect("execute does not fault");
    let output = execution.outcome.expect("execute succeeds");
    let saw = output["validate_saw"]
        .as_str()
        .expect("execute ran in the instance that validated");
    assert!(
        saw.starts_with("refused"),
        "validate reached the network: {saw}"
    );
    assert_eq!(output["status"], 200, "{output}");
    let heads = peer.heads();
    assert_eq!(
        heads.len(),
        1,
        "only execute's request reaches the peer: {heads:?}"
    );
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains(&format!("authorization: bearer {token}")),
        "execute's request carries the credentials: {}",
        heads[0]
    );
    // Nothing of validate's run is in the execution's log.
    assert!(
        !execution.log.tail(50).contains("allow-list"),
        "{}",
        execution.log.tail(50)
    );

    // Without a kept instance, execute runs in a fresh one that never validated.
    let execution = sandbox
        .hostile
        .execute(request("fetch_from_validate", params), grant())
        .await
        .expect("execute does not fault");
    let output = execution.outcome.expect("execute succeeds");
    assert_eq!(output["validate_saw"], Value::Null, "{output}");
    assert_eq!(peer.heads().len(), 2);
    sandbox.still_serves().await;
}

#[tokio::test]
async fn an_output_past_the_cap_is_refused_not_returned() {
    let cap = 1 << 20;
    let sandbox = Sandbox::new(
        Limits {
            max_output_bytes: cap,
            ..Limits::default()
        },
        false,
        &[],
    )
    .await;
    let fault = sandbox
        .fault("huge_output", json!({ "bytes": 8 << 20 }))
        .await;
    match fault.kind {
        FaultKind::OutputTooLarge { size, limit } => {
            assert_eq!(limit, cap);
            assert!(size > 8 << 20, "{size}");
        }
        other => panic!("expected output_too_large, got {other:?}"),
    }
    // Just under the cap is fine.
    let execution = sandbox
        .run("huge_output", json!({ "bytes": cap - 1024 }))
        .await
        .expect("no fault");
    assert!(execution.outcome.is_ok(), "{:?}", execution.outcome.err());
    sandbox.still_serves().await;
}

#[tokio::test]
async fn an_outbound_flood_to_an_allowed_host_stops_at_the_request_budget() {
    let sandbox = Sandbox::new(
        Limits {
            max_outbound_requests: 5,
            ..Limits::default()
        },
        true,
        &["http://127.0.0.1:*"],
    )
    .await;
    let peer = Recorder::start();
    let execution = sandbox
        .run(
            "outbound_flood",
            json!({ "url": peer.url(), "count": 1000 }),
        )
        .await
        .expect("no fault");
    let output = execution.outcome.expect("the plugin handles the refusal");
    assert_eq!(output["answered"], 5, "{output}");
    assert!(output["stopped_by"].is_string(), "{output}");
    assert_eq!(
        peer.heads().len(),
        5,
        "the sixth request never left the host"
    );
    assert!(
        execution
            .log
            .tail(5)
            .contains("more than 5 requests and messages in one execution"),
        "the log says why: {}",
        execution.log.tail(5)
    );
    sandbox.still_serves().await;
}

#[tokio::test]
async fn a_flood_of_host_calls_ends_at_the_deadline() {
    let deadline = Duration::from_millis(500);
    let sandbox = Sandbox::new(
        Limits {
            deadline,
            ..Limits::default()
        },
        false,
        &[],
    )
    .await;
    let fault = sandbox.fault("host_call_flood", json!({})).await;
    assert_eq!(fault.kind, FaultKind::Deadline { limit: deadline });
    assert!(
        fault.to_string().contains("calling the host without end"),
        "{fault}"
    );
    sandbox.still_serves().await;
}
