//! Black-box tests of contacts, events, identities and the actions that
//! address a contact (`email_message`, `note`): seed 001's quickstart run as
//! written, against the real server, a real SMTP server and the real
//! plugins.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use actionhost_tests::server::{Answer, Options, Server};
use actionhost_tests::smtp::SmtpSink;
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

/// A 422 (or `status`) whose `errors` name `path`.
fn assert_field(answer: &Answer, status: u16, path: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    let paths: Vec<&str> = answer.json["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["path"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        paths.contains(&path),
        "the error names {path}: {}",
        answer.text
    );
}

fn call(server: &Server, method: &str, path: &str, body: &Value) -> Answer {
    server.call(method, path, Some(&server.admin_key), Some(body))
}

/// An SMTP account of send-email whose sender is `from`; returns its id.
fn smtp_account(server: &Server, sink: &SmtpSink, entity: &str, from: &str) -> String {
    let config = server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "send-email", "scheme": { "type": "smtp", "host": "127.0.0.1", "port": sink.port } }),
    );
    let config_id = ok(&config)["id"].as_str().expect("id").to_owned();
    let account = server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config_id, "entityId": entity, "metadata": { "provider": "smtp", "from": from }, "credentials": { "tls": "none" } }),
    );
    ok(&account)["connectedAccountId"]
        .as_str()
        .expect("account id")
        .to_owned()
}

