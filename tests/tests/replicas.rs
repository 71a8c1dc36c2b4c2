//! Replicas: several `actionhost serve` processes on one PostgreSQL
//! database share the due work, each action delivered once, and a replica
//! killed mid-drain has its runs recovered by the others once its lease
//! expires, without a restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actionhost_tests::postgres;
use actionhost_tests::providers::{Fault, Providers, TOKEN};
use actionhost_tests::server::{Options, Server};
use serde_json::{Value, json};

/// One key for every replica: the credentials are sealed with it.
const SECRET_KEY: &str = "6b1f0c0e5d8a4f3b9e2d7c6a5b4f3e2d1c0b9a8f7e6d5c4b3a29180706050403";

/// A replica storing in `url`. The first one (no `admin`) bootstraps the
/// tenant; the others join with its admin key.
fn replica(url: &str, admin: Option<&str>, scheduler: bool, lease: &str) -> Server {
    Server::start_with(Options {
        store: Some(url.to_owned()),
        admin_key: admin.map(str::to_owned),
        env: vec![
            ("ACTIONHOST_SECRET_KEY".into(), SECRET_KEY.into()),
            (
                "ACTIONHOST_SCHEDULER__ENABLED".into(),
                scheduler.to_string(),
            ),
            ("ACTIONHOST_SCHEDULER__LEASE".into(), lease.into()),
        ],
        ..Options::default()
    })
}

/// Starts `n` replicas at once, all with their scheduler on.
fn replicas(url: &str, admin: &str, n: usize, lease: &str) -> Vec<Server> {
    std::thread::scope(|scope| {
        let started: Vec<_> = (0..n)
            .map(|_| scope.spawn(move || replica(url, Some(admin), true, lease)))
            .collect();
        started
            .into_iter()
            .map(|s| s.join().expect("replica started"))
            .collect()
    })
}

fn ok(answer: &actionhost_tests::server::Answer) -> &Value {
    answer.ok()
}

fn linkedin_account(server: &Server, providers: &Providers) {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "linkedin-message", "scheme": { "type": "bearer" } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("id").to_owned();
    ok(&server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": "ada", "metadata": { "base_url": providers.base_url }, "credentials": { "token": TOKEN } }),
    ));
}

/// Creates `messages` approved LinkedIn messages (each body `Hello mN`)
/// and `noops` no-op actions, all due now, from four clients; returns the
/// ids of each kind.
fn create_due(server: &Server, messages: usize, noops: usize) -> (Vec<String>, Vec<String>) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let post = |path: &str, body: &Value| -> Value {
        let response = client
            .post(format!("{}{path}", server.url))
            .bearer_auth(&server.admin_key)
            .json(body)
            .send()
            .expect("request");
        let status = response.status();
        let json: Value = response.json().expect("JSON");
        assert!(status.is_success(), "{path}: {status} {json}");
        json
    };
    let clients = 4;
    let (linked, noop): (Vec<Vec<String>>, Vec<Vec<String>>) = std::thread::scope(|scope| {
        let parts: Vec<_> = (0..clients)
            .map(|c| {
                let post = &post;
                scope.spawn(move || {
                    let mut linked = Vec::new();
                    for n in (c..messages).step_by(clients) {
                        let body = json!({ "type": "linkedin_message", "params": { "recipients": [format!("urn:li:person:m{n}")], "body": format!("Hello m{n}") }, "identity_id": "ada" });
                        linked.push(post("/v1/actions", &body)["action_id"].as_str().expect("id").to_owned());
                    }
                    for batch in linked.chunks(100) {
                        let answer = post(
                            "/v1/actions/approve/bulk",
                            &json!({ "action": "approve", "action_ids": batch }),
                        );
                        assert_eq!(answer["failed"].as_array().map_or(0, Vec::len), 0, "{answer}");
                    }
                    let mut noop = Vec::new();
                    for n in (c..noops).step_by(clients) {
                        let body = json!({ "type": "noop", "params": { "echo": format!("n{n}") }, "identity_id": "ada", "require_approval": false });
                        noop.push(post("/v1/actions", &body)["action_id"].as_str().expect("id").to_owned());
                    }
                    (linked, noop)
                })
            })
            .collect();
        parts.into_iter().map(|p| p.join().expect("client")).unzip()
    });
    (linked.concat(), noop.concat())
}

