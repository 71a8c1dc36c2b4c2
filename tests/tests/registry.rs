//! The plugin registry, black-box: hot-loading from the watched folder under
//! load, uploads, version pins, enable/disable/remove, refused components,
//! restarts with a warm cache, and plugins of an older WIT version.
//!
//! The `fixture-versioned` plugin reports its version to a local peer and in
//! its output, so the peer and the client both see which version handled
//! each execution.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::{fixture, plugin};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A peer that records which version reported each tag, answering after a
/// delay so that executions are in flight when a new version arrives.
struct VersionPeer {
    url: String,
    seen: Arc<Mutex<HashMap<String, String>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl VersionPeer {
    fn start(delay: Duration) -> Self {
        let seen: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let state = seen.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                let app = axum::Router::new().route(
                    "/report",
                    axum::routing::post(move |body: axum::Json<Value>| {
                        let state = state.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            let version = body["version"].as_str().unwrap_or("").to_owned();
                            let tag = body["tag"].as_str().unwrap_or("").to_owned();
                            state
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(tag, version);
                            axum::Json(json!({ "ok": true }))
                        }
                    }),
                );
                let _ = axum::serve(listener, app).await;
            });
        });
        let address = rx.recv().expect("peer started");
        Self {
            url: format!("http://{address}/report"),
            seen,
            _thread: thread,
        }
    }

    fn seen(&self) -> HashMap<String, String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One request of the load generator: tag, start, end, status, version.
type Sample = (String, Instant, Instant, u16, String);

fn execute(server: &Server, action: &str, body: &Value) -> Answer {
    server.post(&format!("/api/v2/actions/{action}/execute"), body)
}

fn echo(server: &Server, peer: &VersionPeer, tag: &str, version: Option<&str>) -> Answer {
    let mut body = json!({ "input": { "url": peer.url, "tag": tag } });
    if let Some(version) = version {
        body["version"] = json!(version);
    }
    execute(server, "versioned_echo", &body)
}

/// The version that ran, from a successful execute.
fn ran_on(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["successful"], true, "{}", answer.text);
    answer.json["data"]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("no version in {}", answer.text))
        .to_owned()
}

fn action_type(server: &Server, name: &str) -> Option<Value> {
    let answer = server.get("/v1/action-types");
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
}

fn plugins(server: &Server) -> Vec<Value> {
    let answer = server.get("/v1/plugins");
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json["items"].as_array().expect("items").clone()
}

fn upload_as(server: &Server, key: &str, bytes: Vec<u8>, query: &str) -> Answer {
    server.send(
        server
            .request("POST", &format!("/v1/plugins{query}"))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(bytes),
    )
}

fn upload(server: &Server, bytes: Vec<u8>, query: &str) -> Answer {
    upload_as(server, &server.admin_key, bytes, query)
}

