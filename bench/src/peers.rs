//! The peers: an axum hello-world server (the floor of an HTTP layer in
//! Rust) and `wasmtime serve` hosting a no-op wasi:http component (what an
//! operator would use to host wasm handlers instead).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::server::free_port;

/// A peer process, killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn spawn(mut command: Command, port: u16) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let mut peer = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                peer.child.try_wait()?.is_none(),
                "{command:?} exited before listening"
            );
            ensure!(
                Instant::now() < deadline,
                "{command:?} did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(peer)
    }

    /// This binary's own `hello-server` subcommand.
    pub fn axum_hello() -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["hello-server", "--port", &port.to_string()]);
        Self::spawn(command, port)
    }

    /// `wasmtime serve` on `component`.
    pub fn wasmtime_serve(wasmtime: &Path, component: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(wasmtime);
        command
            .arg("serve")
            .arg(format!("--addr=127.0.0.1:{port}"))
            // A Rust std component imports wasi:cli (environment, exit, stdio).
            .arg("-Scli")
            .arg(component);
        Self::spawn(command, port)
    }
}

/// The axum hello world: `GET /` answers `Hello, World!`.
pub fn hello_server(port: u16) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
