//! Faults at the peers, through the real server while a well-behaved plugin
//! serves steady traffic: HTTP providers that hang, reset the connection or
//! answer garbage, one that is not there at all, one that is slow, and DNS
//! names that resolve to link-local or private addresses. Each ends in its
//! error variant within the deadline, and none holds up other executions.
//!
//! SMTP servers and an OAuth2 token endpoint get the same treatment.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actionhost_tests::faulty::{
    FaultyHttp, HttpFault, SmtpFault, faulty_smtp, faulty_smtp_counting,
};
use actionhost_tests::providers::{
    Fault, Providers, TOKEN, TokenFault, oauth_config, oauth_connect,
};
use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::{SteadyTraffic, fixture};
use serde_json::{Value, json};

/// The deadline of every execution in these tests.
const DEADLINE: Duration = Duration::from_secs(3);

/// Far more than the deadline, far less than a hang: an execution that
/// takes longer was not ended by its deadline.
const WITHIN: Duration = Duration::from_secs(15);

/// A server whose executions have [`DEADLINE`], with these extra
/// environment variables.
fn server_with_deadline(env: &[(&str, &str)]) -> Server {
    let deadline = (
        "ACTIONHOST_LIMITS__DEADLINE".to_owned(),
        format!("{}s", DEADLINE.as_secs()),
    );
    Server::start_with(Options {
        env: std::iter::once(deadline)
            .chain(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .collect(),
        ..Options::default()
    })
}

/// An auth config of `app` with `scheme`, and one account of it for
/// `entity` with `metadata` and `credentials`.
fn connect(server: &Server, app: &str, entity: &str, scheme: Value, account: Value) {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": app, "scheme": scheme }),
    );
    let mut account = account;
    account["authConfigId"] = config.ok()["id"].clone();
    account["entityId"] = entity.into();
    server.post("/api/v1/connectedAccounts", &account).ok();
}

/// A bearer account of `app` for `entity` whose provider is at `base_url`.
fn account(server: &Server, app: &str, entity: &str, metadata: Value) {
    connect(
        server,
        app,
        entity,
        json!({ "type": "bearer" }),
        json!({ "metadata": metadata, "credentials": { "token": TOKEN } }),
    );
}

