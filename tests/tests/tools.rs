//! Black-box tests of the tools for language-model agents: the tool lists
//! (`GET /api/v2/tools`) checked rule by rule for every bundled type, tool
//! calls as models return them (`POST /api/v2/tools/execute`), and `/mcp`
//! driven by three real MCP clients: the Python SDK (PyPI `mcp` 2.x) and the
//! TypeScript SDK in `@modelcontextprotocol/sdk` 1.x (the session-based
//! 2025-11-25) and `@modelcontextprotocol/client` 2.x (the stateless
//! 2026-07-28). The peers are the HubSpot and LinkedIn stand-ins, which
//! check each request as the real APIs would.

use std::process::Command;
use std::time::{Duration, Instant};

use actionhost_tests::providers::{Providers, TOKEN, contains_secret};
use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::{fixture, plugin, python, workspace_root};
use serde_json::{Value, json};

fn ok(answer: &Answer) -> &Value {
    assert!(
        (200..300).contains(&answer.status),
        "expected success, got {}: {}",
        answer.status,
        answer.text
    );
    &answer.json
}

/// Every bundled action type, the JavaScript and Python ones included.
fn every_bundled_type() -> Options {
    Options {
        plugins: Some(vec![
            plugin("send-email"),
            plugin("linkedin-message"),
            plugin("crm-sync"),
            plugin("notes"),
            plugin("slack-message"),
            plugin("webhook-post"),
            fixture("fixture-noop"),
        ]),
        ..Options::default()
    }
}

fn outreach() -> Options {
    Options {
        plugins: Some(vec![
            plugin("linkedin-message"),
            plugin("crm-sync"),
            fixture("fixture-noop"),
        ]),
        ..Options::default()
    }
}

/// A bearer-token account of `app` for `entity`, at the stand-ins.
fn bearer_account(server: &Server, app: &str, entity: &str, providers: &Providers) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": app, "scheme": { "type": "bearer" } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": entity, "metadata": { "base_url": providers.base_url }, "credentials": { "token": TOKEN } }),
    );
    ok(&account)["connectedAccountId"]
        .as_str()
        .expect("account id")
        .to_owned()
}

fn mint(server: &Server, scopes: &[&str], policy: Option<&str>) -> String {
    let mut body = json!({ "scopes": scopes });
    if let Some(policy) = policy {
        body["policy"] = json!(policy);
    }
    let minted = server.post("/v1/api-keys", &body);
    ok(&minted)["key"].as_str().expect("key").to_owned()
}

fn requests_to(providers: &Providers, path: &str) -> Vec<Value> {
    providers
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(path))
        .map(|r| {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {TOKEN}").as_str()),
                "the host injects the account's token into {path}"
            );
            r.json()
        })
        .collect()
}

fn hubspot_upserts(providers: &Providers) -> Vec<Value> {
    requests_to(providers, "/crm/v3/objects/contacts/batch/upsert")
}

fn linkedin_messages(providers: &Providers) -> Vec<Value> {
    requests_to(providers, "/rest/messages")
}