fn delete(server: &Server, path: &str) -> Answer {
    server.call("DELETE", path, Some(&server.admin_key), None)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Puts a file into the watched folder the way deploy tools do: written
/// beside it, then renamed into place.
fn deploy(from: &Path, folder: &Path, name: &str) {
    let temp = folder.join(format!(".{name}.partial"));
    std::fs::copy(from, &temp).expect("copy");
    std::fs::rename(&temp, folder.join(name)).expect("rename");
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn versioned_only() -> Options {
    Options {
        plugins: Some(vec![fixture("fixture-versioned")]),
        ..Options::default()
    }
}

#[test]
fn a_new_version_dropped_in_the_folder_under_load_takes_over_without_a_failed_request() {
    let peer = VersionPeer::start(Duration::from_millis(100));
    // The deadline below is for a cached compile: the parallel tests share
    // two cores, so a cold compile's time is not this test's to judge. Set
    // ACTIONHOST_TEST_COLD_SWAP=1 (with a fresh cache) to time a cold one.
    if std::env::var_os("ACTIONHOST_TEST_COLD_SWAP").is_none() {
        let warmed = std::process::Command::new(actionhost_tests::actionhost_bin())
            .args(["plugin", "inspect"])
            .arg(fixture("fixture-versioned-v2"))
            .arg("--cache-dir")
            .arg(actionhost_tests::shared_cache_dir())
            .output()
            .expect("run actionhost plugin inspect");
        assert!(warmed.status.success(), "{warmed:?}");
    }
    let server = Server::start_with(versioned_only());
    assert_eq!(ran_on(&echo(&server, &peer, "warm-up", None)), "1.0.0");

    // 200 executions per second: 40 clients, each one request every 200 ms.
    let clients = 40;
    let period = Duration::from_millis(200);
    let run_for = Duration::from_secs(4);
    let swap_at = Duration::from_millis(1500);
    let started = Instant::now();
    let swapped: Mutex<Option<Instant>> = Mutex::new(None);
    let results: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for client in 0..clients {
            let (server, peer, results) = (&server, &peer, &results);
            scope.spawn(move || {
                let offset = period / clients * client;
                let mut next = started + offset;
                let mut n = 0;
                while next < started + run_for {
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let tag = format!("c{client}-{n}");
                    let begin = Instant::now();
                    let answer = echo(server, peer, &tag, None);
                    let version = answer.json["data"]["version"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    results.lock().expect("results").push((
                        tag,
                        begin,
                        Instant::now(),
                        answer.status,
                        version,
                    ));
                    n += 1;
                    next += period;
                }
            });
        }
        let swapped = &swapped;
        let folder = server.plugins_dir.clone();
        scope.spawn(move || {
            std::thread::sleep(swap_at);
            // Replace the file in place: version 1.0.0 leaves, 2.0.0 arrives.
            *swapped.lock().expect("swap time") = Some(Instant::now());
            deploy(
                &fixture("fixture-versioned-v2"),
                &folder,
                "fixture-versioned.wasm",
            );
        });
    });
    let swapped = swapped.into_inner().expect("swap").expect("swapped");
    let results = results.into_inner().expect("results");
    let elapsed = started.elapsed();
    let rate = results.len() as f64 / elapsed.as_secs_f64();
    assert!(
        results.len() >= 600,
        "the load generator sent only {} requests in {elapsed:?}",
        results.len()
    );

    // Zero failed requests.
    let failed: Vec<_> = results.iter().filter(|r| r.3 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} requests failed: {failed:?}",
        failed.len()
    );

    // The peer saw each execution from the version the client was told.
    let seen = peer.seen();
    for (tag, _, _, _, version) in &results {
        assert_eq!(seen.get(tag), Some(version), "peer record of {tag}");
    }

    // The new version serves within a second of the file's arrival.
    let first_v2 = results
        .iter()
        .filter(|r| r.4 == "2.0.0")
        .map(|r| r.1)
        .min()
        .expect("version 2.0.0 served");
    let takeover = first_v2.saturating_duration_since(swapped);
    let cold = std::env::var_os("ACTIONHOST_TEST_COLD_SWAP").is_some();
    assert!(
        cold || takeover < Duration::from_secs(1),
        "took {takeover:?}; the registry's log lines:\n{}",
        server
            .log()
            .lines()
            .filter(|l| l.contains("actionhost::registry"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (tag, start, _, _, version) in &results {
        if *start >= swapped + Duration::from_secs(1) {
            assert_eq!(version, "2.0.0", "{tag} started after the swap");
        }
        if *start < swapped {
            assert_eq!(version, "1.0.0", "{tag} started before the swap");
        }
    }
    // Executions in flight across the swap finished on the old version.
    let straddling = results
        .iter()
        .filter(|r| r.4 == "1.0.0" && r.2 > first_v2)
        .count();
    assert!(straddling > 0, "no execution was in flight across the swap");
    wait_for(
        "the old version to be released",
        Duration::from_secs(5),
        || {
            server.log().lines().any(|line| {
                line.contains("plugin version released") && line.contains("version=1.0.0")
            })
        },
    );
    eprintln!(
        "hot swap: {} requests at {rate:.0}/s, 0 failed; file to first execution on 2.0.0: {} ms; {straddling} executions finished on 1.0.0 after 2.0.0 began serving",
        results.len(),
        takeover.as_millis()
    );
    let types = action_type(&server, "versioned_echo").expect("versioned_echo");
    assert_eq!(types["version"], "2.0.0");
    assert_eq!(types["versions"], json!(["2.0.0"]));
}

#[test]
fn upload_pin_disable_enable_and_remove_are_reflected_in_action_types() {
    let peer = VersionPeer::start(Duration::ZERO);
    let mut server = Server::start_with(versioned_only());
    let v2 = read(&fixture("fixture-versioned-v2"));
    let sha = hex::encode(Sha256::digest(&v2));

    // A key without plugins:write may not upload.
    let reader = server.post("/v1/api-keys", &json!({ "scopes": ["plugins:read"] }));
    let reader_key = reader.json["key"].as_str().expect("key").to_owned();
    let refused = upload_as(&server, &reader_key, v2.clone(), "");
    assert_eq!(refused.status, 403, "{}", refused.text);
    // A wrong expected hash installs nothing.
    let wrong = upload(&server, v2.clone(), &format!("?sha256={}", "0".repeat(64)));
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    assert!(
        wrong.json["error"].as_str().unwrap_or("").contains(&sha),
        "{}",
        wrong.text
    );
    assert_eq!(
        action_type(&server, "versioned_echo").expect("type")["versions"],
        json!(["1.0.0"])
    );

    let installed = upload(&server, v2.clone(), &format!("?sha256={sha}"));
    assert_eq!(installed.status, 201, "{}", installed.text);
    assert_eq!(installed.json["name"], "fixture-versioned");
    assert_eq!(installed.json["version"], "2.0.0");
    assert_eq!(installed.json["state"], "active");
    assert_eq!(installed.json["sha256"], sha.as_str());
    assert_eq!(installed.json["wit_version"], "0.1.3");
    assert_eq!(installed.json["source"], "upload");
    assert_eq!(installed.json["serving"], json!(["versioned_echo"]));
    let again = upload(&server, v2.clone(), "");
    assert_eq!(
        again.status, 200,
        "the same upload again is not an error: {}",
        again.text
    );

    let types = action_type(&server, "versioned_echo").expect("type");
    assert_eq!(types["version"], "2.0.0");
    assert_eq!(types["versions"], json!(["2.0.0", "1.0.0"]));
    // Newest by default, any active version when pinned.
    assert_eq!(ran_on(&echo(&server, &peer, "a", None)), "2.0.0");
    assert_eq!(ran_on(&echo(&server, &peer, "b", Some("1.0.0"))), "1.0.0");
    assert_eq!(ran_on(&echo(&server, &peer, "c", Some("latest"))), "2.0.0");
    let missing = echo(&server, &peer, "d", Some("9.9.9"));
    assert_eq!(missing.status, 422, "{}", missing.text);
    assert!(missing.text.contains("2.0.0, 1.0.0"), "{}", missing.text);
    // An action pinned at creation runs on its version.
    let created = server.post(
        "/v1/actions",
        &json!({
            "type": "versioned_echo",
            "identity_id": "id_1",
            "version": "1.0.0",
            "require_approval": false,
            "params": { "url": peer.url, "tag": "pinned-action" }
        }),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    wait_for("the pinned action to run", Duration::from_secs(10), || {
        peer.seen().contains_key("pinned-action")
    });
    assert_eq!(peer.seen()["pinned-action"], "1.0.0");

    // Disable 2.0.0: 1.0.0 serves; a pin on 2.0.0 is refused.
    let disabled = server.post("/v1/plugins/fixture-versioned/2.0.0/disable", &json!({}));
    assert_eq!(disabled.status, 200, "{}", disabled.text);
    assert_eq!(disabled.json["state"], "disabled");
    let types = action_type(&server, "versioned_echo").expect("type");
    assert_eq!(
        (types["version"].clone(), types["versions"].clone()),
        (json!("1.0.0"), json!(["1.0.0"]))
    );
    assert_eq!(ran_on(&echo(&server, &peer, "e", None)), "1.0.0");
    assert_eq!(echo(&server, &peer, "f", Some("2.0.0")).status, 422);

    // The state survives a restart, and so does the upload; the cache is warm.
    server = server.restart();
    let after: Vec<Value> = plugins(&server);
    let v2_after = after
        .iter()
        .find(|p| p["version"] == "2.0.0")
        .expect("the uploaded version after a restart");
    assert_eq!(v2_after["state"], "disabled");
    assert_eq!(v2_after["source"], "upload");
    for plugin in &after {
        assert_eq!(
            plugin["cache"], "hit",
            "compiled again at a warm restart: {plugin}"
        );
    }
    let restart_log = std::fs::read_to_string(server.log_path()).expect("log of the restart");
    assert!(restart_log.contains("cache=Hit"), "{restart_log}");
    assert!(
        !restart_log.contains("cache=Miss") && !restart_log.contains("cache=Rebuilt"),
        "a warm restart compiled a plugin:\n{restart_log}"
    );

    // Enable: 2.0.0 serves again.
    let enabled = server.post("/v1/plugins/fixture-versioned/2.0.0/enable", &json!({}));
    assert_eq!(enabled.status, 200, "{}", enabled.text);
    assert_eq!(
        action_type(&server, "versioned_echo").expect("type")["version"],
        "2.0.0"
    );
    assert_eq!(ran_on(&echo(&server, &peer, "g", None)), "2.0.0");

    // One plugin's versions.
    let one = server.get("/v1/plugins/fixture-versioned");
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.json["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(server.get("/v1/plugins/no-such-plugin").status, 404);

    // Remove the upload: gone from the types and from the data dir.
    let removed = delete(&server, "/v1/plugins/fixture-versioned/2.0.0");
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_eq!(
        action_type(&server, "versioned_echo").expect("type")["versions"],
        json!(["1.0.0"])
    );
    assert!(
        !server
            .data_dir
            .join("plugins/fixture-versioned-2.0.0.wasm")
            .exists()
    );
    assert_eq!(ran_on(&echo(&server, &peer, "h", None)), "1.0.0");
    // A folder version is removed by deleting its file, and the answer says so.
    let folder = delete(&server, "/v1/plugins/fixture-versioned/1.0.0");
    assert_eq!(folder.status, 409, "{}", folder.text);
    assert!(
        folder.text.contains("fixture-versioned.wasm"),
        "{}",
        folder.text
    );
    std::fs::remove_file(server.plugins_dir.join("fixture-versioned.wasm")).expect("rm");
    wait_for("the removed file to unload", Duration::from_secs(5), || {
        action_type(&server, "versioned_echo").is_none()
    });
    let gone = echo(&server, &peer, "i", None);
    assert_eq!(gone.status, 404, "{}", gone.text);
}

#[test]
fn broken_components_are_refused_with_the_reason_while_the_old_version_serves() {
    let peer = VersionPeer::start(Duration::ZERO);
    let server = Server::start_with(Options {
        env: vec![("ACTIONHOST_MAX_PLUGIN_BYTES".into(), "2000000".into())],
        ..versioned_only()
    });
    let mut corrupt = read(&fixture("fixture-versioned-v2"));
    let middle = corrupt.len() / 2;
    corrupt.truncate(middle);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "not-wasm",
            b"definitely not a component".to_vec(),
            422,
            "magic number",
        ),
        ("truncated", corrupt, 422, "compiling the component failed"),
        (
            "describe-trap",
            read(&fixture("fixture-versioned-describe-trap")),
            422,
            "describe failed",
        ),
        (
            "impostor",
            read(&fixture("fixture-versioned-impostor")),
            409,
            "already provided by plugin fixture-versioned 1.0.0",
        ),
        (
            "wit-unknown",
            read(&fixture("fixture-wit-unknown")),
            422,
            "actionhost:executor@0.9.0",
        ),
        (
            "too-large",
            vec![0; 3_000_000],
            413,
            "at most 2000000 bytes",
        ),
    ];
    for (name, bytes, status, reason) in &cases {
        // Uploaded: refused with the reason.
        let answer = upload(&server, bytes.clone(), "");
        assert_eq!(answer.status, *status, "{name}: {}", answer.text);
        assert!(answer.text.contains(reason), "{name}: {}", answer.text);
        assert_eq!(
            ran_on(&echo(&server, &peer, &format!("up-{name}"), None)),
            "1.0.0"
        );
    }
    // Dropped in the folder: listed as failed with the reason, the old serves.
    for (name, bytes, _, reason) in cases.iter().filter(|c| c.0 != "too-large") {
        let file = format!("{name}.wasm");
        let temp = server.plugins_dir.join(format!(".{file}.partial"));
        std::fs::write(&temp, bytes).expect("write");
        std::fs::rename(&temp, server.plugins_dir.join(&file)).expect("rename");
        wait_for(
            &format!("{name} to be refused"),
            Duration::from_secs(10),
            || {
                plugins(&server)
                    .iter()
                    .any(|p| p["name"] == file.as_str() && p["state"] == "failed")
            },
        );
        let listed = plugins(&server);
        let entry = listed
            .iter()
            .find(|p| p["name"] == file.as_str())
            .expect("entry");
        assert!(
            entry["reason"]
                .as_str()
                .unwrap_or("")
                .contains(reason.trim_end_matches(" 1.0.0")),
            "{name}: {entry}"
        );
        assert_eq!(
            ran_on(&echo(&server, &peer, &format!("dir-{name}"), None)),
            "1.0.0"
        );
    }
    let types = action_type(&server, "versioned_echo").expect("type");
    assert_eq!(types["plugin"], "fixture-versioned");
    assert_eq!(types["versions"], json!(["1.0.0"]));
    assert_eq!(server.get("/readyz").status, 200);
}

#[test]
fn a_plugin_built_against_the_frozen_wit_0_1_0_still_loads_and_runs() {
    let server = Server::start_with(Options {
        plugins: Some(vec![plugin("crm-sync"), fixture("fixture-frozen-v0-1-0")]),
        ..Options::default()
    });
    let listed = plugins(&server);
    let frozen = listed
        .iter()
        .find(|p| p["name"] == "fixture-frozen")
        .expect("the 0.1.0 plugin is loaded");
    assert_eq!(frozen["wit_version"], "0.1.0");
    assert_eq!(frozen["state"], "active");
    let crm = listed
        .iter()
        .find(|p| p["name"] == "crm-sync")
        .expect("crm-sync");
    assert_eq!(crm["wit_version"], "0.1.3");

    let run = execute(
        &server,
        "frozen_echo",
        &json!({ "input": { "hello": "world" } }),
    );
    assert_eq!(run.status, 200, "{}", run.text);
    assert_eq!(run.json["data"]["wit"], "0.1.0");
    assert_eq!(run.json["data"]["params"]["hello"], "world");
    // Its `log` import (0.1.0) reached the host's 0.1.2 implementation.
    let log_id = run.json["logId"].as_str().expect("log id");
    let record = server.get(&format!("/v1/executions/{log_id}"));
    assert!(
        record.text.contains("hello from a 0.1.0 plugin"),
        "{}",
        record.text
    );
}

#[test]
fn a_plugin_built_against_wit_0_1_2_runs_beside_0_1_3_plugins_that_use_contacts() {
    let server = Server::start_with(Options {
        plugins: Some(vec![plugin("notes"), fixture("fixture-frozen-v0-1-2")]),
        ..Options::default()
    });
    let listed = plugins(&server);
    let version_of = |name: &str| {
        listed
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is loaded: {listed:?}"))["wit_version"]
            .clone()
    };
    assert_eq!(version_of("fixture-frozen-v012"), "0.1.2");
    assert_eq!(version_of("notes"), "0.1.3");

    let run = execute(
        &server,
        "frozen_v012_echo",
        &json!({ "input": { "hello": "world" } }),
    );
    assert_eq!(run.status, 200, "{}", run.text);
    assert_eq!(run.json["data"]["wit"], "0.1.2");
    let log_id = run.json["logId"].as_str().expect("log id");
    let record = server.get(&format!("/v1/executions/{log_id}"));
    assert!(
        record.text.contains("hello from a 0.1.2 plugin"),
        "{}",
        record.text
    );

    // The 0.1.3 plugin beside it reaches the contact through `contacts`.
    let contact = server.post("/v1/contacts", &json!({ "email": "ada@example.com" }));
    let contact_id = contact.json["contact"]["_id"]
        .as_str()
        .expect("contact")
        .to_owned();
    let note = execute(
        &server,
        "note",
        &json!({ "input": { "contact_id": contact_id, "body": "met at the fair" } }),
    );
    assert_eq!(note.status, 200, "{}", note.text);
    assert_eq!(note.json["successful"], true, "{}", note.text);
    assert_eq!(note.json["data"]["contact_id"], contact_id.as_str());
    let notes = server.get(&format!("/v1/contacts/{contact_id}/notes"));
    assert_eq!(
        notes.json["notes"][0]["body"], "met at the fair",
        "{}",
        notes.text
    );
}

#[test]
fn health_is_live_at_once_and_ready_once_plugins_are_loaded() {
    let server = Server::start();
    let live = server.get("/healthz");
    assert_eq!(live.status, 200);
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["status"], "ready");
    assert!(
        ready.json["plugins"].as_u64().unwrap_or(0) >= 4,
        "{}",
        ready.text
    );
    // The log says where listening started and when plugins were ready.
    let log = server.log();
    let listening = log.find("listening on").expect("listening");
    let loaded = log.find("plugins loaded; ready").expect("ready");
    assert!(
        listening < loaded,
        "the server listened only after loading plugins"
    );
}

/// Runs `actionhost plugin ARGS` against the server: exit code, stdout, stderr.
fn plugin_cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .arg("plugin")
        .args(args)
        .env("ACTIONHOST_URL", &server.url)
        .env("ACTIONHOST_KEY", &server.admin_key)
        .output()
        .expect("run actionhost plugin");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_plugin_cli_installs_lists_disables_enables_and_removes() {
    let server = Server::start_with(versioned_only());
    let v2 = fixture("fixture-versioned-v2");
    let v2_path = v2.to_str().expect("utf-8 path");
    let sha = hex::encode(Sha256::digest(read(&v2)));

    let (code, _, stderr) = plugin_cli(&server, &["install", v2_path, "--sha256", &"1".repeat(64)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was installed"), "{stderr}");

    let (code, stdout, stderr) = plugin_cli(&server, &["install", v2_path, "--sha256", &sha]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("fixture-versioned") && stdout.contains("2.0.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("versioned_echo"),
        "serving column: {stdout}"
    );

    let (code, stdout, stderr) = plugin_cli(&server, &["list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).expect("json");
    let versions: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["name"] == "fixture-versioned")
        .filter_map(|p| p["version"].as_str())
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);

    let (code, stdout, stderr) = plugin_cli(&server, &["disable", "fixture-versioned", "2.0.0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("disabled"), "{stdout}");
    assert_eq!(
        action_type(&server, "versioned_echo").expect("type")["version"],
        "1.0.0"
    );
    let (code, stdout, stderr) = plugin_cli(&server, &["enable", "fixture-versioned", "2.0.0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("active"), "{stdout}");
    assert_eq!(
        action_type(&server, "versioned_echo").expect("type")["version"],
        "2.0.0"
    );

    let (code, _, stderr) = plugin_cli(&server, &["remove", "fixture-versioned", "2.0.0"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        action_type(&server, "versioned_echo").expect("type")["versions"],
        json!(["1.0.0"])
    );
    let (code, _, stderr) = plugin_cli(&server, &["remove", "fixture-versioned", "1.0.0"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("409") && stderr.contains("plugins folder"),
        "{stderr}"
    );
    let (code, _, stderr) = plugin_cli(&server, &["remove", "fixture-versioned", "7.0.0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("404"), "{stderr}");
}

#[test]
fn concurrent_uploads_install_once_and_a_removed_version_comes_back_enabled() {
    let server = Server::start_with(versioned_only());
    let v2 = read(&fixture("fixture-versioned-v2"));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| upload(&server, v2.clone(), "").status))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("upload"))
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    let stored: Vec<String> = std::fs::read_dir(server.data_dir.join("plugins"))
        .expect("uploads dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    assert_eq!(stored, ["fixture-versioned-2.0.0.wasm"]);
    assert_eq!(
        read(&server.data_dir.join("plugins/fixture-versioned-2.0.0.wasm")),
        v2
    );

    let disabled = server.post("/v1/plugins/fixture-versioned/2.0.0/disable", &json!({}));
    assert_eq!(disabled.json["state"], "disabled", "{}", disabled.text);
    assert_eq!(
        delete(&server, "/v1/plugins/fixture-versioned/2.0.0").status,
        200
    );
    let again = upload(&server, v2, "");
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["state"], "active", "{}", again.text);
}

#[test]
fn with_an_upload_allow_list_only_listed_components_install() {
    let v2 = read(&fixture("fixture-versioned-v2"));
    let listed = hex::encode(Sha256::digest(&v2));
    let other = read(&fixture("fixture-noop"));
    let unlisted = hex::encode(Sha256::digest(&other));
    let server = Server::start_with(Options {
        env: vec![(
            "ACTIONHOST_ALLOWED_PLUGIN_SHA256".into(),
            format!("[\"{}\"]", listed.to_ascii_uppercase()),
        )],
        ..versioned_only()
    });

    let refused = upload(&server, other, "");
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.json["errorCode"], "forbidden", "{}", refused.text);
    let message = refused.json["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&unlisted) && message.contains("allowed_plugin_sha256"),
        "the refusal names the hash and the setting: {message}"
    );
    assert!(
        action_type(&server, "noop").is_none(),
        "nothing of the refused upload is served"
    );
    assert!(
        plugins(&server).iter().all(|p| p["source"] != "upload"),
        "nothing of the refused upload is installed"
    );

    let installed = upload(&server, v2, "");
    assert_eq!(installed.status, 201, "{}", installed.text);
    assert_eq!(installed.json["sha256"], listed.as_str());
}

#[test]
fn a_malformed_upload_allow_list_stops_the_server_naming_the_entry() {
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().expect("temp dir").path())
        .env("ACTIONHOST_ALLOWED_PLUGIN_SHA256", "[\"not-a-hash\"]")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("allowed_plugin_sha256[0]") && stderr.contains("not-a-hash"),
        "{stderr}"
    );
}
