//! The console at `/console`, in a real browser and over HTTP: sign-in
//! exchanges a key for an HttpOnly session cookie, changes need the CSRF
//! token, sessions end at sign-out, expiry and revocation, the page's
//! Content-Security-Policy, and a reviewer's inbox driven by Playwright
//! with Debian's Chromium (`tests/browser/console.py`); then an operator's
//! round of the other pages: edit then approve from the schema form, an
//! agent's run, a contact's timeline, a plugin upload checked by its
//! SHA-256, a key minted and revoked, an account connected through the
//! OAuth2 redirect (`tests/browser/console_manage.py`).

use actionhost_tests::models::{MODEL_KEY, Models, Reply};
use actionhost_tests::providers::{Providers, oauth_config};
use actionhost_tests::server::{Options, Server};
use actionhost_tests::smtp::SmtpSink;
use actionhost_tests::{fixture, plugin};
use serde_json::{Value, json};
use sha2::Digest as _;

const MARKUP: &str =
    "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2;alert(1)\">";

fn create_pending(server: &Server, params: Value) -> String {
    let answer = server.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": params, "identity_id": "ada", "require_approval": true }),
    );
    assert!(answer.status < 300, "{}", answer.text);
    answer.json["action_id"].as_str().expect("id").to_owned()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Signs in with `key`: the session cookie's secret and the CSRF token.
fn sign_in(server: &Server, key: &str) -> (String, String) {
    let answer = client()
        .post(format!("{}/console/session", server.url))
        .json(&json!({ "api_key": key }))
        .send()
        .expect("sign in");
    assert_eq!(answer.status(), 201);
    let cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let body: Value = answer.json().expect("JSON");
    assert!(
        !body.to_string().contains(key),
        "the key comes back: {body}"
    );
    let secret = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("actionhost_session="))
        .expect("the cookie's value")
        .to_owned();
    (
        secret,
        body["csrf_token"].as_str().expect("csrf").to_owned(),
    )
}

fn with_session(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    secret: &str,
    csrf: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, format!("{}{path}", server.url))
        .header("cookie", format!("actionhost_session={secret}"));
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let answer = request.send().expect("request");
    let status = answer.status().as_u16();
    (status, answer.json().unwrap_or(Value::Null))
}