fn action_status(server: &Server, id: &str) -> String {
    let answer = server.get(&format!("/v1/actions/{id}"));
    ok(&answer)["action"]["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

fn wait_for_status(server: &Server, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = action_status(server, id);
        if now == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "action {id} is {now}, not {status}, after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Approves a waiting action through the REST API and checks that exactly
/// one message then reaches LinkedIn.
fn approve_and_expect_one_message(server: &Server, providers: &Providers, id: &str, body: &str) {
    assert_eq!(action_status(server, id), "pending_approval");
    assert!(
        linkedin_messages(providers).is_empty(),
        "nothing reaches LinkedIn before a person approves"
    );
    let approved = server.post(
        &format!("/v1/actions/{id}/approve"),
        &json!({ "action": "approve", "comment": "fine" }),
    );
    ok(&approved);
    wait_for_status(server, id, "succeeded");
    // A little longer, so that a second send would have landed.
    std::thread::sleep(Duration::from_millis(300));
    let sent = linkedin_messages(providers);
    assert_eq!(sent.len(), 1, "exactly one message: {sent:?}");
    assert_eq!(sent[0]["body"], body);
}

/// The JSON Schema keywords OpenAI's strict mode does not take.
const OPENAI_REFUSED: &[&str] = &[
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "default",
    "$schema",
];

/// Walks an OpenAI strict-mode schema and lists every rule it breaks;
/// `original` is the same place in the type's own schema (the MCP list's),
/// which says what was optional.
fn openai_violations(schema: &Value, original: Option<&Value>, path: &str, out: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        out.push(format!("{path}: a schema that is not an object"));
        return;
    };
    for keyword in OPENAI_REFUSED {
        if object.contains_key(*keyword) {
            out.push(format!("{path}: keeps {keyword}"));
        }
    }
    if object.keys().any(|k| k.starts_with("x-")) {
        out.push(format!("{path}: keeps an x- extension"));
    }
    let is_object = object.get("type").is_some_and(|t| {
        t == "object" || t.as_array().is_some_and(|a| a.contains(&json!("object")))
    }) || object.contains_key("properties");
    if is_object {
        if object.get("additionalProperties") != Some(&json!(false)) {
            out.push(format!(
                "{path}: an object without additionalProperties: false"
            ));
        }
        let properties = object
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let original_required: Vec<&str> = original
            .and_then(|o| o.get("required"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, property) in &properties {
            if !required.contains(&name.as_str()) {
                out.push(format!("{path}.{name}: not in required"));
            }
            if original.is_some()
                && !original_required.contains(&name.as_str())
                && !nullable(property)
            {
                out.push(format!(
                    "{path}.{name}: optional in the type's schema but not nullable"
                ));
            }
            let original_property = original
                .and_then(|o| o.get("properties"))
                .and_then(|p| p.get(name));
            openai_violations(property, original_property, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = object.get("items") {
        openai_violations(
            items,
            original.and_then(|o| o.get("items")),
            &format!("{path}[]"),
            out,
        );
    }
    for keyword in ["anyOf", "$defs", "definitions"] {
        match object.get(keyword) {
            Some(Value::Array(list)) => {
                for (i, branch) in list.iter().enumerate() {
                    openai_violations(branch, None, &format!("{path}.{keyword}[{i}]"), out);
                }
            }
            Some(Value::Object(defs)) => {
                for (name, def) in defs {
                    openai_violations(def, None, &format!("{path}.{keyword}.{name}"), out);
                }
            }
            _ => {}
        }
    }
}

fn nullable(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) if t == "null" => return true,
        Some(Value::Array(types)) if types.contains(&json!("null")) => return true,
        _ => {}
    }
    schema
        .get("anyOf")
        .and_then(Value::as_array)
        .is_some_and(|branches| branches.iter().any(nullable))
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn list(server: &Server, query: &str) -> Value {
    let answer = server.get(&format!("/api/v2/tools?{query}"));
    ok(&answer).clone()
}

#[test]
fn tool_lists_of_every_bundled_type_follow_each_format_s_rules() {
    let server = Server::start_with(every_bundled_type());

    let types = server.get("/v1/action-types");
    let mut every_type: Vec<String> = ok(&types)["items"]
        .as_array()
        .expect("action types")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    every_type.sort();
    every_type.dedup();
    assert!(every_type.len() >= 7, "{every_type:?}");

    // MCP: every type is a tool, with its schema and its annotations.
    let mcp = list(&server, "format=mcp");
    assert_eq!(mcp["format"], "mcp");
    assert_eq!(mcp["omitted"], json!([]), "MCP takes every bundled schema");
    let mcp_tools = mcp["tools"].as_array().expect("tools").clone();
    assert_eq!(mcp_tools.len(), every_type.len());
    assert_eq!(mcp["total"], every_type.len());
    let by_name = |name: &str| -> Value {
        mcp_tools
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no MCP tool {name}"))
    };
    for tool in &mcp_tools {
        let name = tool["name"].as_str().expect("name");
        assert!(valid_tool_name(name), "{name}");
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
        assert!(
            tool["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
        for hint in ["destructiveHint", "idempotentHint", "openWorldHint"] {
            assert!(tool["annotations"][hint].is_boolean(), "{name} {hint}");
        }
    }
    // crm_sync reaches HubSpot and is idempotent (an upsert by email); a
    // LinkedIn message reaches a provider and is not idempotent; the no-op
    // fixture reaches nothing.
    let crm = by_name("crm_sync");
    assert_eq!(crm["annotations"]["openWorldHint"], true);
    assert_eq!(crm["annotations"]["idempotentHint"], true);
    let linkedin = by_name("linkedin_message");
    assert_eq!(linkedin["annotations"]["openWorldHint"], true);
    assert_eq!(linkedin["annotations"]["idempotentHint"], false);
    assert_eq!(linkedin["annotations"]["destructiveHint"], true);
    let noop = by_name("noop");
    assert_eq!(noop["annotations"]["openWorldHint"], false);

    // OpenAI's strict mode: each definition is walked against the rules;
    // a type that cannot be expressed is left out with its reason.
    let openai = list(&server, "format=openai");
    let tools = openai["tools"].as_array().expect("tools");
    let omitted = openai["omitted"].as_array().expect("omitted");
    assert_eq!(tools.len() + omitted.len(), every_type.len(), "{openai}");
    assert!(tools.len() >= 4, "most types convert: {openai}");
    for tool in tools {
        assert_eq!(tool["type"], "function");
        assert_eq!(tool["function"]["strict"], true);
        let name = tool["function"]["name"].as_str().expect("name");
        assert!(valid_tool_name(name), "{name}");
        let parameters = &tool["function"]["parameters"];
        assert_eq!(parameters["type"], "object", "{name}");
        let original = by_name(name)["inputSchema"].clone();
        let mut violations = Vec::new();
        openai_violations(parameters, Some(&original), name, &mut violations);
        assert!(
            violations.is_empty(),
            "{name}: {violations:#?}\n{parameters:#}"
        );
    }
    for left_out in omitted {
        let reason = left_out["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "{left_out}");
        assert!(left_out["type"].is_string() && left_out["name"].is_string());
    }
    // crm_sync's free-form `properties` map has no strict-mode form.
    let crm_omitted = omitted
        .iter()
        .find(|o| o["type"] == "crm_sync")
        .expect("crm_sync is left out of the strict list");
    assert!(
        crm_omitted["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("properties"),
        "the reason names the path: {crm_omitted}"
    );

    // Anthropic: an object at the top, never a top-level union.
    let anthropic = list(&server, "format=anthropic");
    let tools = anthropic["tools"].as_array().expect("tools");
    assert_eq!(
        tools.len() + anthropic["omitted"].as_array().map_or(0, Vec::len),
        every_type.len()
    );
    for tool in tools {
        let name = tool["name"].as_str().expect("name");
        assert!(valid_tool_name(name), "{name}");
        let schema = &tool["input_schema"];
        assert_eq!(schema["type"], "object", "{name}");
        for keyword in ["anyOf", "oneOf", "allOf", "$schema"] {
            assert!(
                schema.get(keyword).is_none(),
                "{name} has a top-level {keyword}"
            );
        }
        assert!(tool["description"].is_string(), "{name}");
    }

    // Filters and pages.
    let filtered = list(&server, "format=mcp&types=crm_sync,noop");
    let names: Vec<&str> = filtered["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["crm_sync", "noop"]);
    let by_app = list(&server, "format=anthropic&app=linkedin-message");
    assert_eq!(
        by_app["tools"].as_array().map(Vec::len),
        Some(1),
        "{by_app}"
    );
    assert_eq!(by_app["tools"][0]["name"], "linkedin_message");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = list(&server, &format!("format=mcp&limit=2{cursor}"));
        let tools = page["tools"].as_array().expect("tools");
        assert!(tools.len() <= 2);
        paged.extend(
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let all: Vec<String> = mcp_tools
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(paged, all, "the pages together are the whole list");

    // Bad queries are refused, by name.
    for (query, says) in [
        ("format=gemini", "format"),
        ("limit=129", "limit"),
        ("limit=0", "limit"),
        ("types=no_such_type", "no_such_type"),
        ("colour=blue", "colour"),
    ] {
        let answer = server.get(&format!("/api/v2/tools?{query}"));
        assert_eq!(answer.status, 422, "{query}: {}", answer.text);
        assert!(answer.text.contains(says), "{query}: {}", answer.text);
    }
    let none = server.call("GET", "/api/v2/tools", None, None);
    assert_eq!(none.status, 401);
    let reader = mint(&server, &["actions:read"], None);
    let under = server.call("GET", "/api/v2/tools", Some(&reader), None);
    assert_eq!(under.status, 403);
    assert!(under.text.contains("plugins:read"), "{}", under.text);
}

#[test]
fn tool_calls_as_models_return_them_run_or_wait_for_approval() {
    let providers = Providers::start();
    let server = Server::start_with(outreach());
    bearer_account(&server, "crm-sync", "ada", &providers);
    bearer_account(&server, "linkedin-message", "ada", &providers);

    // OpenAI's tool call, arguments as a JSON string: it runs.
    let arguments = json!({ "contacts": [{ "email": "openai@example.com", "properties": { "firstname": "Ada" } }] })
        .to_string();
    let call = server.post(
        "/api/v2/tools/execute",
        &json!({ "id": "call_abc", "type": "function", "function": { "name": "crm_sync", "arguments": arguments }, "entityId": "ada" }),
    );
    let result = ok(&call);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["successful"], true);
    assert_eq!(result["tool_call_id"], "call_abc");
    assert_eq!(result["type"], "crm_sync");
    assert!(result["data"]["created"].is_array(), "{result}");
    let content: Value = serde_json::from_str(result["content"].as_str().expect("content"))
        .expect("the content is the output as JSON text");
    assert_eq!(content, result["data"]);
    let log_id = result["log_id"].as_str().expect("log id");
    ok(&server.get(&format!("/v1/executions/{log_id}")));
    let upserts = hubspot_upserts(&providers);
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0]["inputs"][0]["id"], "openai@example.com");

    // Anthropic's tool_use block for a type that needs approval: a stored
    // action, and nothing at LinkedIn until a person approves it.
    let call = server.post(
        "/api/v2/tools/execute",
        &json!({ "type": "tool_use", "id": "toolu_01", "name": "linkedin_message", "input": { "recipients": ["urn:li:person:rest"], "body": "Hello over REST" }, "entityId": "ada" }),
    );
    let result = ok(&call);
    assert_eq!(result["status"], "pending_approval", "{result}");
    assert_eq!(result["successful"], false);
    let proposal = &result["proposal"];
    let action_id = proposal["action_id"]
        .as_str()
        .expect("action id")
        .to_owned();
    assert_eq!(proposal["status"], "pending_approval");
    assert!(
        proposal["approve_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/v1/actions/{action_id}/approve"))),
        "{proposal}"
    );
    assert!(
        result["content"]
            .as_str()
            .unwrap_or_default()
            .contains(&action_id)
    );
    approve_and_expect_one_message(&server, &providers, &action_id, "Hello over REST");

    // A key whose policy is "propose only" proposes even a type that needs
    // no approval; nothing reaches HubSpot.
    let proposer = mint(
        &server,
        &[
            "actions:write",
            "actions:read",
            "actions:approve",
            "actions:execute",
            "keys:write",
        ],
        Some("propose_only"),
    );
    let call = server.call(
        "POST",
        "/api/v2/tools/execute",
        Some(&proposer),
        Some(&json!({ "name": "crm_sync", "arguments": { "contacts": [{ "email": "proposed@example.com" }] }, "entityId": "ada" })),
    );
    let result = ok(&call);
    assert_eq!(result["status"], "pending_approval", "{result}");
    let proposed = result["proposal"]["action_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(action_status(&server, &proposed), "pending_approval");
    assert_eq!(
        hubspot_upserts(&providers).len(),
        1,
        "nothing more at HubSpot"
    );
    // It cannot mint itself a key that executes, nor approve.
    // The keys it mints are propose_only too.
    let minted = server.call(
        "POST",
        "/v1/api-keys",
        Some(&proposer),
        Some(&json!({ "scopes": ["actions:read"] })),
    );
    assert_eq!(ok(&minted)["api_key"]["policy"], "propose_only");
    let escalate = server.call(
        "POST",
        "/v1/api-keys",
        Some(&proposer),
        Some(&json!({ "scopes": ["actions:read"], "policy": "execute" })),
    );
    assert_eq!(escalate.status, 403, "{}", escalate.text);
    assert!(escalate.text.contains("propose_only"), "{}", escalate.text);
    let approve = server.call(
        "POST",
        &format!("/v1/actions/{proposed}/approve"),
        Some(&proposer),
        Some(&json!({ "action": "approve" })),
    );
    assert_eq!(approve.status, 403, "{}", approve.text);
    assert!(approve.text.contains("propose_only"), "{}", approve.text);
    let execute = server.call(
        "POST",
        "/api/v2/actions/crm_sync/execute",
        Some(&proposer),
        Some(&json!({ "entityId": "ada", "input": { "contacts": [{ "email": "direct@example.com" }] } })),
    );
    assert_eq!(execute.status, 403, "{}", execute.text);
    assert!(execute.text.contains("propose_only"), "{}", execute.text);

    // Arguments that break the schema: every path, nothing sent.
    let call = server.post(
        "/api/v2/tools/execute",
        &json!({ "name": "crm_sync", "arguments": "{\"contacts\":[{\"email\":7}],\"extra\":true}", "entityId": "ada" }),
    );
    assert_eq!(call.status, 422, "{}", call.text);
    assert_schema_errors(&call.json["errors"]);

    // Two accounts for one user: the candidates, never a guess.
    bearer_account(&server, "crm-sync", "twice", &providers);
    bearer_account(&server, "crm-sync", "twice", &providers);
    let call = server.post(
        "/api/v2/tools/execute",
        &json!({ "name": "crm_sync", "arguments": { "contacts": [{ "email": "x@example.com" }] }, "entityId": "twice" }),
    );
    assert_eq!(call.status, 422, "{}", call.text);
    assert_eq!(
        call.json["candidates"].as_array().map(Vec::len),
        Some(2),
        "{}",
        call.text
    );
    assert_eq!(hubspot_upserts(&providers).len(), 1);

    // Bad calls get clear answers.
    for (body, status, says) in [
        (
            json!({ "name": "no_such_tool", "arguments": {} }),
            404,
            "no_such_tool",
        ),
        (
            json!({ "name": "crm_sync", "arguments": "{not json" }),
            422,
            "not JSON",
        ),
        (
            json!({ "name": "crm_sync", "arguments": "[1]" }),
            422,
            "object",
        ),
        (json!({ "arguments": {} }), 422, "names no tool"),
        (
            json!({ "function": { "name": "noop", "arguments": "{}" }, "name": "noop" }),
            422,
            "once",
        ),
    ] {
        let answer = server.post("/api/v2/tools/execute", &body);
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        assert!(answer.text.contains(says), "{body}: {}", answer.text);
    }
    let none = server.call(
        "POST",
        "/api/v2/tools/execute",
        None,
        Some(&json!({ "name": "noop", "arguments": {} })),
    );
    assert_eq!(none.status, 401);
    let reader = mint(&server, &["actions:read", "plugins:read"], None);
    let under = server.call(
        "POST",
        "/api/v2/tools/execute",
        Some(&reader),
        Some(&json!({ "name": "noop", "arguments": {} })),
    );
    assert_eq!(under.status, 403, "{}", under.text);
    assert!(under.text.contains("actions:execute"), "{}", under.text);

    server.assert_no_leak(&[TOKEN]);
}

/// The errors of `{"contacts":[{"email":7}],"extra":true}` against
/// crm_sync's schema: the wrong type at its path, the unknown property by name.
fn assert_schema_errors(errors: &Value) {
    let errors = errors.as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["path"] == "/contacts/0/email"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("extra"))),
        "the unknown property is named: {errors:?}"
    );
}

/// Runs one of the real MCP clients against `url` and returns what it printed.
fn run_client(client: &str, url: &str, key: &str) -> Value {
    let dir = workspace_root().join("tests/peers/mcp");
    let mut command = match client {
        "python" => {
            let mut command = Command::new(python());
            command.arg(dir.join("client.py")).args([url, key, "auto"]);
            command
        }
        "python-legacy" => {
            let mut command = Command::new(python());
            command
                .arg(dir.join("client.py"))
                .args([url, key, "legacy"]);
            command
        }
        flavour => {
            assert!(
                dir.join("node_modules/@modelcontextprotocol").is_dir(),
                "the MCP TypeScript SDKs are not installed: run scripts/setup-test-tools"
            );
            let mut command = Command::new("node");
            command
                .arg(dir.join("client.mjs"))
                .args([flavour, url, key]);
            command
        }
    };
    let output = command
        .current_dir(&dir)
        .output()
        .expect("the client starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the {client} client failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|err| panic!("the {client} client printed no JSON ({err}): {stdout}"))
}

/// The scenario every client runs: connect, list, call crm_sync, call
/// linkedin_message (which waits for approval), break the schema, call an
/// unknown tool, and follow up.
fn mcp_scenario(client: &str, protocol: &str) {
    let providers = Providers::start();
    let server = Server::start_with(outreach());
    bearer_account(&server, "crm-sync", "ada", &providers);
    bearer_account(&server, "linkedin-message", "ada", &providers);
    let key = mint(
        &server,
        &[
            "plugins:read",
            "actions:execute",
            "actions:write",
            "actions:read",
        ],
        None,
    );
    let out = run_client(client, &format!("{}/mcp?entityId=ada", server.url), &key);
    assert_eq!(out["protocol"], protocol, "{out:#}");
    // What the client received (its bodies are not the test's to record).
    if let Some(secret) = contains_secret(&out.to_string(), &[TOKEN]) {
        panic!("a tool result carries the credential {secret:?}: {out}");
    }

    let tools = out["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in [
        "crm_sync",
        "linkedin_message",
        "noop",
        "get_action",
        "list_pending_actions",
    ] {
        assert!(names.contains(&name), "{name} is listed: {names:?}");
    }
    let crm = tools
        .iter()
        .find(|t| t["name"] == "crm_sync")
        .expect("crm_sync");
    assert_eq!(crm["inputSchema"]["type"], "object");
    assert!(
        crm["inputSchema"]["properties"]["contacts"].is_object(),
        "{crm}"
    );
    assert_eq!(crm["annotations"]["openWorldHint"], true, "{crm}");
    assert_eq!(crm["annotations"]["idempotentHint"], true, "{crm}");

    // crm_sync ran through the pipeline: HubSpot got the upsert, with the
    // account's token injected, and the output is the structured content.
    assert_eq!(out["crm"]["isError"], false, "{:#}", out["crm"]);
    assert!(
        out["crm"]["structured"]["created"].is_array(),
        "{:#}",
        out["crm"]
    );
    let upserts = hubspot_upserts(&providers);
    assert_eq!(upserts.len(), 1, "{upserts:?}");
    let email = format!("{}@example.com", client.trim_end_matches("-legacy"));
    assert_eq!(upserts[0]["inputs"][0]["id"], email, "{upserts:?}");

    // linkedin_message needs approval: a stored action, answered at once.
    let proposal = &out["linkedin"]["structured"];
    assert_eq!(out["linkedin"]["isError"], false, "{:#}", out["linkedin"]);
    assert_eq!(proposal["status"], "pending_approval", "{proposal:#}");
    let action_id = proposal["action_id"]
        .as_str()
        .expect("action id")
        .to_owned();
    assert!(
        proposal["approve_url"]
            .as_str()
            .is_some_and(|u| u.contains(&action_id)),
        "{proposal:#}"
    );

    // The schema-breaking call is a tool error naming each path.
    let bad = &out["bad"];
    assert_eq!(bad["isError"], true, "{bad:#}");
    assert_eq!(bad["structured"]["error_code"], "invalid_input", "{bad:#}");
    assert_eq!(bad["structured"]["retryable"], false, "{bad:#}");
    assert_schema_errors(&bad["structured"]["errors"]);

    // An unknown tool is a protocol error (JSON-RPC invalid params).
    assert_eq!(out["unknown"]["raised"], true, "{:#}", out["unknown"]);
    assert_eq!(out["unknown"]["code"], -32602, "{:#}", out["unknown"]);

    // The follow-up tools see the proposal.
    assert_eq!(
        out["get_action"]["isError"], false,
        "{:#}",
        out["get_action"]
    );
    assert_eq!(
        out["get_action"]["structured"]["status"],
        "pending_approval"
    );
    let pending = out["pending"]["structured"]["actions"]
        .as_array()
        .expect("pending actions");
    assert!(
        pending.iter().any(|a| a["action_id"] == action_id.as_str()),
        "{pending:?}"
    );

    // Nothing at LinkedIn until a person approves it over REST; then one message.
    let body = format!("Hello from {}", client.trim_end_matches("-legacy"));
    approve_and_expect_one_message(&server, &providers, &action_id, &body);

    server.assert_no_leak(&[TOKEN]);
    // The key was shown once, when it was minted; it is in no log and not
    // stored in plain text.
    server.assert_not_stored(&[&key]);
}

#[test]
fn the_python_sdk_lists_calls_and_proposes_over_mcp() {
    mcp_scenario("python", "2026-07-28");
}

#[test]
fn the_python_sdk_on_the_session_based_protocol() {
    mcp_scenario("python-legacy", "2025-11-25");
}

#[test]
fn the_typescript_sdk_1_lists_calls_and_proposes_over_a_2025_11_25_session() {
    mcp_scenario("sdk1", "2025-11-25");
}

#[test]
fn the_typescript_client_2_lists_calls_and_proposes_over_the_stateless_2026_07_28() {
    mcp_scenario("sdk2", "2026-07-28");
}

fn mcp_post(server: &Server, key: Option<&str>, host: Option<&str>, body: &Value) -> Answer {
    let mut request = server
        .request("POST", "/mcp")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .body(body.to_string());
    if let Some(method) = body["method"].as_str() {
        request = request.header("mcp-method", method);
    }
    // The header names the tool, or the task.
    let name = body["params"]["name"]
        .as_str()
        .or(body["params"]["taskId"].as_str());
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(host) = host {
        request = request.header("host", host);
    }
    server.send(request)
}

/// A request of the stateless revision, which carries the protocol version
/// and the client's capabilities in every request's `_meta`.
fn stateless(method: &str, mut params: Value) -> Value {
    let meta = params
        .as_object_mut()
        .expect("params")
        .entry("_meta")
        .or_insert_with(|| json!({}));
    meta["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
    json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params })
}

#[test]
fn mcp_refuses_missing_keys_missing_scopes_and_hosts_that_are_not_allowed() {
    let providers = Providers::start();
    let mut options = outreach();
    options.env.push((
        "ACTIONHOST_PUBLIC_URL".into(),
        "https://actions.example.com".into(),
    ));
    options.env.push((
        "ACTIONHOST_MCP__ALLOWED_HOSTS".into(),
        "[\"mcp.internal:8443\"]".into(),
    ));
    let server = Server::start_with(options);
    bearer_account(&server, "crm-sync", "ada", &providers);
    let list = stateless("tools/list", json!({}));

    let answer = mcp_post(&server, None, None, &list);
    assert_eq!(answer.status, 401, "{}", answer.text);
    let answer = mcp_post(&server, Some("ahk_not_a_key"), None, &list);
    assert_eq!(answer.status, 401, "{}", answer.text);

    let caller = mint(&server, &["actions:execute"], None);
    let answer = mcp_post(&server, Some(&caller), None, &list);
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert!(answer.text.contains("plugins:read"), "{}", answer.text);
    let lister = mint(&server, &["plugins:read"], None);
    let call = stateless("tools/call", json!({ "name": "noop", "arguments": {} }));
    let answer = mcp_post(&server, Some(&lister), None, &call);
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert!(answer.text.contains("actions:execute"), "{}", answer.text);

    // Cancelling a task changes the action: actions:read follows a task,
    // and does not cancel one.
    let reader = mint(&server, &["actions:read"], None);
    let cancel = stateless("tasks/cancel", json!({ "taskId": "act_missing" }));
    let answer = mcp_post(&server, Some(&reader), None, &cancel);
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert!(answer.text.contains("actions:write"), "{}", answer.text);

    // The configured public URL's host, the extra allowed hosts (a port
    // given with one is not compared) and
    // loopback are let in; any other Host header is refused.
    for host in ["actions.example.com", "mcp.internal", "127.0.0.1"] {
        let answer = mcp_post(&server, Some(&server.admin_key), Some(host), &list);
        assert_eq!(answer.status, 200, "Host {host}: {}", answer.text);
        assert!(
            answer.json["result"]["tools"].is_array(),
            "Host {host}: {}",
            answer.text
        );
    }
    let answer = mcp_post(
        &server,
        Some(&server.admin_key),
        Some("evil.example"),
        &list,
    );
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert!(answer.text.contains("evil.example"), "{}", answer.text);

    // A call's own _meta chooses the user; a wrong entity is a tool error.
    let call = stateless(
        "tools/call",
        json!({ "name": "crm_sync", "arguments": { "contacts": [{ "email": "meta@example.com" }] }, "_meta": { "entityId": "nobody" } }),
    );
    let answer = mcp_post(&server, Some(&server.admin_key), None, &call);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json["result"]["isError"], true, "{}", answer.text);
    assert!(hubspot_upserts(&providers).is_empty());
    let call = stateless(
        "tools/call",
        json!({ "name": "crm_sync", "arguments": { "contacts": [{ "email": "meta@example.com" }] }, "_meta": { "entityId": "ada" } }),
    );
    let answer = mcp_post(&server, Some(&server.admin_key), None, &call);
    assert_eq!(answer.json["result"]["isError"], false, "{}", answer.text);
    assert_eq!(hubspot_upserts(&providers).len(), 1);

    // Two accounts that could serve the call: a tool error listing both.
    bearer_account(&server, "crm-sync", "twice", &providers);
    bearer_account(&server, "crm-sync", "twice", &providers);
    let call = stateless(
        "tools/call",
        json!({ "name": "crm_sync", "arguments": { "contacts": [{ "email": "twice@example.com" }] }, "_meta": { "entityId": "twice" } }),
    );
    let answer = mcp_post(&server, Some(&server.admin_key), None, &call);
    let result = &answer.json["result"];
    assert_eq!(result["isError"], true, "{}", answer.text);
    assert_eq!(
        result["structuredContent"]["error_code"], "account_ambiguous",
        "{}",
        answer.text
    );
    assert_eq!(
        result["structuredContent"]["candidates"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{}",
        answer.text
    );
    assert_eq!(
        hubspot_upserts(&providers).len(),
        1,
        "nothing more at HubSpot"
    );

    // An unknown query parameter on the URL is refused by name.
    let answer = server.send(
        server
            .request("POST", "/mcp?entity=ada")
            .bearer_auth(&server.admin_key)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list")
            .body(list.to_string()),
    );
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.text.contains("entity"), "{}", answer.text);

    server.assert_no_leak(&[TOKEN]);
}

/// A client that declares the tasks extension gets a task for a call that
/// waits for approval, and follows it to its end with `tasks/get`. No
/// released client implements the extension yet, so this one speaks the
/// protocol's requests itself.
#[test]
fn a_client_with_the_tasks_extension_follows_a_proposal_to_its_end() {
    let providers = Providers::start();
    let server = Server::start_with(outreach());
    bearer_account(&server, "linkedin-message", "ada", &providers);
    let with_tasks = |method: &str, params: Value| {
        let mut request = stateless(method, params);
        request["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
            json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } });
        mcp_post(&server, Some(&server.admin_key), None, &request)
    };

    let answer = with_tasks(
        "tools/call",
        json!({ "name": "linkedin_message", "arguments": { "recipients": ["urn:li:person:task"], "body": "Hello, task" }, "_meta": { "entityId": "ada" } }),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let task = &answer.json["result"];
    assert_eq!(task["resultType"], "task", "{}", answer.text);
    let task_id = task["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {}", answer.text))
        .to_owned();
    assert_eq!(task["status"], "working", "{}", answer.text);
    assert_eq!(
        action_status(&server, &task_id),
        "pending_approval",
        "the task is the stored action"
    );

    let answer = with_tasks("tasks/get", json!({ "taskId": task_id }));
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json["result"]["status"], "working",
        "{}",
        answer.text
    );
    assert!(linkedin_messages(&providers).is_empty());

    approve_and_expect_one_message(&server, &providers, &task_id, "Hello, task");
    let answer = with_tasks("tasks/get", json!({ "taskId": task_id }));
    assert_eq!(
        answer.json["result"]["status"], "completed",
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains("structuredContent"),
        "the task carries the result: {}",
        answer.text
    );

    // A task of another action, or none, is unknown.
    let answer = with_tasks("tasks/get", json!({ "taskId": "act_missing" }));
    assert!(answer.json["error"].is_object(), "{}", answer.text);
    server.assert_no_leak(&[TOKEN]);
}
