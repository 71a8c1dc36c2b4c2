//! A full disk: the data directory on a small tmpfs, filled through the API.
//!
//! The tmpfs is mounted in a mount namespace of its own (`unshare -Urm`, no
//! privileges needed where user namespaces are enabled), kept alive by a
//! holder process; the server reaches it through `/proc/HOLDER/root`, so
//! the server itself runs as usual.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use actionhost_tests::server::{Options, Server};
use serde_json::{Value, json};

/// A tmpfs of a given size in a mount namespace held open by `sleep`.
struct SmallDisk {
    holder: Child,
    mount: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts it, or fails the test where user namespaces are disabled:
    /// a full disk is not something to skip quietly.
    fn mount(size: &str) -> Self {
        let mount = tempfile::tempdir().expect("mount point");
        let mut holder = Command::new("unshare")
            .args(["-Urm", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size} tmpfs \"$1\" && echo mounted && exec sleep 100000"
            ))
            .arg("sh")
            .arg(mount.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("reads the holder");
        if line.trim() != "mounted" {
            let output = holder.wait_with_output().expect("holder output");
            panic!(
                "cannot mount a tmpfs in a user namespace here ({}); the full-disk test needs `unshare -Urm` (user namespaces)",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Self { holder, mount }
    }

    /// The tmpfs, as any process outside the namespace reaches it.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(
            self.mount
                .path()
                .strip_prefix("/")
                .expect("an absolute mount point"),
        )
    }

    /// Gives it more room, as an operator freeing space would.
    fn grow(&self, size: &str) {
        let status = Command::new("nsenter")
            .args([
                "-t",
                &self.holder.id().to_string(),
                "-U",
                "-m",
                "--preserve-credentials",
                "--",
            ])
            .args(["mount", "-o", &format!("remount,size={size}")])
            .arg(self.mount.path())
            .status()
            .expect("nsenter");
        assert!(status.success(), "remounting the tmpfs failed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn a_full_disk_answers_507_loses_nothing_acknowledged_and_recovers_after_a_restart() {
    let disk = SmallDisk::mount("8m");
    let server = Server::start_with(Options {
        data_dir: Some(disk.path().join("data")),
        plugins: Some(vec![actionhost_tests::fixture("fixture-noop")]),
        ..Options::default()
    });

    // Fill it: 200 KB of params per action, until the disk refuses.
    let filler = "x".repeat(200_000);
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut refusal = None;
    for n in 0..200 {
        let echo = format!("{n}-{filler}");
        let answer = server.post(
            "/v1/actions",
            &json!({ "type": "noop", "params": { "echo": echo }, "identity_id": "filler", "scheduled_time": "2030-01-01T00:00:00Z" }),
        );
        match answer.status {
            200 => acknowledged.push((
                answer.json["action_id"].as_str().expect("id").to_owned(),
                echo,
            )),
            507 => {
                refusal = Some(answer);
                break;
            }
            other => panic!(
                "a creation on a filling disk answered {other}: {}",
                answer.text
            ),
        }
    }
    let refusal = refusal.expect("8 MB never filled up");
    assert!(
        !acknowledged.is_empty(),
        "nothing fitted before the disk was full"
    );
    assert_eq!(refusal.json["errorCode"], "unavailable", "{}", refusal.text);
    assert_eq!(refusal.json["retryable"], true, "{}", refusal.text);
    let message = refusal.json["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("storage is full") && message.contains("restart"),
        "the 507 says what happened and what to do: {message}"
    );

    // Until a restart, the store answers nothing (its memory holds writes
    // that never reached the disk), and readiness says why.
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 503, "{}\n{}", ready.text, server.log());
    assert_eq!(ready.json["status"], "storage_failed", "{}", ready.text);
    let reason = ready.json["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("No space left") && reason.contains("restart the server"),
        "{reason}"
    );
    let read = server.get(&format!("/v1/actions/{}", acknowledged[0].0));
    assert!(matches!(read.status, 503 | 507), "{}", read.text);
    assert_eq!(server.get("/healthz").status, 200);

    // Space freed: still refused, at once (sled's next flush would hang).
    disk.grow("64m");
    let after = server.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": { "echo": "after" }, "identity_id": "filler", "scheduled_time": "2030-01-01T00:00:00Z" }),
    );
    assert_eq!(after.status, 507, "{}", after.text);

    // The restart: every acknowledged action is there, whole, and new
    // writes are taken.
    let server = server.restart();
    assert_eq!(server.get("/readyz").status, 200);
    for (id, echo) in &acknowledged {
        let action = server.get(&format!("/v1/actions/{id}"));
        assert_eq!(action.status, 200, "{id} lost: {}", action.text);
        assert_eq!(
            find_echo(&action.json),
            Some(echo.as_str()),
            "{id} came back changed"
        );
    }
    let created = server.post(
        "/v1/actions",
        &json!({ "type": "noop", "params": { "echo": "after restart" }, "identity_id": "filler", "scheduled_time": "2030-01-01T00:00:00Z" }),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    eprintln!(
        "full disk: {} acknowledged before the 507, all {} found after the restart",
        acknowledged.len(),
        acknowledged.len()
    );
}

/// The action's `params.echo`, wherever the detail view puts the params.
fn find_echo(action: &Value) -> Option<&str> {
    action["params"]["echo"]
        .as_str()
        .or_else(|| action["action"]["params"]["echo"].as_str())
        .or_else(|| action["data"]["params"]["echo"].as_str())
}