#[test]
fn sessions_stand_in_for_keys_only_with_their_csrf_token_and_end_when_they_should() {
    let server = Server::start_with(Options {
        env: vec![("ACTIONHOST_CONSOLE__SESSION_TTL".into(), "3s".into())],
        ..Options::default()
    });
    // The page and its policy.
    let page = client()
        .get(format!("{}/console", server.url))
        .send()
        .expect("page");
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a CSP")
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = page.text().expect("html");
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "inline code: {html}"
    );

    // Bad sign-ins.
    for (body, status) in [
        (json!({ "api_key": "ahk_not_a_key" }), 401),
        (json!({ "key": "x" }), 422),
    ] {
        let answer = client()
            .post(format!("{}/console/session", server.url))
            .json(&body)
            .send()
            .expect("sign in");
        assert_eq!(answer.status().as_u16(), status, "{body}");
    }

    let action = create_pending(&server, json!({}));
    let (secret, csrf) = sign_in(&server, &server.admin_key);
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let path = format!("/v1/actions/{action}/approve");
    let approve = json!({ "action": "approve" });
    assert_eq!(
        with_session(&server, get.clone(), "/v1/actions", &secret, None, None).0,
        200
    );
    // A change without the token, or with another, is refused; with it, made.
    let (status, body) = with_session(&server, post.clone(), &path, &secret, None, Some(&approve));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("X-CSRF-Token"),
        "{body}"
    );
    let (status, _) = with_session(
        &server,
        post.clone(),
        &path,
        &secret,
        Some("0000"),
        Some(&approve),
    );
    assert_eq!(status, 403);
    let (status, body) = with_session(
        &server,
        post.clone(),
        &path,
        &secret,
        Some(&csrf),
        Some(&approve),
    );
    assert_eq!(status, 200, "{body}");
    // A session never holds more than its key: a key without
    // actions:approve signs in and is refused the approval.
    let minted = server.post(
        "/v1/api-keys",
        &json!({ "name": "reader", "scopes": ["actions:read"] }),
    );
    assert_eq!(minted.status, 201, "{}", minted.text);
    let reader_key = minted.json["key"].as_str().expect("key").to_owned();
    let reader_id = minted.json["api_key"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let other = create_pending(&server, json!({}));
    let (reader, reader_csrf) = sign_in(&server, &reader_key);
    let (status, body) = with_session(
        &server,
        post.clone(),
        &format!("/v1/actions/{other}/approve"),
        &reader,
        Some(&reader_csrf),
        Some(&approve),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("actions:approve"),
        "{body}"
    );
    // Revoking the key ends its sessions.
    let revoked = server.call(
        "DELETE",
        &format!("/v1/api-keys/{reader_id}"),
        Some(&server.admin_key),
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(
        with_session(&server, get.clone(), "/v1/actions", &reader, None, None).0,
        401
    );

    // No cookie, a made-up one: 401.
    assert_eq!(
        client()
            .get(format!("{}/console/session", server.url))
            .send()
            .expect("get")
            .status(),
        401
    );
    assert_eq!(
        with_session(
            &server,
            get.clone(),
            "/console/session",
            "ahs_made_up",
            None,
            None
        )
        .0,
        401
    );

    // Sign-out needs the token, then ends the session on the server.
    let delete = reqwest::Method::DELETE;
    assert_eq!(
        with_session(
            &server,
            delete.clone(),
            "/console/session",
            &secret,
            None,
            None
        )
        .0,
        403
    );
    assert_eq!(
        with_session(
            &server,
            delete,
            "/console/session",
            &secret,
            Some(&csrf),
            None
        )
        .0,
        204
    );
    assert_eq!(
        with_session(&server, get.clone(), "/v1/actions", &secret, None, None).0,
        401
    );

    // Sessions expire (3 s here).
    let (late, _) = sign_in(&server, &server.admin_key);
    assert_eq!(
        with_session(&server, get.clone(), "/console/session", &late, None, None).0,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let (status, body) = with_session(&server, get, "/v1/actions", &late, None, None);
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sign in again"),
        "{body}"
    );

    // The store keeps hashes of session secrets, never the secrets; the
    // log names neither them nor the key.
    server.assert_not_stored(&[&secret, &late]);
    server.assert_no_leak(&[&secret, &late, &server.admin_key]);
}

#[test]
fn a_reviewer_works_through_the_inbox_in_a_real_browser() {
    let server = Server::start();
    let ids: Vec<String> = [
        json!({ "echo": "first" }),
        json!({ "echo": MARKUP }),
        json!({ "echo": "third" }),
        json!({ "echo": "fourth" }),
    ]
    .into_iter()
    .map(|params| create_pending(&server, params))
    .collect();
    let shots = actionhost_tests::workspace_root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let report = actionhost_tests::browser_script(
        "console.py",
        &[&server.url, &server.admin_key, &shots.display().to_string()],
    );

    // Newest first.
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(report["inbox"], json!(newest_first), "{report}");
    // The key is nowhere in the page, its storage or its URL; the cookie
    // is out of the page's reach.
    assert_eq!(report["storage"], "[{},{}]", "{report}");
    assert_eq!(report["document_cookie"], "", "{report}");
    assert_eq!(report["key_in_page"], false, "{report}");
    assert!(
        !report["url_after_sign_in"]
            .as_str()
            .unwrap_or_default()
            .contains(&server.admin_key)
    );
    let cookie = &report["cookie"];
    assert_eq!(cookie["httpOnly"], true, "{report}");
    assert_eq!(cookie["sameSite"], "Strict", "{report}");
    // Markup in the data is text: shown, never run.
    assert_eq!(report["markup_shown_as_text"], true, "{report}");
    assert_eq!(report["injected_images"], 0, "{report}");
    assert_eq!(report["pwned"], Value::Null, "{report}");
    assert_eq!(report["dialogs"], 0, "{report}");
    assert_eq!(
        report["errors"],
        json!([]),
        "CSP or script errors: {report}"
    );
    assert_eq!(report["phone_overflow"], false, "{report}");
    assert_eq!(report["detail_status"], "rejected", "{report}");
    assert_eq!(report["detail_has_comment"], true, "{report}");

    // What the browser did is what the API says.
    let status_of = |id: &str| -> Value {
        let answer = server.get(&format!("/v1/actions/{id}"));
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json["action"].clone()
    };
    let rejected = status_of(report["rejected"].as_str().expect("rejected"));
    assert_eq!(rejected["status"], "rejected");
    let history = rejected["history"].as_array().expect("history");
    assert_eq!(
        history.last().expect("last")["comment"],
        "Not this one <b>bold</b>"
    );
    let mut approved = vec![
        report["approved_by_keyboard"]
            .as_str()
            .expect("kbd")
            .to_owned(),
    ];
    approved.extend(
        report["approved_in_bulk"]
            .as_array()
            .expect("bulk")
            .iter()
            .map(|id| id.as_str().expect("id").to_owned()),
    );
    assert_eq!(approved.len(), 3);
    for id in &approved {
        let action = status_of(id);
        assert_ne!(action["status"], "pending_approval", "{action}");
        assert_ne!(action["status"], "rejected", "{action}");
        let approval = action["history"]
            .as_array()
            .expect("history")
            .iter()
            .find(|h| h["transition"] == "approve")
            .cloned()
            .unwrap_or_else(|| panic!("no approval in {action}"));
        assert!(approval["actor"]["key_id"].as_str().is_some(), "{approval}");
    }
    // Signing out in the browser ended the session on the server.
    let secret = cookie["value"].as_str().expect("cookie value");
    let answer = client()
        .get(format!("{}/v1/actions", server.url))
        .header("cookie", format!("actionhost_session={secret}"))
        .send()
        .expect("request");
    assert_eq!(answer.status(), 401);
    for shot in ["inbox-laptop.png", "actions-phone.png"] {
        let size = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}

/// An auth config and connected account that reach the model stand-in.
fn model_account(server: &Server, models: &Models) {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "anthropic", "scheme": {"type": "api_key", "header": "x-api-key"}, "hosts": [models.base_url] }),
    );
    assert!(config.status < 300, "{}", config.text);
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config.json["id"], "entityId": "models", "metadata": { "base_url": models.base_url }, "credentials": { "api_key": MODEL_KEY } }),
    );
    assert!(account.status < 300, "{}", account.text);
}

