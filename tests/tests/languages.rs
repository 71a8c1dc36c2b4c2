//! Plugins written in JavaScript and Python, through the real server: the
//! bundled `slack-message` (ComponentizeJS) and `webhook-post`
//! (componentize-py) against local peers, and instance reuse of the
//! interpreted fixtures (`fixture-noop-js`, `fixture-noop-py`): reused for
//! one account, never across accounts, dropped after a trap or `max-calls`.

use actionhost_tests::providers::{self, Providers, SLACK_CHANNELS, TOKEN, WEBHOOK_SECRET};
use actionhost_tests::server::{Answer, Options, Server};
use serde_json::{Value, json};

fn start(env: &[(&str, &str)]) -> Server {
    Server::start_with(Options {
        plugins: Some(vec![
            actionhost_tests::plugin("slack-message"),
            actionhost_tests::plugin("webhook-post"),
            actionhost_tests::fixture("fixture-noop-js"),
            actionhost_tests::fixture("fixture-noop-py"),
        ]),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Options::default()
    })
}

fn created(answer: &Answer) -> &Value {
    assert!(
        answer.status == 201 || answer.status == 200,
        "expected success, got {}: {}",
        answer.status,
        answer.text
    );
    &answer.json
}

/// An auth config of `scheme` for `app` and one account with `credentials`.
fn account(
    server: &Server,
    app: &str,
    scheme: Value,
    credentials: Value,
    metadata: Value,
) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": app, "scheme": scheme }),
    );
    let config_id = created(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "metadata": metadata, "credentials": credentials }),
    );
    created(&account)["connectedAccountId"]
        .as_str()
        .expect("account id")
        .to_owned()
}

fn execute(server: &Server, action: &str, account: &str, input: Value) -> Answer {
    server.post(
        &format!("/api/v2/actions/{action}/execute"),
        &json!({ "connectedAccountId": account, "input": input }),
    )
}

#[test]
fn slack_message_posts_with_the_injected_token_and_maps_slack_errors() {
    let providers = Providers::start();
    let server = start(&[]);
    let slack = account(
        &server,
        "slack-message",
        json!({ "type": "bearer" }),
        json!({ "token": TOKEN }),
        json!({ "base_url": providers.base_url }),
    );
    let blocks =
        json!([{ "type": "section", "text": { "type": "mrkdwn", "text": "*Deploy* finished" } }]);
    let posted = execute(
        &server,
        "slack_post_message",
        &slack,
        json!({ "channel": SLACK_CHANNELS[0], "text": "Deploy finished", "blocks": blocks }),
    );
    assert_eq!(posted.json["successful"], true, "{}", posted.text);
    assert_eq!(posted.json["data"]["ok"], true, "{}", posted.text);
    assert_eq!(posted.json["data"]["channel"], SLACK_CHANNELS[0]);
    assert_eq!(posted.json["data"]["ts"], "1700000000.000100");

    let sent = providers.requests();
    let request = sent.last().expect("slack got the request");
    assert_eq!(request.path, "/api/chat.postMessage");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str()),
        "the host injected the account's token"
    );
    assert!(
        request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        request.headers
    );
    let body = request.json();
    assert_eq!(body["channel"], SLACK_CHANNELS[0]);
    assert_eq!(body["text"], "Deploy finished");
    assert_eq!(body["blocks"], blocks);

    // Slack's `{"ok": false}` codes, each to its variant.
    let missing = execute(
        &server,
        "slack_post_message",
        &slack,
        json!({ "channel": "C0NOSUCH", "text": "hi" }),
    );
    assert_eq!(missing.json["successful"], false, "{}", missing.text);
    assert_eq!(
        missing.json["errorCode"], "invalid_input",
        "{}",
        missing.text
    );
    assert!(
        missing.text.contains("channel_not_found"),
        "{}",
        missing.text
    );
    assert_eq!(missing.json["retryable"], false);

    providers.fail_next(providers::Fault::RateLimited {
        retry_after_secs: 3,
    });
    let limited = execute(
        &server,
        "slack_post_message",
        &slack,
        json!({ "channel": SLACK_CHANNELS[0], "text": "hi" }),
    );
    assert_eq!(
        limited.json["errorCode"], "rate_limited",
        "{}",
        limited.text
    );
    assert_eq!(limited.json["retryAfterMs"], 3000, "{}", limited.text);

    providers.fail_next(providers::Fault::Unavailable);
    let down = execute(
        &server,
        "slack_post_message",
        &slack,
        json!({ "channel": SLACK_CHANNELS[0], "text": "hi" }),
    );
    assert_eq!(down.json["errorCode"], "transient", "{}", down.text);
    assert_eq!(down.json["retryable"], true);

    // The schema and `validate` refuse before any request.
    let before = providers.requests().len();
    let blank = execute(
        &server,
        "slack_post_message",
        &slack,
        json!({ "channel": SLACK_CHANNELS[0], "text": "   " }),
    );
    assert_eq!(blank.status, 422, "{}", blank.text);
    assert!(blank.text.contains("/text"), "{}", blank.text);
    assert_eq!(providers.requests().len(), before, "nothing was sent");

    // A token Slack does not know: `invalid_auth` → unauthorized, and the
    // account is marked expired.
    let stale = account(
        &server,
        "slack-message",
        json!({ "type": "bearer" }),
        json!({ "token": "xoxb-revoked-0000" }),
        json!({ "base_url": providers.base_url }),
    );
    let refused = execute(
        &server,
        "slack_post_message",
        &stale,
        json!({ "channel": SLACK_CHANNELS[0], "text": "hi" }),
    );
    assert_eq!(
        refused.json["errorCode"], "unauthorized",
        "{}",
        refused.text
    );
    assert!(refused.text.contains("invalid_auth"), "{}", refused.text);
    assert!(
        !refused.text.contains("xoxb-revoked-0000"),
        "{}",
        refused.text
    );
    server.assert_no_leak(&[TOKEN, "xoxb-revoked-0000"]);
}

