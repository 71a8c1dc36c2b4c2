//! Black-box tests of `actionhost serve`: the real binary on a free port, a
//! fresh data directory per test, real plugins, real local peers.

use std::collections::BTreeMap;

use actionhost_tests::providers::{
    self, CLIENT_SECRET, Providers, TOKEN, oauth_config, oauth_connect,
};
use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::smtp::SmtpSink;
use serde_json::{Value, json};

fn created(answer: &Answer) -> &Value {
    assert!(
        answer.status == 201 || answer.status == 200,
        "expected success, got {}: {}",
        answer.status,
        answer.text
    );
    &answer.json
}

/// An auth config and one connected account of `app` with a bearer token.
fn bearer_account(
    server: &Server,
    app: &str,
    entity: &str,
    token: &str,
    metadata: Value,
) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": app, "scheme": { "type": "bearer" } }),
    );
    let config_id = created(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": entity, "metadata": metadata, "credentials": { "token": token } }),
    );
    created(&account)["connectedAccountId"]
        .as_str()
        .expect("account id")
        .to_owned()
}

fn execute(server: &Server, action: &str, body: &Value) -> Answer {
    server.post(&format!("/api/v2/actions/{action}/execute"), body)
}

fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.json["errorCode"], code, "{}", answer.text);
    assert_eq!(answer.json["successful"], false);
    assert!(
        answer.json["error"].as_str().is_some_and(|m| !m.is_empty()),
        "every error says what was wrong: {}",
        answer.text
    );
}