/// An identity that sends email through `sink`.
fn smtp_identity(server: &Server, sink: &SmtpSink) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "send-email", "scheme": { "type": "smtp", "host": "127.0.0.1", "port": sink.port } }),
    );
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config.json["id"], "entityId": "sales", "metadata": { "provider": "smtp", "from": "Sales <sales@example.com>" }, "credentials": { "tls": "none" } }),
    );
    let identity = server.post(
        "/v1/identities",
        &json!({ "name": "Sam Seller", "email": "sam@example.com", "accounts": { "email": account.json["connectedAccountId"] } }),
    );
    assert_eq!(identity.status, 201, "{}", identity.text);
    identity.json["identity"]["_id"]
        .as_str()
        .expect("identity")
        .to_owned()
}

/// An agent whose run proposed one email to each of `contacts`, waiting for
/// review.
fn finished_run(
    server: &Server,
    models: &Models,
    identity: &str,
    contacts: &[String],
) -> (String, String) {
    models.respond(|_| {
        Reply::Tool(json!({
            "reasoning": "Visited /pricing twice this week <img src=x onerror=\"alert(1)\">",
            "actions": [{ "type": "email_message", "params": { "subject": "Pricing", "message": "Hello Ada" } }],
        }))
    });
    let agent = server.post(
        "/v1/agents",
        &json!({
            "name": "Pricing follow-up",
            "playbook_template": "pricing_visitor_followup",
            "identity_id": identity,
            "llm_config": { "provider": "anthropic", "model": "test-model" },
        }),
    );
    assert_eq!(agent.status, 201, "{}", agent.text);
    let agent = agent.json["agent"]["_id"]
        .as_str()
        .expect("agent")
        .to_owned();
    let triggered = server.post(
        &format!("/v1/agents/{agent}/trigger"),
        &json!({ "contact_ids": contacts }),
    );
    assert!(triggered.status < 300, "{}", triggered.text);
    let run = triggered.json["job_id"].as_str().expect("run").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = server.get(&format!("/v1/agents/runs/{run}"));
        if answer.json["run"]["status"] == "completed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish: {}",
            answer.text
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (agent, run)
}

