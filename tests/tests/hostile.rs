//! The hostile-plugin matrix through the real server, while a well-behaved
//! plugin serves steady traffic: every hostile behaviour ends in its
//! documented answer, the well-behaved plugin answers every request, and the
//! server never restarts.
//!
//! `sandbox.rs` checks each behaviour in depth on the runtime alone; this
//! checks them together, over HTTP, under load. How much the hostile
//! plugins slow the well-behaved one (its p99 against its baseline) is a
//! figure of the bench's `hostile` section, not an assertion here: a timing
//! bound in a test flakes on a shared machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actionhost_tests::fixture;
use actionhost_tests::providers::Providers;
use actionhost_tests::server::{Answer, Options, Server};
use serde_json::{Value, json};

/// What one hostile execution must answer.
enum Expect {
    /// A contained failure: `errorCode` and a phrase of the message.
    Fault(&'static str, &'static str),
    /// A success whose output passes the check.
    Output(fn(&Value) -> Result<(), String>),
}

#[test]
fn every_hostile_plugin_is_contained_while_a_good_plugin_serves_steady_traffic() {
    let providers = Providers::start();
    let flood_url = format!("{}/flood", providers.base_url);
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        env: vec![("ACTIONHOST_LIMITS__DEADLINE".into(), "2s".into())],
        ..Options::default()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let traffic: Vec<_> = (0..2)
        .map(|worker| {
            let url = format!("{}/api/v2/actions/noop/execute", server.url);
            let key = server.admin_key.clone();
            let stop = stop.clone();
            std::thread::spawn(move || steady_traffic(&url, &key, worker, &stop))
        })
        .collect();
    // Let the traffic start before the first hostile call.
    std::thread::sleep(Duration::from_millis(300));

    let matrix: Vec<(&str, Value, Expect)> = vec![
        (
            "spin",
            json!({}),
            Expect::Fault("plugin_fault", "exceeded its deadline"),
        ),
        (
            "host_call_flood",
            json!({}),
            Expect::Fault("plugin_fault", "exceeded its deadline"),
        ),
        (
            "grow_memory",
            json!({}),
            Expect::Fault("plugin_fault", "grow its memory past the limit"),
        ),
        (
            "deep_recursion",
            json!({}),
            Expect::Fault("plugin_fault", "overflowed its stack"),
        ),
        ("trap", json!({}), Expect::Fault("plugin_fault", "trapped")),
        (
            "panic",
            json!({ "message": "boom" }),
            Expect::Fault("plugin_fault", "trapped"),
        ),
        (
            "huge_output",
            json!({ "bytes": 5_000_000 }),
            Expect::Fault("plugin_fault", "output"),
        ),
        (
            "fetch",
            json!({ "url": "https://example.com/" }),
            Expect::Fault("permanent", "request denied by the host"),
        ),
        (
            "flood_log",
            json!({ "bytes": 10_000_000 }),
            Expect::Output(|data| {
                (data.as_u64() >= Some(10_000_000))
                    .then_some(())
                    .ok_or_else(|| format!("wrote {data}, not all 10 MB"))
            }),
        ),
        (
            "snoop",
            json!({}),
            Expect::Output(|data| {
                (data["env"] == json!([]) && data["args"] == json!([]))
                    .then_some(())
                    .ok_or_else(|| format!("saw environment or arguments: {data}"))
            }),
        ),
        (
            "outbound_flood",
            json!({ "url": flood_url, "count": 1000 }),
            Expect::Output(|data| {
                (data["answered"] == json!(100) && data["stopped_by"].is_string())
                    .then_some(())
                    .ok_or_else(|| format!("not stopped at the 100-request budget: {data}"))
            }),
        ),
        (
            "fetch_from_validate",
            json!({ "url": format!("{}/probe", providers.base_url) }),
            Expect::Output(|data| {
                let saw = data["validate_saw"].as_str().unwrap_or_default();
                (saw.contains("Denied") && data["status"].is_u64())
                    .then_some(())
                    .ok_or_else(|| format!("validate reached the network: {data}"))
            }),
        ),
    ];
    let mut contained = 0;
    for (action, input, expect) in &matrix {
        let answer = server.post(
            &format!("/api/v2/actions/{action}/execute"),
            &json!({ "input": input }),
        );
        assert_eq!(answer.status, 200, "{action}: {}", answer.text);
        check(action, &answer, expect);
        contained += 1;
    }
    assert_eq!(
        providers
            .requests()
            .iter()
            .filter(|r| r.path == "/flood")
            .count(),
        100,
        "the outbound flood reached the peer more often than its budget"
    );

    // Components that cannot be loaded, uploaded under the same traffic.
    for (name, reason) in [
        ("fixture-versioned-describe-trap", "describe failed"),
        ("fixture-wit-unknown", "actionhost:executor@0.9.0"),
    ] {
        let bytes = std::fs::read(fixture(name)).expect("fixture");
        let answer = server.send(
            server
                .request("POST", "/v1/plugins")
                .bearer_auth(&server.admin_key)
                .header("content-type", "application/wasm")
                .body(bytes),
        );
        assert_eq!(answer.status, 422, "{name}: {}", answer.text);
        assert!(answer.text.contains(reason), "{name}: {}", answer.text);
        contained += 1;
    }

    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for worker in traffic {
        served += worker.join().expect("a traffic worker panicked");
    }
    eprintln!(
        "{contained} hostile cases contained; the good plugin answered all {served} of its requests"
    );
    assert!(
        served >= 20,
        "only {served} requests of steady traffic were sent"
    );
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(
        server.log().matches("listening on http://").count(),
        1,
        "the server restarted"
    );
}

/// Sends the well-behaved plugin's requests back to back until `stop`;
/// panics on the first one that fails. Returns how many it sent.
fn steady_traffic(url: &str, key: &str, worker: usize, stop: &AtomicBool) -> usize {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let echo = format!("steady-{worker}-{sent}");
        let response = client
            .post(url)
            .bearer_auth(key)
            .json(&json!({ "input": { "echo": echo } }))
            .send()
            .unwrap_or_else(|e| panic!("request {sent} of worker {worker} failed: {e}"));
        let status = response.status().as_u16();
        let body: Value = response.json().expect("a JSON answer");
        assert!(
            status == 200
                && body["successful"] == json!(true)
                && body["data"]["echo"] == json!(echo),
            "the well-behaved plugin failed during the hostile matrix: {status} {body}"
        );
        sent += 1;
    }
    sent
}

fn check(action: &str, answer: &Answer, expect: &Expect) {
    let json = &answer.json;
    match expect {
        Expect::Fault(code, phrase) => {
            assert_eq!(
                json["successful"],
                json!(false),
                "{action} succeeded: {json}"
            );
            assert_eq!(json["errorCode"], json!(code), "{action}: {json}");
            let message = json["error"].as_str().unwrap_or_default();
            assert!(
                message.contains(phrase),
                "{action}: {message:?} lacks {phrase:?}"
            );
        }
        Expect::Output(check) => {
            assert_eq!(json["successful"], json!(true), "{action} failed: {json}");
            if let Err(problem) = check(&json["data"]) {
                panic!("{action}: {problem}");
            }
        }
    }
}
