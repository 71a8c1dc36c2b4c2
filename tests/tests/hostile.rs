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

use std::time::Duration;

use actionhost_tests::faulty::{FaultyHttp, HttpFault};
use actionhost_tests::providers::Providers;
use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::{SteadyTraffic, fixture};
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

    let traffic = SteadyTraffic::start(&server);

    let mut matrix: Vec<(&str, Value, Expect)> = vec![
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
            "resource_flood",
            json!({}),
            Expect::Fault("plugin_fault", "host resources"),
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
    // Table growth needs `table.grow`, which no Rust toolchain emits: this
    // plugin is WebAssembly text, uploaded under the same traffic.
    let uploaded = upload(&server, fixture_wat::table_grow_component());
    assert_eq!(uploaded.status, 201, "{}", uploaded.text);
    matrix.push((
        "table_grow",
        json!({}),
        Expect::Fault("plugin_fault", "grow a table past the limit"),
    ));

    let mut contained = 0;
    for (action, input, expect) in &matrix {
        let run = || {
            server.post(
                &format!("/api/v2/actions/{action}/execute"),
                &json!({ "input": input }),
            )
        };
        // Those that last until the deadline: the no-op is answered
        // meanwhile.
        let answer = if matches!(expect, Expect::Fault(_, "exceeded its deadline")) {
            traffic.beside(action, run)
        } else {
            run()
        };
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

    // Components that cannot be loaded, uploaded under the same traffic: a
    // trap inside `describe`, a contract version no host has, and an import
    // of an interface the host does not offer.
    for (name, bytes, reason) in [
        (
            "describe trap",
            std::fs::read(fixture("fixture-versioned-describe-trap")).expect("fixture"),
            "describe failed",
        ),
        (
            "unknown contract",
            std::fs::read(fixture("fixture-wit-unknown")).expect("fixture"),
            "actionhost:executor@0.9.0",
        ),
        (
            "unknown import",
            fixture_wat::unknown_import_component(),
            "evil:backdoor/shell",
        ),
    ] {
        let answer = upload(&server, bytes);
        assert_eq!(answer.status, 422, "{name}: {}", answer.text);
        assert!(answer.text.contains(reason), "{name}: {}", answer.text);
        contained += 1;
    }

    let served = traffic.finish();
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

fn upload(server: &Server, bytes: Vec<u8>) -> Answer {
    server.send(
        server
            .request("POST", "/v1/plugins")
            .bearer_auth(&server.admin_key)
            .header("content-type", "application/wasm")
            .body(bytes),
    )
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

#[test]
fn a_noisy_tenant_at_its_cap_starves_neither_another_tenant_nor_another_plugin() {
    // Each hostile `fetch` below waits on a peer that holds its request
    // until the test lets it go, and so holds its slot until then.
    let peer = FaultyHttp::start(HttpFault::Hold);
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        env: vec![
            ("ACTIONHOST_LIMITS__DEADLINE".into(), "120s".into()),
            ("ACTIONHOST_CONCURRENCY__PER_PLUGIN".into(), "4".into()),
            ("ACTIONHOST_CONCURRENCY__PER_TENANT".into(), "2".into()),
        ],
        ..Options::default()
    });
    let tenant = |name: &str| {
        let answer = server.post(
            "/v1/tenants",
            &json!({ "name": name, "admin_email": format!("ops@{name}.example") }),
        );
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.json["key"].as_str().expect("tenant key").to_owned()
    };
    let (noisy, quiet, third) = (server.admin_key.clone(), tenant("quiet"), tenant("third"));
    let held = json!({ "input": { "url": format!("{}/slow", peer.base_url) } });
    let call = |key: &str, action: &str, body: &Value| {
        server.call(
            "POST",
            &format!("/api/v2/actions/{action}/execute"),
            Some(key),
            Some(body),
        )
    };

    std::thread::scope(|scope| {
        // The noisy tenant asks for six at once: two run, four are refused
        // at once, and nothing of theirs reaches the peer.
        let noisy_calls: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| call(&noisy, "fetch", &held)))
            .collect();
        peer.wait_for_requests(2);
        // The refused ones answer while the two run (held, they cannot end).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while noisy_calls.iter().filter(|c| c.is_finished()).count() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "the refusals did not come"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (refused, running): (Vec<_>, Vec<_>) =
            noisy_calls.into_iter().partition(|c| c.is_finished());
        assert_eq!(refused.len(), 4, "more than two of six ran");
        for call in refused {
            assert_busy(&call.join().expect("call"), "concurrency.per_tenant");
        }

        // Another tenant is not held up, on another plugin or the same.
        let noop = call(&quiet, "noop", &json!({ "input": { "echo": "quiet" } }));
        assert_eq!(noop.json["successful"], true, "{}", noop.text);
        let quiet_calls: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| call(&quiet, "fetch", &held)))
            .collect();
        peer.wait_for_requests(4);

        // The plugin is full now (two tenants at two each): a third tenant
        // is refused on it, and still served by another plugin.
        let refused = call(&third, "fetch", &held);
        assert_busy(&refused, "concurrency.per_plugin");
        assert!(refused.text.contains("fixture-hostile"), "{}", refused.text);
        let noop = call(&third, "noop", &json!({ "input": { "echo": "third" } }));
        assert_eq!(noop.json["successful"], true, "{}", noop.text);

        // Let the held requests go: the four that ran succeed.
        peer.release();
        for handle in running.into_iter().chain(quiet_calls) {
            let answer = handle.join().expect("call");
            assert_eq!(answer.json["successful"], true, "{}", answer.text);
        }
    });
    assert_eq!(peer.requests(), 4, "a refused execution reached the peer");

    // The slots came back: the noisy tenant runs again.
    let again = call(&noisy, "fetch", &held);
    assert_eq!(again.json["successful"], true, "{}", again.text);
}