#[test]
fn first_start_creates_a_tenant_and_an_admin_key_file_and_logs_only_its_path() {
    let server = Server::start();
    let key_file = server.data_dir.join("admin.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("admin.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin.key is private");
    }
    let log = server.log();
    assert!(
        log.contains("admin.key"),
        "the log names the key file:\n{log}"
    );
    assert!(
        !log.contains(&server.admin_key),
        "the log never shows the key"
    );

    for (header, value) in [
        ("authorization", format!("Bearer {}", server.admin_key)),
        ("x-api-key", server.admin_key.clone()),
    ] {
        let status = server.send(
            server
                .request("GET", "/v1/auth/status")
                .header(header, value),
        );
        assert_eq!(status.status, 200, "{header}: {}", status.text);
        assert_eq!(status.json["email"], "admin@localhost");
        assert!(
            status.json["user_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("usr_"))
        );
        assert!(
            status.json["tenant_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("ten_"))
        );
        assert!(
            status.json["scopes"]
                .as_array()
                .is_some_and(|s| s.contains(&json!("actions:execute"))),
            "{}",
            status.text
        );
        assert!(
            status.header("x-request-id").is_some(),
            "every response has a request id"
        );
    }
}

/// What each `{id}` of a path names, created in tenant A for the 404 check.
struct TenantObjects {
    by_path: BTreeMap<&'static str, String>,
}

fn tenant_objects(server: &Server, providers: &Providers) -> TenantObjects {
    let account = bearer_account(
        server,
        "crm-sync",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    let config = server.get(&format!("/api/v1/connectedAccounts/{account}"));
    let config_id = config.json["authConfigId"]
        .as_str()
        .expect("config")
        .to_owned();
    let run = execute(
        server,
        "crm_sync",
        &json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": "ada@example.com" }] } }),
    );
    let log_id = created(&run)["logId"].as_str().expect("log id").to_owned();
    let key = server.post("/v1/api-keys", &json!({ "scopes": ["actions:read"] }));
    let key_id = created(&key)["api_key"]["id"]
        .as_str()
        .expect("key id")
        .to_owned();
    let contact = server.post("/v1/contacts", &json!({ "email": "matrix@example.com" }));
    let contact_id = created(&contact)["contact"]["_id"]
        .as_str()
        .expect("contact id")
        .to_owned();
    let identity = server.post("/v1/identities", &json!({ "name": "Matrix" }));
    let identity_id = created(&identity)["identity"]["_id"]
        .as_str()
        .expect("identity id")
        .to_owned();
    let publishable = server.post(
        "/v1/publishable-keys",
        &json!({ "allowed_origins": ["https://matrix.example.com"] }),
    );
    let publishable_id = created(&publishable)["publishable_key"]["id"]
        .as_str()
        .expect("publishable key")
        .to_owned();
    TenantObjects {
        by_path: BTreeMap::from([
            ("/v1/contacts/{id}", contact_id.clone()),
            ("/v1/contacts/{id}/timeline", contact_id.clone()),
            ("/v1/contacts/{id}/notes", contact_id),
            ("/v1/identities/{id}", identity_id),
            ("/v1/publishable-keys/{id}", publishable_id),
            ("/api/v1/connectedAccounts/{id}", account.clone()),
            ("/api/v1/connectedAccounts/{id}/revoke", account),
            ("/api/v1/auth-configs/{id}", config_id),
            ("/v1/executions/{id}", log_id),
            ("/v1/api-keys/{id}", key_id),
        ]),
    }
}

#[test]
fn every_documented_route_refuses_missing_bad_revoked_and_underscoped_keys_hides_other_tenants_and_lets_the_right_scope_in()
 {
    let providers = Providers::start();
    let server = Server::start();
    let objects = tenant_objects(&server, &providers);

    let other = server.post(
        "/v1/tenants",
        &json!({ "name": "other", "admin_email": "ops@other.example" }),
    );
    let other_key = created(&other)["key"]
        .as_str()
        .expect("tenant key")
        .to_owned();
    let revoked = server.post("/v1/api-keys", &json!({ "scopes": ["actions:read"] }));
    let revoked_key = created(&revoked)["key"].as_str().expect("key").to_owned();
    let revoked_id = revoked.json["api_key"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Used once before its revocation, so that the server has it cached.
    assert_eq!(
        server
            .call("GET", "/v1/actions", Some(&revoked_key), None)
            .status,
        200
    );
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/v1/api-keys/{revoked_id}"),
                Some(&server.admin_key),
                None
            )
            .status,
        200
    );

    // Every scope there is: the bootstrap key holds them all.
    let status = server.get("/v1/auth/status");
    let every_scope: Vec<String> = status.json["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    assert!(every_scope.len() >= 21, "{every_scope:?}");

    let openapi = server.call("GET", "/openapi.json", None, None);
    assert_eq!(openapi.status, 200);
    let paths = openapi.json["paths"].as_object().expect("paths");
    let mut checked = 0;
    let mut scopes_seen = std::collections::BTreeSet::new();
    for (template, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            let security = operation["security"]
                .as_array()
                .expect("every operation declares its security");
            // Each requirement object is one way in; bearer and api_key carry
            // the same scopes, so the distinct scope sets are the alternatives.
            let alternatives: std::collections::BTreeSet<std::collections::BTreeSet<String>> =
                security
                    .iter()
                    .filter_map(|requirement| requirement.as_object())
                    .map(|requirement| {
                        requirement
                            .values()
                            .flat_map(|list| list.as_array().cloned().unwrap_or_default())
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .filter(|scopes: &std::collections::BTreeSet<String>| !scopes.is_empty())
                    .collect();
            let scopes: std::collections::BTreeSet<String> =
                alternatives.iter().flatten().cloned().collect();
            if security
                .iter()
                .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
            {
                continue; // public: the OAuth2 callback, authenticated by its state
            }
            let id = objects.by_path.get(template.as_str()).cloned();
            let path = template
                .replace("{id}", id.as_deref().unwrap_or("missing"))
                .replace("{action}", "crm_sync")
                .replace("{actionIndex}", "0")
                .replace("{runId}", "run_missing")
                .replace("{contactId}", "ct_missing");
            let method = method.to_uppercase();
            let body = (method == "POST" || method == "PATCH").then(|| json!({}));
            let label = format!("{method} {template}");

            let answer = server.call(&method, &path, None, body.as_ref());
            assert_eq!(answer.status, 401, "{label} without a key: {}", answer.text);
            let answer = server.call(&method, &path, Some("ahk_not_a_key"), body.as_ref());
            assert_eq!(
                answer.status, 401,
                "{label} with a bad key: {}",
                answer.text
            );
            let answer = server.call(&method, &path, Some(&revoked_key), body.as_ref());
            assert_eq!(
                answer.status, 401,
                "{label} with a revoked key: {}",
                answer.text
            );

            // Without a scope of every alternative, the key is refused, and
            // the 403 names what would let it in.
            let removals: Vec<Vec<String>> = if alternatives.len() > 1 {
                vec![scopes.iter().cloned().collect()]
            } else {
                scopes.iter().map(|s| vec![s.clone()]).collect()
            };
            for removed in removals {
                scopes_seen.extend(removed.iter().cloned());
                let all_but: Vec<&str> = every_scope
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !removed.iter().any(|r| r == s))
                    .collect();
                let minted = server.post("/v1/api-keys", &json!({ "scopes": all_but }));
                let key = created(&minted)["key"].as_str().expect("key").to_owned();
                let answer = server.call(&method, &path, Some(&key), body.as_ref());
                assert_eq!(
                    answer.status, 403,
                    "{label} without {removed:?}: {}",
                    answer.text
                );
                for scope in &removed {
                    assert!(
                        answer.text.contains(scope.as_str()),
                        "the 403 names {scope}: {}",
                        answer.text
                    );
                }
            }
            if id.is_some() {
                let answer = server.call(&method, &path, Some(&other_key), body.as_ref());
                assert_eq!(
                    answer.status, 404,
                    "{label} from another tenant: {}",
                    answer.text
                );
            }
            // The right scopes, and nothing else, let the request in: it may
            // still be refused for its empty body or a missing object, but
            // not for the key. Each alternative is tried on its own.
            let ways_in: Vec<Vec<String>> = if alternatives.is_empty() {
                vec![vec!["actions:read".to_owned()]] // any valid key
            } else {
                alternatives
                    .iter()
                    .map(|a| a.iter().cloned().collect())
                    .collect()
            };
            for exactly in ways_in {
                let minted = server.post("/v1/api-keys", &json!({ "scopes": exactly }));
                let key = created(&minted)["key"].as_str().expect("key").to_owned();
                let answer = server.call(&method, &path, Some(&key), body.as_ref());
                assert!(
                    answer.status != 401 && answer.status != 403,
                    "{label} with exactly {exactly:?} was refused for its key: {} {}",
                    answer.status,
                    answer.text
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 30,
        "only {checked} operations were checked: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // Every scope guards at least one route, and every route names one
    // that exists.
    let unused: Vec<&String> = every_scope
        .iter()
        // tenants:write guards POST /v1/tenants, which only the bootstrap
        // key reaches.
        .filter(|s| !scopes_seen.contains(*s) && s.as_str() != "tenants:write")
        .collect();
    assert!(unused.is_empty(), "scopes no route needs: {unused:?}");
    assert!(
        scopes_seen.iter().all(|s| every_scope.contains(s)),
        "routes need scopes no key can hold: {scopes_seen:?}"
    );

    // A publishable key is refused by every secured route, by name.
    let publishable = server.post(
        "/v1/publishable-keys",
        &json!({ "allowed_origins": ["https://site.example.com"] }),
    );
    let publishable = created(&publishable)["publishable_key"]["id"]
        .as_str()
        .expect("pk")
        .to_owned();
    for path in [
        "/v1/contacts",
        "/v1/events",
        "/v1/identities",
        "/v1/actions",
    ] {
        let answer = server.call("GET", path, Some(&publishable), None);
        assert_eq!(
            answer.status, 403,
            "GET {path} with a publishable key: {}",
            answer.text
        );
    }
}

#[test]
fn executes_every_bundled_action_through_resolved_accounts_with_credentials_injected() {
    let providers = Providers::start();
    let sink = SmtpSink::start();
    let server = Server::start();

    // SMTP: the password-less local relay, account found by entity.
    let smtp_config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "send-email", "name": "smtp", "scheme": { "type": "smtp", "host": "127.0.0.1", "port": sink.port } }),
    );
    let smtp_config_id = created(&smtp_config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": smtp_config_id, "entityId": "ada", "metadata": { "provider": "smtp", "from": "Ada <ada@example.com>" }, "credentials": { "tls": "none" } }),
    );
    created(&account);
    let sent = execute(
        &server,
        "send_email",
        &json!({ "entityId": "ada", "input": { "to": ["grace@example.com"], "subject": "Hello", "body": "Plain body" } }),
    );
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert_eq!(sent.json["successful"], true, "{}", sent.text);
    assert_eq!(
        sent.json["successfull"], true,
        "the deprecated spelling mirrors successful"
    );
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_tos, vec!["grace@example.com"]);

    // Gmail shape: a bearer account of the same app for another entity.
    bearer_account(
        &server,
        "send-email",
        "grace",
        TOKEN,
        json!({ "provider": "gmail", "from": "grace@example.com", "base_url": providers.base_url }),
    );
    let gmail = execute(
        &server,
        "send_email",
        &json!({ "entityId": "grace", "input": { "to": ["ada@example.com"], "subject": "Re", "body": "Body" }, "allowTracing": true }),
    );
    assert_eq!(gmail.json["successful"], true, "{}", gmail.text);
    let trace = gmail.json["trace"]
        .as_array()
        .expect("allowTracing returns the trace");
    assert_eq!(trace[0]["path"], "/gmail/v1/users/me/messages/send");
    assert_eq!(trace[0]["status"], 200);

    let linkedin = bearer_account(
        &server,
        "linkedin-message",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    // LinkedIn's plugin demands a person's approval before every message:
    // a one-off execute is refused and sends nothing; the same message as
    // an action runs once approved.
    let message = execute(
        &server,
        "linkedin_message",
        &json!({ "connectedAccountId": linkedin, "input": { "recipients": ["urn:li:person:abc123"], "body": "Hi" } }),
    );
    assert_error(&message, 409, "conflict");
    assert!(message.text.contains("approval"), "{}", message.text);
    assert_eq!(providers.requests().len(), 1, "nothing reached LinkedIn");
    let proposed = server.post(
        "/v1/actions",
        &json!({ "type": "linkedin_message", "params": { "recipients": ["urn:li:person:abc123"], "body": "Hi" }, "identity_id": "ada" }),
    );
    let action_id = created(&proposed)["action_id"]
        .as_str()
        .expect("action id")
        .to_owned();
    let approved = server.post(
        &format!("/v1/actions/{action_id}/approve"),
        &json!({ "action": "approve" }),
    );
    created(&approved);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.get(&format!("/v1/actions/{action_id}")).json["action"]["status"] != "succeeded" {
        assert!(
            std::time::Instant::now() < deadline,
            "the approved message did not run"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let crm = bearer_account(
        &server,
        "crm-sync",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    let synced = execute(
        &server,
        "crm_sync",
        &json!({ "connectedAccountId": crm, "input": { "contacts": [{ "email": "ada@example.com", "properties": { "firstname": "Ada" } }] } }),
    );
    assert_eq!(synced.json["successful"], true, "{}", synced.text);
    let log_id = synced.json["logId"].as_str().expect("logId");

    // Every provider request carried the injected token.
    let requests = providers.requests();
    assert_eq!(requests.len(), 3, "gmail, linkedin, hubspot");
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{}",
            request.path
        );
    }
    // The execution record has the params, the account and the log, and the
    // plugin never saw the token: not in its output, its log or its record.
    let record = server.get(&format!("/v1/executions/{log_id}"));
    assert_eq!(record.status, 200, "{}", record.text);
    assert_eq!(record.json["status"], "Success");
    assert_eq!(record.json["account_id"], crm);
    assert_eq!(
        record.json["params"]["contacts"][0]["email"],
        "ada@example.com"
    );
    assert!(record.json["duration_ms"].is_u64());
    server.assert_no_leak(&[TOKEN]);
}

#[test]
fn provider_errors_keep_their_code_and_retryable_flag_and_a_401_expires_the_account() {
    let providers = Providers::start();
    let server = Server::start();
    let crm = bearer_account(
        &server,
        "crm-sync",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    let body = json!({ "connectedAccountId": crm, "input": { "contacts": [{ "email": "ada@example.com" }] } });

    providers.fail_next(providers::Fault::RateLimited {
        retry_after_secs: 7,
    });
    let limited = execute(&server, "crm_sync", &body);
    assert_eq!(limited.json["successful"], false);
    assert_eq!(limited.json["errorCode"], "rate_limited");
    assert_eq!(limited.json["retryable"], true);
    assert_eq!(limited.json["retryAfterMs"], 7000);

    providers.fail_next(providers::Fault::Unauthorized);
    let rejected = execute(&server, "crm_sync", &body);
    assert_eq!(
        rejected.json["errorCode"], "unauthorized",
        "{}",
        rejected.text
    );
    let account = server.get(&format!("/api/v1/connectedAccounts/{crm}"));
    assert_eq!(account.json["status"], "expired", "{}", account.text);
    assert!(
        account.json["statusReason"]
            .as_str()
            .is_some_and(|r| r.contains("rejected"))
    );

    let again = execute(&server, "crm_sync", &body);
    assert_error(&again, 422, "account_expired");
    assert!(again.text.contains("expired"), "{}", again.text);
}

#[test]
fn oauth2_connects_with_pkce_and_refreshes_before_expiry_and_once_on_a_401() {
    let providers = Providers::start();
    let server = Server::start();
    let config_id = oauth_config(&server, &providers);
    let account = oauth_connect(&server, &providers, &config_id, "ada");
    let body = json!({ "entityId": "ada", "appName": "crm-sync", "input": { "contacts": [{ "email": "ada@example.com" }] } });

    let first = execute(&server, "crm_sync", &body);
    assert_eq!(first.json["successful"], true, "{}", first.text);
    let issued = providers.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        providers
            .requests()
            .last()
            .and_then(|r| r.header("authorization").map(str::to_owned)),
        Some(format!("Bearer {}", issued[0]))
    );

    // The provider stops accepting the token: the host refreshes once and
    // replays the request; the plugin sees a success.
    providers.revoke_token(&issued[0]);
    let replayed = execute(&server, "crm_sync", &body);
    assert_eq!(replayed.json["successful"], true, "{}", replayed.text);
    assert_eq!(providers.refreshes(), 1);
    let requests = providers.requests();
    let auth = |r: &providers::Recorded| r.header("authorization").unwrap_or_default().to_owned();
    let fresh = providers.issued_tokens();
    assert_eq!(fresh.len(), 1, "the old token was replaced");
    assert_eq!(
        auth(&requests[requests.len() - 2]),
        format!("Bearer {}", issued[0]),
        "first try: the rejected token"
    );
    assert_eq!(
        auth(&requests[requests.len() - 1]),
        format!("Bearer {}", fresh[0]),
        "the replay: the new token"
    );

    // Concurrent executions facing a rejected token share one refresh.
    for token in providers.issued_tokens() {
        providers.revoke_token(&token);
    }
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let url = server.url.clone();
            let key = server.admin_key.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(format!("{url}/api/v2/actions/crm_sync/execute"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .and_then(|r| r.json::<Value>())
                    .expect("answer")
            })
        })
        .collect();
    for thread in threads {
        let answer = thread.join().expect("thread");
        assert_eq!(answer["successful"], true, "{answer}");
    }
    assert_eq!(providers.refreshes(), 2, "six executions, one refresh");

    // A token about to expire is refreshed before the request goes out.
    providers.set_token_lifetime(30);
    let known = providers.issued_tokens();
    let soon = oauth_connect(&server, &providers, &config_id, "grace");
    let short_lived: Vec<String> = providers
        .issued_tokens()
        .into_iter()
        .filter(|t| !known.contains(t))
        .collect();
    assert_eq!(short_lived.len(), 1);
    let before = providers.refreshes();
    let early = execute(
        &server,
        "crm_sync",
        &json!({ "connectedAccountId": soon, "input": { "contacts": [{ "email": "g@example.com" }] } }),
    );
    assert_eq!(early.json["successful"], true, "{}", early.text);
    assert_eq!(
        providers.refreshes(),
        before + 1,
        "refreshed ahead of expiry"
    );
    assert!(
        providers
            .requests()
            .iter()
            .all(|r| auth(r) != format!("Bearer {}", short_lived[0])),
        "the token about to expire was never sent"
    );

    // A refused refresh expires the account with the provider's reason.
    providers.fail_refresh("refresh token revoked by the user");
    for token in providers.issued_tokens() {
        providers.revoke_token(&token);
    }
    let failed = execute(
        &server,
        "crm_sync",
        &json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": "ada@example.com" }] } }),
    );
    assert_eq!(failed.json["successful"], false);
    assert_eq!(failed.json["errorCode"], "unauthorized", "{}", failed.text);
    let expired = server.get(&format!("/api/v1/connectedAccounts/{account}"));
    assert_eq!(expired.json["status"], "expired");
    assert!(
        expired.json["statusReason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_grant") || r.contains("revoked")),
        "{}",
        expired.text
    );

    let mut secrets: Vec<String> = providers.issued_tokens();
    secrets.extend((1..=12).map(|n| format!("oauth-access-{n}-9d2c")));
    secrets.extend((1..=12).map(|n| format!("oauth-refresh-{n}-41aa")));
    secrets.push(CLIENT_SECRET.to_owned());
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    server.assert_no_leak(&secrets);
}

#[test]
fn account_resolution_never_guesses() {
    let providers = Providers::start();
    let server = Server::start();
    let body = |extra: Value| {
        let mut body = json!({ "input": { "contacts": [{ "email": "ada@example.com" }] } });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let none = execute(&server, "crm_sync", &body(json!({})));
    assert_error(&none, 422, "account_required");

    let first = bearer_account(
        &server,
        "crm-sync",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    let only = execute(&server, "crm_sync", &body(json!({})));
    assert_eq!(
        only.json["successful"], true,
        "the only active account is used: {}",
        only.text
    );

    let second = bearer_account(
        &server,
        "crm-sync",
        "bob",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    let ambiguous = execute(&server, "crm_sync", &body(json!({})));
    assert_error(&ambiguous, 422, "account_ambiguous");
    let candidates = ambiguous.json["candidates"].as_array().expect("candidates");
    assert!(
        candidates.contains(&json!(first)) && candidates.contains(&json!(second)),
        "{}",
        ambiguous.text
    );

    let by_entity = execute(&server, "crm_sync", &body(json!({ "entityId": "bob" })));
    assert_eq!(by_entity.json["successful"], true, "{}", by_entity.text);
    let record = server.get(&format!(
        "/v1/executions/{}",
        by_entity.json["logId"].as_str().expect("logId")
    ));
    assert_eq!(record.json["account_id"], second);

    let unknown_entity = execute(&server, "crm_sync", &body(json!({ "entityId": "carol" })));
    assert_error(&unknown_entity, 422, "account_required");

    let revoked = server.post(
        &format!("/api/v1/connectedAccounts/{second}/revoke"),
        &json!({}),
    );
    assert_eq!(revoked.json["status"], "revoked", "{}", revoked.text);
    assert_eq!(
        revoked.json["hasCredentials"], false,
        "the credentials are erased"
    );
    let refused = execute(
        &server,
        "crm_sync",
        &body(json!({ "connectedAccountId": second })),
    );
    assert_error(&refused, 422, "account_expired");
    assert!(refused.text.contains("revoked"), "{}", refused.text);
    let only_first = execute(&server, "crm_sync", &body(json!({})));
    assert_eq!(
        only_first.json["successful"], true,
        "one active account is left: {}",
        only_first.text
    );

    // authConfig supplies credentials for one execution and is not stored.
    let inline_token = "inline-token-3a9f";
    providers.accept_token(inline_token);
    let before = server.get("/api/v1/connectedAccounts").json["items"]
        .as_array()
        .map(Vec::len);
    let inline = execute(
        &server,
        "crm_sync",
        &body(
            json!({ "authConfig": { "credentials": { "type": "bearer", "token": inline_token }, "metadata": { "base_url": providers.base_url } } }),
        ),
    );
    assert_eq!(inline.json["successful"], true, "{}", inline.text);
    assert_eq!(
        providers
            .requests()
            .last()
            .and_then(|r| r.header("authorization").map(str::to_owned)),
        Some(format!("Bearer {inline_token}"))
    );
    let after = server.get("/api/v1/connectedAccounts").json["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "no account was created");
    server.assert_no_leak(&[TOKEN, inline_token]);
}

#[test]
fn bad_requests_get_documented_errors_and_change_nothing() {
    let server = Server::start();
    let path = "/api/v2/actions/noop/execute";

    let malformed = server.send(
        server
            .request("POST", path)
            .bearer_auth(&server.admin_key)
            .header("content-type", "application/json")
            .body("{\"input\": "),
    );
    assert_error(&malformed, 400, "invalid_input");
    assert!(
        malformed.text.contains("not valid JSON"),
        "{}",
        malformed.text
    );

    let wrong_type = server.post(path, &json!({ "allowTracing": "yes" }));
    assert_error(&wrong_type, 422, "invalid_input");
    assert!(
        wrong_type.text.contains("allowTracing"),
        "names the field: {}",
        wrong_type.text
    );

    let unknown_field = server.post(path, &json!({ "inputs": {} }));
    assert_error(&unknown_field, 422, "invalid_input");
    assert!(
        unknown_field.text.contains("inputs"),
        "names the field: {}",
        unknown_field.text
    );

    let no_type = server.send(
        server
            .request("POST", path)
            .bearer_auth(&server.admin_key)
            .body("{}"),
    );
    assert_error(&no_type, 415, "invalid_input");

    // A path or query string that does not decode is refused in the API's
    // shape too, not with the framework's plain text (schemathesis found
    // both).
    let bad_path = server.get("/v1/actions/%FF");
    assert_error(&bad_path, 400, "invalid_input");
    assert!(
        bad_path.text.contains("`id`"),
        "names the part: {}",
        bad_path.text
    );
    let bad_query = server.send(
        server
            .request("POST", "/v1/plugins?sha256=1&unexpected=2")
            .bearer_auth(&server.admin_key)
            .body("x"),
    );
    assert_error(&bad_query, 422, "invalid_input");
    assert!(
        bad_query.text.contains("unexpected"),
        "names the field: {}",
        bad_query.text
    );

    let unknown_action = server.post(
        "/api/v2/actions/fly_to_mars/execute",
        &json!({ "input": {} }),
    );
    assert_error(&unknown_action, 404, "not_found");
    assert!(
        unknown_action.text.contains("crm_sync"),
        "lists the known ones: {}",
        unknown_action.text
    );

    let huge = json!({ "input": { "blob": "x".repeat((2 << 20) + 1024) } });
    let oversize = server.post(path, &huge);
    assert_error(&oversize, 413, "payload_too_large");

    let schema = server.post(
        "/api/v2/actions/crm_sync/execute",
        &json!({ "input": { "contacts": [{ "email": 42 }], "extra": true }, "authConfig": { "credentials": { "type": "bearer", "token": "t" } } }),
    );
    assert_error(&schema, 422, "invalid_input");
    let paths: Vec<&str> = schema.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"/contacts/0/email"), "{}", schema.text);

    let text_only = server.post(path, &json!({ "text": "say hello to Ada" }));
    assert_error(&text_only, 422, "invalid_input");
    assert!(
        text_only.text.contains("language model"),
        "{}",
        text_only.text
    );

    let no_route = server.get("/v1/nothing-here");
    assert_error(&no_route, 404, "not_found");

    let executed = server.post(path, &json!({ "input": {} }));
    assert_eq!(
        executed.json["successful"], true,
        "the no-op runs after all that: {}",
        executed.text
    );
    assert!(
        !server.log().contains("panicked"),
        "no panic in the server log"
    );
}

#[test]
fn a_request_refused_before_its_body_is_read_gets_its_answer_and_the_next_request_too() {
    let server = Server::start();
    // A plugin upload is refused by the auth check before the body is read;
    // the rest of the body is still on the wire. The client must get the
    // 401 (not a broken pipe), and its next request on the same pooled
    // connection must be answered (not an incomplete message).
    let big = vec![0u8; 2 * 1024 * 1024];
    for round in 0..10 {
        let refused = server.send(
            server
                .request("POST", "/v1/plugins")
                .bearer_auth("ah_not_a_key")
                .header("content-type", "application/wasm")
                .body(big.clone()),
        );
        assert_eq!(refused.status, 401, "round {round}: {}", refused.text);
        let next = server.get("/v1/auth/status");
        assert_eq!(next.status, 200, "round {round}: {}", next.text);
    }
    // A body that is read to its end keeps the connection open.
    let read = server.post("/v1/api-keys", &json!({ "scopes": ["actions:read"] }));
    assert_eq!(read.status, 201, "{}", read.text);
    assert!(
        !read.headers.iter().any(|(name, _)| name == "connection"),
        "{:?}",
        read.headers
    );
}

#[test]
fn a_restart_keeps_keys_accounts_and_execution_records() {
    let providers = Providers::start();
    let server = Server::start();
    let account = bearer_account(
        &server,
        "crm-sync",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    let minted = server.post("/v1/api-keys", &json!({ "name": "agent", "scopes": ["actions:execute", "actions:read"], "user_email": "agent@example.com" }));
    let agent_key = created(&minted)["key"].as_str().expect("key").to_owned();
    let revoked = server.post("/v1/api-keys", &json!({ "scopes": ["actions:read"] }));
    let revoked_key = created(&revoked)["key"].as_str().expect("key").to_owned();
    server.call(
        "DELETE",
        &format!(
            "/v1/api-keys/{}",
            revoked.json["api_key"]["id"].as_str().expect("id")
        ),
        Some(&server.admin_key),
        None,
    );
    let run = server.call(
        "POST",
        "/api/v2/actions/crm_sync/execute",
        Some(&agent_key),
        Some(&json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": "ada@example.com" }] } })),
    );
    assert_eq!(run.json["successful"], true, "{}", run.text);
    let log_id = run.json["logId"].as_str().expect("log id").to_owned();

    let mut server = server.restart();
    let status = server.call("GET", "/v1/auth/status", Some(&agent_key), None);
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.json["email"], "agent@example.com");
    assert_eq!(
        server
            .call("GET", "/v1/auth/status", Some(&revoked_key), None)
            .status,
        401
    );
    let record = server.call(
        "GET",
        &format!("/v1/executions/{log_id}"),
        Some(&agent_key),
        None,
    );
    assert_eq!(record.status, 200, "{}", record.text);
    assert_eq!(record.json["performed_by"], status.json["user_id"]);
    let again = server.call(
        "POST",
        "/api/v2/actions/crm_sync/execute",
        Some(&agent_key),
        Some(&json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": "ada@example.com" }] } })),
    );
    assert_eq!(
        again.json["successful"], true,
        "the stored credential still decrypts: {}",
        again.text
    );
    assert_eq!(server.stop(), Some(0), "SIGTERM stops the server cleanly");
    assert!(server.log().contains("the store is flushed"));
    server.assert_no_leak(&[TOKEN]);
    server.assert_not_stored(&[&agent_key, &revoked_key]);
}

#[test]
fn keys_create_mints_a_scoped_key_offline_and_refuses_unknown_scopes() {
    let data = tempfile::tempdir().expect("temp");
    let data_dir = data.path().join("data");
    // On PostgreSQL, the key goes into the database the server then uses.
    let store = actionhost_tests::postgres::enabled().then(actionhost_tests::postgres::database);
    let store_env: Vec<(&str, &str)> = store
        .iter()
        .map(|url| ("ACTIONHOST_STORE", url.as_str()))
        .collect();
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args([
            "keys",
            "create",
            "--user",
            "ops@example.com",
            "--scopes",
            "actions:read,plugins:read",
            "--data-dir",
        ])
        .arg(&data_dir)
        .envs(store_env.iter().copied())
        .output()
        .expect("run keys create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(key.starts_with("ahk_"), "{key}");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains(&key),
        "the key is printed once, on stdout"
    );

    let bad = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args([
            "keys",
            "create",
            "--user",
            "ops@example.com",
            "--scopes",
            "actions:fly",
            "--data-dir",
        ])
        .arg(&data_dir)
        .envs(store_env.iter().copied())
        .output()
        .expect("run keys create");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope \"actions:fly\""));

    let server = Server::start_with(Options {
        data_dir: Some(data_dir),
        store,
        ..Options::default()
    });
    let status = server.call("GET", "/v1/auth/status", Some(&key), None);
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(
        status.json["scopes"],
        json!(["actions:read", "plugins:read"])
    );
    let denied = server.call("GET", "/v1/api-keys", Some(&key), None);
    assert_eq!(denied.status, 403);
    assert!(denied.text.contains("keys:read"));
}

#[test]
fn config_file_and_environment_set_the_server_and_bad_settings_are_named() {
    let dir = tempfile::tempdir().expect("temp");
    let config = dir.path().join("actionhost.toml");
    std::fs::write(&config, "log_format = \"json\"\nmax_body_bytes = 4096\n").expect("write");
    let server = Server::start_with(Options {
        args: vec!["--config".into(), config.display().to_string()],
        env: vec![("ACTIONHOST_MAX_BODY_BYTES".into(), "8192".into())],
        ..Options::default()
    });
    // The environment wins over the file: 6 KiB passes, 10 KiB does not.
    let medium = server.post(
        "/api/v2/actions/noop/execute",
        &json!({ "input": { "note": "x".repeat(6 << 10) } }),
    );
    assert_ne!(medium.status, 413, "{}", medium.text);
    let large = server.post(
        "/api/v2/actions/noop/execute",
        &json!({ "input": { "note": "x".repeat(10 << 10) } }),
    );
    assert_eq!(large.status, 413, "{}", large.text);
    let request_id = large.header("x-request-id").expect("request id").to_owned();
    let log = server.log();
    let line = log
        .lines()
        .find(|line| line.contains(&request_id))
        .unwrap_or_else(|| panic!("a log line carries request id {request_id}:\n{log}"));
    let parsed: Value = serde_json::from_str(line).expect("json log lines");
    assert!(
        parsed["span"]["request_id"] == request_id || line.contains("request_id"),
        "{line}"
    );

    std::fs::write(&config, "listen_on = \"127.0.0.1:1\"\n").expect("write");
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("listen_on"),
        "names the unknown setting: {stderr}"
    );
}

#[test]
fn sigterm_lets_an_in_flight_execution_finish_and_keeps_its_record() {
    let providers = Providers::start();
    let mut server = Server::start();
    let account = bearer_account(
        &server,
        "crm-sync",
        "ada",
        TOKEN,
        json!({ "base_url": providers.base_url }),
    );
    providers.fail_next(providers::Fault::Slow(std::time::Duration::from_millis(
        1500,
    )));
    let request = server.request("POST", "/api/v2/actions/crm_sync/execute").bearer_auth(&server.admin_key).json(
        &json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": "ada@example.com" }] } }),
    );
    let in_flight = std::thread::spawn(move || {
        request
            .send()
            .and_then(|r| r.json::<Value>())
            .expect("answered")
    });
    while providers.requests().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.stop(), Some(0), "a clean exit after the drain");
    let answer = in_flight.join().expect("thread");
    assert_eq!(
        answer["successful"], true,
        "the in-flight execution finished: {answer}"
    );
    let log_id = answer["logId"].as_str().expect("logId").to_owned();
    let log = server.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("the store is flushed"), "{log}");

    let server = server.restart();
    let record = server.get(&format!("/v1/executions/{log_id}"));
    assert_eq!(
        record.status, 200,
        "the record survived the shutdown: {}",
        record.text
    );
    assert_eq!(record.json["status"], "Success");
}

#[test]
fn credentials_go_only_to_the_hosts_their_auth_config_names() {
    let providers = Providers::start();
    let server = Server::start();
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "crm-sync", "scheme": { "type": "bearer" }, "hosts": ["https://api.hubapi.com"] }),
    );
    let config_id = created(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "metadata": { "base_url": providers.base_url }, "credentials": { "token": TOKEN } }),
    );
    let account = created(&account)["connectedAccountId"]
        .as_str()
        .expect("id")
        .to_owned();
    let run = execute(
        &server,
        "crm_sync",
        &json!({ "connectedAccountId": account, "input": { "contacts": [{ "email": "ada@example.com" }] } }),
    );
    assert_eq!(run.json["errorCode"], "unauthorized", "{}", run.text);
    let request = providers.requests().pop().expect("the request went out");
    assert_eq!(
        request.header("authorization"),
        None,
        "a host the auth config does not name gets no credential"
    );

    let health = server.call("GET", "/healthz", None, None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
}

