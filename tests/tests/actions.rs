//! Black-box tests of the action lifecycle: the Pathbound Actions API and
//! Flowdash's executions against the real server, real plugins, a real
//! SMTP server and the provider stand-ins.

use std::time::{Duration, Instant, SystemTime};

use actionhost_tests::providers::{Fault, Providers, TOKEN, oauth_config, oauth_connect};
use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::smtp::SmtpSink;
use serde_json::{Value, json};

fn ok(answer: &Answer) -> &Value {
    assert!(
        answer.status == 200 || answer.status == 201 || answer.status == 202,
        "expected success, got {}: {}",
        answer.status,
        answer.text
    );
    &answer.json
}

fn bearer_account(server: &Server, app: &str, entity: &str, base_url: &str) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": app, "scheme": { "type": "bearer" } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": entity, "metadata": { "base_url": base_url }, "credentials": { "token": TOKEN } }),
    );
    ok(&account)["connectedAccountId"]
        .as_str()
        .expect("account id")
        .to_owned()
}

fn smtp_account(server: &Server, sink: &SmtpSink, entity: &str) {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "send-email", "scheme": { "type": "smtp", "host": "127.0.0.1", "port": sink.port } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("id").to_owned();
    ok(&server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": entity, "metadata": { "provider": "smtp", "from": "Sender <sender@example.com>" }, "credentials": { "tls": "none" } }),
    ));
}

fn create(server: &Server, body: &Value) -> String {
    let answer = server.post("/v1/actions", body);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["status"], "success");
    answer.json["action_id"]
        .as_str()
        .expect("action_id")
        .to_owned()
}

fn action(server: &Server, id: &str) -> Value {
    let answer = server.get(&format!("/v1/actions/{id}"));
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json["action"].clone()
}

fn wait_for(server: &Server, id: &str, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let current = action(server, id);
        if current["status"] == status {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "action {id} did not reach {status} within {within:?}; it is {}",
            serde_json::to_string_pretty(&current).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn linkedin(recipient: &str) -> Value {
    json!({ "type": "linkedin_message", "params": { "recipients": [format!("urn:li:person:{recipient}")], "body": format!("Hello {recipient}") }, "identity_id": "ada" })
}

fn messages_at(providers: &Providers) -> Vec<Value> {
    providers
        .requests()
        .into_iter()
        .filter(|r| r.path == "/rest/messages")
        .map(|r| r.json())
        .collect()
}

fn assert_conflict(answer: &Answer, current: &str) {
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert_eq!(answer.json["errorCode"], "conflict", "{}", answer.text);
    let message = answer.json["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("is {current}")),
        "the 409 names the current state {current}: {message}"
    );
    assert!(
        message.contains("allowed now:") || message.contains("allows no transition"),
        "the 409 names the allowed transitions: {message}"
    );
}

fn in_future(seconds: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(seconds)).to_string()
}

fn no_scheduler() -> Options {
    Options {
        env: vec![("ACTIONHOST_SCHEDULER__ENABLED".into(), "false".into())],
        ..Options::default()
    }
}

#[test]
fn the_quickstart_flow_waits_for_approval_then_delivers_the_email() {
    let sink = SmtpSink::start();
    let server = Server::start();
    smtp_account(&server, &sink, "id_123");

    // The seed's request, verbatim.
    let created = server.post(
        "/v1/actions",
        &json!({ "type": "send_email", "params": { "to": "contact@example.com", "subject": "Hello", "body": "Hi there!" }, "identity_id": "id_123", "require_approval": true }),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["status"], "success");
    let id = created.json["action_id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("act_"));
    let summary = created.json["action_summary"].as_str().unwrap_or_default();
    assert!(summary.contains("contact@example.com"), "{summary}");

    let waiting = action(&server, &id);
    assert_eq!(waiting["status"], "pending_approval");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        sink.received().is_empty(),
        "an action waiting for approval is never executed"
    );
    let ids: Vec<&str> = waiting["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, ["approve", "reject", "edit", "cancel"]);

    let approved = server.post(
        &format!("/v1/actions/{id}/approve"),
        &json!({ "action": "approve", "comment": "looks good" }),
    );
    assert_eq!(approved.status, 200, "{}", approved.text);
    let done = wait_for(&server, &id, "succeeded", Duration::from_secs(10));
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_tos, ["contact@example.com"]);

    let history: Vec<&str> = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["transition"].as_str())
        .collect();
    assert_eq!(history, ["create", "approve", "execute", "succeed"]);
    let approval = &done["history"][1];
    assert_eq!(approval["comment"], "looks good");
    assert_eq!(approval["actor"]["type"], "key");
    assert!(
        approval["actor"]["key_id"]
            .as_str()
            .is_some_and(|k| k.starts_with("key_"))
    );
    assert!(approval["at"].as_str().is_some());
    assert_eq!(done["approved_hash"], done["params_hash"]);
    assert_eq!(done["execution_records"].as_array().map(Vec::len), Some(1));
    let execution_id = done["executions"][0].as_str().expect("execution id");
    let execution = server.get(&format!("/v1/executions/{execution_id}"));
    assert_eq!(execution.json["status"], "Success", "{}", execution.text);
}