/// An identity that sends email through `account`.
fn identity(server: &Server, name: &str, email: &str, account: &str) -> String {
    let created = server.post(
        "/v1/identities",
        &json!({ "name": name, "email": email, "accounts": { "email": account } }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    created.json["identity"]["_id"]
        .as_str()
        .expect("identity id")
        .to_owned()
}

fn contact(server: &Server, email: &str, properties: Value) -> String {
    let created = server.post(
        "/v1/contacts",
        &json!({ "email": email, "properties": properties }),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    created.json["contact"]["_id"]
        .as_str()
        .expect("contact id")
        .to_owned()
}

fn action(server: &Server, id: &str) -> Value {
    ok(&server.get(&format!("/v1/actions/{id}")))["action"].clone()
}

fn wait_for(server: &Server, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = action(server, id);
        if current["status"] == status {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "action {id} did not reach {status}: {current}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one of seed 001's code samples (`tests/seeds/001_quickstart/NAME`)
/// against `server` with `key`, the seed's placeholders replaced as the
/// page tells its reader to; returns what it printed.
fn run_sample(server: &Server, key: &str, name: &str, ids: &[(&str, &str)]) -> String {
    let source = std::fs::read_to_string(
        actionhost_tests::workspace_root()
            .join("tests/seeds/001_quickstart")
            .join(name),
    )
    .expect("sample");
    let mut code = source
        .replace("https://api.pathbound.ai", &server.url)
        .replace("YOUR_API_KEY", key);
    for (placeholder, id) in ids {
        code = code.replace(placeholder, id);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(name);
    std::fs::write(&file, code).expect("write the sample");
    let mut command = match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("sh") => {
            let mut command = Command::new("sh");
            command.args(["-e"]).arg(&file);
            command
        }
        Some("mjs") => {
            let mut command = Command::new("node");
            command.arg(&file);
            command
        }
        Some("py") => {
            let mut command = Command::new(actionhost_tests::python());
            command.arg(&file);
            command
        }
        other => panic!("no runner for {other:?}"),
    };
    let output = command
        .env("PATHBOUND_API_KEY", key)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A new tenant's admin key, for running a sample in a tenant of its own.
fn tenant_key(server: &Server, name: &str) -> String {
    let tenant = server.post(
        "/v1/tenants",
        &json!({ "name": name, "admin_email": format!("admin@{name}.example") }),
    );
    ok(&tenant)["key"].as_str().expect("key").to_owned()
}

#[test]
fn seed_001_quickstart_runs_as_written_and_the_approved_email_reaches_the_contact() {
    let sink = SmtpSink::start();
    let server = Server::start();

    // Step 1, in each of its three shapes: who the key is.
    for sample in ["1_auth_status.sh", "1_auth_status.mjs", "1_auth_status.py"] {
        let printed = run_sample(&server, &server.admin_key, sample, &[]);
        for field in ["user_id", "email", "tenant_id"] {
            assert!(printed.contains(field), "{sample} shows {field}: {printed}");
        }
    }

    // Step 2: a contact, in each shape. The curl and Python samples both
    // create ada@example.com, so each runs in a tenant of its own; the
    // Node one sends no email at all.
    for (sample, tenant) in [
        ("2_create_contact.sh", "curl"),
        ("2_create_contact.mjs", "node"),
        ("2_create_contact.py", "python"),
    ] {
        let key = tenant_key(&server, tenant);
        let printed = run_sample(&server, &key, sample, &[]);
        assert!(printed.contains("ct_"), "{sample} prints the id: {printed}");
        let listed = server.call("GET", "/v1/contacts", Some(&key), None);
        let contacts = ok(&listed)["contacts"]
            .as_array()
            .expect("contacts")
            .clone();
        assert_eq!(contacts.len(), 1, "{sample}: {}", listed.text);
        assert_eq!(contacts[0]["properties"]["company"], "Analytical Engines");
        assert_eq!(contacts[0]["properties"]["lifecyclestage"], "lead");
        let expected_email = if sample.ends_with(".mjs") {
            Value::Null
        } else {
            json!("ada@example.com")
        };
        assert_eq!(contacts[0]["email"], expected_email, "{sample}");
    }

    // Step 3: no tracker, so the events listing is an empty array.
    for sample in ["3_list_events.sh", "3_list_events.mjs", "3_list_events.py"] {
        let printed = run_sample(&server, &server.admin_key, sample, &[]);
        let trimmed = printed.trim();
        assert!(
            trimmed == r#"{"status":"success","events":[],"limit":5,"offset":0}"#
                || trimmed == "[]"
                || trimmed.is_empty(),
            "{sample} lists no events: {printed:?}"
        );
    }

    // Step 4: the email_message action, for a contact and an identity of
    // this tenant, waits for approval.
    let account = smtp_account(
        &server,
        &sink,
        "sales-mailbox",
        "Mailbox <mailbox@example.com>",
    );
    let identity_id = identity(&server, "Sam Seller", "sam@example.com", &account);
    let contact_id = contact(
        &server,
        "ada@example.com",
        json!({ "firstname": "Ada", "lastname": "Lovelace" }),
    );
    let printed = run_sample(
        &server,
        &server.admin_key,
        "4_email_message.sh",
        &[("ct_abc", &contact_id), ("id_123", &identity_id)],
    );
    let created: Value = serde_json::from_str(printed.trim()).expect("json answer");
    assert_eq!(created["status"], "success", "{printed}");
    assert_eq!(created["action_status"], "pending_approval", "{printed}");
    let action_id = created["action_id"].as_str().expect("action id").to_owned();
    let pending = action(&server, &action_id);
    assert_eq!(pending["contact_id"], contact_id.as_str());
    assert!(
        sink.received().is_empty(),
        "nothing is sent before approval"
    );

    // Approved, it runs: exactly one message, to the contact, from the identity.
    ok(&server.post(
        &format!("/v1/actions/{action_id}/approve"),
        &json!({ "action": "approve" }),
    ));
    let done = wait_for(&server, &action_id, "succeeded");
    let received = sink.received();
    assert_eq!(received.len(), 1, "exactly one message: {done}");
    let message = &received[0];
    assert_eq!(message.rcpt_tos, ["ada@example.com"]);
    assert_eq!(message.mail_from, "sam@example.com");
    let parsed = mail_parser::MessageParser::default()
        .parse(&message.raw)
        .expect("an RFC 5322 message");
    assert_eq!(parsed.subject(), Some("Following up"));
    let from = parsed.from().and_then(|f| f.first()).expect("From");
    assert_eq!(from.address(), Some("sam@example.com"));
    assert_eq!(from.name(), Some("Sam Seller"));
    let to = parsed.to().and_then(|t| t.first()).expect("To");
    assert_eq!(to.address(), Some("ada@example.com"));
    assert!(
        parsed
            .body_text(0)
            .is_some_and(|body| body.contains("back on the pricing page")),
        "the message's text"
    );

    // The action shows on the contact's timeline, and filters by contact.
    let timeline = server.get(&format!("/v1/contacts/{contact_id}/timeline"));
    let entries = ok(&timeline)["timeline"]
        .as_array()
        .expect("timeline")
        .clone();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "action" && e["action"]["id"] == action_id.as_str()),
        "{}",
        timeline.text
    );
    let by_contact = server.get(&format!("/v1/actions?contact_id={contact_id}"));
    assert_eq!(ok(&by_contact)["pagination"]["total_items"], 1);
}

#[test]
fn contacts_are_unique_by_email_filtered_sorted_patched_and_batched() {
    let server = Server::start();
    let ada = contact(
        &server,
        "Ada@Example.com",
        json!({ "firstname": "Ada", "lastname": "Lovelace", "company": "Analytical Engines", "lifecyclestage": "lead", "score": 12, "vip": true }),
    );
    let grace = contact(
        &server,
        "grace@example.com",
        json!({ "firstname": "Grace", "lastname": "Hopper", "company": "Navy", "lifecyclestage": "customer" }),
    );
    let anonymous = server.post(
        "/v1/contacts",
        &json!({ "properties": { "firstname": "Nobody" } }),
    );
    assert_eq!(anonymous.status, 201, "{}", anonymous.text);

    // The same address in another case is a 409 naming the contact that has it.
    let twice = server.post("/v1/contacts", &json!({ "email": "ada@EXAMPLE.com" }));
    assert_eq!(twice.status, 409, "{}", twice.text);
    assert_eq!(twice.json["existing_id"], ada.as_str(), "{}", twice.text);
    assert!(
        twice.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&ada)
    );

    let ids = |path: &str| -> Vec<String> {
        let listed = server.get(path);
        ok(&listed)["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .map(|c| c["_id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids("/v1/contacts?email=ADA@example.com"), [ada.as_str()]);
    assert_eq!(
        ids("/v1/contacts?lifecycle_stage=Customer"),
        [grace.as_str()]
    );
    assert_eq!(
        ids("/v1/contacts?properties.company=navy"),
        [grace.as_str()]
    );
    assert_eq!(
        ids("/v1/contacts?properties.score=12&properties.vip=true"),
        [ada.as_str()]
    );
    assert_eq!(ids("/v1/contacts?q=lovelace"), [ada.as_str()]);
    assert_eq!(ids("/v1/contacts?q=analytical"), [ada.as_str()]);
    assert_eq!(ids("/v1/contacts?q=grace@"), [grace.as_str()]);
    let newest_first = ids("/v1/contacts");
    assert_eq!(newest_first.len(), 3);
    assert_eq!(newest_first[2], ada);
    assert_eq!(ids("/v1/contacts?sort_dir=asc&limit=1"), [ada.as_str()]);
    assert_eq!(
        ids("/v1/contacts?sort_dir=asc&limit=1&offset=1"),
        [grace.as_str()]
    );
    assert_eq!(
        ids("/v1/contacts?sort_by=email&sort_dir=asc&q=example"),
        [ada.as_str(), grace.as_str()]
    );
    let page = server.get("/v1/contacts?limit=2");
    assert_eq!(ok(&page)["total"], 3);
    for bad in [
        "/v1/contacts?limit=0",
        "/v1/contacts?limit=101",
        "/v1/contacts?sort_by=shoe_size",
        "/v1/contacts?sort_dir=up",
        "/v1/contacts?colour=red",
    ] {
        assert_eq!(server.get(bad).status, 422, "{bad}");
    }

    // PATCH merges properties; null removes one.
    let patched = call(
        &server,
        "PATCH",
        &format!("/v1/contacts/{ada}"),
        &json!({ "properties": { "lifecyclestage": "customer", "score": null } }),
    );
    let properties = &ok(&patched)["contact"]["properties"];
    assert_eq!(properties["lifecyclestage"], "customer");
    assert_eq!(properties["firstname"], "Ada");
    assert!(properties.get("score").is_none(), "{properties}");
    assert_eq!(
        ids("/v1/contacts?lifecycle_stage=customer&sort_dir=asc"),
        [ada.as_str(), grace.as_str()]
    );
    // Taking another contact's email is a conflict too.
    let taken = call(
        &server,
        "PATCH",
        &format!("/v1/contacts/{ada}"),
        &json!({ "email": "GRACE@example.com" }),
    );
    assert_eq!(taken.status, 409, "{}", taken.text);
    assert_eq!(taken.json["existing_id"], grace.as_str());

    // A batch upserts by email; one bad row fails alone.
    let batch = server.post(
        "/v1/contacts/batch",
        &json!({ "contacts": [
            { "email": "ada@example.com", "properties": { "company": "Babbage & Co" } },
            { "email": "not an address", "properties": {} },
            { "email": "linus@example.com", "properties": { "firstname": "Linus" } },
            { "properties": { "firstname": "No email" } },
            { "email": "linus@example.com", "properties": { "lastname": "Torvalds" } },
        ] }),
    );
    let answer = ok(&batch);
    assert_eq!(answer["created"], 1, "{}", batch.text);
    assert_eq!(answer["updated"], 2, "{}", batch.text);
    assert_eq!(answer["failed"], 2, "{}", batch.text);
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results[0]["status"], "updated");
    assert_eq!(results[0]["_id"], ada.as_str());
    assert_eq!(results[1]["errors"][0]["path"], "/contacts/1/email");
    assert_eq!(results[3]["errors"][0]["path"], "/contacts/3/email");
    assert_eq!(results[2]["_id"], results[4]["_id"]);
    let linus = server.get(&format!(
        "/v1/contacts/{}",
        results[2]["_id"].as_str().expect("id")
    ));
    assert_eq!(ok(&linus)["contact"]["properties"]["firstname"], "Linus");
    assert_eq!(linus.json["contact"]["properties"]["lastname"], "Torvalds");
    assert_eq!(
        ok(&server.get(&format!("/v1/contacts/{ada}")))["contact"]["properties"]["company"],
        "Babbage & Co"
    );

    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({ "email": format!("c{i}@example.com") }))
        .collect();
    let refused = server.post("/v1/contacts/batch", &json!({ "contacts": too_many }));
    assert_field(&refused, 422, "/contacts");
    assert_eq!(
        ok(&server.get("/v1/contacts"))["total"],
        4,
        "nothing of the refused batch was stored"
    );
}

#[test]
fn bad_contacts_and_events_are_refused_by_field_and_store_nothing() {
    let server = Server::start();
    for (body, path) in [
        (json!({ "email": "ada" }), "/email"),
        (json!({ "email": "ada@" }), "/email"),
        (
            json!({ "properties": { "bio": "x".repeat(1024 * 1024) } }),
            "/properties/bio",
        ),
        (
            json!({ "properties": { "nested": { "a": 1 } } }),
            "/properties/nested",
        ),
        (
            json!({ "properties": { "list": [1, 2] } }),
            "/properties/list",
        ),
        (json!({ "properties": "Ada" }), "/properties"),
    ] {
        let answer = server.post("/v1/contacts", &body);
        assert_field(&answer, 422, path);
    }
    let many: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("p{i}"), json!(i))).collect();
    assert_field(
        &server.post("/v1/contacts", &json!({ "properties": many })),
        422,
        "/properties",
    );
    assert_eq!(
        server
            .post("/v1/contacts", &json!({ "name": "Ada" }))
            .status,
        422
    );
    assert_eq!(ok(&server.get("/v1/contacts"))["total"], 0);

    // Events: every problem of a batch is named, and none of it is stored.
    let ada = contact(&server, "ada@example.com", json!({}));
    let batch = server.post(
        "/v1/events",
        &json!({ "events": [
            { "event": "pageview", "url": "https://example.com/", "contact_id": ada },
            { "event": "pageview", "contact_id": "ct_missing" },
            { "event": "", "email": "ada@example.com" },
            { "event": "click", "email": "nope" },
            { "event": "click", "url": "javascript:alert(1)", "anonymous_id": "v1" },
            { "event": "click", "occurred_at": "yesterday", "anonymous_id": "v1" },
            { "event": "click", "contact_id": ada, "email": "ada@example.com" },
            { "event": "click" },
        ] }),
    );
    assert_eq!(batch.status, 422, "{}", batch.text);
    for path in [
        "/events/2/event",
        "/events/3/email",
        "/events/4/url",
        "/events/5/occurred_at",
        "/events/6",
        "/events/7",
    ] {
        assert_field(&batch, 422, path);
    }
    // The unknown contact is found when the valid rest is about to be written.
    let unknown = server.post(
        "/v1/events",
        &json!({ "events": [
            { "event": "pageview", "contact_id": ada },
            { "event": "pageview", "contact_id": "ct_missing" },
        ] }),
    );
    assert_field(&unknown, 422, "/events/1/contact_id");
    let single = server.post(
        "/v1/events",
        &json!({ "event": "pageview", "contact_id": "ct_missing" }),
    );
    assert_field(&single, 422, "/contact_id");
    let over: Vec<Value> = (0..1001)
        .map(|_| json!({ "event": "x", "anonymous_id": "v" }))
        .collect();
    assert_field(
        &server.post("/v1/events", &json!({ "events": over })),
        422,
        "/events",
    );
    let listed = server.get("/v1/events");
    assert_eq!(ok(&listed)["events"], json!([]), "nothing was stored");

    // Actions for an unknown contact are refused at /params/contact_id.
    let refused = server.post(
        "/v1/actions",
        &json!({ "type": "email_message", "params": { "contact_id": "ct_missing", "subject": "Hi", "message": "Hello" }, "identity_id": "id_123", "require_approval": true }),
    );
    assert_field(&refused, 422, "/params/contact_id");
    assert_eq!(
        ok(&server.get("/v1/actions"))["pagination"]["total_items"],
        0
    );

    // A publishable key does nothing but track.
    let minted = server.post(
        "/v1/publishable-keys",
        &json!({ "allowed_origins": ["https://www.example.com"] }),
    );
    assert_eq!(minted.status, 201, "{}", minted.text);
    let publishable = minted.json["publishable_key"]["id"]
        .as_str()
        .expect("pk")
        .to_owned();
    assert!(publishable.starts_with("pk_"));
    for (method, path) in [
        ("GET", "/v1/events"),
        ("POST", "/v1/contacts"),
        ("GET", "/v1/auth/status"),
    ] {
        let answer = server.call(method, path, Some(&publishable), Some(&json!({})));
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.text);
        assert!(answer.text.contains("publishable"), "{}", answer.text);
    }
    for origins in [
        json!([]),
        json!(["example.com"]),
        json!(["https://example.com/page"]),
    ] {
        let refused = server.post(
            "/v1/publishable-keys",
            &json!({ "allowed_origins": origins }),
        );
        assert_eq!(refused.status, 422, "{origins}: {}", refused.text);
    }
}