/// An email through a Gmail-shaped provider at `base_url` (not
/// idempotent), and a CRM sync through a HubSpot-shaped one (idempotent),
/// for a fresh entity each.
fn both(server: &Server, entity: &str, base_url: &str) -> [(&'static str, Answer, Duration); 2] {
    let gmail = format!("{entity}-mail");
    account(
        server,
        "send-email",
        &gmail,
        json!({ "provider": "gmail", "from": "ada@example.com", "base_url": base_url }),
    );
    let crm = format!("{entity}-crm");
    account(server, "crm-sync", &crm, json!({ "base_url": base_url }));
    let timed = |action: &str, body: Value| {
        let started = Instant::now();
        let answer = server.post(&format!("/api/v2/actions/{action}/execute"), &body);
        (started.elapsed(), answer)
    };
    let (mail_took, mail) = timed(
        "send_email",
        json!({ "entityId": gmail, "input": { "to": ["grace@example.com"], "subject": entity, "body": "b" } }),
    );
    let (crm_took, crm) = timed(
        "crm_sync",
        json!({ "entityId": crm, "input": { "contacts": [{ "email": format!("{entity}@example.com") }] } }),
    );
    [("send_email", mail, mail_took), ("crm_sync", crm, crm_took)]
}

/// Checks a failed execution's code and `retryable`, and that it ended
/// within the deadline's reach.
fn expect(case: &str, action: &str, answer: &Answer, took: Duration, code: &str, retryable: bool) {
    assert_eq!(answer.status, 200, "{case} {action}: {}", answer.text);
    assert_eq!(
        answer.json["successful"], false,
        "{case} {action}: {}",
        answer.text
    );
    assert_eq!(
        answer.json["errorCode"], code,
        "{case} {action}: {}",
        answer.text
    );
    assert_eq!(
        answer.json["retryable"], retryable,
        "{case} {action}: {}",
        answer.text
    );
    assert!(
        took < WITHIN,
        "{case} {action} took {took:?}, past its deadline of {DEADLINE:?}"
    );
    eprintln!(
        "{case}, {action}: {code} in {} ms: {}",
        took.as_millis(),
        answer.json["error"]
    );
}

#[test]
fn misbehaving_http_peers_end_in_the_right_error_within_the_deadline_and_hold_up_nothing() {
    let server = server_with_deadline(&[]);
    let traffic = SteadyTraffic::start(&server);

    // The request reached the provider and no usable answer came back: the
    // email may have been sent, so it is not retried behind the user's
    // back (outcome_unknown); the idempotent CRM sync may be tried again.
    for (case, fault) in [
        ("hang", HttpFault::Hang),
        ("reset", HttpFault::Reset),
        ("garbage", HttpFault::Garbage),
    ] {
        let peer = FaultyHttp::start(fault);
        let answers = if fault == HttpFault::Hang {
            traffic.beside(case, || both(&server, case, &peer.base_url))
        } else {
            both(&server, case, &peer.base_url)
        };
        for (action, answer, took) in answers {
            let (code, retryable) = match action {
                "send_email" => ("outcome_unknown", false),
                _ => ("transient", true),
            };
            expect(case, action, &answer, took, code, retryable);
        }
        assert_eq!(peer.requests(), 2, "{case}: one request per execution");
    }

    // Nothing listening: the request never left, so even the email is a
    // plain failure that may pass later.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    for (action, answer, took) in both(&server, "refused", &closed) {
        expect("refused", action, &answer, took, "transient", true);
    }

    // Slow, but within the deadline: delivered.
    let providers = Providers::start();
    providers.fail_next(Fault::Slow(Duration::from_millis(800)));
    providers.fail_next(Fault::Slow(Duration::from_millis(800)));
    for (action, answer, _) in both(&server, "slow", &providers.base_url) {
        assert_eq!(
            answer.json["successful"], true,
            "slow {action}: {}",
            answer.text
        );
    }

    let served = traffic.finish();
    assert!(
        served >= 20,
        "only {served} no-op requests ran beside the faults"
    );
    eprintln!("the no-op answered all {served} of its requests beside the faulty peers");
    assert_eq!(
        server.log().matches("listening on http://").count(),
        1,
        "the server restarted"
    );
}