#[test]
fn reject_edit_cancel_and_bulk_review_follow_the_state_machine() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);

    // LinkedIn's manifest demands approval, whatever the request says.
    let mut body = linkedin("rejected");
    body["require_approval"] = json!(false);
    let rejected = create(&server, &body);
    let state = action(&server, &rejected);
    assert_eq!(state["status"], "pending_approval");
    assert_eq!(state["approval_required_by"], "plugin");
    let answer = server.post(
        &format!("/v1/actions/{rejected}/approve"),
        &json!({ "action": "reject", "comment": "not this one" }),
    );
    assert_eq!(
        answer.json["action"]["status"], "rejected",
        "{}",
        answer.text
    );

    // Edit: a new revision, approved; the peer receives the edited params.
    let edited = create(&server, &linkedin("edited"));
    let answer = server.post(
        &format!("/v1/actions/{edited}/approve"),
        &json!({ "action": "edit", "params": { "recipients": ["urn:li:person:edited"], "body": "Edited text" }, "comment": "softer" }),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let done = wait_for(&server, &edited, "succeeded", Duration::from_secs(10));
    assert_eq!(done["revision"], 2);
    assert_eq!(done["revisions"][0]["params"]["body"], "Hello edited");
    assert_eq!(done["params"]["body"], "Edited text");
    let edit = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|h| h["transition"] == "edit")
        .expect("the edit is in the history");
    assert_eq!(edit["revision"], 2);
    assert_eq!(edit["comment"], "softer");
    let sent = messages_at(&providers);
    assert_eq!(sent.len(), 1, "only the edited action ran");
    assert_eq!(sent[0]["body"], "Edited text");

    // An edit that breaks the schema is refused and changes nothing.
    let waiting = create(&server, &linkedin("bad-edit"));
    let answer = server.post(
        &format!("/v1/actions/{waiting}/approve"),
        &json!({ "action": "edit", "params": { "recipients": "nobody" } }),
    );
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(
        answer.json["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(action(&server, &waiting)["revision"], 1);

    // Cancel.
    let answer = server.post(
        &format!("/v1/actions/{waiting}/cancel"),
        &json!({ "comment": "changed my mind" }),
    );
    assert_eq!(
        answer.json["action"]["status"], "cancelled",
        "{}",
        answer.text
    );
    let no_body = server.send(
        server
            .request("POST", &format!("/v1/actions/{rejected}/cancel"))
            .bearer_auth(&server.admin_key),
    );
    assert_conflict(&no_body, "rejected");

    // Bulk: good, unknown and wrong-state ids; each on its own.
    let good = [
        create(&server, &linkedin("bulk-1")),
        create(&server, &linkedin("bulk-2")),
    ];
    let answer = server.post(
        "/v1/actions/approve/bulk",
        &json!({ "action": "approve", "action_ids": [good[0], "act_doesnotexist", rejected, good[1]], "comment": "batch" }),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["status"], "partial");
    assert_eq!(answer.json["succeeded"], 2);
    assert_eq!(answer.json["failed"], 2);
    let results = answer.json["results"].as_array().expect("results");
    assert_eq!(results[0]["status"], "success");
    assert_eq!(results[1]["errorCode"], "not_found");
    assert_eq!(results[2]["errorCode"], "conflict");
    assert!(
        results[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("rejected"))
    );
    assert_eq!(results[3]["status"], "success");
    for id in &good {
        wait_for(&server, id, "succeeded", Duration::from_secs(10));
    }
    assert_eq!(messages_at(&providers).len(), 3);
}

#[test]
fn a_scheduled_action_runs_on_time_by_itself_and_process_runs_only_its_limit() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "crm-sync", "ada", &providers.base_url);
    let at = in_future(2);
    let id = create(
        &server,
        &json!({ "type": "crm_sync", "params": { "contacts": [{ "email": "later@example.com" }] }, "identity_id": "ada", "scheduled_time": at }),
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        action(&server, &id)["status"],
        "scheduled",
        "not executed early"
    );
    assert!(providers.requests().is_empty());
    let done = wait_for(&server, &id, "succeeded", Duration::from_secs(5));
    let execution = server.get(&format!(
        "/v1/executions/{}",
        done["executions"][0].as_str().expect("id")
    ));
    let started =
        humantime::parse_rfc3339_weak(execution.json["started_at"].as_str().expect("started_at"))
            .expect("time");
    let due = humantime::parse_rfc3339_weak(&at).expect("time");
    let late = started.duration_since(due).expect("never early");
    assert!(
        late < Duration::from_secs(1),
        "started {late:?} after its time"
    );

    // With the scheduler off, process runs exactly `limit` of 10 due actions.
    let providers = Providers::start();
    let server = Server::start_with(no_scheduler());
    bearer_account(&server, "crm-sync", "ada", &providers.base_url);
    let ids: Vec<String> = (0..10)
        .map(|n| {
            create(
                &server,
                &json!({ "type": "crm_sync", "params": { "contacts": [{ "email": format!("due{n}@example.com") }] }, "identity_id": "ada" }),
            )
        })
        .collect();
    let processed = server.post("/v1/actions/process?limit=3", &json!({}));
    assert_eq!(processed.status, 200, "{}", processed.text);
    assert_eq!(processed.json["processed"], 3, "{}", processed.text);
    let statuses: Vec<String> = ids
        .iter()
        .map(|id| {
            action(&server, id)["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "succeeded").count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "scheduled").count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        &statuses[..3],
        ["succeeded", "succeeded", "succeeded"],
        "the earliest due run first"
    );
    assert_eq!(providers.requests().len(), 3);
    let bad = server.post("/v1/actions/process?limit=101", &json!({}));
    assert_eq!(bad.status, 422, "{}", bad.text);
}

#[test]
fn every_forbidden_transition_from_every_state_is_a_409_naming_the_state() {
    let providers = Providers::start();
    let server = Server::start_with(Options {
        env: vec![("ACTIONHOST_LIMITS__DEADLINE".into(), "3s".into())],
        ..Options::default()
    });
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    let approve = |id: &str| {
        ok(&server.post(
            &format!("/v1/actions/{id}/approve"),
            &json!({ "action": "approve" }),
        ));
    };

    let pending = create(&server, &linkedin("pending"));
    let scheduled = create(
        &server,
        &json!({ "type": "linkedin_message", "params": { "recipients": ["urn:li:person:s"], "body": "later" }, "identity_id": "ada", "scheduled_time": in_future(3600) }),
    );
    approve(&scheduled);
    let succeeded = create(&server, &linkedin("ok"));
    approve(&succeeded);
    wait_for(&server, &succeeded, "succeeded", Duration::from_secs(10));
    // The 401 expires the account it used: give that action its own.
    bearer_account(&server, "linkedin-message", "denied", &providers.base_url);
    providers.fail_next(Fault::Unauthorized);
    let mut denied = linkedin("denied");
    denied["identity_id"] = json!("denied");
    let failed = create(&server, &denied);
    approve(&failed);
    wait_for(&server, &failed, "failed", Duration::from_secs(10));
    let cancelled = create(&server, &linkedin("cancelled"));
    ok(&server.post(&format!("/v1/actions/{cancelled}/cancel"), &json!({})));
    let rejected = create(&server, &linkedin("rejected"));
    ok(&server.post(
        &format!("/v1/actions/{rejected}/approve"),
        &json!({ "action": "reject" }),
    ));
    // Sent, then no answer before the deadline: not idempotent, so unknown.
    providers.fail_next(Fault::Slow(Duration::from_secs(8)));
    let unknown = create(&server, &linkedin("slow"));
    approve(&unknown);
    let unknown_state = wait_for(
        &server,
        &unknown,
        "outcome_unknown",
        Duration::from_secs(15),
    );
    assert_eq!(
        unknown_state["last_error"]["code"], "outcome_unknown",
        "{unknown_state}"
    );
    providers.fail_next(Fault::Slow(Duration::from_secs(2)));
    let executing = create(&server, &linkedin("executing"));
    approve(&executing);
    wait_for(&server, &executing, "executing", Duration::from_secs(5));

    let states = [
        (pending.as_str(), "pending_approval"),
        (&scheduled, "scheduled"),
        (&executing, "executing"),
        (&succeeded, "succeeded"),
        (&failed, "failed"),
        (&unknown, "outcome_unknown"),
        (&cancelled, "cancelled"),
        (&rejected, "rejected"),
    ];
    // (transition, endpoint, body, the states that allow it)
    let edit =
        json!({ "action": "edit", "params": { "recipients": ["urn:li:person:x"], "body": "x" } });
    let transitions: [(&str, &str, Value, &[&str]); 8] = [
        (
            "approve",
            "approve",
            json!({ "action": "approve" }),
            &["pending_approval"],
        ),
        (
            "reject",
            "approve",
            json!({ "action": "reject" }),
            &["pending_approval"],
        ),
        ("edit", "approve", edit, &["pending_approval"]),
        (
            "cancel",
            "cancel",
            json!({}),
            &["pending_approval", "scheduled"],
        ),
        ("execute", "execute", json!({}), &["scheduled"]),
        (
            "mark_succeeded",
            "resolve",
            json!({ "action": "mark_succeeded" }),
            &["outcome_unknown"],
        ),
        (
            "mark_failed",
            "resolve",
            json!({ "action": "mark_failed" }),
            &["outcome_unknown"],
        ),
        (
            "retry",
            "resolve",
            json!({ "action": "retry" }),
            &["outcome_unknown"],
        ),
    ];
    let mut refused = 0;
    for (id, state) in states {
        let listed: Vec<String> = server
            .get(&format!("/v1/actions/{id}/transitions"))
            .json
            .as_array()
            .expect("transitions")
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .collect();
        for (name, endpoint, body, allowed) in &transitions {
            assert_eq!(
                listed.contains(&(*name).to_owned()),
                allowed.contains(&state),
                "{state}: transitions lists {listed:?}"
            );
            if allowed.contains(&state) {
                continue;
            }
            let answer = server.post(&format!("/v1/actions/{id}/{endpoint}"), body);
            assert_conflict(&answer, state);
            refused += 1;
        }
        assert_eq!(
            action(&server, id)["status"],
            state,
            "a refused transition changes nothing"
        );
    }
    // 8 states × 8 transitions, less the 9 allowed (4 pending, 2 scheduled, 3 unknown).
    assert_eq!(refused, 8 * 8 - 9);

    // The operator settles the unknown one.
    let resolved = server.post(
        &format!("/v1/actions/{unknown}/resolve"),
        &json!({ "action": "mark_succeeded", "comment": "the provider shows it" }),
    );
    assert_eq!(
        resolved.json["action"]["status"], "succeeded",
        "{}",
        resolved.text
    );
    wait_for(&server, &executing, "succeeded", Duration::from_secs(10));
}

#[test]
fn listing_filters_sorts_and_paginates() {
    let server = Server::start_with(no_scheduler());
    let mut ids = Vec::new();
    for n in 0..7 {
        let mut body = json!({ "type": "noop", "params": {}, "identity_id": if n % 2 == 0 { "even" } else { "odd" }, "list_id": format!("list-{}", n % 3), "item_id": format!("item-{n}"), "require_approval": n < 3 });
        if n == 6 {
            body["type"] = json!("crm_sync");
            body["params"] = json!({ "contacts": [{ "email": "x@example.com" }] });
        }
        ids.push(create(&server, &body));
    }
    let list = |query: &str| -> (Vec<String>, Value) {
        let answer = server.get(&format!("/v1/actions{query}"));
        assert_eq!(answer.status, 200, "{query}: {}", answer.text);
        assert_eq!(answer.json["status"], "success");
        let got = answer.json["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect();
        (got, answer.json["pagination"].clone())
    };
    let pick =
        |indices: &[usize]| -> Vec<String> { indices.iter().map(|&i| ids[i].clone()).collect() };

    let (all, pagination) = list("");
    assert_eq!(all, pick(&[6, 5, 4, 3, 2, 1, 0]), "newest first by default");
    assert_eq!(
        pagination,
        json!({ "total_items": 7, "limit": 20, "skip": 0 })
    );
    let (page, pagination) = list("?limit=2&skip=2&sort_dir=asc");
    assert_eq!(page, pick(&[2, 3]));
    assert_eq!(
        pagination,
        json!({ "total_items": 7, "limit": 2, "skip": 2 })
    );
    assert_eq!(
        list("?status=pending_approval&sort_dir=asc").0,
        pick(&[0, 1, 2])
    );
    assert_eq!(list("?type=crm_sync").0, pick(&[6]));
    assert_eq!(list("?list_id=list-1&sort_dir=asc").0, pick(&[1, 4]));
    assert_eq!(list("?item_id=item-5").0, pick(&[5]));
    assert_eq!(list("?identity_id=odd&sort_dir=asc").0, pick(&[1, 3, 5]));
    let (both, pagination) = list("?identity_id=even&status=scheduled&sort_dir=asc");
    assert_eq!(both, pick(&[4, 6]));
    assert_eq!(pagination["total_items"], 2);
    let (by_type, _) = list("?sort_by=type&sort_dir=asc");
    assert_eq!(by_type[0], ids[6], "crm_sync sorts before noop");
    assert_eq!(list("?sort_by=type").0[6], ids[6]);
    let (by_status, _) = list("?sort_by=status&sort_dir=asc");
    assert_eq!(
        by_status[..3],
        pick(&[0, 1, 2]),
        "pending_approval sorts before scheduled"
    );

    for bad in [
        "?limit=0",
        "?limit=101",
        "?status=done",
        "?sort_by=colour",
        "?sort_dir=up",
        "?skip=-1",
        "?unknown=1",
    ] {
        let answer = server.get(&format!("/v1/actions{bad}"));
        assert_eq!(answer.status, 422, "{bad}: {}", answer.text);
        assert_eq!(answer.json["errorCode"], "invalid_input");
    }
}

#[test]
fn a_rate_limited_attempt_is_retried_after_retry_after_and_delivered_once() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "crm-sync", "ada", &providers.base_url);
    providers.fail_next(Fault::RateLimited {
        retry_after_secs: 1,
    });
    let started = Instant::now();
    let id = create(
        &server,
        &json!({ "type": "crm_sync", "params": { "contacts": [{ "email": "retry@example.com" }] }, "identity_id": "ada" }),
    );
    let done = wait_for(&server, &id, "succeeded", Duration::from_secs(15));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(done["attempts"], 2);
    let records = done["execution_records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "each attempt is its own execution record");
    assert_eq!(records[0]["error_code"], "rate_limited");
    assert_eq!(records[0]["attempt"], 1);
    assert_eq!(records[1]["status"], "succeeded");
    assert_eq!(records[1]["attempt"], 2);
    let reschedule = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|h| h["transition"] == "reschedule")
        .expect("rescheduled");
    assert!(
        reschedule["comment"]
            .as_str()
            .is_some_and(|c| c.contains("next attempt"))
    );
    let upserts: Vec<_> = providers
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/crm/v3/objects/contacts/batch/upsert"))
        .collect();
    assert_eq!(upserts.len(), 2, "one refused, one delivered");
    // Each attempt's record tells its own outcome.
    let first = server.get(&format!(
        "/v1/executions/{}",
        done["executions"][0].as_str().expect("id")
    ));
    let second = server.get(&format!(
        "/v1/executions/{}",
        done["executions"][1].as_str().expect("id")
    ));
    assert_eq!(
        first.json["errors"][0]["code"], "rate_limited",
        "{}",
        first.text
    );
    assert_eq!(second.json["status"], "Success");
}

