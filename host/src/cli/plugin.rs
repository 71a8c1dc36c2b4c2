//! `actionhost plugin …`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, default_cache_dir};
use crate::runtime::{PluginOptions, Runtime, RuntimeConfig};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a component in the sandbox and print its manifest as JSON.
    Inspect {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Where compiled components are cached.
        #[arg(long, env = "ACTIONHOST_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
}

impl PluginCommand {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Self::Inspect { file, cache_dir } => {
                let bytes = std::fs::read(&file).map_err(|err| {
                    CliError::Usage(format!("cannot read {}: {err}", file.display()))
                })?;
                let config = RuntimeConfig::new(cache_dir.unwrap_or_else(default_cache_dir));
                let runtime =
                    Runtime::new(config).map_err(|err| CliError::Failed(err.to_string()))?;
                let plugin = runtime
                    .load(bytes.into(), PluginOptions::default())
                    .await
                    .map_err(|err| CliError::Failed(format!("{}: {err}", file.display())))?;
                let report = serde_json::json!({
                    "manifest": plugin.manifest(),
                    "sha256": plugin.sha256(),
                    "size": plugin.size(),
                    "cache": plugin.cache_outcome(),
                    "load_ms": plugin.load_time().as_secs_f64() * 1000.0,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
