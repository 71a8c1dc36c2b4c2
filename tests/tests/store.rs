//! The store's behaviours on a real PostgreSQL: the same checks the sled
//! store's unit tests run (`actionhost::store::conformance`), each in a
//! fresh database, and what PostgreSQL adds (a database out of reach, its
//! schema versions).

use std::sync::Arc;

use actionhost::store::conformance;
use actionhost::store::{PgStore, Records, StoreError};
use actionhost_tests::postgres;

fn open(url: &str) -> Records {
    let store = PgStore::open(url, 8, true).expect("open the PostgreSQL store");
    let records = Records::new(Arc::new(store));
    actionhost::store::migrate(&records).expect("record schema");
    records
}

fn fresh() -> Records {
    open(&postgres::database())
}

#[test]
fn indexes_follow_their_records() {
    conformance::indexes_follow_their_records(&fresh());
}

#[test]
fn index_ranges_read_both_ways_with_bounds_skip_and_count() {
    conformance::index_ranges_read_both_ways_with_bounds_skip_and_count(&fresh());
}

#[test]
fn a_unique_value_has_one_owner_and_a_failed_write_leaves_nothing() {
    conformance::a_unique_value_has_one_owner_and_a_failed_write_leaves_nothing(&fresh());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_each_land_or_leave_nothing() {
    conformance::concurrent_commits_each_land_or_leave_nothing(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_updates_lose_nothing_and_one_claim_wins() {
    conformance::racing_updates_lose_nothing_and_one_claim_wins(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_in_batches_take_what_is_listed() {
    conformance::removals_in_batches_take_what_is_listed(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_write_survives_reopening() {
    let url = postgres::database();
    conformance::a_committed_write_survives_reopening(|| open(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_is_stored_and_a_newer_one_refused() {
    conformance::schema_version_is_stored_and_a_newer_one_refused(&fresh()).await;
}

#[test]
fn a_database_out_of_reach_is_named_and_its_password_is_not() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let url = format!("postgres://ada:s3cret-pw@127.0.0.1:{port}/actions");
    let err = PgStore::open(&url, 2, true).err().expect("refused");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "PostgreSQL at 127.0.0.1:{port}/actions is unavailable"
        )),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");

    // And through the binary: a non-zero exit, the host named.
    let data = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--plugins-dir")
        .arg(actionhost_tests::plugins_dir())
        .env("ACTIONHOST_STORE", &url)
        .output()
        .expect("run actionhost serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}/actions")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

#[test]
fn schema_versions_migrate_forward_and_a_newer_database_is_refused() {
    let url = postgres::database();
    let name = postgres::name_of(&url).to_owned();

    // Migrations at start-up switched off: an empty database is refused
    // with the way forward, and nothing is created in it.
    let err = PgStore::open(&url, 2, false).err().expect("refused");
    assert!(err.to_string().contains("actionhost migrate"), "{err}");
    assert_eq!(
        postgres::psql(&name, "SELECT count(*) FROM actionhost_schema"),
        "0"
    );

    // `actionhost migrate` brings it to this build's version.
    let output = std::process::Command::new(actionhost_tests::actionhost_bin())
        .arg("migrate")
        .env("ACTIONHOST_STORE", &url)
        .output()
        .expect("run actionhost migrate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "PostgreSQL schema version {}",
            actionhost::store::PG_SCHEMA_VERSION
        )),
        "{stderr}"
    );
    assert_eq!(
        postgres::psql(&name, "SELECT max(version) FROM actionhost_schema"),
        actionhost::store::PG_SCHEMA_VERSION.to_string()
    );
    PgStore::open(&url, 2, false).expect("now current");

    // A database a newer actionhost migrated is refused, not served.
    postgres::psql(&name, "INSERT INTO actionhost_schema (version) VALUES (99)");
    let err = PgStore::open(&url, 2, true).err().expect("refused");
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

/// Creates no-op actions (held for approval, so they stay as they are) from
/// two clients, each with an Idempotency-Key; a 503 is retried with the
/// same key later. Returns, per key, the id of its action once created.
fn create_until(
    url: &str,
    key: &str,
    stop: &std::sync::atomic::AtomicBool,
    worker: usize,
) -> (Vec<(String, String)>, usize) {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client");
    let mut created = Vec::new();
    let mut unavailable = 0;
    let mut pending: Option<String> = None;
    let mut n = 0;
    loop {
        let idempotency = match pending.take() {
            Some(key) => key,
            None if stop.load(std::sync::atomic::Ordering::Relaxed) => break,
            None => {
                n += 1;
                format!("w{worker}-{n}")
            }
        };
        let answer = client
            .post(format!("{url}/v1/actions"))
            .bearer_auth(key)
            .header("Idempotency-Key", &idempotency)
            .json(&serde_json::json!({
                "type": "noop", "params": {}, "identity_id": "ada",
                "item_id": idempotency, "require_approval": true
            }))
            .send()
            .expect("the server answers while the database is down");
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().expect("JSON");
        match status {
            200 | 201 => {
                let id = body["action_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no id in {body}"))
                    .to_owned();
                created.push((idempotency, id));
            }
            503 => {
                assert_eq!(body["errorCode"], "unavailable", "{body}");
                assert_eq!(body["retryable"], true, "{body}");
                unavailable += 1;
                pending = Some(idempotency);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => panic!("only 503s while the database is down, not {other}: {body}"),
        }
    }
    (created, unavailable)
}

#[test]
fn postgres_stopped_and_started_under_load_answers_503_then_serves_and_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cluster = postgres::Cluster::start();
    let server = actionhost_tests::server::Server::start_with(actionhost_tests::server::Options {
        store: Some(cluster.url("postgres")),
        ..Default::default()
    });
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let (url, key, stop) = (server.url.clone(), server.admin_key.clone(), stop.clone());
            std::thread::spawn(move || create_until(&url, &key, &stop, worker))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    cluster.stop();
    // Down: reads and writes answer 503, and the server stays up.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let down = server.get("/v1/actions");
    assert_eq!(down.status, 503, "{}", down.text);
    cluster.resume();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut created = Vec::new();
    let mut unavailable = 0;
    for worker in workers {
        let (mine, refused) = worker.join().expect("a client failed");
        created.extend(mine);
        unavailable += refused;
    }
    assert!(unavailable > 0, "the clients met the outage");
    assert!(
        created.len() > 20,
        "the clients got work done: {}",
        created.len()
    );
    // Every key created exactly one action, and every acknowledged one is there.
    let list = server.get("/v1/actions?limit=1");
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.json["pagination"]["total_items"],
        created.len(),
        "one action per Idempotency-Key, none lost and none doubled"
    );
    for (key, id) in &created {
        let action = server.get(&format!("/v1/actions/{id}"));
        assert_eq!(action.status, 200, "{key}: {}", action.text);
    }
    eprintln!(
        "{} actions created, {} requests answered 503 while the database was down",
        created.len(),
        unavailable
    );
}

#[test]
fn store_copy_moves_a_sled_store_into_postgres_and_the_server_answers_the_same() {
    use actionhost_tests::server::{Options, Server};
    use serde_json::json;
    const TOKEN: &str = "copy-test-token-5f0c2a9e";
    let server = Server::start_with(Options {
        store: None,
        ..Options::default()
    });
    assert!(server.store().is_none(), "the source runs on sled");
    let ok = |answer: &actionhost_tests::server::Answer| {
        assert!(answer.status < 300, "{} {}", answer.status, answer.text);
        answer.json.clone()
    };
    // Every kind of record: an auth config and an account with a sealed
    // credential, a second key, a contact, actions in three states with
    // their history, and an execution.
    let config = ok(&server.post(
        "/api/v1/auth-configs",
        &json!({ "appName": "hubspot", "scheme": { "type": "bearer" } }),
    ));
    ok(&server.post(
        "/api/v1/connectedAccounts",
        &json!({ "authConfigId": config["id"], "entityId": "ada", "credentials": { "token": TOKEN } }),
    ));
    ok(&server.post("/v1/api-keys", &json!({ "scopes": ["actions:read"] })));
    ok(&server.post(
        "/v1/contacts",
        &json!({ "email": "ada@example.com", "properties": { "name": "Ada" } }),
    ));
    let done = ok(&server.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": { "echo": "hi" }, "identity_id": "ada", "direct": true }),
    ));
    let held = ok(&server.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": {}, "identity_id": "ada", "require_approval": true }),
    ));
    let rejected = ok(&server.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": {}, "identity_id": "ada", "require_approval": true }),
    ));
    ok(&server.post(
        &format!(
            "/v1/actions/{}/approve",
            rejected["action_id"].as_str().expect("id")
        ),
        &json!({ "action": "reject", "comment": "not now" }),
    ));
    // An uploaded plugin, disabled.
    let v2 = std::fs::read(actionhost_tests::fixture("fixture-versioned-v2")).expect("v2");
    let installed = server.send(
        server
            .request("POST", "/v1/plugins")
            .bearer_auth(&server.admin_key)
            .header("content-type", "application/wasm")
            .body(v2),
    );
    assert_eq!(installed.status, 201, "{}", installed.text);
    ok(&server.post("/v1/plugins/fixture-versioned/2.0.0/disable", &json!({})));
    // The direct one has run (its execution recorded) before the stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let done_path = format!("/v1/actions/{}", done["action_id"].as_str().expect("id"));
    while server.get(&done_path).json["action"]["status"] != "succeeded" {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.get(&done_path).text
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let paths = [
        "/v1/actions?limit=100".to_owned(),
        done_path.clone(),
        format!("/v1/actions/{}", held["action_id"].as_str().expect("id")),
        format!(
            "/v1/actions/{}",
            rejected["action_id"].as_str().expect("id")
        ),
        "/api/v1/connectedAccounts".to_owned(),
        "/api/v1/auth-configs".to_owned(),
        "/v1/api-keys".to_owned(),
        "/v1/contacts".to_owned(),
    ];
    let get = |server: &Server, path: &str| {
        let answer = server.get(path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        answer.json.to_string()
    };
    let before: Vec<String> = paths.iter().map(|path| get(&server, path)).collect();
    assert!(before[1].contains("succeeded"), "{}", before[1]);

    // While the server runs, the copy is refused: its store is in use.
    let url = postgres::database();
    let data_dir = server.data_dir.clone();
    let copy = || {
        std::process::Command::new(actionhost_tests::actionhost_bin())
            .args(["store", "copy", "--from"])
            .arg(&data_dir)
            .arg("--to")
            .arg(&url)
            .output()
            .expect("run store copy")
    };
    let busy = copy();
    assert_eq!(
        busy.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("stop it first"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );

    let mut server = server;
    assert_eq!(server.stop(), Some(0));
    let copied = copy();
    let report = String::from_utf8_lossy(&copied.stderr).into_owned();
    assert!(copied.status.success(), "{report}");
    for tree in ["records", "index entries", "metadata", "uploaded plugins"] {
        let line = report
            .lines()
            .find(|line| line.starts_with(&format!("{tree}: ")))
            .unwrap_or_else(|| panic!("no count of {tree}: {report}"));
        let counts: Vec<&str> = line
            .split_whitespace()
            .filter(|word| word.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(counts.len(), 2, "{line}");
        assert_eq!(counts[0], counts[1], "{line}");
        assert_ne!(counts[0], "0", "{line}");
    }
    // The credential is still sealed in PostgreSQL.
    assert!(
        !postgres::dump(&url)
            .windows(TOKEN.len())
            .any(|w| w == TOKEN.as_bytes()),
        "the copied database holds the credential in plain text"
    );
    // A second copy into the same database is refused.
    let again = copy();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("empty database"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The server on PostgreSQL, same data dir (keys, secret key): the same answers.
    let server = server.restart_with(|options| options.store = Some(url.clone()));
    assert_eq!(server.store(), Some(url.as_str()));
    for (path, was) in paths.iter().zip(&before) {
        assert_eq!(&get(&server, path), was, "{path}");
    }
    server.assert_no_leak(&[TOKEN]);

    // A replica on a data dir of its own (with the same secret key) gets
    // the upload, still disabled, from the database.
    let key = std::fs::read_to_string(server.data_dir.join("secret.key")).expect("secret.key");
    let replica = Server::start_with(Options {
        store: Some(url.clone()),
        admin_key: Some(server.admin_key.clone()),
        env: vec![("ACTIONHOST_SECRET_KEY".into(), key.trim().to_owned())],
        ..Options::default()
    });
    let plugins = replica.get("/v1/plugins");
    let v2 = plugins.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["name"] == "fixture-versioned" && p["version"] == "2.0.0")
        .unwrap_or_else(|| panic!("the copied upload is not on the replica: {}", plugins.text));
    assert_eq!(v2["state"], "disabled", "{v2}");
    assert_eq!(v2["source"], "upload", "{v2}");
}

/// `sql` with its `$n` parameters replaced by quoted `values` (trusted
/// test values), for `EXPLAIN`.
fn with_literals(sql: &str, values: &[String]) -> String {
    let mut sql = sql.to_owned();
    for (n, value) in values.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", n + 1), &format!("'{value}'"));
    }
    sql
}

/// `GET /v1/actions` with two filters and a sort, and its `total_items`,
/// as the server runs them on PostgreSQL: each plan reads the `actions`
/// table through an index, never scans it. The table is filled with
/// `ACTIONHOST_EXPLAIN_ROWS` actions (100,000 by default; the capacity
/// note quotes the plans at 1,000,000) over 10 tenants.
#[test]
fn listing_actions_by_two_filters_and_a_sort_reads_indexes_not_the_table() {
    use actionhost::store::{PageQuery, page_sql};
    let rows: usize = std::env::var("ACTIONHOST_EXPLAIN_ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(100_000);
    let url = postgres::database();
    open(&url);
    let name = postgres::name_of(&url).to_owned();
    postgres::psql(
        &name,
        &format!(
            "INSERT INTO actions SELECT 'ten_' || (n % 10), 'act_' || lpad(to_hex(n), 16, '0'),
                (ARRAY['pending_approval','scheduled','executing','succeeded','failed',
                       'outcome_unknown','cancelled','rejected'])[1 + n % 8],
                (ARRAY['send_email','linkedin_message','crm_sync','noop','webhook_post'])[1 + (n / 10) % 5],
                'idn_' || (n % 1000), 'con_' || (n % 50000), 'list-' || (n % 200), NULL, NULL,
                to_char(timestamp '2026-01-01' + (n::bigint * 7919 % {rows}) * interval '1 second',
                        'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                NULL, NULL
             FROM generate_series(1, {rows}) n"
        ),
    );
    postgres::psql(&name, "VACUUM ANALYZE actions");

    type Listing<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let listings: [Listing<'_>; 4] = [
        (
            &[("status", "scheduled"), ("action_type", "send_email")],
            None,
        ),
        (
            &[("status", "succeeded"), ("action_type", "crm_sync")],
            Some("updated_at"),
        ),
        (
            &[("identity_id", "idn_7"), ("status", "rejected")],
            Some("status"),
        ),
        (&[("contact_id", "con_17"), ("list_id", "list-17")], None),
    ];
    for (filters, sort) in listings {
        let query = PageQuery {
            collection: "actions",
            tenant: "ten_7",
            filters: filters.to_vec(),
            between: None,
            sort,
            descending: true,
            skip: 0,
            limit: 20,
            count: true,
        };
        let (page, count) = page_sql(&query).expect("actions have a table");
        let mut values: Vec<String> = std::iter::once("ten_7".to_owned())
            .chain(filters.iter().map(|(_, value)| value.to_string()))
            .collect();
        let counted = with_literals(&count, &values);
        values.extend(["20".to_owned(), "0".to_owned()]);
        let paged = with_literals(&page, &values);
        for sql in [paged, counted] {
            let plan = postgres::psql(&name, &format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"));
            println!("{rows} actions: {sql}\n{plan}\n");
            assert!(!plan.contains("Seq Scan"), "{sql} scans the table:\n{plan}");
            assert!(plan.contains("Index"), "{sql} uses no index:\n{plan}");
        }
    }
}

/// `GET /v1/contacts` and `GET /v1/events` with their filters and sorts, as
/// the server runs them on PostgreSQL, read the `contacts` and `events`
/// tables through their indexes at `ACTIONHOST_EXPLAIN_ROWS` rows each.
#[test]
fn listing_contacts_and_events_reads_indexes_not_the_tables() {
    use actionhost::store::{PageQuery, page_sql};
    let rows: usize = std::env::var("ACTIONHOST_EXPLAIN_ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(100_000);
    let url = postgres::database();
    open(&url);
    let name = postgres::name_of(&url).to_owned();
    postgres::psql(
        &name,
        &format!(
            "INSERT INTO contacts SELECT 'ten_' || (n % 10), 'ct_' || lpad(to_hex(n), 16, '0'),
                CASE WHEN n % 7 = 0 THEN NULL ELSE 'person' || n || '@example.com' END,
                (ARRAY['lead','customer','subscriber','opportunity'])[1 + (n / 10) % 4],
                'company ' || (n % 300), '2026-01-01T00:00:00.000Z',
                to_char(timestamp '2026-01-01' + (n::bigint * 7919 % {rows}) * interval '1 second',
                        'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM generate_series(1, {rows}) n;
             INSERT INTO events SELECT 'ten_' || (n % 10), 'ev_' || lpad(to_hex(n), 16, '0'),
                (ARRAY['pageview','signup','click','purchase','open'])[1 + (n / 10) % 5],
                'ct_' || lpad(to_hex(n % 20000), 16, '0'), NULL, 'api',
                1767225600000 + n::bigint * 1000, '2026-01-01T00:00:00.000Z'
             FROM generate_series(1, {rows}) n"
        ),
    );
    postgres::psql(&name, "VACUUM ANALYZE contacts");
    postgres::psql(&name, "VACUUM ANALYZE events");
    let middle = (1_767_225_600_000 + rows as i64 * 500).to_string();
    type Listing<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<(&'static str, Option<i64>, Option<i64>)>,
        Option<&'a str>,
        bool,
    );
    let since: i64 = middle.parse().expect("number");
    let listings: [Listing<'_>; 5] = [
        (
            "contacts",
            &[("lifecycle_stage", "customer")],
            None,
            Some("email"),
            true,
        ),
        (
            "contacts",
            &[("email", "person17@example.com")],
            None,
            None,
            true,
        ),
        ("contacts", &[], None, Some("updated_at"), true),
        (
            "events",
            &[("event", "signup")],
            Some(("occurred_ms", Some(since), None)),
            Some("occurred_ms"),
            false,
        ),
        (
            "events",
            &[("contact_id", "ct_0000000000000011")],
            None,
            Some("occurred_ms"),
            false,
        ),
    ];
    for (collection, filters, between, sort, count) in listings {
        let query = PageQuery {
            collection: if collection == "contacts" {
                "contacts"
            } else {
                "events"
            },
            tenant: "ten_7",
            filters: filters.to_vec(),
            between,
            sort,
            descending: true,
            skip: 0,
            limit: 20,
            count,
        };
        let (page, counted) = page_sql(&query).expect("a table");
        let mut values: Vec<String> = std::iter::once("ten_7".to_owned())
            .chain(filters.iter().map(|(_, value)| value.to_string()))
            .collect();
        if let Some((_, low, high)) = between {
            values.push(low.unwrap_or(i64::MIN).to_string());
            values.push(high.unwrap_or(i64::MAX).to_string());
        }
        let mut statements = vec![with_literals(&counted, &values)];
        values.extend(["20".to_owned(), "0".to_owned()]);
        statements.insert(0, with_literals(&page, &values));
        statements.truncate(if count { 2 } else { 1 });
        for sql in statements {
            let plan = postgres::psql(&name, &format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"));
            println!("{rows} {collection}: {sql}\n{plan}\n");
            assert!(!plan.contains("Seq Scan"), "{sql} scans the table:\n{plan}");
            assert!(plan.contains("Index"), "{sql} uses no index:\n{plan}");
        }
    }
}

/// A database from before the `actions` table (schema version 1) gets it,
/// filled from the stored actions, at the next start; and the server's
/// listings answer from it as they did.
#[test]
fn the_tables_follow_the_records_and_are_filled_when_the_schema_moves_up() {
    use actionhost_tests::server::{Options, Server};
    use serde_json::json;
    let url = postgres::database();
    let name = postgres::name_of(&url).to_owned();
    let server = Server::start_with(Options {
        store: Some(url.clone()),
        ..Options::default()
    });
    let create = |body: serde_json::Value| {
        let answer = server.post("/v1/actions", &body);
        assert!(answer.status < 300, "{}", answer.text);
        answer.json["action_id"].as_str().expect("id").to_owned()
    };
    let held = create(
        json!({ "type": "noop", "params": {}, "identity_id": "ada", "require_approval": true, "list_id": "l1" }),
    );
    let other = create(
        json!({ "type": "noop", "params": {}, "identity_id": "bob", "require_approval": true, "list_id": "l1" }),
    );
    let done = create(
        json!({ "type": "noop", "params": {}, "identity_id": "ada", "direct": true, "list_id": "l1" }),
    );
    // Records of other kinds: contacts (one changed, one erased), an
    // event, an identity; the direct action wrote an execution.
    let contact = |email: &str, stage: &str| {
        let answer = server.post(
            "/v1/contacts",
            &json!({ "email": email, "properties": { "lifecyclestage": stage, "company": "Acme" } }),
        );
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.json["contact"]["_id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let grace = contact("Grace@Example.com", "lead");
    let gone = contact("gone@example.com", "lead");
    let patched = server.call(
        "PATCH",
        &format!("/v1/contacts/{grace}"),
        Some(&server.admin_key),
        Some(&json!({ "properties": { "lifecyclestage": "Customer" } })),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    let erased = server.call(
        "DELETE",
        &format!("/v1/contacts/{gone}"),
        Some(&server.admin_key),
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.text);
    let event = server.post(
        "/v1/events",
        &json!({ "event": "pageview", "url": "https://example.com/pricing", "contact_id": grace }),
    );
    assert!(event.status < 300, "{}", event.text);
    let identity = server.post("/v1/identities", &json!({ "name": "Sam" }));
    assert_eq!(identity.status, 201, "{}", identity.text);

    let rows = |table: &str, columns: &str| {
        postgres::psql(
            &name,
            &format!("SELECT string_agg({columns}, ';' ORDER BY id) FROM {table}"),
        )
    };
    let tables = |stage: &str| {
        assert_eq!(
            rows(
                "contacts",
                "concat_ws(',', id, email, lifecycle_stage, company)"
            ),
            format!("{grace},grace@example.com,customer,Acme"),
            "{stage}"
        );
        assert_eq!(
            rows("events", "concat_ws(',', event, contact_id)"),
            format!("pageview,{grace}"),
            "{stage}"
        );
        assert_eq!(rows("identities", "name"), "Sam", "{stage}");
        assert_eq!(
            rows(
                "executions",
                "concat_ws(',', action_id, action_type, status)"
            ),
            format!("{done},noop,succeeded"),
            "{stage}"
        );
        for table in ["tenants", "api_keys"] {
            let count = postgres::psql(&name, &format!("SELECT count(*) FROM {table}"));
            assert_eq!(count, "1", "{table} {stage}");
        }
        // Every row is its tenant's.
        assert_eq!(
            postgres::psql(
                &name,
                "SELECT count(DISTINCT tenant_id) FROM (SELECT tenant_id FROM contacts UNION ALL \
                 SELECT tenant_id FROM executions UNION ALL SELECT tenant_id FROM api_keys \
                 UNION ALL SELECT id FROM tenants) owners"
            ),
            "1",
            "{stage}"
        );
    };
    tables("as written");
    // The index entries the `actions` table answers for are not kept; the
    // ones read elsewhere (by status, for the metrics) are.
    let entries = |index: &str| {
        postgres::psql(
            &name,
            &format!(
                "SELECT count(*) FROM index_entries WHERE substring(key FROM 1 FOR {}) = '{index}'::bytea",
                index.len() + 1
            )
            .replace("'::bytea", "\\000'::bytea"),
        )
    };
    for index in [
        "actions_by_tenant",
        "actions_by_type",
        "actions_by_identity",
        "actions_by_list",
    ] {
        assert_eq!(entries(index), "0", "{index}");
    }
    assert_eq!(entries("actions_by_status"), "3");

    let list = |server: &Server, query: &str| -> (Vec<String>, u64) {
        let answer = server.get(&format!("/v1/actions{query}"));
        assert_eq!(answer.status, 200, "{}", answer.text);
        let ids = answer.json["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["id"].as_str().expect("id").to_owned())
            .collect();
        (
            ids,
            answer.json["pagination"]["total_items"]
                .as_u64()
                .expect("total"),
        )
    };
    let query = "?identity_id=ada&list_id=l1&sort_by=status&sort_dir=asc";
    let before = list(&server, query);
    assert_eq!(before.1, 2);
    let mut server = server;
    server.stop();
    // Back to version 1: no tables, no triggers.
    let mut drop = String::from(
        "DROP TRIGGER actions_follow_writes ON records;
         DROP TRIGGER actions_follow_removals ON records;
         DROP FUNCTION actionhost_actions_follow(); DROP FUNCTION actionhost_action_row(jsonb);
         DROP TABLE actions;
         DROP TRIGGER records_follow_writes ON records;
         DROP TRIGGER records_follow_removals ON records;
         DROP FUNCTION actionhost_records_follow();",
    );
    for table in [
        "executions",
        "contacts",
        "events",
        "notes",
        "anonymous_links",
        "agents",
        "agent_runs",
        "agent_contact_results",
        "auth_configs",
        "accounts",
        "identities",
        "tenants",
        "users",
        "api_keys",
        "publishable_keys",
        "console_sessions",
        "idempotency",
        "plugins",
    ] {
        drop.push_str(&format!(" DROP TABLE {table};"));
    }
    drop.push_str(" DELETE FROM actionhost_schema WHERE version > 1");
    postgres::psql(&name, &drop);
    let server = server.restart();
    assert_eq!(postgres::psql(&name, "SELECT count(*) FROM actions"), "3");
    tables("filled by the migration");
    let after = list(&server, query);
    assert_eq!(after, before);
    let (ids, total) = list(&server, "?list_id=l1&sort_dir=asc");
    assert_eq!((ids, total), (vec![held, other, done], 3));
}
