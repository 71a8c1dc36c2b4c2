//! The compiled-code cache: a second load does not compile, and a damaged
//! entry is detected and rebuilt, never executed.

use std::sync::Arc;

use actionhost::runtime::{
    CacheOutcome, Credentials, ExecuteRequest, Plugin, PluginOptions, Runtime, RuntimeConfig,
};
use serde_json::json;

async fn load(cache_dir: &std::path::Path) -> Plugin {
    let runtime = Runtime::new(RuntimeConfig::new(cache_dir)).expect("runtime");
    let bytes = std::fs::read(actionhost_tests::fixture("fixture-noop")).expect("fixture");
    runtime
        .load(bytes.into(), PluginOptions::default())
        .await
        .expect("load")
}

async fn assert_runs(plugin: &Plugin) {
    let request = ExecuteRequest {
        action_id: "a".into(),
        action_type: "noop".into(),
        params: json!({ "echo": "ok" }),
        attempt: 3,
        idempotency_key: "a".into(),
        account: None,
        reuse_key: None,
    };
    let execution = plugin
        .execute(request, Arc::new(Credentials::None.into()))
        .await
        .expect("runs");
    assert_eq!(
        execution.outcome.expect("succeeds"),
        json!({ "echo": "ok", "attempt": 3 })
    );
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[tokio::test]
async fn a_second_load_does_not_compile_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = load(dir.path()).await;
    assert_eq!(first.cache_outcome(), CacheOutcome::Miss);
    assert_eq!(entries(dir.path()).len(), 1);
    let second = load(dir.path()).await;
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);
    assert_eq!(first.sha256(), second.sha256());
    assert_runs(&second).await;
}

#[tokio::test]
async fn a_corrupted_entry_is_rebuilt_not_executed() {
    let dir = tempfile::tempdir().expect("temp dir");
    load(dir.path()).await;
    let entry = entries(dir.path()).pop().expect("one entry");

    // Flip one byte deep in the compiled code.
    let mut bytes = std::fs::read(&entry).expect("read entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&entry, &bytes).expect("corrupt entry");
    let rebuilt = load(dir.path()).await;
    assert_eq!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt);
    assert_runs(&rebuilt).await;
    assert_eq!(
        load(dir.path()).await.cache_outcome(),
        CacheOutcome::Hit,
        "the rebuilt entry is good"
    );

    // A truncated entry, too.
    let entry = entries(dir.path()).pop().expect("one entry");
    let bytes = std::fs::read(&entry).expect("read entry");
    std::fs::write(&entry, &bytes[..bytes.len() / 3]).expect("truncate entry");
    assert_eq!(
        load(dir.path()).await.cache_outcome(),
        CacheOutcome::Rebuilt
    );
}

#[tokio::test]
async fn an_entry_signed_with_another_key_is_not_trusted() {
    // Two caches, each with its own key: an entry and its tag copied from
    // one into the other (signed by a host that is not this one) must be
    // rejected, and so must an entry whose tag is missing.
    let ours = tempfile::tempdir().expect("temp dir");
    let theirs = tempfile::tempdir().expect("temp dir");
    load(ours.path()).await;
    load(theirs.path()).await;
    let foreign = entries(theirs.path()).pop().expect("entry");
    let target = entries(ours.path()).pop().expect("entry");
    std::fs::copy(&foreign, &target).expect("swap in a foreign entry");
    std::fs::copy(foreign.with_extension("tag"), target.with_extension("tag"))
        .expect("and its tag");
    assert_eq!(
        load(ours.path()).await.cache_outcome(),
        CacheOutcome::Rebuilt
    );

    let target = entries(ours.path()).pop().expect("entry");
    std::fs::remove_file(target.with_extension("tag")).expect("remove the tag");
    assert_eq!(
        load(ours.path()).await.cache_outcome(),
        CacheOutcome::Rebuilt
    );
    assert_eq!(load(ours.path()).await.cache_outcome(), CacheOutcome::Hit);
}
