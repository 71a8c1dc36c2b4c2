//! Running `actionhost exec` and reading its result.

use std::path::Path;
use std::process::Command;

/// What one `actionhost exec` printed and returned.
#[derive(Debug)]
pub struct ExecResult {
    /// The exit code.
    pub code: i32,
    /// stdout parsed as JSON (`Null` when it was not JSON).
    pub json: serde_json::Value,
    /// stderr: the execution log and any error.
    pub stderr: String,
}

impl ExecResult {
    /// The `error_code` field.
    pub fn error_code(&self) -> &str {
        self.json["error_code"].as_str().unwrap_or_default()
    }
}

/// Runs `actionhost exec --type TYPE --params PARAMS --account ACCOUNT` with
/// the bundled plugins, loopback allowed, and the shared compiled cache.
pub fn exec(
    action_type: &str,
    params: &serde_json::Value,
    account: &serde_json::Value,
) -> ExecResult {
    let dir = tempfile::tempdir().expect("temp dir");
    let account_path = dir.path().join("account.json");
    std::fs::write(&account_path, account.to_string()).expect("write account");
    exec_with(&[
        "--type",
        action_type,
        "--params",
        &params.to_string(),
        "--account",
        account_path.to_str().expect("utf-8 path"),
        "--allow-host",
        "http://127.0.0.1:*",
        "--allow-private-network",
    ])
}

/// Runs `actionhost exec` with the bundled plugins and any arguments.
pub fn exec_with(args: &[&str]) -> ExecResult {
    run(&[
        &["exec", "--plugins-dir", path(&crate::plugins_dir())],
        args,
    ]
    .concat())
}

/// Runs the binary with `args` and the shared compiled cache.
pub fn run(args: &[&str]) -> ExecResult {
    let output = Command::new(crate::actionhost_bin())
        .args(args)
        .env("ACTIONHOST_CACHE_DIR", crate::shared_cache_dir())
        .output()
        .expect("run actionhost");
    ExecResult {
        code: output.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
