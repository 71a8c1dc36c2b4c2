//! A client generated from `/openapi.json` by a real generator
//! (`openapi-python-client`, from PyPI) covers every operation, with no
//! warning, and each of its modules makes a call that it can parse the
//! answer of: the document says exactly what the server answers.

use std::process::Command;

use actionhost_tests::server::Server;

#[test]
fn a_client_generated_from_the_document_has_every_operation_and_parses_every_answer() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let document = server.call("GET", "/openapi.json", None, None);
    assert_eq!(document.status, 200);
    let operations = document.json["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").keys().cloned())
        .filter(|method| {
            ["get", "put", "post", "delete", "patch", "options"].contains(&method.as_str())
        })
        .count();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &document.text).expect("write the document");
    let config = dir.path().join("config.yaml");
    // No post-hooks: they format the code with ruff, which is beside the point.
    std::fs::write(
        &config,
        "post_hooks: []\nproject_name_override: actionhost-client\npackage_name_override: actionhost_client\n",
    )
    .expect("write the config");
    let bin = actionhost_tests::python()
        .parent()
        .expect("the venv's bin")
        .join("openapi-python-client");
    let output_dir = dir.path().join("client");
    let generated = Command::new(&bin)
        .args(["generate", "--path"])
        .arg(&path)
        .arg("--config")
        .arg(&config)
        .arg("--output-path")
        .arg(&output_dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run scripts/setup-test-tools",
                bin.display()
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(
        generated.status.success(),
        "the generator failed:\n{report}"
    );
    assert!(
        !report.to_lowercase().contains("warning"),
        "the generator warned:\n{report}"
    );

    let called = Command::new(actionhost_tests::python())
        .arg(actionhost_tests::workspace_root().join("tests/peers/generated_client.py"))
        .args(["actionhost_client", &server.url, &server.admin_key])
        .env("PYTHONPATH", &output_dir)
        .output()
        .expect("run the generated client");
    let stdout = String::from_utf8_lossy(&called.stdout);
    assert!(
        called.status.success(),
        "a generated call failed: {stdout}{}",
        String::from_utf8_lossy(&called.stderr)
    );
    let calls: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("the driver's report");
    let calls = calls["calls"].as_array().expect("calls");
    assert_eq!(
        calls.len(),
        operations,
        "one generated module per operation, each called: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c["status"].as_u64().is_some_and(|s| s < 500)),
        "{calls:?}"
    );
    assert!(!server.log().contains("panicked"));
}