#[test]
fn an_operator_edits_approves_and_manages_plugins_keys_and_accounts_in_a_real_browser() {
    let models = Models::start();
    let sink = SmtpSink::start();
    let providers = Providers::start();
    let server = Server::start_with(Options {
        plugins: Some(vec![
            plugin("send-email"),
            plugin("anthropic"),
            plugin("crm-sync"),
            fixture("fixture-noop"),
        ]),
        ..Options::default()
    });
    model_account(&server, &models);
    let identity = smtp_identity(&server, &sink);
    let contact = server.post(
        "/v1/contacts",
        &json!({ "email": "ada@example.com", "properties": { "firstname": "Ada", "lastname": "Lovelace", "lifecyclestage": "lead" } }),
    );
    assert_eq!(contact.status, 201, "{}", contact.text);
    let contact = contact.json["contact"]["_id"]
        .as_str()
        .expect("contact")
        .to_owned();
    let mut contacts = vec![contact.clone()];
    for name in ["grace", "alan", "edsger", "barbara"] {
        // One name carries markup: the pages show it as text.
        let firstname = if name == "barbara" {
            format!("{MARKUP}Barbara")
        } else {
            name.to_owned()
        };
        let other = server.post(
            "/v1/contacts",
            &json!({ "email": format!("{name}@example.com"), "properties": { "firstname": firstname, "lifecyclestage": "lead" } }),
        );
        assert_eq!(other.status, 201, "{}", other.text);
        contacts.push(
            other.json["contact"]["_id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    // Each visited /pricing twice: what the playbook looks for.
    for id in &contacts {
        for _ in 0..2 {
            let event = server.post(
                "/v1/events",
                &json!({ "event": "pageview", "url": "https://example.com/pricing", "contact_id": id }),
            );
            assert!(event.status < 300, "{}", event.text);
        }
    }
    let (agent, run) = finished_run(&server, &models, &identity, &contacts);
    let ada_action = server.get(&format!("/v1/actions?contact_id={contact}"));
    let ada_action = ada_action.json["actions"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no proposal for ada: {}", ada_action.text))
        .to_owned();
    let auth_config = oauth_config(&server, &providers);
    let component = fixture("fixture-versioned");
    let sha256 = hex::encode(sha2::Sha256::digest(
        std::fs::read(&component).expect("component"),
    ));
    let setup = json!({
        "ada_action": ada_action, "agent": agent, "run": run, "contact": contact,
        "auth_config": auth_config, "component": component, "sha256": sha256,
        "plugin": "fixture-versioned@1.0.0",
    });
    let shots = actionhost_tests::workspace_root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let report = actionhost_tests::browser_script(
        "console_manage.py",
        &[
            &server.url,
            &server.admin_key,
            &shots.display().to_string(),
            &setup.to_string(),
        ],
    );
    assert_eq!(report["errors"], json!([]), "script errors: {report}");
    assert_eq!(
        report["nav"],
        json!([
            "Inbox", "Actions", "Agents", "Contacts", "Plugins", "Accounts", "Keys"
        ]),
        "{report}"
    );
    // The model's reasoning, markup included, as text.
    assert!(
        report["reasoning"]
            .as_str()
            .unwrap_or_default()
            .contains("onerror=\"alert(1)\""),
        "{report}"
    );
    // The edit, as a diff, kept across an expired session, then approved:
    // revision 2 with the new subject.
    let diff = report["edit_diff"].as_str().unwrap_or_default();
    assert!(diff.contains("-   \"subject\": \"Pricing\""), "{diff}");
    assert!(
        diff.contains("+   \"subject\": \"Pricing, edited\""),
        "{diff}"
    );
    assert_eq!(report["edit_kept"], "Pricing, edited", "{report}");
    assert_eq!(report["revision_diff"], report["edit_diff"], "{report}");
    let action = server.get(&format!("/v1/actions/{ada_action}"));
    let action = &action.json["action"];
    assert_eq!(action["revision"], 2, "{action}");
    assert_eq!(action["params"]["subject"], "Pricing, edited", "{action}");
    let edit = action["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|h| h["transition"] == "edit")
        .cloned()
        .unwrap_or_else(|| panic!("no edit in {action}"));
    assert_eq!(edit["comment"], "a better subject");
    assert!(
        report["execution_log"].is_string(),
        "no execution log shown: {report}"
    );
    // Five messages: Ada's with the edited subject, four from the run's
    // bulk approval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sink.received().len() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let received = sink.received();
    assert_eq!(received.len(), 5, "messages at the SMTP server");
    let edited: Vec<_> = received
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.raw).contains("Subject: Pricing, edited"))
        .collect();
    assert_eq!(edited.len(), 1, "one message with the edited subject");
    assert_eq!(edited[0].rcpt_tos, vec!["ada@example.com".to_owned()]);
    // The run: its counts and the contact's reasoning and proposal.
    let summary = report["run_summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("5 contacts evaluated") && summary.contains("5 actions proposed"),
        "{summary}"
    );
    assert!(
        report["run_page"]
            .as_str()
            .unwrap_or_default()
            .contains("Visited /pricing twice"),
        "{report}"
    );
    // The contact: found by search, its timeline with the pageviews; a
    // name with markup shown as text, nothing of it run.
    assert_eq!(report["contacts_found"], 1, "{report}");
    assert_eq!(report["contacts_all"], 5, "{report}");
    assert_eq!(report["contact_markup_as_text"], true, "{report}");
    assert_eq!(report["images_in_contacts"], 0, "{report}");
    assert_eq!(report["pwned"], Value::Null, "{report}");
    assert!(
        report["timeline"]
            .as_str()
            .unwrap_or_default()
            .contains("https://example.com/pricing"),
        "{report}"
    );
    // The upload: a wrong hash stopped at the page, the right one installed,
    // then disabled, enabled and removed.
    assert!(
        report["wrong_hash"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was uploaded"),
        "{report}"
    );
    assert_eq!(report["listed_after_wrong_hash"], 0, "{report}");
    assert_eq!(report["uploaded_state"], "active", "{report}");
    assert_eq!(report["phone_overflow_plugins"], false, "{report}");
    let plugins = server.get("/v1/plugins");
    assert!(
        !plugins.text.contains("fixture-versioned"),
        "removed, yet listed: {}",
        plugins.text
    );
    // The minted key: shown once, then revoked, which the API confirms.
    let minted = report["minted"].as_str().expect("minted key");
    assert!(minted.len() > 20, "{report}");
    assert_eq!(report["minted_in_page_after_done"], false, "{report}");
    let refused = server.call("GET", "/v1/actions", Some(minted), None);
    assert_eq!(refused.status, 401, "{}", refused.text);
    // The OAuth2 connection: back on the console, the account active.
    assert_eq!(report["account_status"], "active", "{report}");
    let accounts = server.get("/api/v1/connectedAccounts?entityId=console-user");
    assert_eq!(
        accounts.json["items"][0]["status"], "active",
        "{}",
        accounts.text
    );
    assert_eq!(
        report["confirms"], 2,
        "remove and revoke each asked: {report}"
    );
    for shot in ["edit-laptop.png", "action-laptop.png", "plugins-phone.png"] {
        let size = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}

#[test]
fn sign_in_attempts_are_limited_per_address_and_a_wrong_key_says_so() {
    let server = Server::start();
    let attempt = |key: &str| {
        client()
            .post(format!("{}/console/session", server.url))
            .json(&json!({ "api_key": key }))
            .send()
            .expect("sign in")
    };
    for n in 0..10 {
        let wrong = attempt(&format!("ak_wrong_{n}"));
        assert_eq!(wrong.status(), 401, "attempt {n}");
        let body: Value = wrong.json().expect("json");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("invalid or revoked"),
            "{body}"
        );
    }
    // The eleventh, even with the right key, waits.
    let limited = attempt(&server.admin_key);
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=6).contains(&wait), "Retry-After: {wait}");
    let body: Value = limited.json().expect("json");
    assert_eq!(body["errorCode"], "rate_limited", "{body}");
    // One attempt comes back every 6 s.
    std::thread::sleep(std::time::Duration::from_secs(wait));
    assert_eq!(attempt(&server.admin_key).status(), 201);
}