#[test]
fn fifty_concurrent_executes_of_one_action_deliver_exactly_one_message() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    let mut body = linkedin("once");
    body["scheduled_time"] = json!(in_future(3600));
    let id = create(&server, &body);
    ok(&server.post(
        &format!("/v1/actions/{id}/approve"),
        &json!({ "action": "approve" }),
    ));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    server
                        .post(&format!("/v1/actions/{id}/execute"), &json!({}))
                        .status
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("thread"))
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(messages_at(&providers).len(), 1);
    assert_eq!(action(&server, &id)["status"], "succeeded");
}

#[test]
fn idempotency_keys_replay_the_first_response_and_refuse_a_different_body() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "crm-sync", "ada", &providers.base_url);
    let post = |path: &str, key: &str, body: &Value| {
        server.send(
            server
                .request("POST", path)
                .bearer_auth(&server.admin_key)
                .header("idempotency-key", key)
                .json(body),
        )
    };
    let body = json!({ "type": "noop", "params": {}, "identity_id": "ada", "scheduled_time": in_future(3600) });
    let first = post("/v1/actions", "create-1", &body);
    assert_eq!(first.status, 200, "{}", first.text);
    let again = post("/v1/actions", "create-1", &body);
    assert_eq!(again.status, 200);
    assert_eq!(again.json, first.json, "the first response, replayed");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let mut other = body.clone();
    other["description"] = json!("another request");
    let mismatch = post("/v1/actions", "create-1", &other);
    assert_eq!(mismatch.status, 409, "{}", mismatch.text);
    assert!(
        mismatch.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("different request"))
    );
    assert_eq!(
        server.get("/v1/actions").json["pagination"]["total_items"],
        1
    );
    let bad_key = post("/v1/actions", &"k".repeat(300), &body);
    assert_eq!(bad_key.status, 400, "{}", bad_key.text);

    // The synchronous execute endpoint: one delivery, the key reaches the plugin.
    let execute =
        json!({ "entityId": "ada", "input": { "contacts": [{ "email": "idem@example.com" }] } });
    let first = post("/api/v2/actions/crm_sync/execute", "exec-1", &execute);
    assert_eq!(first.json["successful"], true, "{}", first.text);
    let again = post("/api/v2/actions/crm_sync/execute", "exec-1", &execute);
    assert_eq!(again.json["logId"], first.json["logId"]);
    assert_eq!(providers.requests().len(), 1, "replayed, not run again");
    let record = server.get(&format!(
        "/v1/executions/{}",
        first.json["logId"].as_str().expect("logId")
    ));
    assert_eq!(record.json["idempotency_key"], "exec-1", "{}", record.text);
    let mut changed = execute.clone();
    changed["input"]["contacts"][0]["email"] = json!("other@example.com");
    assert_eq!(
        post("/api/v2/actions/crm_sync/execute", "exec-1", &changed).status,
        409
    );
    // A request refused by validation saves nothing: the key stays usable.
    let invalid = post(
        "/api/v2/actions/crm_sync/execute",
        "exec-2",
        &json!({ "entityId": "ada", "input": { "contacts": "x" } }),
    );
    assert_eq!(invalid.status, 422, "{}", invalid.text);
    let fixed = post("/api/v2/actions/crm_sync/execute", "exec-2", &execute);
    assert_eq!(fixed.json["successful"], true, "{}", fixed.text);

    // Flowdash executions.
    let scheduled = first_id(&server);
    let exec = json!({ "action_id": scheduled });
    let started = post("/v1/executions", "flow-1", &exec);
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.json["status"], "Pending");
    let replayed = post("/v1/executions", "flow-1", &exec);
    assert_eq!(replayed.status, 202, "{}", replayed.text);
    assert_eq!(replayed.json, started.json);
    wait_for(&server, &scheduled, "succeeded", Duration::from_secs(10));
    assert_eq!(
        action(&server, &scheduled)["executions"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

fn first_id(server: &Server) -> String {
    server.get("/v1/actions").json["actions"][0]["id"]
        .as_str()
        .expect("an action")
        .to_owned()
}

#[test]
fn flowdash_executions_run_asynchronously_and_list_every_unmet_requirement() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    bearer_account(&server, "linkedin-message", "grace", &providers.base_url);

    // Not approved, and two accounts match the identity: both are listed.
    let waiting = create(&server, &linkedin("flow"));
    let unmet = server.post("/v1/executions", &json!({ "action_id": waiting }));
    assert_eq!(unmet.status, 422, "{}", unmet.text);
    assert_eq!(unmet.json["status"], "Fail");
    let errors: Vec<&str> = unmet.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("approv")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("connectedAccountId")),
        "{errors:?}"
    );
    assert!(messages_at(&providers).is_empty());

    // performed_by: a user whose keys lack actions:approve is refused by name.
    ok(&server.post(
        "/v1/api-keys",
        &json!({ "name": "viewer", "user_email": "viewer@example.com", "scopes": ["actions:read"] }),
    ));
    let refused = server.post(
        "/v1/executions",
        &json!({ "action_id": waiting, "transition": "approve", "performed_by": "viewer@example.com" }),
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("actions:approve")),
        "{}",
        refused.text
    );
    let unknown_user = server.post(
        "/v1/executions",
        &json!({ "action_id": waiting, "transition": "approve", "performed_by": "nobody@example.com" }),
    );
    assert_eq!(unknown_user.status, 422, "{}", unknown_user.text);

    // A reviewer's transition completes at once; execute runs asynchronously.
    let admin = server.get("/v1/auth/status").json["email"]
        .as_str()
        .expect("email")
        .to_owned();
    let mut body = json!({ "type": "linkedin_message", "params": { "recipients": ["urn:li:person:grace"], "body": "Hi" }, "identity_id": "grace", "scheduled_time": in_future(3600) });
    let id = create(&server, &body);
    let approved = server.post(
        "/v1/executions",
        &json!({ "action_id": id, "transition": "approve", "performed_by": admin, "comment": "ok" }),
    );
    assert_eq!(approved.status, 202, "{}", approved.text);
    assert_eq!(approved.json["status"], "Success");
    let state = action(&server, &id);
    assert_eq!(state["status"], "scheduled");
    assert_eq!(state["history"][1]["actor"]["type"], "user");
    assert_eq!(state["history"][1]["actor"]["email"], admin.as_str());
    let transitions = server.get(&format!("/v1/actions/{id}/transitions"));
    assert_eq!(
        transitions.json,
        json!([{ "id": "cancel", "name": "Cancel" }, { "id": "execute", "name": "Execute" }])
    );

    let started = server.post("/v1/executions", &json!({ "action_id": id }));
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.json["status"], "Pending");
    let execution = started.json["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let finished = loop {
        let polled = server.get(&format!("/v1/executions/{execution}"));
        assert_eq!(polled.status, 200, "{}", polled.text);
        if polled.json["status"] != "Pending" {
            break polled;
        }
        assert!(Instant::now() < deadline, "still pending");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(finished.json["status"], "Success", "{}", finished.text);
    assert_eq!(messages_at(&providers).len(), 1);
    assert_eq!(action(&server, &id)["executions"][0], execution.as_str());

    // A failing execution answers Fail with its errors.
    providers.fail_next(Fault::Unauthorized);
    body["params"]["body"] = json!("again");
    let second = create(&server, &body);
    ok(&server.post(
        &format!("/v1/actions/{second}/approve"),
        &json!({ "action": "approve" }),
    ));
    let started = server.post(
        "/v1/executions",
        &json!({ "action_id": second, "transition": "execute" }),
    );
    let execution = started.json["id"].as_str().expect("id").to_owned();
    wait_for(&server, &second, "failed", Duration::from_secs(10));
    let failed = server.get(&format!("/v1/executions/{execution}"));
    assert_eq!(failed.json["status"], "Fail", "{}", failed.text);
    assert_eq!(failed.json["errors"][0]["code"], "unauthorized");
    // And an action that has run cannot be executed again.
    let again = server.post("/v1/executions", &json!({ "action_id": id }));
    assert_conflict(&again, "succeeded");
}