#[test]
fn webhook_post_signs_with_a_secret_the_plugin_never_sees() {
    let providers = Providers::start();
    let server = start(&[]);
    let signing = account(
        &server,
        "webhook-post",
        json!({ "type": "signing_secret" }),
        json!({ "secret": WEBHOOK_SECRET }),
        json!({}),
    );
    let url = format!("{}/hooks/orders", providers.base_url);
    let payload = json!({ "order": 1042, "total": "19.90", "note": "ünïcødé" });
    let posted = execute(
        &server,
        "webhook_post",
        &signing,
        json!({ "url": url, "event": "order.paid", "payload": payload }),
    );
    assert_eq!(posted.json["successful"], true, "{}", posted.text);
    assert_eq!(posted.json["data"]["status"], 204, "{}", posted.text);

    // The receiver verified the signature (it answers 401 otherwise); check
    // the request as it arrived too.
    let received = providers.requests();
    let request = received.last().expect("the receiver got the webhook");
    assert_eq!(request.path, "/hooks/orders");
    let body = request.json();
    assert_eq!(body["event"], "order.paid");
    assert_eq!(body["payload"], payload);
    let signature = request.header("x-webhook-signature").expect("signed");
    assert!(
        signature.starts_with("t=") && signature.contains(",v1="),
        "{signature}"
    );
    assert!(
        request
            .header("idempotency-key")
            .is_some_and(|k| !k.is_empty())
    );
    assert!(
        request.header("authorization").is_none(),
        "a signing secret is never sent: {:?}",
        request.headers
    );

    // The wrong secret: the receiver refuses; permanent (the URL is a param,
    // so one receiver's refusal does not expire the account).
    let wrong = account(
        &server,
        "webhook-post",
        json!({ "type": "signing_secret" }),
        json!({ "secret": "whsec-not-the-right-one-0000" }),
        json!({}),
    );
    let refused = execute(
        &server,
        "webhook_post",
        &wrong,
        json!({ "url": url, "payload": {} }),
    );
    assert_eq!(refused.json["errorCode"], "permanent", "{}", refused.text);
    assert!(refused.text.contains("401"), "{}", refused.text);
    let still = server.get(&format!("/api/v1/connectedAccounts/{wrong}"));
    assert_eq!(still.json["status"], "active", "{}", still.text);

    // A receiver's 5xx and 429 are left to the host's retries.
    providers.fail_next(providers::Fault::Unavailable);
    let down = execute(
        &server,
        "webhook_post",
        &signing,
        json!({ "url": url, "payload": {} }),
    );
    assert_eq!(down.json["errorCode"], "transient", "{}", down.text);
    providers.fail_next(providers::Fault::RateLimited {
        retry_after_secs: 9,
    });
    let limited = execute(
        &server,
        "webhook_post",
        &signing,
        json!({ "url": url, "payload": {} }),
    );
    assert_eq!(
        limited.json["errorCode"], "rate_limited",
        "{}",
        limited.text
    );
    assert_eq!(limited.json["retryAfterMs"], 9000, "{}", limited.text);
    let gone = execute(
        &server,
        "webhook_post",
        &signing,
        json!({ "url": format!("{}/hooks/status/410", providers.base_url), "payload": {} }),
    );
    assert_eq!(gone.json["errorCode"], "permanent", "{}", gone.text);

    // An account without a signing secret cannot sign.
    let bearer = account(
        &server,
        "webhook-post",
        json!({ "type": "bearer" }),
        json!({ "token": TOKEN }),
        json!({}),
    );
    let unsigned = execute(
        &server,
        "webhook_post",
        &bearer,
        json!({ "url": url, "payload": {} }),
    );
    assert_eq!(unsigned.json["errorCode"], "permanent", "{}", unsigned.text);
    assert!(
        unsigned.text.contains("signing_secret"),
        "{}",
        unsigned.text
    );

    // A URL that is not http(s) is refused by `validate`.
    let bad = execute(
        &server,
        "webhook_post",
        &signing,
        json!({ "url": "ftp://example.com/x", "payload": {} }),
    );
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("/url"), "{}", bad.text);
    server.assert_no_leak(&[WEBHOOK_SECRET, "whsec-not-the-right-one-0000"]);
}