#[test]
fn events_list_newest_first_filter_by_contact_name_and_time_and_link_visitors() {
    let server = Server::start();
    let ada = contact(&server, "ada@example.com", json!({}));
    let event = |name: &str, at: &str, who: Value| {
        let mut body = json!({ "event": name, "url": format!("https://example.com/{name}"), "occurred_at": at });
        body.as_object_mut()
            .expect("object")
            .extend(who.as_object().expect("who").clone());
        body
    };
    let stored = server.post(
        "/v1/events",
        &json!({ "events": [
            event("pageview", "2026-11-01T10:00:00Z", json!({ "contact_id": ada })),
            event("signup", "2026-11-02T10:00:00Z", json!({ "contact_id": ada })),
            event("pageview", "2026-11-03T10:00:00Z", json!({ "email": "GRACE@example.com" })),
            event("pageview", "2026-11-04T10:00:00Z", json!({ "anonymous_id": "visitor-1" })),
        ] }),
    );
    assert_eq!(stored.status, 201, "{}", stored.text);
    assert_eq!(stored.json["accepted"], 4);
    // The email made a contact.
    let grace = server.get("/v1/contacts?email=grace@example.com");
    let grace_id = ok(&grace)["contacts"][0]["_id"]
        .as_str()
        .expect("created")
        .to_owned();

    let names = |path: &str| -> Vec<String> {
        let listed = server.get(path);
        ok(&listed)["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                format!(
                    "{}@{}",
                    e["event"].as_str().unwrap_or(""),
                    &e["occurred_at"].as_str().unwrap_or("")[5..10]
                )
            })
            .collect()
    };
    assert_eq!(
        names("/v1/events?limit=5&sort_dir=desc"),
        [
            "pageview@11-04",
            "pageview@11-03",
            "signup@11-02",
            "pageview@11-01"
        ]
    );
    assert_eq!(
        names("/v1/events?sort_dir=asc&limit=1&offset=1"),
        ["signup@11-02"]
    );
    assert_eq!(
        names(&format!("/v1/events?contact_id={ada}")),
        ["signup@11-02", "pageview@11-01"]
    );
    assert_eq!(
        names(&format!("/v1/events?contact_id={grace_id}")),
        ["pageview@11-03"]
    );
    assert_eq!(
        names("/v1/events?event=pageview&limit=2"),
        ["pageview@11-04", "pageview@11-03"]
    );
    assert_eq!(
        names("/v1/events?since=2026-11-02T00:00:00Z&until=2026-11-03T23:59:59Z"),
        ["pageview@11-03", "signup@11-02"]
    );
    assert_eq!(
        names("/v1/events?anonymous_id=visitor-1"),
        ["pageview@11-04"]
    );
    for bad in [
        "/v1/events?limit=0",
        "/v1/events?since=soon",
        "/v1/events?sort_dir=sideways",
        "/v1/events?colour=1",
    ] {
        assert_eq!(server.get(bad).status, 422, "{bad}");
    }

    // The timeline merges events and actions, newest first.
    let timeline = server.get(&format!("/v1/contacts/{ada}/timeline?limit=1"));
    assert_eq!(ok(&timeline)["total"], 2);
    assert_eq!(timeline.json["timeline"][0]["kind"], "event");
    assert_eq!(timeline.json["timeline"][0]["event"]["event"], "signup");
}

