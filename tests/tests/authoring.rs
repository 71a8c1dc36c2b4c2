//! The plugin author's tools, as an author runs them: `actionhost plugin new`
//! for each language, `plugin build`, and `plugin test` (the case harness),
//! on the bundled plugins' own cases and on a case that is wrong.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use actionhost_tests::{actionhost_bin, shared_cache_dir, target_dir, workspace_root};

fn actionhost(dir: &Path, args: &[&str]) -> Output {
    Command::new(actionhost_bin())
        .args(args)
        .current_dir(dir)
        .env("ACTIONHOST_CACHE_DIR", shared_cache_dir())
        // The Rust skeleton's dependencies build once per machine, not per test run.
        .env("CARGO_TARGET_DIR", target_dir().join("template-build"))
        // The pinned componentize-py that scripts/build-plugins installed
        // (the same requirements as the skeleton's).
        .env(
            "ACTIONHOST_COMPONENTIZE_PY",
            target_dir().join("plugin-tools/venv/bin/componentize-py"),
        )
        .output()
        .expect("run actionhost")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn check_skeleton(lang: &str) {
    let temp = tempfile::tempdir().expect("temp dir");
    let name = format!("acme-{lang}");
    let new = actionhost(temp.path(), &["plugin", "new", &name, "--lang", lang]);
    assert!(new.status.success(), "{}", text(&new));
    let dir = temp.path().join(&name);
    for file in [
        "wit/executor.wit",
        "tests/basic.case.json",
        "tests/blank-name.case.json",
    ] {
        assert!(dir.join(file).is_file(), "{lang} skeleton has {file}");
    }
    let again = actionhost(temp.path(), &["plugin", "new", &name, "--lang", lang]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing folder is refused: {}",
        text(&again)
    );

    let started = Instant::now();
    let build = actionhost(&dir, &["plugin", "build"]);
    assert!(build.status.success(), "{}", text(&build));
    eprintln!(
        "{lang} skeleton built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let component = format!("dist/{name}.wasm");
    assert!(dir.join(&component).is_file(), "{}", text(&build));

    let test = actionhost(
        &dir,
        &[
            "plugin",
            "test",
            &component,
            "--case",
            "tests/basic.case.json",
            "--case",
            "tests/blank-name.case.json",
        ],
    );
    assert!(test.status.success(), "{}", text(&test));
    assert!(
        String::from_utf8_lossy(&test.stdout).contains("all 2 case(s) passed"),
        "{}",
        text(&test)
    );
}

#[test]
fn rust_skeleton_builds_and_passes_its_cases() {
    check_skeleton("rust");
}

#[test]
fn python_skeleton_builds_and_passes_its_cases() {
    check_skeleton("python");
}

#[test]
fn javascript_skeleton_builds_and_passes_its_cases() {
    check_skeleton("js");
}

#[test]
fn bundled_plugins_pass_their_own_cases() {
    let root = workspace_root();
    let mut ran = 0;
    for plugin in [
        "crm-sync",
        "notes",
        "send-email",
        "slack-message",
        "webhook-post",
    ] {
        let mut args = vec![
            "plugin".to_owned(),
            "test".to_owned(),
            actionhost_tests::plugin(plugin).display().to_string(),
        ];
        let cases = root.join("plugins").join(plugin).join("tests");
        let mut files: Vec<_> = std::fs::read_dir(&cases)
            .expect("the plugin has cases")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.to_string_lossy().ends_with(".case.json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} has cases", cases.display());
        for file in &files {
            args.push("--case".into());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = actionhost(&root, &args);
        assert!(output.status.success(), "{plugin}: {}", text(&output));
        ran += files.len();
    }
    assert!(ran >= 10, "ran {ran} cases");
}

#[test]
fn a_wrong_case_is_reported_with_a_readable_diff() {
    let temp = tempfile::tempdir().expect("temp dir");
    let case = temp.path().join("wrong.case.json");
    // Wrong on purpose: the URL, the token, the body and the output.
    std::fs::write(
        &case,
        serde_json::json!({
            "name": "a deliberately wrong case",
            "params": { "contacts": [{ "email": "ada@example.com", "properties": { "firstname": "Ada" } }] },
            "account": { "metadata": {} },
            "credentials": { "type": "bearer", "token": "test-hubspot-token" },
            "exchanges": [{
                "request": {
                    "method": "POST",
                    "url": "https://api.hubapi.com/crm/v3/objects/contacts/upsert",
                    "headers": { "authorization": "Bearer some-other-token" },
                    "body": { "inputs": [{ "idProperty": "email", "id": "ada@example.com", "properties": { "email": "ada@example.com", "firstname": "Grace" } }] }
                },
                "response": { "status": 200, "body": { "status": "COMPLETE", "results": [{ "id": "1", "properties": { "email": "ada@example.com" }, "new": true }] } }
            }],
            "expect": { "output": { "created": [], "updated": [{ "email": "ada@example.com", "id": "1" }], "errors": [] } }
        })
        .to_string(),
    )
    .expect("write case");
    let output = actionhost(
        temp.path(),
        &[
            "plugin",
            "test",
            &actionhost_tests::plugin("crm-sync").display().to_string(),
            "--case",
            case.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("test-hubspot-token"),
        "an injected credential is never printed:\n{stdout}"
    );
    for expected in [
        "FAILED  a deliberately wrong case",
        "exchange 1: url:",
        "expected https://api.hubapi.com/crm/v3/objects/contacts/upsert",
        "got      https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert",
        "exchange 1: header authorization: expected \"Bearer some-other-token\", got <injected credential, sha256 ",
        "exchange 1: body differs:",
        "--- expected",
        "+++ actual",
        "-        \"firstname\": \"Grace\"",
        "+        \"firstname\": \"Ada\"",
        "result differs:",
        "plugin log:",
        "1 of 1 case(s) failed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    // A malformed case file is a usage error that names the problem.
    std::fs::write(
        &case,
        r#"{"params": {}, "expect": {"output": {}}, "exchange": []}"#,
    )
    .expect("write case");
    let typo = actionhost(
        temp.path(),
        &[
            "plugin",
            "test",
            &actionhost_tests::plugin("crm-sync").display().to_string(),
            "--case",
            case.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("unknown field `exchange`"),
        "{}",
        text(&typo)
    );
}