#[test]
fn kill_9_while_executing_then_restart_recovers_every_action_by_the_rule() {
    let providers = Providers::start();
    let mut server = Server::start();
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    bearer_account(&server, "crm-sync", "ada", &providers.base_url);
    // Every provider call hangs long enough for the kill to find it running.
    for _ in 0..6 {
        providers.fail_next(Fault::Slow(Duration::from_secs(30)));
    }
    let mut idempotent = Vec::new();
    let mut other = Vec::new();
    for n in 0..3 {
        idempotent.push(create(
            &server,
            &json!({ "type": "crm_sync", "params": { "contacts": [{ "email": format!("kill{n}@example.com") }] }, "identity_id": "ada" }),
        ));
        let id = create(&server, &linkedin(&format!("kill{n}")));
        ok(&server.post(
            &format!("/v1/actions/{id}/approve"),
            &json!({ "action": "approve" }),
        ));
        other.push(id);
    }
    // Acknowledged but never due before the crash: must survive too.
    let mut later = json!({ "type": "noop", "params": {}, "identity_id": "ada", "scheduled_time": in_future(3600) });
    let untouched = create(&server, &later);
    for id in idempotent.iter().chain(&other) {
        wait_for(&server, id, "executing", Duration::from_secs(10));
    }
    // Killed once every run's request hangs at the provider: a run claimed
    // but not yet sending would leave a slow fault for its retry.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while providers.requests().len() < 6 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        providers.requests().len(),
        6,
        "every run reached the provider"
    );
    server.kill();
    let server = server.restart();
    // Recovery runs once the plugins are loaded, just after the server says
    // it is ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().contains("recovered actions") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.log().contains("recovered actions"),
        "{}",
        server.log()
    );

    for id in &other {
        let state = action(&server, id);
        assert_eq!(state["status"], "outcome_unknown", "{state}");
        assert_eq!(state["last_error"]["code"], "interrupted");
        let last = state["history"]
            .as_array()
            .and_then(|h| h.last())
            .expect("history");
        assert_eq!(
            last["actor"],
            json!({ "type": "system", "name": "recovery" })
        );
    }
    for id in &idempotent {
        let state = wait_for(&server, id, "succeeded", Duration::from_secs(15));
        assert!(
            state["history"]
                .as_array()
                .expect("history")
                .iter()
                .any(|h| h["transition"] == "reschedule" && h["actor"]["name"] == "recovery"),
            "{state}"
        );
    }
    assert_eq!(action(&server, &untouched)["status"], "scheduled");
    assert_eq!(
        server.get("/v1/actions").json["pagination"]["total_items"],
        7
    );
    later["description"] = json!("after the restart");
    create(&server, &later);
}