#[test]
fn names_that_resolve_to_link_local_or_private_addresses_are_refused_after_the_lookup() {
    // The names are on the allow-list; only what they resolve to is wrong.
    // The server's own resolver answers them (an /etc/hosts of its own).
    let names = [
        ("169.254.169.254", "metadata.attacker.test"),
        ("10.0.0.7", "intranet.attacker.test"),
        ("fe80::1", "linklocal6.attacker.test"),
        ("fd00::7", "private6.attacker.test"),
    ];
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        env: vec![
            ("ACTIONHOST_ALLOW_PRIVATE_NETWORK".into(), "false".into()),
            (
                "ACTIONHOST_EXTRA_HOSTS".into(),
                format!(
                    "[{}]",
                    names
                        .iter()
                        .map(|(_, name)| format!("\"http://{name}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ],
        hosts: names
            .iter()
            .map(|(address, name)| format!("{address} {name}"))
            .collect(),
        ..Options::default()
    });
    let traffic = SteadyTraffic::start(&server);

    for (address, name) in names {
        let started = Instant::now();
        let answer = server.post(
            "/api/v2/actions/fetch/execute",
            &json!({ "input": { "url": format!("http://{name}/latest/meta-data/") }, "allowTracing": true }),
        );
        assert_eq!(answer.json["successful"], false, "{name}: {}", answer.text);
        assert_eq!(
            answer.json["errorCode"], "permanent",
            "{name}: {}",
            answer.text
        );
        assert!(
            answer.json["error"]
                .as_str()
                .is_some_and(|m| m.contains("request denied by the host")),
            "{name}: {}",
            answer.text
        );
        assert!(
            started.elapsed() < WITHIN,
            "{name}: {:?}",
            started.elapsed()
        );
        // The execution's log says why: the address, not the name.
        let record = server.get(&format!(
            "/v1/executions/{}",
            answer.json["logId"].as_str().expect("logId")
        ));
        assert!(
            record.text.contains(&format!(
                "resolves to a private or reserved address ({address})"
            )),
            "{name}: the log does not name {address}: {}",
            record.text
        );
        eprintln!("{name} -> {address}: refused after the lookup");
    }

    let served = traffic.finish();
    eprintln!("the no-op answered all {served} of its requests beside the lookups");
}

/// An SMTP account of `send-email` for `entity` at `port` on loopback.
fn smtp_account(server: &Server, entity: &str, port: u16) {
    connect(
        server,
        "send-email",
        entity,
        json!({ "type": "smtp", "host": "127.0.0.1", "port": port }),
        json!({ "metadata": { "provider": "smtp", "from": "ada@example.com" }, "credentials": { "tls": "none" } }),
    );
}

#[test]
fn misbehaving_smtp_servers_end_in_the_right_error_and_a_message_that_may_be_delivered_is_never_sent_again()
 {
    // Each SMTP step has a second, well inside the deadline, as the 10 s
    // default is inside the 30 s one.
    let server = server_with_deadline(&[("ACTIONHOST_LIMITS__CONNECT_TIMEOUT", "1s")]);
    let traffic = SteadyTraffic::start(&server);
    let send = |entity: &str| {
        let started = Instant::now();
        let answer = server.post(
            "/api/v2/actions/send_email/execute",
            &json!({ "entityId": entity, "input": { "to": ["grace@example.com"], "subject": entity, "body": "b" } }),
        );
        (answer, started.elapsed())
    };

    // Before the server takes the message, nothing can have been delivered:
    // a failure that may pass later.
    for (case, fault) in [
        ("smtp-hang", SmtpFault::Hang),
        ("smtp-garbage", SmtpFault::Garbage),
        ("smtp-reset", SmtpFault::ResetAfterGreeting),
    ] {
        smtp_account(&server, case, faulty_smtp(fault));
        let (answer, took) = if matches!(fault, SmtpFault::Hang) {
            traffic.beside(case, || send(case))
        } else {
            send(case)
        };
        expect(case, "send_email", &answer, took, "transient", true);
    }

    // After it took the message, a reply that never comes or a dropped
    // connection may hide a delivery: outcome_unknown, not retried.
    for (case, fault) in [
        ("smtp-hang-after-data", SmtpFault::HangAfterData),
        ("smtp-drop-after-data", SmtpFault::DropAfterData),
    ] {
        let (port, messages) = faulty_smtp_counting(fault);
        smtp_account(&server, case, port);
        let (answer, took) = if matches!(fault, SmtpFault::HangAfterData) {
            traffic.beside(case, || send(case))
        } else {
            send(case)
        };
        expect(case, "send_email", &answer, took, "outcome_unknown", false);
        assert_eq!(messages.load(Ordering::SeqCst), 1, "{case}");
    }

    // The same as a stored action: it ends outcome_unknown and the
    // scheduler never sends it again.
    let (port, messages) = faulty_smtp_counting(SmtpFault::DropAfterData);
    smtp_account(&server, "stored", port);
    let created = server.post(
        "/v1/actions",
        &json!({ "type": "send_email", "params": { "to": "grace@example.com", "subject": "stored", "body": "b" }, "identity_id": "stored", "require_approval": false }),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["action_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + WITHIN;
    let action = loop {
        let action = server.get(&format!("/v1/actions/{id}"));
        if action.json["action"]["status"] == "outcome_unknown" {
            break action;
        }
        assert!(Instant::now() < deadline, "{}", action.text);
        std::thread::sleep(Duration::from_millis(50));
    };
    // Several scheduler polls later, still one message.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(messages.load(Ordering::SeqCst), 1, "{}", action.text);
    let again = server.get(&format!("/v1/actions/{id}"));
    assert_eq!(again.json["action"]["status"], "outcome_unknown");

    // Slow, within every timeout: delivered.
    smtp_account(
        &server,
        "smtp-slow",
        faulty_smtp(SmtpFault::Slow(Duration::from_millis(100))),
    );
    let (answer, _) = send("smtp-slow");
    assert_eq!(answer.json["successful"], true, "{}", answer.text);

    let served = traffic.finish();
    assert!(served >= 20, "only {served} no-op requests ran beside");
    eprintln!("the no-op answered all {served} of its requests beside the faulty SMTP servers");
}

#[test]
fn a_deadline_that_strikes_while_the_smtp_server_keeps_its_greeting_is_a_retryable_failure() {
    // The deadline (3 s) is shorter than each step's timeout (10 s, the
    // default): it is the deadline that ends the wait for the greeting.
    // Nothing was sent, so even the email may be tried again.
    let server = server_with_deadline(&[]);
    let (port, messages) = faulty_smtp_counting(SmtpFault::Hang);
    smtp_account(&server, "greeting", port);
    let started = Instant::now();
    let answer = server.post(
        "/api/v2/actions/send_email/execute",
        &json!({ "entityId": "greeting", "input": { "to": ["grace@example.com"], "subject": "s", "body": "b" } }),
    );
    expect(
        "greeting",
        "send_email",
        &answer,
        started.elapsed(),
        "transient",
        true,
    );
    let error = answer.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("still connecting") && error.contains("nothing was sent"),
        "{error}"
    );
    assert_eq!(messages.load(Ordering::SeqCst), 0);

    // As a stored action it is tried again, not failed for good.
    let created = server.post(
        "/v1/actions",
        &json!({ "type": "send_email", "params": { "to": "grace@example.com", "subject": "stored", "body": "b" }, "identity_id": "greeting", "require_approval": false }),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["action_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + WITHIN;
    loop {
        let action = server.get(&format!("/v1/actions/{id}"));
        let records = action.json["action"]["execution_records"]
            .as_array()
            .map_or(0, Vec::len);
        if records >= 1 {
            // Waiting for its next attempt, or already in it.
            let status = action.json["action"]["status"].as_str().unwrap_or_default();
            assert!(
                status == "scheduled" || status == "executing",
                "{}",
                action.text
            );
            assert_eq!(
                action.json["action"]["execution_records"][0]["error_code"], "transient",
                "{}",
                action.text
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", action.text);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_token_endpoint_that_hangs_fails_or_answers_garbage_leaves_the_account_active_and_the_error_retryable()
 {
    let providers = Providers::start();
    let server = server_with_deadline(&[]);
    // A token that has expired by the time of the first execution: it must
    // be refreshed before the plugin can run.
    providers.set_token_lifetime(1);
    let account = oauth_connect(
        &server,
        &providers,
        &oauth_config(&server, &providers),
        "ada",
    );
    std::thread::sleep(Duration::from_secs(2));
    let traffic = SteadyTraffic::start(&server);
    let sync = |email: &str| {
        let started = Instant::now();
        let answer = server.post(
            "/api/v2/actions/crm_sync/execute",
            &json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": email }] } }),
        );
        (answer, started.elapsed())
    };
    let still_active = |case: &str| {
        let status = server.get(&format!("/api/v1/connectedAccounts/{account}"));
        assert_eq!(status.json["status"], "active", "{case}: {}", status.text);
    };
    let crm_calls = || {
        providers
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/crm/"))
            .count()
    };

    // Before the plugin runs: the refresh fails, nothing is sent to the
    // provider, and the caller hears it may try again.
    for (case, fault) in [
        ("hang", TokenFault::Slow(Duration::from_secs(30))),
        ("503", TokenFault::Unavailable),
        ("garbage", TokenFault::Garbage),
    ] {
        let before = crm_calls();
        providers.fail_next_token(fault);
        let case_sync = || sync(&format!("{case}@example.com"));
        let (answer, took) = if case == "hang" {
            traffic.beside(case, case_sync)
        } else {
            case_sync()
        };
        assert_eq!(answer.status, 503, "{case}: {}", answer.text);
        assert_eq!(
            answer.json["errorCode"], "transient",
            "{case}: {}",
            answer.text
        );
        assert_eq!(answer.json["retryable"], true, "{case}: {}", answer.text);
        assert!(
            answer.text.contains("could not be refreshed"),
            "{case}: {}",
            answer.text
        );
        assert!(took < WITHIN, "{case}: the refresh took {took:?}");
        assert_eq!(crm_calls(), before, "{case}: the provider was called");
        still_active(case);
        eprintln!("token endpoint {case}: 503 in {} ms", took.as_millis());
    }

    // A token that is due for a refresh but still valid: an outage of the
    // endpoint does not stop the execution, which uses it.
    providers.set_token_lifetime(30);
    let (refreshed, _) = sync("refreshed@example.com");
    assert_eq!(refreshed.json["successful"], true, "{}", refreshed.text);
    providers.fail_next_token(TokenFault::Unavailable);
    let (still_valid, _) = sync("still-valid@example.com");
    assert_eq!(still_valid.json["successful"], true, "{}", still_valid.text);
    assert!(
        providers
            .token_log()
            .iter()
            .any(|entry| entry.contains("Unavailable")),
        "the outage was not met: {:?}",
        providers.token_log()
    );
    still_active("still valid");

    // During the run: the provider answers 401, the refresh meant to
    // replay the request fails for an outage: the request is not replayed,
    // the failure is retryable, and the account is not expired for it.
    providers.set_token_lifetime(3600);
    let (fresh, _) = sync("fresh@example.com");
    assert_eq!(fresh.json["successful"], true, "{}", fresh.text);
    providers.fail_next(Fault::Unauthorized);
    providers.fail_next_token(TokenFault::Unavailable);
    let (replay, took) = sync("replay@example.com");
    assert_eq!(replay.status, 200, "{}", replay.text);
    assert_eq!(replay.json["successful"], false, "{}", replay.text);
    assert_eq!(replay.json["errorCode"], "transient", "{}", replay.text);
    assert_eq!(replay.json["retryable"], true, "{}", replay.text);
    assert!(took < WITHIN, "{took:?}");
    still_active("401 then an outage");

    // Back to normal: the same account works again.
    let (recovered, _) = sync("back@example.com");
    assert_eq!(recovered.json["successful"], true, "{}", recovered.text);

    let served = traffic.finish();
    assert!(served >= 20, "only {served} no-op requests ran beside");
    eprintln!(
        "the no-op answered all {served} of its requests beside the token endpoint's outages"
    );
}

#[test]
fn a_client_that_goes_away_does_not_cut_its_run_short() {
    let peer = FaultyHttp::start(HttpFault::Hold);
    let server = Server::start_with(Options {
        plugins: Some(vec![fixture("fixture-noop"), fixture("fixture-hostile")]),
        env: vec![
            ("ACTIONHOST_LIMITS__DEADLINE".into(), "120s".into()),
            ("ACTIONHOST_SCHEDULER__ENABLED".into(), "false".into()),
        ],
        ..Options::default()
    });
    // A client that gives up after a second, as a load balancer might.
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let held = json!({ "url": format!("{}/held", peer.base_url) });

    // A stored action's synchronous run.
    let created = server.post(
        "/v1/actions",
        &json!({ "type": "fetch", "params": held, "identity_id": "ada", "require_approval": false, "scheduled_time": "2030-01-01T00:00:00Z" }),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["action_id"].as_str().expect("id").to_owned();
    let gone = impatient
        .post(format!("{}/v1/actions/{id}/execute", server.url))
        .bearer_auth(&server.admin_key)
        .send();
    assert!(gone.is_err(), "the client was meant to give up: {gone:?}");

    // A synchronous execute with an idempotency key.
    let execute = |client: &reqwest::blocking::Client| {
        client
            .post(format!("{}/api/v2/actions/fetch/execute", server.url))
            .bearer_auth(&server.admin_key)
            .header("idempotency-key", "left-early")
            .json(&json!({ "input": held }))
            .send()
    };
    assert!(
        execute(&impatient).is_err(),
        "the client was meant to give up"
    );

    // Both runs go on without their clients and finish once the peer answers.
    let deadline = Instant::now() + WITHIN;
    while peer.requests() < 2 {
        assert!(
            Instant::now() < deadline,
            "the runs stopped with their clients"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    peer.release();
    let deadline = Instant::now() + WITHIN;
    loop {
        let action = server.get(&format!("/v1/actions/{id}"));
        if action.json["action"]["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "left {}", action.text);
        std::thread::sleep(Duration::from_millis(20));
    }
    // The key's first answer was recorded: a retry gets it, and nothing
    // runs again.
    let patient = reqwest::blocking::Client::new();
    let deadline = Instant::now() + WITHIN;
    let replay = loop {
        let answer = execute(&patient).expect("answer");
        if answer.status() != 409 {
            break answer;
        }
        // Still in progress: the run is finishing.
        assert!(Instant::now() < deadline, "the key never got its answer");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(replay.status(), 200);
    let body: Value = replay.json().expect("json");
    assert_eq!(body["successful"], true, "{body}");
    assert_eq!(peer.requests(), 2, "a run went twice");
}
