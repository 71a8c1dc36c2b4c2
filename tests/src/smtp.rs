//! A real SMTP server on loopback: aiosmtpd, run by `tests/peers/smtp_sink.py`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SMTP server that stores what it accepts. Stopped on drop.
pub struct SmtpSink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    maildir: tempfile::TempDir,
}

/// One accepted message.
#[derive(Debug)]
pub struct Received {
    /// `MAIL FROM`.
    pub mail_from: String,
    /// Every `RCPT TO` accepted.
    pub rcpt_tos: Vec<String>,
    /// The raw message.
    pub raw: Vec<u8>,
}

impl SmtpSink {
    /// Starts the server and waits until it accepts connections.
    pub fn start() -> Self {
        let maildir = tempfile::tempdir().expect("temp dir");
        let script = crate::workspace_root().join("tests/peers/smtp_sink.py");
        let mut child = Command::new(crate::python())
            .arg(script)
            .arg("--maildir")
            .arg(maildir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the smtp sink");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the smtp sink's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("smtp sink printed {line:?} instead of a port"));
        let sink = Self {
            child,
            port,
            maildir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp sink did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    /// The messages accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut messages = Vec::new();
        for n in 1.. {
            let base: PathBuf = self.maildir.path().join(n.to_string());
            let Ok(raw) = std::fs::read(base.with_extension("eml")) else {
                break;
            };
            let envelope: serde_json::Value = serde_json::from_slice(
                &std::fs::read(base.with_extension("json")).expect("envelope"),
            )
            .expect("json");
            messages.push(Received {
                mail_from: envelope["mail_from"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                rcpt_tos: envelope["rcpt_tos"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                raw,
            });
        }
        messages
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
