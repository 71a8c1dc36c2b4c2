//! Support for the black-box tests: where the built artifacts are, the real
//! local peers (an SMTP server, stand-ins for Gmail, LinkedIn and HubSpot),
//! and a runner for the `actionhost` binary.
//!
//! `scripts/test` builds the binary, the plugins (`target/plugins`) and the
//! fixtures (`target/fixtures`) and installs the peers' tools before running
//! these tests; each helper says so when something is missing.

pub mod exec;
pub mod providers;
pub mod server;
pub mod smtp;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target folder.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// A built artifact, or a panic that says how to build it.
fn artifact(path: PathBuf, how: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: {how} (scripts/test does it)",
        path.display()
    );
    path
}

/// The `actionhost` binary.
pub fn actionhost_bin() -> PathBuf {
    artifact(
        target_dir().join("debug").join("actionhost"),
        "run `cargo build -p actionhost`",
    )
}

/// The bundled plugins folder.
pub fn plugins_dir() -> PathBuf {
    artifact(target_dir().join("plugins"), "run scripts/build-plugins")
}

/// A bundled plugin's component.
pub fn plugin(name: &str) -> PathBuf {
    artifact(
        plugins_dir().join(format!("{name}.wasm")),
        "run scripts/build-plugins",
    )
}

/// A test fixture's component, such as `fixture-hostile`.
pub fn fixture(name: &str) -> PathBuf {
    artifact(
        target_dir().join("fixtures").join(format!("{name}.wasm")),
        "run scripts/build-plugins",
    )
}

/// A compiled-code cache shared by the tests, so each component compiles once.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("test-cache")
}

/// The Python with the test peers' packages.
pub fn python() -> PathBuf {
    let path = std::env::var_os("ACTIONHOST_TEST_PYTHON").map_or_else(
        || target_dir().join("test-tools/venv/bin/python"),
        PathBuf::from,
    );
    artifact(path, "run scripts/setup-test-tools")
}
