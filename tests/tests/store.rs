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

#[tokio::test]
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
        message.contains(&format!("PostgreSQL at 127.0.0.1:{port}/actions is unavailable")),
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
    assert!(stderr.contains(&format!("127.0.0.1:{port}/actions")), "{stderr}");
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
