//! The engine prefers the pooling allocator and falls back, with a warning,
//! where the address space is too small for its reservations.

use std::process::Command;

fn inspect_noop(address_space_kib: Option<u64>) -> (i32, String, String) {
    let bin = actionhost_tests::actionhost_bin();
    let fixture = actionhost_tests::fixture("fixture-noop");
    let limit = address_space_kib.map_or_else(|| "unlimited".to_owned(), |kib| kib.to_string());
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {limit} && exec \"$0\" plugin inspect \"$1\""
        ))
        .arg(bin)
        .arg(fixture)
        .env("ACTIONHOST_CACHE_DIR", actionhost_tests::shared_cache_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run actionhost under sh");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_small_address_space_falls_back_to_on_demand_allocation() {
    // 4 GiB of address space: far less than the pool's reservations.
    let (code, stdout, stderr) = inspect_noop(Some(4 << 20));
    assert_eq!(code, 0, "plugins still load and run: {stderr}");
    assert!(
        stderr.contains("falling back to on-demand allocation"),
        "a logged warning: {stderr}"
    );
    assert!(
        !stderr.contains("\u{1b}["),
        "no terminal escapes in a pipe: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("manifest json");
    assert_eq!(report["manifest"]["name"], "fixture-noop");
}

#[test]
fn an_ample_address_space_logs_no_fallback_warning() {
    let (code, _, stderr) = inspect_noop(None);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("falling back"), "{stderr}");
}
