//! Composio's own Python client (PyPI `composio-core` 0.7.22), unmodified,
//! against the real server: configured only with `COMPOSIO_BASE_URL` and
//! `COMPOSIO_API_KEY`, it lists apps, reads schemas, and executes
//! `CRM_SYNC` through the real crm-sync plugin, which reaches the HubSpot
//! stand-in with the account's token (tests/peers/composio/client.py runs
//! each flow).

use std::path::Path;
use std::process::Command;

use actionhost_tests::providers::{Providers, TOKEN};
use actionhost_tests::server::Server;
use serde_json::{Value, json};

/// Runs one flow of the client; its JSON report.
fn flow(server: &Server, key: &str, cache: &Path, name: &str, env: &[(&str, &str)]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/composio/client.py");
    let output = Command::new(actionhost_tests::composio_python())
        .arg(script)
        .arg(name)
        .current_dir(cache)
        .env("COMPOSIO_BASE_URL", format!("{}/api", server.url))
        .env("COMPOSIO_API_KEY", key)
        .env("COMPOSIO_CACHE_DIR", cache)
        // No call to Composio's own hosts: no version check, no error
        // reporting (an empty DSN counts as set).
        .env("COMPOSIO_DISABLE_VERSION_CHECK", "true")
        .env("COMPOSIO_DISABLE_SENTRY", "true")
        .envs(env.iter().copied())
        .output()
        .expect("run Composio's client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(report).unwrap_or_else(|_| {
        panic!(
            "{name}: no report; stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn ok<'a>(report: &'a Value, name: &str) -> &'a Value {
    assert!(report.get("error").is_none(), "{name}: {report}");
    &report["ok"]
}

/// The HubSpot upserts that reached the stand-in, with the token each carried.
fn upserts(providers: &Providers) -> Vec<(String, Value)> {
    providers
        .requests()
        .into_iter()
        .filter(|r| r.path == "/crm/v3/objects/contacts/batch/upsert")
        .map(|r| {
            (
                r.header("authorization").unwrap_or_default().to_owned(),
                r.json(),
            )
        })
        .collect()
}

#[test]
fn composios_own_client_lists_reads_and_executes_through_actionhost_unmodified() {
    let providers = Providers::start();
    let server = Server::start();
    let cache = tempfile::tempdir().expect("cache dir");
    std::fs::write(
        cache.path().join("user_data.json"),
        r#"{"sentry": {"dsn": ""}}"#,
    )
    .expect("user data");
    let key = server.admin_key.clone();
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "crm-sync", "scheme": { "type": "bearer" } }),
    );
    let config_id = config.ok()["id"].as_str().expect("config").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": "ada", "metadata": { "base_url": providers.base_url }, "credentials": { "token": TOKEN } }),
    );
    let account_id = account.ok()["connectedAccountId"]
        .as_str()
        .expect("account")
        .to_owned();
    let run = |name: &str, env: &[(&str, &str)]| flow(&server, &key, cache.path(), name, env);

    // The key check passes, and the apps are the bundled plugins.
    let apps = run("apps", &[]);
    let apps = ok(&apps, "apps");
    assert!(
        apps["keys"]
            .as_array()
            .expect("keys")
            .contains(&json!("crm-sync")),
        "{apps}"
    );
    assert_eq!(apps["one"], "crm-sync");
    assert_eq!(apps["no_auth"], false);

    // CRM_SYNC, upper case as the client writes it: its schema.
    let schema = run("schema", &[]);
    let schema = ok(&schema, "schema");
    assert_eq!(schema["app"], "crm-sync", "{schema}");
    assert_eq!(schema["listed"], json!(["CRM_SYNC"]), "{schema}");
    assert!(
        schema["parameters"]["properties"]["contacts"].is_object(),
        "{schema}"
    );
    assert!(
        !schema["versions"].as_array().expect("versions").is_empty(),
        "{schema}"
    );

    // Executed by entity and by account: HubSpot gets the upsert with the
    // account's injected token, the client the plugin's data.
    for (name, env) in [
        ("execute_by_entity", vec![("ENTITY", "ada")]),
        (
            "execute_by_account",
            vec![("ENTITY", "ada"), ("ACCOUNT", account_id.as_str())],
        ),
    ] {
        let before = upserts(&providers).len();
        let report = run(name, &env);
        let result = ok(&report, name);
        assert_eq!(result["successful"], true, "{name}: {result}");
        assert!(result["data"]["created"].is_array(), "{name}: {result}");
        let upserts = upserts(&providers);
        assert_eq!(upserts.len(), before + 1, "{name}");
        let (token, body) = upserts.last().expect("upsert");
        assert_eq!(token, &format!("Bearer {TOKEN}"), "{name}");
        assert_eq!(body["inputs"][0]["id"], "ada@example.com", "{name}: {body}");
    }

    // The tool set, with its cache refresh: schemas for an agent, then an
    // execution.
    let report = run("toolset", &[("ENTITY", "ada")]);
    let toolset = ok(&report, "toolset");
    assert_eq!(toolset["schemas"][0]["name"], "CRM_SYNC", "{toolset}");
    assert!(
        toolset["schemas"][0]["properties"]
            .as_array()
            .expect("properties")
            .contains(&json!("contacts")),
        "{toolset}"
    );
    assert_eq!(toolset["result"]["successful"], true, "{toolset}");

    // A custom authConfig in Composio's shape: its token reaches HubSpot.
    let custom = "custom-token-9d1e";
    providers.accept_token(custom);
    let report = run(
        "custom_auth",
        &[
            ("ENTITY", "ada"),
            ("TOKEN", custom),
            ("PROVIDER_URL", providers.base_url.as_str()),
        ],
    );
    let result = ok(&report, "custom_auth");
    assert_eq!(result["successful"], true, "{result}");
    let upserts = upserts(&providers);
    assert_eq!(
        upserts.last().expect("upsert").0,
        format!("Bearer {custom}")
    );

    // A bad key is the client's own ApiKeyError.
    let cache_bad = tempfile::tempdir().expect("cache dir");
    std::fs::write(
        cache_bad.path().join("user_data.json"),
        r#"{"sentry": {"dsn": ""}}"#,
    )
    .expect("user data");
    let report = flow(&server, "ahk_not_a_key", cache_bad.path(), "bad_key", &[]);
    assert_eq!(report["error"], "ApiKeyError", "{report}");

    // What the client leaves to the server, checked over raw HTTP: an
    // unknown version lists the active ones, and a malformed authConfig in
    // Composio's shape is a 422 naming the field.
    let unknown = server.get("/api/v2/actions/CRM_SYNC?version=9.9.9");
    assert_eq!(unknown.status, 422, "{}", unknown.text);
    assert!(
        unknown.text.contains("active versions: 1.0.0"),
        "{}",
        unknown.text
    );
    for (config, field) in [
        (
            json!({ "parameters": [{ "in": "path", "name": "id", "value": "x" }] }),
            "/authConfig/parameters/0/in",
        ),
        (
            json!({ "parameters": [{ "in": "header", "name": "Authorization" }] }),
            "/authConfig/parameters/0/value",
        ),
        (
            json!({ "parameters": [], "body": {} }),
            "/authConfig/parameters",
        ),
        (
            json!({ "parameters": [{ "in": "header", "name": "Authorization", "value": "Bearer t" }], "body": { "token": "t" } }),
            "/authConfig/body",
        ),
    ] {
        let refused = server.post(
            "/api/v2/actions/CRM_SYNC/execute",
            &json!({ "entityId": "ada", "version": "latest:base", "input": { "contacts": [] }, "authConfig": config }),
        );
        assert_eq!(refused.status, 422, "{}", refused.text);
        assert_eq!(refused.json["errors"][0]["path"], field, "{}", refused.text);
    }

    server.assert_no_leak(&[TOKEN, custom]);
}
