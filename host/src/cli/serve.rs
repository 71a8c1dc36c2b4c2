//! `actionhost serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{CliError, bundled_plugins_dir};
use crate::server::{self, LogFormat, Overrides, ServeConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file; `ACTIONHOST_*` variables and these flags override it.
    #[arg(long, env = "ACTIONHOST_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (database, admin.key, secret.key) [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Folder of plugin components [default: the bundled plugins].
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    /// Compiled-code cache [default: DATA_DIR/cache].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// File with the key that encrypts credentials at rest.
    #[arg(long, value_name = "FILE")]
    secret_key_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// The URL this server is reached at (for the OAuth2 callback).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
}

impl ServeArgs {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            plugins_dir: self.plugins_dir,
            cache_dir: self.cache_dir,
            secret_key_file: self.secret_key_file,
            log_format: self.log_format,
            public_url: self.public_url,
        };
        let config =
            ServeConfig::load(self.config.as_deref(), &overrides).map_err(CliError::Usage)?;
        server::init_logging(&config);
        let plugins_dir = config
            .plugins_dir
            .clone()
            .unwrap_or_else(bundled_plugins_dir);
        match server::serve(config, plugins_dir).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(err) => {
                tracing::error!("{err:#}");
                Err(CliError::Failed(format!("{err:#}")))
            }
        }
    }
}