#[test]
fn a_damaged_database_is_refused_at_start_up_with_its_path_and_a_way_forward() {
    let mut server = Server::start();
    for n in 0..20 {
        created(&server.post(
            "/v1/api-keys",
            &json!({ "name": format!("key {n}"), "scopes": ["actions:read"] }),
        ));
    }
    assert_eq!(server.stop(), Some(0), "a clean stop: {}", server.log());
    let data_dir = server.data_dir.clone();

    // Cut the database's log in half, as a bad disk or a careless copy
    // would. sled recovers the readable prefix without a word; the server
    // must notice that records it had are gone.
    let log = data_dir.join("db").join("db");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("the database file");
    let length = file.metadata().expect("metadata").len();
    file.set_len(length / 2).expect("truncate");
    drop(file);

    let started = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .arg("--plugins-dir")
        .arg(&server.plugins_dir)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert_eq!(started.status.code(), Some(1), "{stderr}");
    let marker = data_dir.join("db.generation");
    assert!(
        stderr.contains("is incomplete")
            && stderr.contains(&data_dir.join("db").display().to_string())
            && stderr.contains("Restore the data directory from a backup")
            && stderr.contains(&format!("delete {}", marker.display())),
        "the error names the database, the backup and the way to go on: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The way forward works: without the marker the server starts on what
    // is left.
    std::fs::remove_file(&marker).expect("remove the marker");
    let server = Server::start_with(Options {
        data_dir: Some(data_dir),
        ..Options::default()
    });
    assert_eq!(server.get("/readyz").status, 200);
}
