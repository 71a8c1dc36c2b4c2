//! The three bundled plugins, each run by the real `actionhost exec` binary
//! against a real local peer.

use actionhost_tests::exec::{ExecResult, exec, exec_with};
use actionhost_tests::faulty::{SmtpFault, faulty_smtp};
use actionhost_tests::providers::{Fault, Providers, TOKEN};
use actionhost_tests::smtp::SmtpSink;
use mail_parser::MessageParser;
use serde_json::{Value, json};

fn smtp_account(sink: &SmtpSink) -> Value {
    json!({
        "id": "acc_smtp",
        "app_name": "smtp",
        "metadata": { "provider": "smtp", "from": "Ada Lovelace <ada@example.com>" },
        "credentials": { "type": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none" }
    })
}

fn bearer_account(app: &str, metadata: Value) -> Value {
    json!({
        "id": format!("acc_{app}"),
        "app_name": app,
        "metadata": metadata,
        "credentials": { "type": "bearer", "token": TOKEN }
    })
}

/// The first address of an address header, if any.
fn first_address<'a>(header: Option<&'a mail_parser::Address<'a>>) -> Option<&'a str> {
    header.and_then(|a| a.first()).and_then(|a| a.address())
}

fn assert_success(result: &ExecResult) {
    assert_eq!(
        result.code, 0,
        "exec failed: {}\nstderr:\n{}",
        result.json, result.stderr
    );
    assert_eq!(result.json["successful"], true, "{}", result.json);
}

fn assert_failure(result: &ExecResult, code: &str) {
    assert_eq!(
        result.code, 1,
        "expected an action failure: {}\nstderr:\n{}",
        result.json, result.stderr
    );
    assert_eq!(result.json["successful"], false);
    assert_eq!(result.error_code(), code, "{}", result.json);
}

#[test]
fn send_email_over_smtp_delivers_a_proper_mime_message() {
    let sink = SmtpSink::start();
    let params = json!({
        "to": ["Grace Hopper <grace@example.org>", "alan@example.org"],
        "cc": ["charles@example.org"],
        "bcc": ["hidden@example.org"],
        "reply_to": "replies@example.com",
        "subject": "Données prêtes — résumé",
        "body": "Hello Grace,\nthe numbers are in.",
        "html": "<p>Hello <b>Grace</b>, the numbers are in.</p>"
    });
    let result = exec("send_email", &params, &smtp_account(&sink));
    assert_success(&result);
    assert_eq!(result.json["data"]["provider"], "smtp");

    let received = sink.received();
    assert_eq!(received.len(), 1, "one message delivered");
    let message = &received[0];
    assert_eq!(message.mail_from, "ada@example.com");
    let mut rcpt = message.rcpt_tos.clone();
    rcpt.sort();
    assert_eq!(
        rcpt,
        [
            "alan@example.org",
            "charles@example.org",
            "grace@example.org",
            "hidden@example.org"
        ]
    );

    let parsed = MessageParser::default()
        .parse(&message.raw)
        .expect("a parseable message");
    assert_eq!(parsed.subject(), Some("Données prêtes — résumé"));
    let from = parsed.from().and_then(|a| a.first()).expect("from");
    assert_eq!(
        (from.name(), from.address()),
        (Some("Ada Lovelace"), Some("ada@example.com"))
    );
    let to: Vec<_> = parsed
        .to()
        .expect("to")
        .iter()
        .filter_map(|a| a.address())
        .collect();
    assert_eq!(to, ["grace@example.org", "alan@example.org"]);
    assert_eq!(first_address(parsed.cc()), Some("charles@example.org"));
    assert_eq!(
        first_address(parsed.reply_to()),
        Some("replies@example.com")
    );
    assert!(
        parsed.bcc().is_none(),
        "a Bcc header must not travel over SMTP"
    );
    let text = parsed
        .body_text(0)
        .expect("text part")
        .replace("\r\n", "\n");
    assert_eq!(
        text.trim_end(),
        "Hello Grace,\nthe numbers are in.",
        "CRLF on the wire, same text"
    );
    assert!(
        parsed
            .body_html(0)
            .expect("html part")
            .contains("<b>Grace</b>")
    );
    let raw = String::from_utf8_lossy(&message.raw);
    assert!(
        raw.contains("multipart/alternative"),
        "text and html as alternatives:\n{raw}"
    );
    assert!(
        !raw.contains("Données"),
        "non-ASCII subject must be RFC 2047 encoded"
    );
    let message_id = parsed.message_id().expect("message id");
    assert_eq!(result.json["data"]["message_id"], message_id);
}

#[test]
fn smtp_rejections_map_to_permanent_and_transient() {
    let sink = SmtpSink::start();
    let account = smtp_account(&sink);
    let params = |to: &str| json!({ "to": to, "subject": "s", "body": "b" });
    assert_failure(
        &exec("send_email", &params("reject@example.org"), &account),
        "permanent",
    );
    assert_failure(
        &exec("send_email", &params("busy@example.org"), &account),
        "transient",
    );
    assert!(sink.received().is_empty());
}

#[test]
fn smtp_unreachable_server_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let account = json!({
        "id": "acc_down", "app_name": "smtp",
        "metadata": { "provider": "smtp", "from": "ada@example.com" },
        "credentials": { "type": "smtp", "host": "127.0.0.1", "port": port, "tls": "none" }
    });
    let result = exec(
        "send_email",
        &json!({ "to": "grace@example.org", "subject": "s", "body": "b" }),
        &account,
    );
    assert_failure(&result, "transient");
}