fn assert_busy(answer: &Answer, cap: &str) {
    assert_eq!(answer.status, 429, "{}", answer.text);
    assert_eq!(answer.json["errorCode"], "rate_limited", "{}", answer.text);
    assert_eq!(answer.json["retryable"], true, "{}", answer.text);
    assert_eq!(
        answer.header("retry-after"),
        Some("1"),
        "{:?}",
        answer.headers
    );
    assert!(answer.text.contains(cap), "{cap}: {}", answer.text);
}

#[test]
fn a_plugin_at_its_cap_holds_up_no_due_action_of_another_plugin() {
    // One scheduler slot: were the scheduler to wait for the full plugin
    // while holding it, nothing else could run.
    let peer = FaultyHttp::start(HttpFault::Hold);
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        env: vec![
            ("ACTIONHOST_LIMITS__DEADLINE".into(), "120s".into()),
            ("ACTIONHOST_CONCURRENCY__PER_PLUGIN".into(), "1".into()),
            ("ACTIONHOST_SCHEDULER__CONCURRENCY".into(), "1".into()),
            ("ACTIONHOST_SCHEDULER__PER_TENANT".into(), "1".into()),
        ],
        ..Options::default()
    });
    let held = json!({ "url": format!("{}/held", peer.base_url) });
    let create = |action_type: &str, params: &Value| {
        let answer = server.post(
            "/v1/actions",
            &json!({ "type": action_type, "params": params, "identity_id": "ada", "require_approval": false }),
        );
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json["action_id"]
            .as_str()
            .expect("action_id")
            .to_owned()
    };
    let status =
        |id: &str| server.get(&format!("/v1/actions/{id}")).json["action"]["status"].clone();
    let wait_for = |id: &str, want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while status(id) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} is {}, not {want}",
                status(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    std::thread::scope(|scope| {
        // The hostile plugin's one slot is taken by a synchronous execute.
        let sync =
            scope.spawn(|| server.post("/api/v2/actions/fetch/execute", &json!({ "input": held })));
        peer.wait_for_requests(1);

        // A due action of the full plugin stays scheduled; one of another
        // plugin, due after it, runs.
        let waiting = create("fetch", &held);
        let other = create("noop", &json!({ "echo": "other" }));
        wait_for(&other, "succeeded");
        assert_eq!(status(&waiting), "scheduled");
        assert_eq!(peer.requests(), 1, "the full plugin ran past its cap");

        // Once the slot is free, the waiting action runs.
        peer.release();
        let answer = sync.join().expect("sync execute");
        assert_eq!(answer.json["successful"], true, "{}", answer.text);
        wait_for(&waiting, "succeeded");
    });
    assert_eq!(peer.requests(), 2);
}