#[test]
fn the_actions_cli_lists_shows_approves_rejects_and_cancels_on_a_running_server() {
    let server = Server::start_with(no_scheduler());
    let waiting = create(
        &server,
        &json!({ "type": "noop", "params": {}, "identity_id": "cli", "require_approval": true, "description": "from the cli test" }),
    );
    let other = create(
        &server,
        &json!({ "type": "noop", "params": {}, "identity_id": "cli", "require_approval": true }),
    );
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(actionhost_tests::actionhost_bin())
            .arg("actions")
            .args(args)
            .env("ACTIONHOST_URL", &server.url)
            .env("ACTIONHOST_KEY", &server.admin_key)
            .output()
            .expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, table, _) = cli(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        table.contains(&waiting) && table.contains("pending_approval"),
        "{table}"
    );
    assert!(table.contains("2 of 2"), "{table}");
    let (code, json_out, _) = cli(&["list", "--json", "--status", "pending_approval"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&json_out).expect("--json prints the API's JSON");
    assert_eq!(listed["pagination"]["total_items"], 2);

    let (code, shown, _) = cli(&["approve", &waiting, "--comment", "ok from cli"]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("scheduled") && shown.contains("ok from cli"),
        "{shown}"
    );
    let (code, _, error) = cli(&["reject", &waiting]);
    assert_eq!(code, Some(1));
    assert!(
        error.contains("409") && error.contains("scheduled"),
        "{error}"
    );
    let (code, shown, _) = cli(&["cancel", &other, "--comment", "not needed"]);
    assert_eq!(code, Some(0));
    assert!(shown.contains("cancelled"), "{shown}");
    let (code, shown, _) = cli(&["get", &waiting]);
    assert_eq!(code, Some(0));
    assert!(shown.contains("allowed now: cancel, execute"), "{shown}");
    let (code, _, error) = cli(&["get", "act_missing"]);
    assert_eq!(code, Some(1));
    assert!(error.contains("404"), "{error}");

    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["actions", "list", "--url", &server.url])
        .env_remove("ACTIONHOST_KEY")
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing key is a usage error"
    );
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args([
            "actions",
            "list",
            "--url",
            &server.url,
            "--key",
            "ahk_wrong",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
}

#[test]
fn a_tenant_with_a_deep_backlog_does_not_starve_another_tenants_due_action() {
    // Tenant A's backlog is created with the scheduler off, so it is all due
    // before tenant B's one action.
    let server = Server::start_with(no_scheduler());
    let other = server.post(
        "/v1/tenants",
        &json!({ "name": "quiet", "admin_email": "ops@quiet.example" }),
    );
    assert_eq!(other.status, 201, "{}", other.text);
    let other_key = other.json["key"].as_str().expect("tenant key").to_owned();
    const BACKLOG: usize = 3_000;
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let server = &server;
            scope.spawn(move || {
                for n in (worker..BACKLOG).step_by(4) {
                    create(
                        server,
                        &json!({ "type": "noop", "params": { "echo": n.to_string() }, "identity_id": "loud" }),
                    );
                }
            });
        }
    });
    let quiet = server.call(
        "POST",
        "/v1/actions",
        Some(&other_key),
        Some(&json!({ "type": "noop", "params": { "echo": "quiet" }, "identity_id": "quiet" })),
    );
    assert_eq!(quiet.status, 200, "{}", quiet.text);
    let quiet_id = quiet.json["action_id"].as_str().expect("id").to_owned();

    // Two slots, one per tenant: A drains its backlog one action at a time.
    let server = server.restart_with(|options| {
        options.env = vec![
            ("ACTIONHOST_SCHEDULER__CONCURRENCY".into(), "2".into()),
            ("ACTIONHOST_SCHEDULER__PER_TENANT".into(), "1".into()),
        ];
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = server.call(
            "GET",
            &format!("/v1/actions/{quiet_id}"),
            Some(&other_key),
            None,
        );
        assert_eq!(answer.status, 200, "{}", answer.text);
        if answer.json["action"]["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's action never ran: {}",
            answer.text
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // B's action ran while most of A's backlog was still waiting: it did not
    // queue behind it (it would have had to wait for all but the last page
    // of it before).
    let waiting = server.get("/v1/actions?status=scheduled&limit=1");
    assert_eq!(waiting.status, 200, "{}", waiting.text);
    let waiting = waiting.json["pagination"]["total_items"]
        .as_u64()
        .expect("total_items");
    assert!(
        waiting > (BACKLOG as u64) / 2,
        "B's action waited for A's backlog: only {waiting} of {BACKLOG} were left"
    );
    let done = server.get("/v1/actions?status=succeeded&limit=1");
    assert!(
        done.json["pagination"]["total_items"].as_u64() > Some(0),
        "A's backlog is draining too: {}",
        done.text
    );
}

/// What the clients of one crash round were told, and by which request.
#[derive(Default)]
struct Acknowledged {
    /// Created actions, with the LinkedIn body or the email subject for
    /// those that send one.
    created: Vec<(String, Option<String>)>,
    /// Approved actions.
    approved: Vec<String>,
    /// Execution records of synchronous executes.
    executed: Vec<String>,
}

/// One client of the crash suite's mixed load: creations, LinkedIn messages
/// created and approved, emails created for delivery at once, and
/// synchronous executes in turn, until `stop`, keeping what
/// was acknowledged. Connection errors (the kill) are expected.
fn crash_client(
    url: &str,
    key: &str,
    oauth: &str,
    tag: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Acknowledged {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let post = |path: &str, body: &Value| -> Option<Value> {
        let response = client
            .post(format!("{url}{path}"))
            .bearer_auth(key)
            .json(body)
            .send()
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json::<Value>().ok()
    };
    let mut acked = Acknowledged::default();
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        match n % 5 {
            0 => {
                let body = json!({ "type": "noop", "params": { "echo": format!("{tag}n{n}") }, "identity_id": "ada" });
                if let Some(answer) = post("/v1/actions", &body)
                    && let Some(id) = answer["action_id"].as_str()
                {
                    acked.created.push((id.to_owned(), None));
                }
            }
            1 => {
                let recipient = format!("{tag}n{n}");
                let Some(answer) = post("/v1/actions", &linkedin(&recipient)) else {
                    continue;
                };
                let Some(id) = answer["action_id"].as_str().map(str::to_owned) else {
                    continue;
                };
                acked
                    .created
                    .push((id.clone(), Some(format!("Hello {recipient}"))));
                let approve = json!({ "action": "approve" });
                if post(&format!("/v1/actions/{id}/approve"), &approve).is_some() {
                    acked.approved.push(id);
                }
            }
            2 => {
                // An email through the SMTP peer, released at once (no
                // approval): counted with the approved messages.
                let subject = format!("Mail {tag}n{n}");
                let body = json!({ "type": "send_email", "params": { "to": "bob@example.com", "subject": subject, "body": "crash suite" }, "identity_id": "ada", "require_approval": false });
                if let Some(answer) = post("/v1/actions", &body)
                    && let Some(id) = answer["action_id"].as_str()
                {
                    acked.created.push((id.to_owned(), Some(subject)));
                    acked.approved.push(id.to_owned());
                }
            }
            3 => {
                // A CRM sync through the OAuth2 account: a token refresh,
                // then the provider.
                let body = json!({ "connectedAccountId": oauth, "input": { "contacts": [{ "email": format!("{tag}n{n}@example.com") }] } });
                if let Some(answer) = post("/api/v2/actions/crm_sync/execute", &body)
                    && answer["successful"] == true
                    && let Some(id) = answer["logId"].as_str()
                {
                    acked.executed.push(id.to_owned());
                }
            }
            _ => {
                let body = json!({ "input": { "echo": format!("{tag}n{n}") } });
                if let Some(answer) = post("/api/v2/actions/noop/execute", &body)
                    && answer["successful"] == true
                    && let Some(id) = answer["logId"].as_str()
                {
                    acked.executed.push(id.to_owned());
                }
            }
        }
    }
    acked
}

/// How many actions are in `status`.
fn count(server: &Server, status: &str) -> u64 {
    let answer = server.get(&format!("/v1/actions?status={status}&limit=1"));
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json["pagination"]["total_items"]
        .as_u64()
        .expect("total_items")
}

/// The crash suite: kill -9 at a random moment under a mixed load of
/// creations, approvals and executions against a local LinkedIn peer, then
/// restart and compare what the clients were told, and what the peer
/// received, with the server's state. `ACTIONHOST_CRASH_ROUNDS` rounds (3
/// here; `reliability/run` runs 20).
#[test]
fn kill_9_under_mixed_load_loses_nothing_acknowledged_and_delivers_nothing_twice() {
    let rounds: u32 = std::env::var("ACTIONHOST_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let providers = Providers::start();
    let sink = SmtpSink::start();
    let mut server = Server::start();
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    smtp_account(&server, &sink, "ada");
    // An OAuth2 account whose tokens are refreshed on every execution (a
    // 30 s lifetime is inside the refresh margin): the token endpoint is
    // part of the load, and its refresh tokens must survive every crash.
    providers.set_token_lifetime(30);
    let oauth = oauth_connect(
        &server,
        &providers,
        &oauth_config(&server, &providers),
        "ada",
    );
    let (mut lost, mut twice, mut bad_state, mut acknowledged) = (0, 0, 0, 0);
    let mut delivered = std::collections::HashMap::<String, usize>::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut all = Acknowledged::default();
    for round in 0..rounds {
        let stop = std::sync::atomic::AtomicBool::new(false);
        // A moment between 0.3 and 1.5 s into the load.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let kill_after = Duration::from_millis(300 + u64::from(nanos % 1200));
        let (url, key) = (server.url.clone(), server.admin_key.clone());
        let acked: Vec<Acknowledged> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..4)
                .map(|c| {
                    let (url, key, stop) = (&url, &key, &stop);
                    let oauth = &oauth;
                    scope.spawn(move || {
                        crash_client(url, key, oauth, &format!("r{round}c{c}"), stop)
                    })
                })
                .collect();
            std::thread::sleep(kill_after);
            server.kill();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            clients
                .into_iter()
                .map(|c| c.join().expect("client"))
                .collect()
        });
        server = server.restart();
        for part in acked {
            all.created.extend(part.created);
            all.approved.extend(part.approved);
            all.executed.extend(part.executed);
        }
        // Recovery and the scheduler finish what was due.
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&server, "scheduled") + count(&server, "executing") > 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: due actions never finished"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    for message in messages_at(&providers) {
        let body = message["body"].as_str().unwrap_or_default().to_owned();
        *delivered.entry(body).or_default() += 1;
    }
    let (messages, mails) = (messages_at(&providers).len(), sink.received().len());
    for mail in sink.received() {
        let raw = String::from_utf8_lossy(&mail.raw);
        if let Some(subject) = raw.lines().find_map(|l| l.strip_prefix("Subject: ")) {
            *delivered.entry(subject.trim().to_owned()).or_default() += 1;
        }
    }
    twice += delivered.values().filter(|&&n| n > 1).count();
    let approved: std::collections::HashSet<&String> = all.approved.iter().collect();
    for (id, body) in &all.created {
        acknowledged += 1;
        let answer = server.get(&format!("/v1/actions/{id}"));
        if answer.status != 200 {
            lost += 1;
            continue;
        }
        let status = answer.json["action"]["status"].as_str().unwrap_or_default();
        *statuses.entry(status.to_owned()).or_default() += 1;
        let sent = body
            .as_ref()
            .map_or(0, |b| delivered.get(b).copied().unwrap_or(0));
        let allowed = match (body, approved.contains(id)) {
            // An approved message: delivered once and succeeded, or
            // interrupted and left for a person (delivered or not).
            (Some(_), true) => (status == "succeeded" && sent == 1) || status == "outcome_unknown",
            // An approval that was not acknowledged may still have landed.
            (Some(_), false) => {
                status == "pending_approval"
                    || (status == "succeeded" && sent == 1)
                    || status == "outcome_unknown"
            }
            // The no-op is idempotent: recovery runs it again.
            (None, _) => status == "succeeded",
        };
        if !allowed {
            bad_state += 1;
            eprintln!("{id}: {status}, delivered {sent} time(s)");
        }
    }
    for id in &all.executed {
        acknowledged += 1;
        if server.get(&format!("/v1/executions/{id}")).status != 200 {
            lost += 1;
        }
    }
    // The OAuth2 account survived every crash: its stored refresh token
    // still gets a token.
    let after = server.post(
        "/api/v2/actions/crm_sync/execute",
        &json!({ "connectedAccountId": oauth, "input": { "contacts": [{ "email": "after@example.com" }] } }),
    );
    assert_eq!(
        after.json["successful"], true,
        "the OAuth2 account after the crashes: {}",
        after.text
    );
    let refreshes = providers.refreshes();
    eprintln!(
        "crash suite: {rounds} rounds, {acknowledged} acknowledged, {lost} lost, {twice} delivered twice, {bad_state} in a state recovery does not allow; actions by status {statuses:?}; {messages} LinkedIn messages and {mails} emails delivered, {refreshes} OAuth2 token refreshes"
    );
    assert!(acknowledged > 0, "the load never got an answer");
    assert_eq!(lost, 0, "acknowledged actions or executions lost");
    assert_eq!(twice, 0, "messages delivered twice");
    assert_eq!(
        bad_state, 0,
        "actions in a state the recovery rule does not allow"
    );
}