#[test]
fn send_email_through_gmail_posts_a_base64url_raw_message() {
    let providers = Providers::start();
    let account = bearer_account(
        "gmail",
        json!({ "provider": "gmail", "from": "ada@example.com", "base_url": providers.base_url }),
    );
    let params = json!({ "to": "grace@example.org", "bcc": ["boss@example.org"], "subject": "Hi", "body": "Plain" });
    let result = exec("send_email", &params, &account);
    assert_success(&result);
    assert_eq!(result.json["data"]["gmail_id"], "18c2f0a9d1e4b7a1");

    let requests = providers.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/gmail/v1/users/me/messages/send")
    );
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str()),
        "token injected by the host"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(request.json()["raw"].as_str().expect("raw"))
        .expect("base64url without padding");
    let parsed = MessageParser::default().parse(&raw).expect("message");
    assert_eq!(parsed.subject(), Some("Hi"));
    assert_eq!(
        first_address(parsed.bcc()),
        Some("boss@example.org"),
        "gmail reads Bcc from the raw message"
    );
}

/// 401, 429 with Retry-After and 503, each mapped to its error variant.
fn check_provider_faults(action_type: &str, params: &Value, account: impl Fn(&Providers) -> Value) {
    let providers = Providers::start();
    let account = account(&providers);
    providers.fail_next(Fault::Unauthorized);
    assert_failure(&exec(action_type, params, &account), "unauthorized");

    providers.fail_next(Fault::RateLimited {
        retry_after_secs: 7,
    });
    let limited = exec(action_type, params, &account);
    assert_failure(&limited, "rate_limited");
    assert_eq!(limited.json["retry_after_ms"], 7000, "{}", limited.json);
    assert_eq!(limited.json["retryable"], true);

    providers.fail_next(Fault::Unavailable);
    let unavailable = exec(action_type, params, &account);
    assert_failure(&unavailable, "transient");
    assert_eq!(unavailable.json["retryable"], true);

    assert_eq!(providers.requests().len(), 3, "one request per attempt");
    let good = exec(action_type, params, &account);
    assert_success(&good);
}

#[test]
fn gmail_faults_map_to_error_variants() {
    check_provider_faults(
        "send_email",
        &json!({ "to": "grace@example.org", "subject": "s", "body": "b" }),
        |p| {
            bearer_account(
                "gmail",
                json!({ "provider": "gmail", "from": "ada@example.com", "base_url": p.base_url }),
            )
        },
    );
}

