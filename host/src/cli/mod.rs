//! Command-line interface: `actionhost serve`, `actionhost keys …`,
//! `actionhost actions …`, `actionhost plugin …` and `actionhost exec`.
//!
//! Exit codes: 0 success, 1 the action (or command) failed, 2 bad usage
//! (missing or malformed arguments, unreadable files, unknown action type).

mod actions;
mod exec;
mod harness;
mod keys;
mod migrate;
mod plugin;
mod scaffold;
mod serve;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// actionhost: run outreach and integration actions in sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "actionhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run one action end to end, without a server, and print its result as JSON.
    Exec(exec::ExecArgs),
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Bring the store's schema to this build's (PostgreSQL with
    /// `store = "postgres://…"` or ACTIONHOST_STORE; otherwise sled in the data dir).
    Migrate(migrate::MigrateArgs),
    /// Move a store: `store copy --from DATA_DIR --to postgres://…`.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Manage API keys offline.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List, inspect, approve, reject and cancel actions on a running server
    /// (`--url`, `--key` or ACTIONHOST_URL, ACTIONHOST_KEY).
    #[command(subcommand)]
    Actions(actions::ActionsCommand),
}

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage: exit code 2.
    Usage(String),
    /// The command ran and failed: exit code 1.
    Failed(String),
}

impl Cli {
    /// Runs the command and returns the process exit code.
    pub async fn run(self) -> ExitCode {
        if !matches!(self.command, Command::Serve(_)) {
            init_tracing();
        }
        let result = match self.command {
            Command::Plugin(command) => command.run().await,
            Command::Exec(args) => args.run().await,
            Command::Serve(args) => args.run().await,
            Command::Keys(command) => command.run().await,
            Command::Migrate(args) => args.run().await,
            Command::Store(command) => command.run().await,
            Command::Actions(command) => command.run().await,
        };
        match result {
            Ok(code) => code,
            Err(CliError::Usage(message)) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
            Err(CliError::Failed(message)) => {
                eprintln!("error: {message}");
                ExitCode::from(1)
            }
        }
    }
}

/// Logs to stderr; `RUST_LOG` sets the filter (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The folder where the build puts the bundled plugins: `plugins/` beside
/// the folder of the executable (`target/plugins` for `target/debug/actionhost`).
pub fn bundled_plugins_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|dir| dir.join("plugins")))
        .unwrap_or_else(|| PathBuf::from("plugins"))
}

/// The default compiled-code cache of command-line runs.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("actionhost");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("actionhost");
    }
    PathBuf::from(".actionhost-cache")
}