/// How many actions are in `status`, as one replica sees them.
fn count(server: &Server, status: &str) -> u64 {
    let answer = server.get(&format!("/v1/actions?status={status}&limit=1"));
    ok(&answer)["pagination"]["total_items"]
        .as_u64()
        .expect("total_items")
}

/// Waits until nothing is scheduled or executing.
fn wait_drained(server: &Server, within: Duration) {
    let deadline = Instant::now() + within;
    while count(server, "scheduled") + count(server, "executing") > 0 {
        assert!(
            Instant::now() < deadline,
            "not drained within {within:?}: {} scheduled, {} executing",
            count(server, "scheduled"),
            count(server, "executing")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Message bodies the LinkedIn stand-in received, with how often.
fn deliveries(providers: &Providers) -> HashMap<String, usize> {
    let mut delivered = HashMap::new();
    for request in providers.requests() {
        if request.path == "/rest/messages" {
            let body = request.json()["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            *delivered.entry(body).or_default() += 1;
        }
    }
    delivered
}

/// How many attempts a replica's log says it finished.
fn attempts_run(server: &Server) -> usize {
    server.log().matches("action attempt finished").count()
}

fn replica_id(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir.join("replica.id"))
        .expect("replica.id")
        .trim()
        .to_owned()
}

#[test]
fn three_replicas_drain_ten_thousand_due_actions_each_delivered_once_each_running_a_share() {
    let total: usize = std::env::var("ACTIONHOST_REPLICA_ACTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let url = postgres::database();
    let providers = Providers::start();
    // The work is created on one replica whose scheduler is off, so that
    // all of it is due when the three start together.
    let mut first = replica(&url, None, false, "15s");
    linkedin_account(&first, &providers);
    let started = Instant::now();
    let (messages, _) = create_due(&first, total, 0);
    eprintln!(
        "created and approved {} LinkedIn messages in {:.1} s",
        messages.len(),
        started.elapsed().as_secs_f64()
    );
    let admin = first.admin_key.clone();
    first.stop();
    let started = Instant::now();
    let servers = replicas(&url, &admin, 3, "15s");
    wait_drained(&servers[0], Duration::from_secs(600));
    let drained = started.elapsed();

    let succeeded = count(&servers[1], "succeeded");
    if succeeded != total as u64 {
        let failed = ok(&servers[1].get("/v1/actions?limit=3&status=failed")).clone();
        panic!(
            "{succeeded} of {total} succeeded; pending_approval {}, failed {}, outcome_unknown {}: {failed}",
            count(&servers[1], "pending_approval"),
            count(&servers[1], "failed"),
            count(&servers[1], "outcome_unknown")
        );
    }
    let delivered = deliveries(&providers);
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for n in 0..total {
        assert_eq!(
            delivered.get(&format!("Hello m{n}")),
            Some(&1),
            "message m{n} was not delivered"
        );
    }
    let shares: Vec<usize> = servers.iter().map(attempts_run).collect();
    eprintln!(
        "three replicas drained {total} due actions in {:.1} s ({:.0}/s); attempts per replica {shares:?}",
        drained.as_secs_f64(),
        total as f64 / drained.as_secs_f64()
    );
    assert_eq!(shares.iter().sum::<usize>(), total, "one attempt each");
    assert!(
        shares.iter().all(|&share| share > 0),
        "every replica runs a share: {shares:?}"
    );
    // An execution record names the replica that ran it.
    let action = ok(&servers[2].get(&format!("/v1/actions/{}", messages[0]))).clone();
    let execution = action["action"]["executions"][0]
        .as_str()
        .expect("an execution")
        .to_owned();
    let record = ok(&servers[2].get(&format!("/v1/executions/{execution}"))).clone();
    let ran_on = record["replica"].as_str().expect("replica").to_owned();
    assert!(
        servers.iter().any(|s| replica_id(s) == ran_on),
        "{ran_on} is one of the three"
    );
}

#[test]
fn a_replica_killed_mid_drain_loses_nothing_and_its_runs_are_recovered_by_the_others_after_its_lease()
 {
    let url = postgres::database();
    let providers = Providers::start();
    let mut first = replica(&url, None, false, "2s");
    linkedin_account(&first, &providers);
    let (messages, noops) = create_due(&first, 1_500, 500);
    let admin = first.admin_key.clone();
    first.stop();
    let mut servers = replicas(&url, &admin, 3, "2s");
    let victim = replica_id(&servers[1]);

    // Mid-drain, the provider slows down so that runs are in flight, and
    // once the victim holds some, it is killed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while deliveries(&providers).len() < 300 {
        assert!(Instant::now() < deadline, "the drain never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..200 {
        providers.fail_next(Fault::Slow(Duration::from_secs(3)));
    }
    let held_by_victim = |server: &Server| -> Vec<String> {
        let page = ok(&server.get("/v1/actions?status=executing&limit=100")).clone();
        page["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["running_on"] == victim.as_str())
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Held across two looks 300 ms apart: slowed down, not about to finish.
    let in_flight = loop {
        let before = held_by_victim(&servers[0]);
        std::thread::sleep(Duration::from_millis(300));
        let held: Vec<String> = held_by_victim(&servers[0])
            .into_iter()
            .filter(|id| before.contains(id))
            .collect();
        if !held.is_empty() {
            break held;
        }
        assert!(Instant::now() < deadline, "the victim never held a run");
        std::thread::sleep(Duration::from_millis(20));
    };
    servers[1].kill();
    let killed = Instant::now();
    let delivered_at_kill: usize = deliveries(&providers).values().sum();

    // The other two go on, and recover the victim's runs once its lease
    // (2 s) has expired: nothing is left executing on it.
    wait_drained(&servers[0], Duration::from_secs(300));
    let settled = killed.elapsed();
    assert!(held_by_victim(&servers[2]).is_empty());
    let delivered = deliveries(&providers);
    let after: usize = delivered.values().sum();
    assert!(
        after > delivered_at_kill,
        "the survivors went on delivering"
    );
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");

    let (mut unknown, mut lost, mut bad) = (0, 0, Vec::new());
    for (n, id) in messages.iter().enumerate() {
        let answer = servers[0].get(&format!("/v1/actions/{id}"));
        if answer.status != 200 {
            lost += 1;
            continue;
        }
        let action = &answer.json["action"];
        let status = action["status"].as_str().unwrap_or_default();
        let sent = delivered.get(&format!("Hello m{n}")).copied().unwrap_or(0);
        match status {
            "succeeded" if sent == 1 => {}
            // The victim's runs: they may or may not have reached LinkedIn,
            // so a person decides; never run again behind their back.
            "outcome_unknown" => {
                assert_eq!(action["last_error"]["code"], "interrupted", "{action}");
                let message = action["last_error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(&victim), "{message}");
                unknown += 1;
            }
            _ => bad.push(format!("{id}: {status}, delivered {sent} time(s)")),
        }
    }
    for id in &noops {
        let answer = servers[2].get(&format!("/v1/actions/{id}"));
        if answer.status != 200 {
            lost += 1;
            continue;
        }
        // Idempotent: run again after recovery, and succeeded.
        let status = answer.json["action"]["status"].as_str().unwrap_or_default();
        if status != "succeeded" {
            bad.push(format!("{id} (noop): {status}"));
        }
    }
    let recovered_noops = noops.iter().filter(|id| in_flight.contains(id)).count();
    eprintln!(
        "kill -9 of one of three replicas mid-drain: {} in flight on it when killed (seen), {unknown} LinkedIn messages left outcome_unknown, {lost} lost, {} in a state the rule does not allow; settled {:.1} s after the kill; {after} messages delivered, none twice",
        in_flight.len(),
        bad.len(),
        settled.as_secs_f64()
    );
    assert_eq!(lost, 0, "acknowledged actions lost");
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        unknown + recovered_noops > 0,
        "the victim's runs were recovered by the rule"
    );
    // Recovered by a survivor, not by a restart of the victim.
    let recovered_by: usize = [&servers[0], &servers[2]]
        .iter()
        .map(|s| {
            s.log()
                .matches("recovered the actions of a replica whose lease expired")
                .count()
        })
        .sum();
    assert!(recovered_by > 0, "a survivor recovered the victim's runs");
}

#[test]
fn replicas_share_a_database_one_data_dir_serves_once_and_store_copy_waits_for_every_replica() {
    let url = postgres::database();
    let first = replica(&url, None, true, "15s");
    let second = replica(&url, Some(&first.admin_key), true, "15s");
    // Both serve the same records.
    let created = ok(&first.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": {}, "identity_id": "ada", "scheduled_time": "2099-01-01T00:00:00Z" }),
    ))["action_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(second.get(&format!("/v1/actions/{created}")).status, 200);

    // A second serve on a data dir in use is refused, naming why.
    let again = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&second.data_dir)
        .arg("--plugins-dir")
        .arg(&second.plugins_dir)
        .env("ACTIONHOST_STORE", &url)
        .env("ACTIONHOST_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run actionhost serve");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another actionhost is serving from the data dir"),
        "{stderr}"
    );

    // `store copy` into a database replicas serve is refused.
    let sled = tempfile::tempdir().expect("temp dir");
    let seeded = Server::start_with(Options {
        data_dir: Some(sled.path().join("data")),
        store: None,
        ..Options::default()
    });
    drop(seeded);
    let copy = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["store", "copy", "--from"])
        .arg(sled.path().join("data"))
        .args(["--to", &url])
        .output()
        .expect("run actionhost store copy");
    let stderr = String::from_utf8_lossy(&copy.stderr);
    assert_ne!(copy.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("is in use: an actionhost replica is serving the database"),
        "{stderr}"
    );
    assert_eq!(first.get("/v1/actions").status, 200);
}

#[test]
fn six_executions_across_three_replicas_meet_a_rejected_token_and_one_refresh_reaches_the_provider()
{
    let url = postgres::database();
    let providers = Providers::start();
    let first = replica(&url, None, true, "15s");
    let config = actionhost_tests::providers::oauth_config(&first, &providers);
    actionhost_tests::providers::oauth_connect(&first, &providers, &config, "ada");
    let others = replicas(&url, &first.admin_key, 2, "15s");
    let servers = [&first, &others[0], &others[1]];
    let body = json!({ "entityId": "ada", "appName": "crm-sync", "input": { "contacts": [{ "email": "ada@example.com" }] } });
    // Every replica gets the account's token once.
    for server in servers {
        let answer = server.post("/api/v2/actions/crm_sync/execute", &body);
        assert_eq!(answer.json["successful"], true, "{}", answer.text);
    }
    let before = providers.refreshes();

    // The provider stops accepting it; six executions, two per replica,
    // meet the 401 at once.
    for token in providers.issued_tokens() {
        providers.revoke_token(&token);
    }
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..6)
            .map(|n| {
                let server = servers[n % 3];
                let body = &body;
                scope.spawn(move || {
                    reqwest::blocking::Client::new()
                        .post(format!("{}/api/v2/actions/crm_sync/execute", server.url))
                        .bearer_auth(&server.admin_key)
                        .json(body)
                        .send()
                        .and_then(|r| r.json::<Value>())
                        .expect("answer")
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    for answer in &answers {
        assert_eq!(answer["successful"], true, "{answer}");
    }
    assert_eq!(
        providers.refreshes() - before,
        1,
        "six executions on three replicas, one refresh: {:?}",
        providers.token_log()
    );
}

#[test]
fn due_work_created_on_one_replica_wakes_another_through_listen_notify_long_before_its_poll() {
    let url = postgres::database();
    // The first replica runs nothing; the second polls only once a minute.
    let creator = replica(&url, None, false, "15s");
    let runner = Server::start_with(Options {
        store: Some(url.clone()),
        admin_key: Some(creator.admin_key.clone()),
        env: vec![
            ("ACTIONHOST_SECRET_KEY".into(), SECRET_KEY.into()),
            ("ACTIONHOST_SCHEDULER__POLL_INTERVAL".into(), "60s".into()),
        ],
        ..Options::default()
    });
    // Past the runner's start-up pass, so that only a signal can wake it.
    std::thread::sleep(Duration::from_secs(2));
    let mut waits = Vec::new();
    for n in 0..3 {
        let started = Instant::now();
        let id = ok(&creator.post(
            "/v1/actions",
            &json!({ "type": "noop", "params": { "echo": format!("w{n}") }, "identity_id": "ada", "require_approval": false }),
        ))["action_id"]
            .as_str()
            .expect("id")
            .to_owned();
        loop {
            let action = runner.get(&format!("/v1/actions/{id}"));
            if ok(&action)["action"]["status"] == "succeeded" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the runner did not pick up {id} within 30 s (its poll is 60 s): {}",
                action.text
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        waits.push(started.elapsed());
        let action = ok(&runner.get(&format!("/v1/actions/{id}"))).clone();
        let execution = action["action"]["executions"][0]
            .as_str()
            .expect("an execution")
            .to_owned();
        let record = ok(&runner.get(&format!("/v1/executions/{execution}"))).clone();
        assert_eq!(record["replica"], replica_id(&runner), "{record}");
    }
    eprintln!("created on one replica, run by the other after {waits:?} (its poll interval: 60 s)");
}

/// A replica with the versioned fixture (1.0.0) in its plugins folder.
fn versioned_replica(url: &str, admin: Option<&str>) -> Server {
    Server::start_with(Options {
        store: Some(url.to_owned()),
        admin_key: admin.map(str::to_owned),
        plugins: Some(vec![actionhost_tests::fixture("fixture-versioned")]),
        env: vec![("ACTIONHOST_SECRET_KEY".into(), SECRET_KEY.into())],
        ..Options::default()
    })
}

/// The state of `fixture-versioned` 2.0.0 on `server` (`None`: not loaded)
/// and where it came from.
fn v2_state(server: &Server) -> Option<(String, String)> {
    let answer = server.get("/v1/plugins");
    ok(&answer)["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == "fixture-versioned" && p["version"] == "2.0.0")
        .map(|p| {
            (
                p["state"].as_str().unwrap_or_default().to_owned(),
                p["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// Waits until every server shows `want` for 2.0.0; returns how long it took.
fn until_everywhere(servers: &[&Server], want: Option<(&str, &str)>) -> Duration {
    let started = Instant::now();
    let want = want.map(|(state, source)| (state.to_owned(), source.to_owned()));
    loop {
        let states: Vec<_> = servers.iter().map(|s| v2_state(s)).collect();
        if states.iter().all(|s| *s == want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "2.0.0 is {states:?} on the replicas, not {want:?}, after 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_plugin_uploaded_on_one_replica_serves_on_all_and_disable_enable_and_remove_apply_on_every_replica()
 {
    let url = postgres::database();
    // A peer answering 200 to every report (released: it holds nothing).
    let report =
        actionhost_tests::faulty::FaultyHttp::start(actionhost_tests::faulty::HttpFault::Hold);
    report.release();
    let peer = format!("{}/report", report.base_url);
    let a = versioned_replica(&url, None);
    let b = versioned_replica(&url, Some(&a.admin_key));
    let ran_on = |server: &Server| -> String {
        let answer = server.post(
            "/api/v2/actions/versioned_echo/execute",
            &json!({ "input": { "url": peer, "tag": "t" } }),
        );
        assert_eq!(answer.json["successful"], true, "{}", answer.text);
        answer.json["data"]["version"]
            .as_str()
            .expect("version")
            .to_owned()
    };
    assert_eq!(ran_on(&b), "1.0.0");

    // Uploaded on A: B serves it, from its own copy.
    let v2 = std::fs::read(actionhost_tests::fixture("fixture-versioned-v2")).expect("v2");
    let installed = a.send(
        a.request("POST", "/v1/plugins")
            .bearer_auth(&a.admin_key)
            .header("content-type", "application/wasm")
            .body(v2.clone()),
    );
    assert_eq!(installed.status, 201, "{}", installed.text);
    let loaded = until_everywhere(&[&a, &b], Some(("active", "upload")));
    assert_eq!(ran_on(&b), "2.0.0");
    assert!(
        b.data_dir
            .join("plugins/fixture-versioned-2.0.0.wasm")
            .is_file()
    );

    // Disabled on B: A stops serving it too.
    let disabled = b.post("/v1/plugins/fixture-versioned/2.0.0/disable", &json!({}));
    assert_eq!(disabled.status, 200, "{}", disabled.text);
    let switched = until_everywhere(&[&a, &b], Some(("disabled", "upload")));
    assert_eq!(ran_on(&a), "1.0.0");

    // A replica started now serves what the database says: 2.0.0, disabled.
    let c = versioned_replica(&url, Some(&a.admin_key));
    assert_eq!(v2_state(&c), Some(("disabled".into(), "upload".into())));

    // Enabled on A, then removed on C: it goes from every replica.
    let enabled = a.post("/v1/plugins/fixture-versioned/2.0.0/enable", &json!({}));
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    until_everywhere(&[&a, &b, &c], Some(("active", "upload")));
    assert_eq!(ran_on(&c), "2.0.0");
    let removed = c.call(
        "DELETE",
        "/v1/plugins/fixture-versioned/2.0.0",
        Some(&c.admin_key),
        None,
    );
    assert_eq!(removed.status, 200, "{}", removed.text);
    let gone = until_everywhere(&[&a, &b, &c], None);
    for server in [&a, &b, &c] {
        assert_eq!(ran_on(server), "1.0.0");
        assert!(
            !server
                .data_dir
                .join("plugins/fixture-versioned-2.0.0.wasm")
                .exists()
        );
    }
    eprintln!(
        "uploaded on A, serving on B after {loaded:?}; disabled on B, off on A after {switched:?}; removed on C, gone everywhere after {gone:?}"
    );
}

/// A replica that runs agents against the model stand-in, with a short lease.
fn agent_replica(url: &str, admin: Option<&str>) -> Server {
    Server::start_with(Options {
        store: Some(url.to_owned()),
        admin_key: admin.map(str::to_owned),
        plugins: Some(vec![
            actionhost_tests::plugin("notes"),
            actionhost_tests::plugin("anthropic"),
        ]),
        env: vec![
            ("ACTIONHOST_SECRET_KEY".into(), SECRET_KEY.into()),
            ("ACTIONHOST_SCHEDULER__LEASE".into(), "2s".into()),
            ("ACTIONHOST_AGENTS__CONCURRENCY".into(), "2".into()),
            ("ACTIONHOST_MODELS__BACKOFF_BASE".into(), "50ms".into()),
        ],
        ..Options::default()
    })
}

fn contacts_evaluated(server: &Server, run: &str) -> (u64, String) {
    let answer = server.get(&format!("/v1/agents/runs/{run}?mode=summary"));
    let run = &ok(&answer)["run"];
    (
        run["summary"]["contacts_evaluated"].as_u64().unwrap_or(0),
        run["status"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn an_agent_run_stays_with_its_replica_while_it_lives_and_another_resumes_it_after_its_lease() {
    use actionhost_tests::models::{MODEL_KEY, Models, Reply};
    let url = postgres::database();
    let models = Models::start();
    let mut a = agent_replica(&url, None);
    let config = a.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "anthropic", "scheme": { "type": "api_key", "header": "x-api-key" }, "hosts": [models.base_url] }),
    );
    ok(&a.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": ok(&config)["id"], "entityId": "models", "metadata": { "base_url": models.base_url }, "credentials": { "api_key": MODEL_KEY } }),
    ));
    for i in 0..12 {
        ok(&a.post(
            "/v1/contacts",
            &json!({ "email": format!("c{i}@example.com"), "properties": { "lifecyclestage": "customer" } }),
        ));
    }
    // Each evaluation takes a second: two at a time, the run lasts six.
    models.respond(|_| {
        Reply::Slow(
            Duration::from_secs(1),
            Box::new(Reply::Tool(
                json!({ "reasoning": "nothing to do", "actions": [] }),
            )),
        )
    });
    let created = a.post(
        "/v1/agents",
        &json!({
            "name": "Watcher", "capabilities": ["notes"], "playbook": { "playbook_md": "Note what you see." },
            "monitoring": { "filter": { "lifecycle_stage": "customer" } },
            "llm_config": { "provider": "anthropic", "model": "m" }, "enabled": true,
        }),
    );
    let agent = ok(&created)["agent"]["_id"]
        .as_str()
        .expect("agent")
        .to_owned();
    let triggered = a.post(&format!("/v1/agents/{agent}/trigger"), &json!({}));
    let run = ok(&triggered)["job_id"].as_str().expect("run").to_owned();
    let until = |server: &Server, evaluated: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (done, status) = contacts_evaluated(server, &run);
            if done >= evaluated || status == "completed" {
                return (done, status);
            }
            assert!(Instant::now() < deadline, "{done} evaluated, {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until(&a, 2);
    // B, started while A runs it, leaves the run to A.
    let b = agent_replica(&url, Some(&a.admin_key));
    let (evaluated, status) = until(&b, 6);
    assert_eq!(status, "running", "the run ended before A was killed");
    a.kill();
    let killed = Instant::now();
    // B resumes it once A's lease has expired, without a restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (done, status) = loop {
        let (done, status) = contacts_evaluated(&b, &run);
        if status != "running" && status != "queued" {
            break (done, status);
        }
        assert!(Instant::now() < deadline, "{done} evaluated, {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, "completed");
    assert_eq!(done, 12);
    // Each contact asked about once, but those in flight at the kill (at
    // most two) once more.
    let asked = models.requests().len();
    assert!(
        (12..=14).contains(&asked),
        "the model was asked {asked} times for 12 contacts"
    );
    assert!(models.problems().is_empty(), "{:?}", models.problems());
    eprintln!(
        "killed A after {evaluated} of 12 evaluations; B finished the run {:?} later; {asked} model requests",
        killed.elapsed()
    );
}

#[test]
fn a_concurrency_cap_holds_across_replicas_each_running_its_share_and_a_leaving_replica_gives_its_share_back()
 {
    use actionhost_tests::faulty::{FaultyHttp, HttpFault};
    let url = postgres::database();
    let hostile_replica = |admin: Option<&str>| {
        Server::start_with(Options {
            store: Some(url.clone()),
            admin_key: admin.map(str::to_owned),
            plugins: Some(vec![actionhost_tests::fixture("fixture-hostile")]),
            env: vec![
                ("ACTIONHOST_SECRET_KEY".into(), SECRET_KEY.into()),
                ("ACTIONHOST_SCHEDULER__LEASE".into(), "3s".into()),
                ("ACTIONHOST_LIMITS__DEADLINE".into(), "120s".into()),
                ("ACTIONHOST_CONCURRENCY__PER_PLUGIN".into(), "2".into()),
            ],
            ..Options::default()
        })
    };
    let a = hostile_replica(None);
    let mut b = hostile_replica(Some(&a.admin_key));
    // Each replica learns of the other at its next renewal (a second).
    std::thread::sleep(Duration::from_millis(1500));
    let fetch = |server: &Server, peer: &FaultyHttp| {
        server.post(
            "/api/v2/actions/fetch/execute",
            &json!({ "input": { "url": format!("{}/held", peer.base_url) } }),
        )
    };
    let busy = |answer: &actionhost_tests::server::Answer| {
        assert_eq!(answer.status, 429, "{}", answer.text);
        assert!(
            answer
                .text
                .contains("its cap (concurrency.per_plugin) is 2 across 2 replicas"),
            "{}",
            answer.text
        );
    };
    let peer = FaultyHttp::start(HttpFault::Hold);
    std::thread::scope(|scope| {
        // A cap of 2 over two replicas: one each.
        let on_a = scope.spawn(|| fetch(&a, &peer));
        peer.wait_for_requests(1);
        busy(&fetch(&a, &peer));
        let on_b = scope.spawn(|| fetch(&b, &peer));
        peer.wait_for_requests(2);
        busy(&fetch(&b, &peer));
        peer.release();
        for call in [on_a, on_b] {
            let answer = call.join().expect("call");
            assert_eq!(answer.json["successful"], true, "{}", answer.text);
        }
    });
    assert_eq!(peer.requests(), 2, "a refused execution reached the peer");

    // B leaves: A runs the whole cap once it has seen that.
    assert_eq!(b.stop(), Some(0));
    let peer = FaultyHttp::start(HttpFault::Hold);
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::scope(|scope| {
        let first = scope.spawn(|| fetch(&a, &peer));
        peer.wait_for_requests(1);
        let second = loop {
            let call = scope.spawn(|| fetch(&a, &peer));
            std::thread::sleep(Duration::from_millis(300));
            if !call.is_finished() {
                break call;
            }
            busy(&call.join().expect("call"));
            assert!(Instant::now() < deadline, "A still runs one of two");
        };
        peer.wait_for_requests(2);
        peer.release();
        for call in [first, second] {
            let answer = call.join().expect("call");
            assert_eq!(answer.json["successful"], true, "{}", answer.text);
        }
    });
}

#[test]
fn a_replica_with_another_secret_key_is_refused_at_start_and_says_which_key_it_needs() {
    let url = postgres::database();
    let first = replica(&url, None, false, "15s");
    let dir = tempfile::tempdir().expect("data dir");
    let other_key = "0f".repeat(32);
    let refused = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--plugins-dir")
        .arg(&first.plugins_dir)
        .env("ACTIONHOST_STORE", &url)
        .env("ACTIONHOST_SECRET_KEY", &other_key)
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not the one the store's credentials are sealed with"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&other_key),
        "the key is in the message: {stderr}"
    );
    assert!(
        !stderr.contains(SECRET_KEY),
        "the key is in the message: {stderr}"
    );
    // With the cluster's key it joins.
    let second = replica(&url, Some(&first.admin_key), false, "15s");
    assert_eq!(second.get("/v1/auth/status").status, 200);
}
