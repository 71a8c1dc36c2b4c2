//! Schemathesis against the real server: cases generated from
//! `/openapi.json` (valid and invalid bodies, parameters and headers, and
//! sequences of calls that follow the document's links), each answer checked
//! against the document.
//!
//! The test suite runs a short form (`ACTIONHOST_FUZZ_EXAMPLES`, default 12
//! examples per operation); `reliability/run` runs the full one (300 per
//! operation, more than 10,000 cases) and sets `ACTIONHOST_FUZZ_MIN_CASES`
//! so that a run that generated fewer fails rather than passing on little.

use std::path::Path;
use std::process::Command;

use actionhost_tests::server::Server;

/// Revoking keys is fuzzed last, on its own: the stateful phase follows the
/// link from the key list to the revocation and would otherwise revoke the
/// fuzzer's own key half-way through the run.
const REVOKE: &str = "/v1/api-keys/{id}";

#[test]
fn schemathesis_finds_no_server_error_no_crash_and_no_answer_off_the_document() {
    let examples = env_number("ACTIONHOST_FUZZ_EXAMPLES", 12);
    let min_cases = env_number("ACTIONHOST_FUZZ_MIN_CASES", 1);
    let server = Server::start();
    let reports = tempfile::tempdir().expect("temp dir");

    let mut cases = 0;
    for (pass, filter) in [
        ("everything else", "--exclude-path"),
        ("revocation", "--include-path"),
    ] {
        let (generated, output) = run(&server, examples, &[filter, REVOKE], reports.path());
        eprintln!("schemathesis, {pass}: {generated} cases");
        assert_eq!(
            server.get("/healthz").status,
            200,
            "the server stopped answering during the run:\n{output}"
        );
        cases += generated;
    }
    eprintln!("fuzz: {cases} cases, 0 failures");
    assert!(
        cases >= min_cases,
        "only {cases} cases were generated; wanted {min_cases}"
    );

    // No crash: the process answered after each pass, and never panicked.
    let log = server.log();
    assert!(
        !log.contains("panicked"),
        "the server panicked during the fuzz run:\n{log}"
    );
}

/// One schemathesis run; panics with its report unless every check passed.
/// Returns the number of cases generated, and the output.
fn run(server: &Server, examples: u64, filter: &[&str], reports: &Path) -> (u64, String) {
    let (success, text) = run_once(server, examples, filter, reports);
    // CPython 3.11's `ast.parse` can raise "SystemError: AST constructor
    // recursion depth mismatch" (an interpreter bug, seen once here while
    // hypothesis described a lambda under schemathesis's two workers).
    // That is the tool crashing, not a finding: run it again, once.
    let (success, text) = if !success
        && text.contains("AST constructor recursion depth mismatch")
        && !text.contains("FAILURES")
    {
        eprintln!("schemathesis crashed in CPython's ast; running it again");
        run_once(server, examples, filter, reports)
    } else {
        (success, text)
    };
    assert!(success, "schemathesis found failures:\n{text}");
    (
        generated(&text).unwrap_or_else(|| panic!("no case count in:\n{text}")),
        text,
    )
}

/// One run of schemathesis: whether every check passed, and its output.
fn run_once(server: &Server, examples: u64, filter: &[&str], reports: &Path) -> (bool, String) {
    let schemathesis = actionhost_tests::python()
        .parent()
        .expect("the venv's bin")
        .join("schemathesis");
    let output = Command::new(&schemathesis)
        // Every check. Where validity depends on state the document cannot
        // state (an installed action type's schema, an object a field
        // names), tests/peers/schemathesis.toml lets that one operation
        // answer 422 too, and says why.
        .arg("--config-file")
        .arg(actionhost_tests::workspace_root().join("tests/peers/schemathesis.toml"))
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["-H", &format!("Authorization: Bearer {}", server.admin_key)])
        .args(["--checks", "all"])
        .args(["--generation-with-security-parameters", "false"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--workers", "2", "--no-color", "--output-truncate", "false"])
        .args(["--report", "junit", "--report-dir"])
        .arg(reports)
        .args(filter)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run scripts/setup-test-tools",
                schemathesis.display()
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The `N generated` figure of schemathesis's summary.
fn generated(output: &str) -> Option<u64> {
    output.lines().rev().find_map(|line| {
        let (count, _) = line.trim().split_once(" generated,")?;
        count.parse().ok()
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}")),
        Err(_) => default,
    }
}
