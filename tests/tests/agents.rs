//! Black-box tests of agents (seed 002): the real server, the real provider
//! plugins (`anthropic`, `openai-compatible`) against a stand-in that checks
//! each request as the real APIs would, the real send-email plugin and a
//! real SMTP server.

use std::time::{Duration, Instant};

use actionhost_tests::models::{MODEL_KEY, Models, Reply};
use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::smtp::SmtpSink;
use actionhost_tests::{fixture, plugin};
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

fn field_errors(answer: &Answer) -> Vec<String> {
    answer.json["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn options() -> Options {
    Options {
        plugins: Some(vec![
            plugin("send-email"),
            plugin("linkedin-message"),
            plugin("notes"),
            plugin("anthropic"),
            plugin("openai-compatible"),
            fixture("fixture-noop"),
        ]),
        env: vec![
            ("ACTIONHOST_AGENTS__SCHEDULE_POLL".into(), "500ms".into()),
            ("ACTIONHOST_MODELS__BACKOFF_BASE".into(), "50ms".into()),
        ],
        ..Options::default()
    }
}

/// A provider account of `app` whose key the host injects into requests to
/// the stand-in.
fn model_account(server: &Server, models: &Models, app: &str) -> String {
    let (scheme, base_url) = match app {
        "anthropic" => (
            json!({"type": "api_key", "header": "x-api-key"}),
            models.base_url.clone(),
        ),
        _ => (json!({"type": "bearer"}), format!("{}/v1", models.base_url)),
    };
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": app, "scheme": scheme, "hosts": [models.base_url] }),
    );
    let config_id = ok(&config)["id"].as_str().expect("config").to_owned();
    let credentials = match app {
        "anthropic" => json!({ "api_key": MODEL_KEY }),
        _ => json!({ "token": MODEL_KEY }),
    };
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": "models", "metadata": { "base_url": base_url }, "credentials": credentials }),
    );
    ok(&account)["connectedAccountId"]
        .as_str()
        .expect("account")
        .to_owned()
}

fn smtp_identity(server: &Server, sink: &SmtpSink) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "send-email", "scheme": { "type": "smtp", "host": "127.0.0.1", "port": sink.port } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": "sales", "metadata": { "provider": "smtp", "from": "Sales <sales@example.com>" }, "credentials": { "tls": "none" } }),
    );
    let account_id = ok(&account)["connectedAccountId"]
        .as_str()
        .expect("account")
        .to_owned();
    let identity = server.post(
        "/v1/identities",
        &json!({ "name": "Sam Seller", "email": "sam@example.com", "accounts": { "email": account_id } }),
    );
    ok(&identity)["identity"]["_id"]
        .as_str()
        .expect("identity")
        .to_owned()
}

fn contact(server: &Server, email: &str, stage: &str) -> String {
    let created = server.post(
        "/v1/contacts",
        &json!({ "email": email, "properties": { "firstname": email.split('@').next(), "lifecyclestage": stage } }),
    );
    ok(&created)["contact"]["_id"]
        .as_str()
        .expect("contact")
        .to_owned()
}

fn pageviews(server: &Server, contact: &str, path: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|_| json!({ "event": "pageview", "url": format!("https://example.com{path}"), "contact_id": contact }))
        .collect();
    ok(&server.post("/v1/events", &json!({ "events": events })));
}

