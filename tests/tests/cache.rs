//! The compiled-code cache: a second load does not compile, and a damaged
//! entry is detected and rebuilt, never executed; the manifest `describe`
//! gave is kept next to the compiled code, under the same kind of tag.

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

/// The one manifest entry of the cache in `dir`.
fn manifest_entry(dir: &std::path::Path) -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .collect();
    assert_eq!(found.len(), 1, "one manifest entry: {found:?}");
    found.pop().expect("one")
}

/// Writes `json` as a manifest entry tagged with the cache's own key, as
/// the host would: magic, keyed BLAKE3 over the engine hash (from the
/// entry's name), the domain and the JSON, then the JSON.
fn write_tagged(dir: &std::path::Path, entry: &std::path::Path, json: &[u8]) {
    let key: [u8; 32] = std::fs::read(dir.join("cache.key"))
        .expect("cache key")
        .try_into()
        .expect("32 bytes");
    let name = entry.file_stem().expect("name").to_string_lossy();
    let engine_hash = name.rsplit_once('-').expect("sha-engine").1;
    let mut mac = blake3::Hasher::new_keyed(&key);
    mac.update(engine_hash.as_bytes());
    mac.update(b"actionhost manifest v1\0");
    mac.update(json);
    let mut bytes = b"AHCTAG02".to_vec();
    bytes.extend_from_slice(mac.finalize().as_bytes());
    bytes.extend_from_slice(json);
    std::fs::write(entry, bytes).expect("write manifest entry");
}

#[tokio::test]
async fn a_warm_load_takes_the_manifest_from_the_cache_and_still_checks_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = load(dir.path()).await;
    let entry = manifest_entry(dir.path());
    let stored = std::fs::read(&entry).expect("read manifest entry");
    let json: serde_json::Value =
        serde_json::from_slice(&stored[8 + 32..]).expect("the entry ends in JSON");
    assert_eq!(json["manifest"]["name"], first.manifest().name);

    // A validly tagged entry is used instead of running `describe`: a
    // description only the cache has shows up in the loaded manifest.
    let mut changed = json.clone();
    changed["manifest"]["description"] = json!("only the cache says this");
    write_tagged(
        dir.path(),
        &entry,
        &serde_json::to_vec(&changed).expect("json"),
    );
    let warm = load(dir.path()).await;
    assert_eq!(warm.manifest().description, "only the cache says this");
    assert_runs(&warm).await;

    // The host checks a cached manifest as it checks a fresh one.
    let mut bad = json.clone();
    bad["manifest"]["name"] = json!("Not Kebab Case");
    write_tagged(dir.path(), &entry, &serde_json::to_vec(&bad).expect("json"));
    let runtime = Runtime::new(RuntimeConfig::new(dir.path())).expect("runtime");
    let bytes = std::fs::read(actionhost_tests::fixture("fixture-noop")).expect("fixture");
    let Err(refused) = runtime.load(bytes.into(), PluginOptions::default()).await else {
        panic!("a bad cached manifest is refused");
    };
    assert!(refused.to_string().contains("kebab-case"), "{refused}");

    // An entry changed without the key (here: the JSON edited, still
    // valid JSON, the tag left as it was) is discarded: `describe` runs and
    // its answer is stored again.
    let mut tampered = stored[..8 + 32].to_vec();
    tampered.extend_from_slice(&serde_json::to_vec(&changed).expect("json"));
    std::fs::write(&entry, &tampered).expect("tamper");
    let fresh = load(dir.path()).await;
    assert_eq!(fresh.manifest().description, first.manifest().description);
    assert_eq!(
        std::fs::read(&entry).expect("rewritten"),
        stored,
        "describe's answer is stored again"
    );
}

#[tokio::test]
async fn a_manifest_entry_from_another_cache_is_not_trusted() {
    let ours = tempfile::tempdir().expect("temp dir");
    let theirs = tempfile::tempdir().expect("temp dir");
    let original = load(ours.path()).await;
    load(theirs.path()).await;
    // Theirs says something else, under their own key.
    let their_entry = manifest_entry(theirs.path());
    let stored = std::fs::read(&their_entry).expect("read");
    let mut json: serde_json::Value = serde_json::from_slice(&stored[40..]).expect("json");
    json["manifest"]["description"] = json!("signed by another host");
    write_tagged(
        theirs.path(),
        &their_entry,
        &serde_json::to_vec(&json).expect("json"),
    );
    assert_eq!(
        load(theirs.path()).await.manifest().description,
        "signed by another host",
        "their host trusts its own entry"
    );
    std::fs::copy(&their_entry, manifest_entry(ours.path())).expect("copy it over");
    assert_eq!(
        load(ours.path()).await.manifest().description,
        original.manifest().description,
        "ours runs describe instead"
    );
}