#[test]
fn linkedin_message_uses_the_versioned_rest_endpoint() {
    let providers = Providers::start();
    let account = bearer_account(
        "linkedin",
        json!({ "base_url": providers.base_url, "linkedin_version": "202411" }),
    );
    let params = json!({ "recipients": ["urn:li:person:AbC123_-x"], "subject": "Intro", "body": "Hi Grace, good to meet you." });
    let result = exec("linkedin_message", &params, &account);
    assert_success(&result);
    assert_eq!(
        result.json["data"]["message_id"],
        "urn:li:message:2-MTcwMDAwMDAwMA"
    );

    let request = &providers.requests()[0];
    assert_eq!(request.path, "/rest/messages");
    assert_eq!(request.header("linkedin-version"), Some("202411"));
    assert_eq!(request.header("x-restli-protocol-version"), Some("2.0.0"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        request.json(),
        json!({ "recipients": ["urn:li:person:AbC123_-x"], "subject": "Intro", "body": "Hi Grace, good to meet you.", "messageType": "MEMBER_TO_MEMBER" })
    );
}

#[test]
fn linkedin_refuses_bad_urns_and_html_before_any_request() {
    let providers = Providers::start();
    let account = bearer_account("linkedin", json!({ "base_url": providers.base_url }));
    let result = exec(
        "linkedin_message",
        &json!({ "recipients": ["ada@example.com"], "body": "<b>hi</b>" }),
        &account,
    );
    assert_failure(&result, "invalid_input");
    let error = result.json["error"].as_str().expect("message");
    assert!(
        error.contains("/recipients/0") && error.contains("not a member URN"),
        "{error}"
    );
    assert!(
        error.contains("/body") && error.contains("plain text"),
        "{error}"
    );
    assert!(
        providers.requests().is_empty(),
        "invalid params never reach the provider"
    );
}

#[test]
fn linkedin_manifest_demands_approval() {
    let inspect = actionhost_tests::exec::run(&[
        "plugin",
        "inspect",
        actionhost_tests::plugin("linkedin-message")
            .to_str()
            .expect("path"),
    ]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let action = &inspect.json["manifest"]["action_types"][0];
    assert_eq!(action["name"], "linkedin_message");
    assert_eq!(action["requires_approval"], true);
    assert_eq!(
        action["params_schema"]["required"],
        json!(["recipients", "body"])
    );
}

#[test]
fn linkedin_faults_map_to_error_variants() {
    check_provider_faults(
        "linkedin_message",
        &json!({ "recipients": ["urn:li:person:x1"], "body": "hello" }),
        |p| bearer_account("linkedin", json!({ "base_url": p.base_url })),
    );
}

#[test]
fn crm_sync_reports_created_and_updated_contacts() {
    let providers = Providers::start();
    providers.seed_hubspot_contact("known@example.com");
    let account = bearer_account("hubspot", json!({ "base_url": providers.base_url }));
    let params = json!({ "contacts": [
        { "email": "new@example.com", "properties": { "firstname": "Ada", "lifecyclestage": "lead", "score": 42 } },
        { "email": "known@example.com", "properties": { "company": "Analytical Engines" } }
    ]});
    let result = exec("crm_sync", &params, &account);
    assert_success(&result);
    let data = &result.json["data"];
    assert_eq!(data["created"].as_array().map(Vec::len), Some(1));
    assert_eq!(data["created"][0]["email"], "new@example.com");
    assert_eq!(data["updated"][0]["email"], "known@example.com");

    let request = &providers.requests()[0];
    assert_eq!(request.path, "/crm/v3/objects/contacts/batch/upsert");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let first = &request.json()["inputs"][0];
    assert_eq!(first["idProperty"], "email");
    assert_eq!(first["id"], "new@example.com");
    assert_eq!(
        first["properties"],
        json!({ "email": "new@example.com", "firstname": "Ada", "lifecyclestage": "lead", "score": "42" })
    );
}

#[test]
fn crm_sync_faults_map_to_error_variants() {
    check_provider_faults(
        "crm_sync",
        &json!({ "contacts": [{ "email": "a@example.com" }] }),
        |p| bearer_account("hubspot", json!({ "base_url": p.base_url })),
    );
}

#[test]
fn schema_violations_name_each_failing_path() {
    let providers = Providers::start();
    let account = bearer_account("hubspot", json!({ "base_url": providers.base_url }));
    let result = exec(
        "crm_sync",
        &json!({ "contacts": [{ "emial": "typo@example.com" }] }),
        &account,
    );
    assert_failure(&result, "invalid_input");
    let error = result.json["error"].as_str().expect("message");
    assert!(error.contains("/contacts/0"), "{error}");
    assert!(providers.requests().is_empty());
}

#[test]
fn bad_usage_exits_with_2_and_says_what_to_fix() {
    let unknown = exec_with(&["--type", "fax_send", "--params", "{}"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("unknown action type \"fax_send\"")
            && unknown.stderr.contains("send_email"),
        "{}",
        unknown.stderr
    );

    let malformed = exec_with(&["--type", "send_email", "--params", "{not json"]);
    assert_eq!(malformed.code, 2);
    assert!(
        malformed.stderr.contains("--params is not valid JSON"),
        "{}",
        malformed.stderr
    );

    let missing = exec_with(&[
        "--type",
        "send_email",
        "--params",
        "{}",
        "--account",
        "/nonexistent/account.json",
    ]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("cannot read account file"),
        "{}",
        missing.stderr
    );

    let params = json!({ "contacts": [{ "email": "a@example.com" }] });
    let typo_account =
        json!({ "id": "acc_typo", "app_name": "hubspot", "credentails": { "type": "none" } });
    let typo = exec("crm_sync", &params, &typo_account);
    assert_eq!(typo.code, 2, "{}", typo.stderr);
    assert!(
        typo.stderr.contains("unknown field `credentails`"),
        "{}",
        typo.stderr
    );
}

#[test]
fn secrets_never_appear_in_output_or_logs() {
    let providers = Providers::start();
    providers.fail_next(Fault::Unauthorized);
    let account = bearer_account("hubspot", json!({ "base_url": providers.base_url }));
    let result = exec(
        "crm_sync",
        &json!({ "contacts": [{ "email": "a@example.com" }] }),
        &account,
    );
    assert_failure(&result, "unauthorized");
    assert!(!result.json.to_string().contains(TOKEN));
    assert!(!result.stderr.contains(TOKEN), "{}", result.stderr);
}

#[test]
fn misbehaving_smtp_peers_end_in_the_right_error_within_the_deadline() {
    let email = json!({ "to": "grace@example.org", "subject": "s", "body": "b" });
    let run = |fault: SmtpFault| -> (ExecResult, std::time::Duration) {
        let port = faulty_smtp(fault);
        let dir = tempfile::tempdir().expect("temp dir");
        let account_path = dir.path().join("account.json");
        let account = json!({
            "id": "acc_faulty", "app_name": "smtp",
            "metadata": { "provider": "smtp", "from": "ada@example.com" },
            "credentials": { "type": "smtp", "host": "127.0.0.1", "port": port, "tls": "none" }
        });
        std::fs::write(&account_path, account.to_string()).expect("write account");
        let started = std::time::Instant::now();
        let result = exec_with(&[
            "--type",
            "send_email",
            "--params",
            &email.to_string(),
            "--account",
            account_path.to_str().expect("utf-8"),
            "--allow-private-network",
            "--deadline",
            "3s",
        ]);
        (result, started.elapsed())
    };

    // A peer that never answers: the deadline ends the call, not the peer.
    let (hang, elapsed) = run(SmtpFault::Hang);
    assert_ne!(hang.code, 0, "{}", hang.stderr);
    assert_eq!(
        hang.error_code(),
        "deadline_exceeded",
        "{}\n{}",
        hang.json,
        hang.stderr
    );
    assert!(
        elapsed < std::time::Duration::from_secs(20),
        "a hanging peer held the call for {elapsed:?}"
    );

    // Not SMTP at all, or a dropped connection: a failure that may pass later.
    let (garbage, _) = run(SmtpFault::Garbage);
    assert_failure(&garbage, "transient");
    let (reset, _) = run(SmtpFault::ResetAfterGreeting);
    assert_failure(&reset, "transient");

    // Slow but within the deadline: delivered.
    let (slow, _) = run(SmtpFault::Slow(std::time::Duration::from_millis(100)));
    assert_success(&slow);
}