fn wait_run(server: &Server, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = server.get(&format!("/v1/agents/runs/{run}?mode=full"));
        let current = ok(&answer)["run"].clone();
        if matches!(
            current["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not finish: {current}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn trigger(server: &Server, agent: &str, body: Value) -> String {
    let answer = server.post(&format!("/v1/agents/{agent}/trigger"), &body);
    ok(&answer)["job_id"].as_str().expect("job id").to_owned()
}

/// The email of the contact a model request is about.
fn email_in(body: &Value) -> String {
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let context: Value = serde_json::from_str(prompt).unwrap_or_default();
    context["contact"]["email"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn pricing_agent(server: &Server, identity: &str, provider: &str) -> String {
    let created = server.post(
        "/v1/agents",
        &json!({
            "name": "Pricing follow-up",
            "playbook_template": "pricing_visitor_followup",
            "identity_id": identity,
            "llm_config": { "provider": provider, "model": "test-model", "temperature": 0.2 },
        }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    created.json["agent"]["_id"]
        .as_str()
        .expect("agent")
        .to_owned()
}

#[test]
fn seed_002_example_agent_is_created_as_written_and_every_bad_field_is_named() {
    let models = Models::start();
    let server = Server::start_with(options());
    model_account(&server, &models, "anthropic");
    // The seed's example, as written.
    let created = server.post(
        "/v1/agents",
        &json!({
            "name": "Pricing visitor follow-up",
            "description": "Drafts a personal email when a contact visits /pricing twice in 7 days.",
            "playbook": { "playbook_md": "You are an SDR. For each contact, look at their recent events. If they visited /pricing 2+ times in the last 7 days and have not received an email from us in the last 3 days, propose a short, personal follow-up email referencing what they did on the site. Keep it under 80 words. If conditions are not met, propose no action." },
            "capabilities": ["email"],
            "identity_id": "id_123",
            "monitoring": { "filter": { "lifecycle_stage": "lead" }, "schedule_cron": "0 14 * * 1-5", "max_contacts_per_run": 25 },
            "llm_config": { "provider": "anthropic", "model": "claude-opus-4-7", "temperature": 0.4 },
            "enabled": true
        }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["status"], "success");
    let agent = &created.json["agent"];
    let id = agent["_id"].as_str().expect("id").to_owned();
    assert_eq!(agent["enabled"], true);
    assert_eq!(agent["monitoring"]["schedule_cron"], "0 14 * * 1-5");
    assert_eq!(agent["llm_config"]["model"], "claude-opus-4-7");

    let listed = server.get("/v1/agents?enabled=true");
    assert_eq!(ok(&listed)["total"], 1);
    assert_eq!(listed.json["agents"][0]["_id"], id.as_str());
    assert_eq!(ok(&server.get("/v1/agents?enabled=false"))["total"], 0);
    let templates = server.get("/v1/agents/templates");
    let names: Vec<&str> = ok(&templates)["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"cold_outreach") && names.contains(&"pricing_visitor_followup"),
        "{names:?}"
    );

    // PATCH changes only what it is sent.
    let patched = server.call(
        "PATCH",
        &format!("/v1/agents/{id}"),
        Some(&server.admin_key),
        Some(&json!({ "playbook": { "playbook_md": "Be brief." } })),
    );
    assert_eq!(
        ok(&patched)["agent"]["playbook"]["playbook_md"],
        "Be brief."
    );
    assert_eq!(
        patched.json["agent"]["monitoring"]["max_contacts_per_run"],
        25
    );
    assert_eq!(patched.json["agent"]["llm_config"]["temperature"], 0.4);

    let base = json!({ "name": "x", "capabilities": ["email"], "playbook": { "playbook_md": "p" }, "llm_config": { "provider": "anthropic", "model": "m" } });
    let with = |change: Value| {
        let mut body = base.clone();
        for (key, value) in change.as_object().expect("object") {
            body[key] = value.clone();
        }
        server.post("/v1/agents", &body)
    };
    for (change, path) in [
        (
            json!({ "monitoring": { "schedule_cron": "0 14 * *" } }),
            "/monitoring/schedule_cron",
        ),
        (
            json!({ "monitoring": { "schedule_cron": "0 25 * * *" } }),
            "/monitoring/schedule_cron",
        ),
        (
            json!({ "monitoring": { "schedule_cron": "0 14 * * 1-5", "timezone": "Mars/Base" } }),
            "/monitoring/schedule_cron",
        ),
        (json!({ "capabilities": ["telepathy"] }), "/capabilities/0"),
        (
            json!({ "playbook_template": "world_domination" }),
            "/playbook_template",
        ),
        (
            json!({ "monitoring": { "max_contacts_per_run": 0 } }),
            "/monitoring/max_contacts_per_run",
        ),
        (
            json!({ "monitoring": { "max_contacts_per_run": 1001 } }),
            "/monitoring/max_contacts_per_run",
        ),
        (
            json!({ "llm_config": { "provider": "anthropic", "model": "m", "temperature": 3.5 } }),
            "/llm_config/temperature",
        ),
        (
            json!({ "llm_config": { "provider": "openai-compatible", "model": "m" } }),
            "/llm_config/provider",
        ),
        (
            json!({ "llm_config": { "provider": "nobody", "model": "m" } }),
            "/llm_config/provider",
        ),
        (json!({ "capabilities": ["crm_sync"] }), "/capabilities/0"),
        (
            json!({ "capabilities": ["linkedin"], "auto_approve": ["linkedin_message"] }),
            "/auto_approve/0",
        ),
    ] {
        let refused = with(change.clone());
        assert_eq!(refused.status, 422, "{change}: {}", refused.text);
        assert!(
            field_errors(&refused).contains(&path.to_owned()),
            "{change} names {path}: {}",
            refused.text
        );
    }
    assert_eq!(
        ok(&server.get("/v1/agents"))["total"],
        1,
        "nothing refused was stored"
    );
    assert!(models.problems().is_empty(), "{:?}", models.problems());
}

#[test]
fn a_run_proposes_for_qualifying_contacts_only_and_its_proposals_are_approved_one_by_one() {
    let models = Models::start();
    let sink = SmtpSink::start();
    let server = Server::start_with(options());
    model_account(&server, &models, "anthropic");
    let identity = smtp_identity(&server, &sink);
    let ada = contact(&server, "ada@example.com", "lead");
    let grace = contact(&server, "grace@example.com", "lead");
    let linus = contact(&server, "linus@example.com", "lead");
    pageviews(&server, &ada, "/pricing", 3);
    pageviews(&server, &grace, "/pricing/enterprise", 2);
    pageviews(&server, &linus, "/docs", 5);
    models.respond(|body| {
        let email = email_in(body);
        Reply::Tool(json!({
            "reasoning": format!("{email} visited /pricing several times this week and got no email"),
            "actions": [{ "type": "email_message", "params": { "subject": "Pricing questions?", "message": format!("Hi {email}, saw you on our pricing page. Worth a call?") } }],
        }))
    });
    let agent = pricing_agent(&server, &identity, "anthropic");
    let run = trigger(&server, &agent, json!({}));
    let done = wait_run(&server, &run);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["summary"],
        json!({ "contacts_evaluated": 2, "actions_proposed": 2, "actions_auto_approved": 0, "actions_pending_approval": 2, "errors": 0 }),
        "{done}"
    );
    // Linus never qualified: two model calls, none about him.
    let requests = models.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| !email_in(&r.body).starts_with("linus"))
    );
    assert!(
        requests[0].system().contains("/pricing"),
        "the playbook is the system prompt"
    );
    assert!(models.problems().is_empty(), "{:?}", models.problems());
    let results = done["contact_results"].as_array().expect("results").clone();
    assert_eq!(results.len(), 2, "{done}");
    for result in &results {
        assert_eq!(result["result"], "evaluated");
        assert!(
            result["reasoning"]
                .as_str()
                .unwrap_or_default()
                .contains("visited /pricing")
        );
        assert_eq!(result["proposed_actions"][0]["type"], "email_message");
        assert_eq!(result["proposed_actions"][0]["status"], "pending_approval");
    }
    // Summary mode has only the counts.
    let summary = server.get(&format!("/v1/agents/runs/{run}?mode=summary"));
    assert!(ok(&summary)["run"].get("contact_results").is_none());
    assert_eq!(summary.json["run"]["summary"]["actions_proposed"], 2);
    let runs = server.get(&format!("/v1/agents/{agent}/runs?status=completed"));
    assert_eq!(ok(&runs)["total"], 1);

    // Approve Ada's, reject Grace's: one email, to Ada, from the identity.
    let approved = server.post(
        &format!("/v1/agents/runs/{run}/contacts/{ada}/actions/0/approve"),
        &json!({}),
    );
    assert_eq!(
        ok(&approved)["action_status"],
        "scheduled",
        "{}",
        approved.text
    );
    let rejected = server.post(
        &format!("/v1/agents/runs/{run}/contacts/{grace}/actions/0/reject"),
        &json!({ "comment": "not yet" }),
    );
    assert_eq!(ok(&rejected)["action_status"], "rejected");
    let again = server.post(
        &format!("/v1/agents/runs/{run}/contacts/{grace}/actions/0/approve"),
        &json!({}),
    );
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(
        server
            .post(
                &format!("/v1/agents/runs/{run}/contacts/{ada}/actions/7/approve"),
                &json!({})
            )
            .status,
        404
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.received().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let received = sink.received();
    assert_eq!(received.len(), 1, "exactly one email");
    assert_eq!(received[0].rcpt_tos, ["ada@example.com"]);
    assert_eq!(received[0].mail_from, "sam@example.com");
    let sent = ok(&approved)["action_id"]
        .as_str()
        .expect("action")
        .to_owned();
    let action = server.get(&format!("/v1/actions/{sent}"));
    assert_eq!(action.json["action"]["agent_id"], agent.as_str());
    assert_eq!(action.json["action"]["run_id"], run.as_str());
    assert_eq!(action.json["action"]["contact_id"], ada.as_str());
}

#[test]
fn auto_approval_where_the_plugin_allows_it_and_a_run_approved_in_bulk() {
    let models = Models::start();
    let sink = SmtpSink::start();
    let server = Server::start_with(options());
    model_account(&server, &models, "openai-compatible");
    let identity = smtp_identity(&server, &sink);
    let contacts: Vec<String> = (0..5)
        .map(|i| contact(&server, &format!("c{i}@example.com"), "lead"))
        .collect();
    models.respond(|body| {
        let email = email_in(body);
        // Arguments as an object, as some OpenAI-compatible servers send.
        Reply::ToolObject(json!({
            "reasoning": "a lead worth a note and an email",
            "actions": [
                { "type": "note", "params": { "body": format!("Evaluated {email}") } },
                { "type": "email_message", "params": { "subject": "Hello", "message": "Hi there" } },
            ],
        }))
    });
    let created = server.post(
        "/v1/agents",
        &json!({
            "name": "Outreach", "playbook_template": "cold_outreach", "capabilities": ["email", "notes"],
            "auto_approve": ["note"], "identity_id": identity,
            "llm_config": { "provider": "openai-compatible", "model": "llama3.1:8b" },
        }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let agent = created.json["agent"]["_id"]
        .as_str()
        .expect("agent")
        .to_owned();
    let run = trigger(&server, &agent, json!({}));
    let done = wait_run(&server, &run);
    assert_eq!(
        done["summary"],
        json!({ "contacts_evaluated": 5, "actions_proposed": 10, "actions_auto_approved": 5, "actions_pending_approval": 5, "errors": 0 }),
        "{done}"
    );
    assert!(models.problems().is_empty(), "{:?}", models.problems());
    // The notes ran by themselves.
    let deadline = Instant::now() + Duration::from_secs(30);
    let count_notes = || -> usize {
        contacts
            .iter()
            .map(|c| {
                server.get(&format!("/v1/contacts/{c}/notes")).json["total"]
                    .as_u64()
                    .unwrap_or(0) as usize
            })
            .sum()
    };
    while count_notes() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_notes(), 5);
    assert!(sink.received().is_empty(), "no email before approval");
    // Bulk approval of the run: five emails.
    let bulk = server.post(
        &format!("/v1/agents/runs/{run}/approve"),
        &json!({ "action": "approve", "comment": "looks good" }),
    );
    assert_eq!(ok(&bulk)["decided"], 5, "{}", bulk.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.received().len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sink.received().len(), 5);
    let again = server.post(
        &format!("/v1/agents/runs/{run}/approve"),
        &json!({ "action": "approve" }),
    );
    assert_eq!(ok(&again)["decided"], 0, "nothing left to decide");
}

#[test]
fn invalid_proposals_get_one_correction_then_count_as_errors_and_providers_are_retried() {
    let models = Models::start();
    let sink = SmtpSink::start();
    let server = Server::start_with(options());
    model_account(&server, &models, "anthropic");
    let identity = smtp_identity(&server, &sink);
    let ada = contact(&server, "ada@example.com", "lead");
    pageviews(&server, &ada, "/pricing", 2);
    let agent = pricing_agent(&server, &identity, "anthropic");

    // Invalid twice (an empty subject, then a type outside the capabilities).
    models.queue([
        Reply::Tool(json!({ "reasoning": "r", "actions": [{ "type": "email_message", "params": { "subject": "", "message": "Hi" } }] })),
        Reply::Tool(json!({ "reasoning": "r", "actions": [{ "type": "linkedin_message", "params": { "body": "Hi" } }] })),
    ]);
    let run = trigger(&server, &agent, json!({ "contact_ids": [ada] }));
    let done = wait_run(&server, &run);
    assert_eq!(done["summary"]["errors"], 1, "{done}");
    assert_eq!(done["summary"]["actions_proposed"], 0, "{done}");
    let result = &done["contact_results"][0];
    let error = result["errors"][0].as_str().unwrap_or_default();
    assert!(
        error.contains("linkedin_message") && error.contains("not one of the agent's action types"),
        "{done}"
    );
    let requests = models.requests();
    assert_eq!(requests.len(), 2, "one correction");
    let second = requests[1].body["messages"].to_string();
    assert!(
        second.contains("/subject") && second.contains("tool_result"),
        "the errors went back to the model: {second}"
    );

    // Malformed arguments, then a valid answer.
    models.queue([
        Reply::ToolRaw("{not json".into()),
        Reply::Tool(json!({ "reasoning": "fine now", "actions": [{ "type": "email_message", "params": { "subject": "Hi", "message": "Hello" } }] })),
    ]);
    let run = trigger(&server, &agent, json!({ "contact_ids": [ada] }));
    let done = wait_run(&server, &run);
    assert_eq!(done["summary"]["actions_proposed"], 1, "{done}");
    assert_eq!(done["summary"]["errors"], 0, "{done}");

    // A 429 with Retry-After, a 529 and a 500 are retried; the answer comes.
    let before = models.requests().len();
    models.queue([
        Reply::Status { status: 429, retry_after: Some(1), body: json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}) },
        Reply::Status { status: 529, retry_after: None, body: json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}) },
        Reply::Status { status: 500, retry_after: None, body: json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}) },
        Reply::Tool(json!({ "reasoning": "after retries", "actions": [] })),
    ]);
    let started = Instant::now();
    let run = trigger(&server, &agent, json!({ "contact_ids": [ada] }));
    let done = wait_run(&server, &run);
    assert_eq!(done["summary"]["errors"], 0, "{done}");
    assert_eq!(done["contact_results"][0]["reasoning"], "after retries");
    assert_eq!(models.requests().len() - before, 4);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );

    // A spent quota is not retried.
    let before = models.requests().len();
    models.queue([Reply::Status { status: 400, retry_after: None, body: json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low"}}) }]);
    let run = trigger(&server, &agent, json!({ "contact_ids": [ada] }));
    let done = wait_run(&server, &run);
    assert_eq!(done["summary"]["errors"], 1, "{done}");
    assert!(
        done["contact_results"][0]["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("quota"),
        "{done}"
    );
    assert_eq!(models.requests().len() - before, 1, "no retry");
    assert!(models.problems().is_empty(), "{:?}", models.problems());
}

#[test]
fn a_schedule_starts_runs_by_itself() {
    let models = Models::start();
    let server = Server::start_with(options());
    model_account(&server, &models, "anthropic");
    contact(&server, "ada@example.com", "customer");
    models.respond(|_| Reply::Tool(json!({ "reasoning": "nothing to do", "actions": [] })));
    let created = server.post(
        "/v1/agents",
        &json!({
            "name": "Every two seconds", "capabilities": ["notes"], "playbook": { "playbook_md": "Note what you see." },
            "monitoring": { "filter": { "lifecycle_stage": "customer" }, "schedule_cron": "*/2 * * * * *" },
            "llm_config": { "provider": "anthropic", "model": "m" }, "enabled": true,
        }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let agent = created.json["agent"]["_id"]
        .as_str()
        .expect("agent")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runs = server.get(&format!("/v1/agents/{agent}/runs?status=completed"));
        if ok(&runs)["total"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(runs.json["runs"][0]["trigger"], "schedule");
            assert_eq!(runs.json["runs"][0]["summary"]["contacts_evaluated"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled run: {}", runs.text);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Disabled, it stops.
    let patched = server.call(
        "PATCH",
        &format!("/v1/agents/{agent}"),
        Some(&server.admin_key),
        Some(&json!({ "enabled": false })),
    );
    assert_eq!(ok(&patched)["agent"]["enabled"], false);
    std::thread::sleep(Duration::from_secs(1));
    let count = server.get(&format!("/v1/agents/{agent}/runs")).json["total"]
        .as_u64()
        .unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        server.get(&format!("/v1/agents/{agent}/runs")).json["total"]
            .as_u64()
            .unwrap_or(0),
        count
    );
}

#[test]
fn kill_9_in_the_middle_of_a_run_resumes_it_without_proposing_twice() {
    let models = Models::start();
    let sink = SmtpSink::start();
    let mut server = Server::start_with(Options {
        env: vec![
            ("ACTIONHOST_AGENTS__CONCURRENCY".into(), "2".into()),
            ("ACTIONHOST_MODELS__BACKOFF_BASE".into(), "50ms".into()),
        ],
        ..options()
    });
    model_account(&server, &models, "anthropic");
    let identity = smtp_identity(&server, &sink);
    let ids: Vec<String> = (0..12)
        .map(|i| contact(&server, &format!("p{i}@example.com"), "lead"))
        .collect();
    for id in &ids {
        pageviews(&server, id, "/pricing", 2);
    }
    models.respond(|_| {
        Reply::Slow(
            Duration::from_millis(300),
            Box::new(Reply::Tool(json!({ "reasoning": "r", "actions": [{ "type": "email_message", "params": { "subject": "Hi", "message": "Hello" } }] }))),
        )
    });
    let agent = pricing_agent(&server, &identity, "anthropic");
    let run = trigger(&server, &agent, json!({}));
    // Killed once some contacts, not all, have their result.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = server.get(&format!("/v1/agents/runs/{run}?mode=summary"));
        let evaluated = current.json["run"]["summary"]["contacts_evaluated"]
            .as_u64()
            .unwrap_or(0);
        if evaluated >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not progress: {}",
            current.text
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let server = server.restart();
    let done = wait_run(&server, &run);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["summary"]["contacts_evaluated"], 12, "{done}");
    assert_eq!(done["summary"]["actions_proposed"], 12, "{done}");
    // Every contact has one set of proposals: one action each.
    for id in &ids {
        let actions = server.get(&format!("/v1/actions?contact_id={id}"));
        assert_eq!(
            ok(&actions)["pagination"]["total_items"],
            1,
            "contact {id}: {}",
            actions.text
        );
    }
    let all = server.get("/v1/actions?limit=100");
    assert_eq!(ok(&all)["pagination"]["total_items"], 12);
    // The listing filters by the agent that proposed, alone or with others.
    let by_agent = server.get(&format!("/v1/actions?agent_id={agent}&limit=5"));
    assert_eq!(ok(&by_agent)["pagination"]["total_items"], 12);
    assert!(
        by_agent.json["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .all(|a| a["agent_id"] == agent.as_str())
    );
    let one = server.get(&format!(
        "/v1/actions?agent_id={agent}&contact_id={}&sort_by=updated_at",
        ids[3]
    ));
    assert_eq!(ok(&one)["pagination"]["total_items"], 1);
    let other = server.get("/v1/actions?agent_id=agt_nobody");
    assert_eq!(ok(&other)["pagination"]["total_items"], 0);
}

#[test]
fn deleting_an_agent_removes_its_runs_and_cancels_what_it_proposed() {
    let models = Models::start();
    let sink = SmtpSink::start();
    let server = Server::start_with(options());
    model_account(&server, &models, "anthropic");
    let identity = smtp_identity(&server, &sink);
    let ada = contact(&server, "ada@example.com", "lead");
    pageviews(&server, &ada, "/pricing", 2);
    models.respond(|_| {
        Reply::Tool(json!({ "reasoning": "r", "actions": [
        { "type": "email_message", "params": { "subject": "One", "message": "Hello" } },
        { "type": "email_message", "params": { "subject": "Two", "message": "Hello" } },
    ] }))
    });
    let agent = pricing_agent(&server, &identity, "anthropic");
    let run = trigger(&server, &agent, json!({}));
    let done = wait_run(&server, &run);
    let first = done["contact_results"][0]["proposed_actions"][0]["action_id"]
        .as_str()
        .expect("action")
        .to_owned();
    let second = done["contact_results"][0]["proposed_actions"][1]["action_id"]
        .as_str()
        .expect("action")
        .to_owned();
    ok(&server.post(
        &format!("/v1/agents/runs/{run}/contacts/{ada}/actions/0/approve"),
        &json!({}),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(&format!("/v1/actions/{first}")).json["action"]["status"] != "succeeded" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let deleted = server.call(
        "DELETE",
        &format!("/v1/agents/{agent}"),
        Some(&server.admin_key),
        None,
    );
    assert_eq!(ok(&deleted)["runs_removed"], 1, "{}", deleted.text);
    assert_eq!(deleted.json["actions_cancelled"], 1);
    assert_eq!(server.get(&format!("/v1/agents/{agent}")).status, 404);
    assert_eq!(server.get(&format!("/v1/agents/runs/{run}")).status, 404);
    let kept = server.get(&format!("/v1/actions/{first}"));
    assert_eq!(kept.json["action"]["status"], "succeeded");
    assert_eq!(
        kept.json["action"]["agent_id"],
        agent.as_str(),
        "the audit keeps the agent"
    );
    let cancelled = server.get(&format!("/v1/actions/{second}"));
    assert_eq!(cancelled.json["action"]["status"], "cancelled");
    let last = cancelled.json["action"]["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["comment"]
            .as_str()
            .unwrap_or_default()
            .contains("was deleted"),
        "{last}"
    );
}

#[test]
fn composio_text_derives_the_input_with_the_model_and_refuses_an_invalid_one() {
    let models = Models::start();
    let providers = actionhost_tests::providers::Providers::start();
    let server = Server::start_with(Options {
        plugins: Some(vec![plugin("crm-sync"), plugin("anthropic")]),
        env: vec![
            (
                "ACTIONHOST_MODELS__TEXT_PROVIDER".into(),
                "anthropic".into(),
            ),
            ("ACTIONHOST_MODELS__TEXT_MODEL".into(), "claude-test".into()),
        ],
        ..Options::default()
    });
    model_account(&server, &models, "anthropic");
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "crm-sync", "scheme": { "type": "bearer" } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("config").to_owned();
    ok(&server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": "ada", "metadata": { "base_url": providers.base_url }, "credentials": { "token": actionhost_tests::providers::TOKEN } }),
    ));
    models.queue([Reply::Tool(
        json!({ "contacts": [{ "email": "ada@example.com" }] }),
    )]);
    let run = server.post(
        "/api/v2/actions/crm_sync/execute",
        &json!({ "entityId": "ada", "text": "Add Ada (ada@example.com) to the CRM" }),
    );
    assert_eq!(ok(&run)["successful"], true, "{}", run.text);
    let request = &models.requests()[0];
    assert_eq!(request.body["tool_choice"]["type"], "tool");
    assert_eq!(request.body["tool_choice"]["name"], "crm_sync");
    assert!(
        request.body["tools"][0]["input_schema"]["properties"]["contacts"].is_object(),
        "the action's own schema"
    );
    assert!(request.prompt().contains("ada@example.com"));
    let upserts: Vec<_> = providers
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("batch/upsert"))
        .collect();
    assert_eq!(upserts.len(), 1);
    let log_id = run.json["logId"].as_str().expect("log id");
    let record = server.get(&format!("/v1/executions/{log_id}"));
    assert_eq!(
        record.json["text"], "Add Ada (ada@example.com) to the CRM",
        "{}",
        record.text
    );
    assert_eq!(
        record.json["params"]["contacts"][0]["email"],
        "ada@example.com"
    );

    // A derived input that breaks the schema: 422 with the errors and the input; nothing ran.
    models.queue([Reply::Tool(json!({ "contacts": [{ "name": "no email" }] }))]);
    let refused = server.post(
        "/api/v2/actions/crm_sync/execute",
        &json!({ "entityId": "ada", "text": "Add someone" }),
    );
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(
        refused.json["derived_input"],
        json!({ "contacts": [{ "name": "no email" }] })
    );
    assert!(!field_errors(&refused).is_empty(), "{}", refused.text);
    assert_eq!(
        providers
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("batch/upsert"))
            .count(),
        1
    );
    assert!(models.problems().is_empty(), "{:?}", models.problems());
}
