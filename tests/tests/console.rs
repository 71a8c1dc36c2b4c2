//! The console at `/console`, in a real browser and over HTTP: sign-in
//! exchanges a key for an HttpOnly session cookie, changes need the CSRF
//! token, sessions end at sign-out, expiry and revocation, the page's
//! Content-Security-Policy, and a reviewer's inbox driven by Playwright
//! with Debian's Chromium (`tests/browser/console.py`).

use std::process::Command;

use actionhost_tests::server::{Options, Server};
use serde_json::{Value, json};

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
    let output = Command::new(actionhost_tests::python())
        .arg(actionhost_tests::workspace_root().join("tests/browser/console.py"))
        .args([&server.url, &server.admin_key, &shots.display().to_string()])
        .output()
        .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser script failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("the script's report");

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