#[test]
fn an_smtp_flood_stops_at_the_same_budget_as_outbound_requests() {
    let sink = actionhost_tests::smtp::SmtpSink::start();
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        env: vec![(
            "ACTIONHOST_LIMITS__MAX_OUTBOUND_REQUESTS".into(),
            "10".into(),
        )],
        ..Options::default()
    });
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "fixture-hostile", "scheme": { "type": "smtp", "host": "127.0.0.1", "port": sink.port } }),
    );
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config.ok()["id"], "entityId": "ada", "metadata": {}, "credentials": { "tls": "none" } }),
    );
    account.ok();
    let answer = server.post(
        "/api/v2/actions/smtp_flood/execute",
        &json!({ "entityId": "ada", "input": { "count": 50 } }),
    );
    assert_eq!(answer.json["successful"], true, "{}", answer.text);
    assert_eq!(answer.json["data"]["answered"], 10, "{}", answer.text);
    let stopped_by = answer.json["data"]["stopped_by"]
        .as_str()
        .unwrap_or_default();
    assert!(
        stopped_by.contains("more than 10 outbound requests and messages"),
        "{stopped_by}"
    );
    assert_eq!(sink.received().len(), 10, "the relay sent past its budget");
}

#[test]
fn a_plugins_own_limits_and_cap_apply_to_it_alone() {
    let providers = Providers::start();
    let peer = FaultyHttp::start(HttpFault::Hold);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("actionhost.toml");
    std::fs::write(
        &config,
        r#"
[limits]
deadline = "120s"
max_outbound_requests = 7

[plugin_limits.fixture-hostile]
max_outbound_requests = 3

[concurrency.plugins]
fixture-hostile = 1
"#,
    )
    .expect("write the config");
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    });

    // Each plugin shows the limits it runs under: the hostile one its own
    // budget and `[limits]` for the rest, the no-op `[limits]` alone.
    let list = server.get("/v1/plugins");
    assert_eq!(list.status, 200, "{}", list.text);
    let limits_of = |name: &str| {
        list.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|item| item["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {}", list.text))["limits"]
            .clone()
    };
    let (hostile, noop) = (limits_of("fixture-hostile"), limits_of("fixture-noop"));
    assert_eq!(hostile["max_outbound_requests"], 3, "{hostile}");
    assert_eq!(hostile["deadline"], "2m", "{hostile}");
    assert_eq!(noop["max_outbound_requests"], 7, "{noop}");

    // The budget that runs is the plugin's own.
    let flood = server.post(
        "/api/v2/actions/outbound_flood/execute",
        &json!({ "input": { "url": format!("{}/flood", providers.base_url), "count": 100 } }),
    );
    assert_eq!(flood.json["successful"], true, "{}", flood.text);
    assert_eq!(flood.json["data"]["answered"], 3, "{}", flood.text);

    // One execution at a time for the hostile plugin: a second is refused
    // by its own cap while the first is held; the no-op plugin is served.
    let held = json!({ "input": { "url": format!("{}/slow", peer.base_url) } });
    std::thread::scope(|scope| {
        let first = scope.spawn(|| server.post("/api/v2/actions/fetch/execute", &held));
        peer.wait_for_requests(1);
        let refused = server.post("/api/v2/actions/fetch/execute", &held);
        assert_busy(&refused, "concurrency.plugins.fixture-hostile");
        let noop = server.post(
            "/api/v2/actions/noop/execute",
            &json!({ "input": { "echo": "beside" } }),
        );
        assert_eq!(noop.json["successful"], true, "{}", noop.text);
        peer.release();
        let first = first.join().expect("call");
        assert_eq!(first.json["successful"], true, "{}", first.text);
    });
    assert_eq!(peer.requests(), 1, "the refused execution reached the peer");
}