#[test]
fn flowdash_seed_requests_work_as_written_at_its_own_paths() {
    let providers = Providers::start();
    let server = Server::start();
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    bearer_account(&server, "linkedin-message", "ada", &providers.base_url);
    bearer_account(&server, "linkedin-message", "grace", &providers.base_url);
    let admin = server.get("/v1/auth/status").json["email"]
        .as_str()
        .expect("email")
        .to_owned();
    // A workflow is the actions of one list_id; a task is one of them.
    let mut body = linkedin("grace");
    body["identity_id"] = json!("grace");
    body["list_id"] = json!("abc123");
    body["scheduled_time"] = json!(in_future(3600));
    let task = create(&server, &body);
    let raw = |path: &str, json: String| {
        server.send(
            server
                .request("POST", path)
                .bearer_auth(&server.admin_key)
                .header("content-type", "application/json")
                .body(json),
        )
    };

    // List a task's actions.
    let listed = server.get(&format!("/api/v1/workflows/abc123/tasks/{task}/actions"));
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert!(
        listed
            .json
            .as_array()
            .expect("a list")
            .contains(&json!({ "id": "approve", "name": "Approve" })),
        "{}",
        listed.text
    );
    let elsewhere = server.get(&format!("/api/v1/workflows/other/tasks/{task}/actions"));
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text);

    // Execute one (the seed's body, with real ids), then poll it to Success.
    let approved = raw(
        "/api/v1/workflows/abc123/executions",
        format!(r#"{{"task_id":"{task}","action_id":"approve","performed_by":"{admin}"}}"#),
    );
    assert_eq!(approved.status, 202, "{}", approved.text);
    assert_eq!(approved.json["status"], "Success");
    let started = raw(
        "/api/v1/workflows/abc123/executions",
        format!(r#"{{"task_id":"{task}","action_id":"execute","performed_by":"{admin}"}}"#),
    );
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.json["status"], "Pending");
    let execution = started.json["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let finished = loop {
        let polled = server.get(&format!("/api/v1/workflows/abc123/executions/{execution}"));
        assert_eq!(polled.status, 200, "{}", polled.text);
        if polled.json["status"] != "Pending" {
            break polled;
        }
        assert!(Instant::now() < deadline, "still pending");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        finished.json,
        json!({ "id": execution, "status": "Success", "task_id": task }),
        "{}",
        finished.text
    );
    assert_eq!(messages_at(&providers).len(), 1);
    let other = server.get(&format!("/api/v1/workflows/other/executions/{execution}"));
    assert_eq!(other.status, 404, "{}", other.text);

    // Unmet requirements: the seed's 422, errors as strings.
    let mut waiting = linkedin("flow");
    waiting["list_id"] = json!("abc123");
    let waiting = create(&server, &waiting);
    let unmet = raw(
        "/api/v1/workflows/abc123/executions",
        format!(r#"{{"task_id":"{waiting}","action_id":"execute","performed_by":"{admin}"}}"#),
    );
    assert_eq!(unmet.status, 422, "{}", unmet.text);
    assert_eq!(unmet.json["status"], "Fail");
    let errors = unmet.json["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{}", unmet.text);
    assert!(errors.iter().all(Value::is_string), "{}", unmet.text);

    // performed_by without the permission: 403.
    ok(&server.post(
        "/v1/api-keys",
        &json!({ "name": "viewer", "user_email": "viewer@example.com", "scopes": ["actions:read"] }),
    ));
    let refused = raw(
        "/api/v1/workflows/abc123/executions",
        format!(
            r#"{{"task_id":"{waiting}","action_id":"approve","performed_by":"viewer@example.com"}}"#
        ),
    );
    assert_eq!(refused.status, 403, "{}", refused.text);

    // The seed's trailing comma is not JSON: a 400 that says where it broke.
    let comma = raw(
        "/api/v1/workflows/abc123/executions",
        format!(
            "{{\n  \"task_id\":\"{waiting}\",\n  \"action_id\":\"approve\",\n  \"performed_by\":\"{admin}\",\n}}"
        ),
    );
    assert_eq!(comma.status, 400, "{}", comma.text);
    assert!(comma.text.contains("line 5"), "{}", comma.text);
    assert_eq!(action(&server, &waiting)["status"], "pending_approval");
}
