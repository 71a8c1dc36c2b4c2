//! `actionhost migrate`: bring the store's schema to this build's.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::server::{OpenStore, Overrides, ServeConfig, StoreLocation, open_store};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The server's TOML config file; `ACTIONHOST_*` variables override it.
    #[arg(long, env = "ACTIONHOST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory, when the store is sled [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl MigrateArgs {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        let overrides = Overrides {
            data_dir: self.data_dir,
            ..Overrides::default()
        };
        let config =
            ServeConfig::load(self.config.as_deref(), &overrides).map_err(CliError::Usage)?;
        let location = match config.store_location() {
            StoreLocation::Postgres { url, pool_size, .. } => StoreLocation::Postgres {
                url,
                pool_size,
                migrate: true,
            },
            sled => sled,
        };
        let (store, _records) =
            open_store(location).map_err(|err| CliError::Failed(format!("{err:#}")))?;
        let schema = match &store {
            OpenStore::Postgres(pg) => {
                let (_, now) = pg
                    .migrate()
                    .map_err(|err| CliError::Failed(err.to_string()))?;
                format!(", PostgreSQL schema version {now}")
            }
            OpenStore::Sled(_) => String::new(),
        };
        store
            .close()
            .map_err(|err| CliError::Failed(format!("{err:#}")))?;
        eprintln!(
            "{} is at record schema version {}{schema}",
            store.describe(),
            crate::store::SCHEMA_VERSION
        );
        Ok(ExitCode::SUCCESS)
    }
}
