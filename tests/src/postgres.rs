//! A real PostgreSQL for the tests: the cluster `scripts/postgres` runs in
//! `target/test-postgres` (started on first use), or the one
//! `ACTIONHOST_TEST_POSTGRES` names, and a fresh database per test.
//!
//! With `ACTIONHOST_TEST_STORE=postgres`, every [`crate::server::Server`]
//! stores its records in a database of its own there instead of sled; the
//! test command runs the storage-dependent suites once on each.

use std::process::Command;
use std::sync::OnceLock;

/// Whether the servers of this run store in PostgreSQL.
pub fn enabled() -> bool {
    std::env::var("ACTIONHOST_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// `postgres://postgres@127.0.0.1:PORT`, the cluster's URL without a database.
pub fn cluster_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("ACTIONHOST_TEST_POSTGRES")
            && !url.trim().is_empty()
        {
            return url.trim().trim_end_matches('/').to_owned();
        }
        let output = Command::new(crate::workspace_root().join("scripts/postgres"))
            .arg("start")
            .output()
            .expect("run scripts/postgres");
        assert!(
            output.status.success(),
            "scripts/postgres start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    })
}

/// The URL of `database` in the cluster.
pub fn url_of(database: &str) -> String {
    format!("{}/{database}", cluster_url())
}

/// A new, empty database; returns its URL.
pub fn database() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    psql("postgres", &format!("CREATE DATABASE {name}"));
    url_of(&name)
}

/// Runs `sql` in `database` with `psql` and returns what it printed
/// (unaligned, tuples only); panics with psql's message if it fails.
pub fn psql(database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .arg(url_of(database))
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The database name of a URL from [`database`].
pub fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

/// Every byte the database holds in its tables, as `pg_dump` writes them.
pub fn dump(url: &str) -> Vec<u8> {
    let output = Command::new("pg_dump")
        .args(["--data-only", "--no-owner"])
        .arg(url)
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A PostgreSQL cluster of one test's own, for faults that would disturb
/// other tests (stopping the database): in a temporary folder the
/// `postgres` user owns, on a free port. Stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts one (about a second).
    pub fn start() -> Self {
        // scripts/postgres installs the package if it is missing.
        let _ = cluster_url();
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql is installed")
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        let cluster = Self {
            port: crate::server::free_port(),
            dir,
            bin,
        };
        cluster.as_postgres(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        cluster.resume();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .expect("runuser");
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The URL of `database` in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended).
    pub fn stop(&self) {
        self.as_postgres("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts it (again), on the same port.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}