#[test]
fn notes_from_note_actions_and_identities_that_name_what_they_lack() {
    let sink = SmtpSink::start();
    let server = Server::start();
    let ada = contact(&server, "ada@example.com", json!({ "firstname": "Ada" }));
    ok(&server.post(
        "/v1/events",
        &json!({ "event": "pageview", "url": "https://example.com/pricing", "contact_id": ada, "occurred_at": "2026-01-01T00:00:00Z" }),
    ));

    // An identity with an email account and nothing else.
    let account = smtp_account(&server, &sink, "sales", "Sales <sales@example.com>");
    let sender = identity(&server, "Sam", "sam@example.com", &account);
    let linkedin = server.post(
        "/v1/actions",
        &json!({ "type": "linkedin_message", "params": { "recipients": ["urn:li:person:ada"], "body": "Hi" }, "identity_id": sender }),
    );
    assert_field(&linkedin, 422, "/identity_id");
    assert!(
        linkedin.text.contains("linkedin"),
        "names the capability: {}",
        linkedin.text
    );
    // An identity that names an unknown account is refused by field.
    let bad = server.post(
        "/v1/identities",
        &json!({ "name": "Ghost", "accounts": { "email": "ca_missing" } }),
    );
    assert_field(&bad, 422, "/accounts/email");
    assert_field(
        &server.post("/v1/identities", &json!({ "email": "x@example.com" })),
        422,
        "/name",
    );
    // Today's meaning of identity_id (an entity id) keeps working.
    let by_entity = server.post(
        "/v1/actions",
        &json!({ "type": "send_email", "params": { "to": "ada@example.com", "subject": "Hello", "body": "Hi" }, "identity_id": "sales", "direct": true }),
    );
    assert_eq!(
        ok(&by_entity)["action_status"],
        "succeeded",
        "{}",
        by_entity.text
    );

    // A note action writes a note on the contact; a retry would replace it.
    let note = server.post(
        "/v1/actions",
        &json!({ "type": "note", "params": { "contact_id": ada, "body": "Asked about <b>pricing</b> tiers" }, "identity_id": sender, "direct": true }),
    );
    assert_eq!(ok(&note)["action_status"], "succeeded", "{}", note.text);
    let notes = server.get(&format!("/v1/contacts/{ada}/notes"));
    let listed = ok(&notes)["notes"].as_array().expect("notes").clone();
    assert_eq!(listed.len(), 1, "{}", notes.text);
    assert_eq!(listed[0]["body"], "Asked about <b>pricing</b> tiers");
    assert_eq!(listed[0]["action_id"], note.json["action_id"]);
    let timeline = server.get(&format!("/v1/contacts/{ada}/timeline"));
    let kinds: Vec<&str> = ok(&timeline)["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["note", "action", "event"], "{}", timeline.text);

    // Changing and removing an identity.
    let renamed = call(
        &server,
        "PATCH",
        &format!("/v1/identities/{sender}"),
        &json!({ "name": "Samantha", "accounts": { "email": null } }),
    );
    assert_eq!(ok(&renamed)["identity"]["name"], "Samantha");
    assert_eq!(renamed.json["identity"]["accounts"], json!({}));
    let listed = server.get("/v1/identities");
    assert_eq!(ok(&listed)["identities"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/v1/identities/{sender}"),
                Some(&server.admin_key),
                None
            )
            .status,
        200
    );
    assert_eq!(server.get(&format!("/v1/identities/{sender}")).status, 404);
}

#[test]
fn erasing_a_contact_cancels_what_has_not_run_and_scrubs_what_did() {
    let sink = SmtpSink::start();
    let server = Server::start_with(Options::default());
    let account = smtp_account(&server, &sink, "sales", "Sales <sales@example.com>");
    let sender = identity(&server, "Sam", "sam@example.com", &account);
    let ada = contact(&server, "ada@example.com", json!({ "firstname": "Ada" }));
    let other = contact(&server, "grace@example.com", json!({}));
    let events: Vec<Value> = (0..30)
        .map(|i| json!({ "event": "pageview", "url": format!("https://example.com/{i}"), "contact_id": ada }))
        .collect();
    ok(&server.post("/v1/events", &json!({ "events": events })));
    ok(&server.post(
        "/v1/events",
        &json!({ "event": "pageview", "contact_id": other }),
    ));

    let email = |subject: &str, extra: Value| {
        let mut body = json!({ "type": "email_message", "params": { "contact_id": ada, "subject": subject, "message": "Hello Ada" }, "identity_id": sender });
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("extra").clone());
        let created = server.post("/v1/actions", &body);
        ok(&created)["action_id"].as_str().expect("id").to_owned()
    };
    let sent = email("Sent", json!({ "direct": true }));
    assert_eq!(action(&server, &sent)["status"], "succeeded");
    let awaiting = email("Awaiting", json!({ "require_approval": true }));
    let later = email(
        "Later",
        json!({ "scheduled_time": humantime::format_rfc3339(std::time::SystemTime::now() + Duration::from_secs(2)).to_string() }),
    );
    assert_eq!(action(&server, &later)["status"], "scheduled");
    assert_eq!(sink.received().len(), 1);

    let erased = server.call(
        "DELETE",
        &format!("/v1/contacts/{ada}"),
        Some(&server.admin_key),
        None,
    );
    let counts = &ok(&erased)["erased"];
    assert_eq!(counts["contacts"], 1, "{}", erased.text);
    assert_eq!(counts["events"], 30, "{}", erased.text);
    assert_eq!(counts["actions_cancelled"], 2, "{}", erased.text);
    assert_eq!(counts["actions_scrubbed"], 1, "{}", erased.text);
    assert_eq!(counts["actions_running"], 0, "{}", erased.text);

    assert_eq!(server.get(&format!("/v1/contacts/{ada}")).status, 404);
    assert_eq!(
        ok(&server.get(&format!("/v1/events?contact_id={ada}")))["events"],
        json!([])
    );
    assert_eq!(
        ok(&server.get(&format!("/v1/events?contact_id={other}")))["events"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "another contact's events stay"
    );
    for id in [&awaiting, &later] {
        let cancelled = action(&server, id);
        assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
        let last = cancelled["history"]
            .as_array()
            .and_then(|h| h.last())
            .cloned()
            .unwrap_or_default();
        assert!(
            last["comment"]
                .as_str()
                .unwrap_or_default()
                .contains("deleted"),
            "the history says why: {last}"
        );
    }
    // The executed action keeps its record, without the address anywhere.
    let kept = server.get(&format!("/v1/actions/{sent}"));
    assert_eq!(ok(&kept)["action"]["status"], "succeeded");
    assert!(
        !kept.text.to_lowercase().contains("ada@example.com"),
        "{}",
        kept.text
    );
    let execution = kept.json["action"]["executions"][0]
        .as_str()
        .expect("execution")
        .to_owned();
    let record = server.get(&format!("/v1/executions/{execution}"));
    assert!(
        !ok(&record)
            .to_string()
            .to_lowercase()
            .contains("ada@example.com"),
        "{}",
        record.text
    );

    // The scheduled one's time passes: the scheduler never runs it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(action(&server, &later)["status"], "cancelled");
    assert_eq!(sink.received().len(), 1, "no cancelled action ran");
    // New actions and events for the erased contact are refused.
    let refused = server.post(
        "/v1/actions",
        &json!({ "type": "note", "params": { "contact_id": ada, "body": "x" }, "identity_id": sender }),
    );
    assert_field(&refused, 422, "/params/contact_id");
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/v1/contacts/{ada}"),
                Some(&server.admin_key),
                None
            )
            .status,
        404
    );
}