/// Runs `op` of the fixture for `account` and returns the output.
fn remember(server: &Server, action: &str, account: &str, op: &str, mark: &str) -> Answer {
    execute(server, action, account, json!({ "op": op, "mark": mark }))
}

fn marks(answer: &Answer) -> (u64, Vec<String>) {
    assert_eq!(answer.json["successful"], true, "{}", answer.text);
    let data = &answer.json["data"];
    let calls = data["calls"].as_u64().expect("calls");
    let marks = data["marks"]
        .as_array()
        .expect("marks")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    (calls, marks)
}

/// Reuse happens for one account, never across accounts, and a trap or the
/// end of `max-calls` drops the instance.
fn check_reuse(action: &str, app: &str) {
    let metrics = format!("127.0.0.1:{}", actionhost_tests::server::free_port());
    let server = start(&[
        ("ACTIONHOST_REUSE__MAX_CALLS", "4"),
        ("ACTIONHOST_METRICS__LISTEN", &metrics),
    ]);
    let bearer = |token: &str| {
        account(
            &server,
            app,
            json!({ "type": "bearer" }),
            json!({ "token": token }),
            json!({}),
        )
    };
    let alice = bearer("token-alice-1111");
    let bob = bearer("token-bob-2222");

    let first = marks(&remember(
        &server,
        action,
        &alice,
        "remember",
        "alice-secret-1",
    ));
    assert_eq!(first, (1, vec!["alice-secret-1".to_owned()]));
    let second = marks(&remember(
        &server,
        action,
        &alice,
        "remember",
        "alice-secret-2",
    ));
    assert_eq!(
        second,
        (
            2,
            vec!["alice-secret-1".to_owned(), "alice-secret-2".to_owned()]
        ),
        "the same account reuses its instance (its globals survive)"
    );

    // Bob never sees Alice's instance, even right after her calls.
    for round in 1..=3u64 {
        let seen = marks(&remember(
            &server,
            action,
            &bob,
            "remember",
            &format!("bob-{round}"),
        ));
        assert!(
            seen.1.iter().all(|mark| !mark.starts_with("alice")),
            "bob's execution saw alice's data: {seen:?}"
        );
        assert_eq!(seen.0, round, "bob has his own instance: {seen:?}");
    }
    // Credentials given inline never share the named account's instance.
    let mixed = server.post(
        &format!("/api/v2/actions/{action}/execute"),
        &json!({
            "connectedAccountId": alice,
            "input": { "op": "remember", "mark": "inline-with-alice" },
            "authConfig": { "credentials": { "type": "bearer", "token": "token-inline-3333" } },
        }),
    );
    let seen = marks(&mixed);
    assert_eq!(
        seen,
        (1, vec!["inline-with-alice".to_owned()]),
        "{}",
        mixed.text
    );

    // An execution without a connected account (here: credentials inline
    // in the request) never reuses an instance.
    for _ in 0..2 {
        let anonymous = server.post(
            &format!("/api/v2/actions/{action}/execute"),
            &json!({
                "input": { "op": "remember", "mark": "nobody" },
                "authConfig": { "credentials": { "type": "bearer", "token": "token-inline-3333" } },
            }),
        );
        let seen = marks(&anonymous);
        assert_eq!(
            seen,
            (1, vec!["nobody".to_owned()]),
            "a fresh instance each time"
        );
    }

    // A trap drops the instance: the next call starts afresh.
    let trapped = remember(&server, action, &alice, "trap", "alice-secret-3");
    assert_eq!(trapped.json["successful"], false, "{}", trapped.text);
    let after_trap = marks(&remember(&server, action, &alice, "remember", "alice-4"));
    assert_eq!(
        after_trap,
        (1, vec!["alice-4".to_owned()]),
        "a trapped instance is never reused"
    );

    // `max-calls` (capped at 4 by the operator): retired after the 4th call.
    let mut counts = vec![after_trap.0];
    for n in 5..=9 {
        counts.push(
            marks(&remember(
                &server,
                action,
                &alice,
                "remember",
                &format!("alice-{n}"),
            ))
            .0,
        );
    }
    assert_eq!(counts, vec![1, 2, 3, 4, 1, 2], "retired after 4 calls");

    // The counters: 8 executions ran on a reused instance (alice's second,
    // bob's second and third, the trap, alice's 5th to 7th and 9th), one
    // instance retired; in the plugin's listing and in the metrics.
    let plugins = server.get("/v1/plugins");
    let listed = plugins.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == app)
        .unwrap_or_else(|| panic!("{app} is not listed: {}", plugins.text));
    assert_eq!(listed["reuse"]["reused"], 8, "{listed}");
    assert_eq!(listed["reuse"]["retired"], 1, "{listed}");
    let text = reqwest::blocking::get(format!("http://{metrics}/metrics"))
        .and_then(reqwest::blocking::Response::text)
        .expect("GET /metrics");
    let counter = |event: &str| -> Option<String> {
        text.lines()
            .find(|line| {
                line.starts_with("actionhost_instances_total{")
                    && line.contains(&format!("plugin=\"{app}\""))
                    && line.contains(&format!("event=\"{event}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(counter("reused").as_deref(), Some("8"), "{text}");
    assert_eq!(counter("retired").as_deref(), Some("1"), "{text}");
    server.assert_no_leak(&["token-alice-1111", "token-bob-2222", "token-inline-3333"]);
}

#[test]
fn javascript_instances_are_reused_per_account_only() {
    check_reuse("noop_js", "fixture-noop-js");
}

#[test]
fn python_instances_are_reused_per_account_only() {
    check_reuse("noop_py", "fixture-noop-py");
}
