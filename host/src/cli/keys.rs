//! `actionhost keys create`: mint a key offline, with the server stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::server::{StoreLocation, open_store};
use crate::tenancy::{Scope, Tenancy, bootstrap};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Mint a scoped API key for a user of the first tenant (or of --tenant)
    /// and print it once. The server must be stopped (the database is locked
    /// while it runs; use POST /v1/api-keys then).
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Data directory of the server.
    #[arg(long, value_name = "DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The PostgreSQL store (`postgres://…`), if the server uses one.
    #[arg(
        long,
        env = "ACTIONHOST_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    store: Option<String>,
    /// The user's e-mail; the user is created if new.
    #[arg(long, value_name = "EMAIL")]
    user: String,
    /// Comma-separated scopes, such as `actions:read,actions:execute`.
    #[arg(long, value_name = "SCOPES", value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// The tenant id (default: the first tenant).
    #[arg(long, value_name = "TENANT_ID")]
    tenant: Option<String>,
    /// A label for the key.
    #[arg(long, default_value = "cli")]
    name: String,
}

impl KeysCommand {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Self::Create(args) => args.run().await,
        }
    }
}

impl CreateArgs {
    async fn run(self) -> Result<ExitCode, CliError> {
        let scopes = self
            .scopes
            .iter()
            .map(|s| s.trim().parse::<Scope>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(CliError::Usage)?;
        if !self.user.contains('@') {
            return Err(CliError::Usage(format!(
                "--user {:?} is not an e-mail address",
                self.user
            )));
        }
        let location = match self.store.as_deref().filter(|url| !url.trim().is_empty()) {
            Some(url) => StoreLocation::Postgres {
                url,
                pool_size: 2,
                migrate: true,
            },
            None => StoreLocation::Sled {
                data_dir: &self.data_dir,
                cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            },
        };
        let (_store, records) =
            open_store(location).map_err(|err| CliError::Failed(format!("{err:#}")))?;
        let tenancy = Tenancy::new(records.clone());
        if let Some(path) = bootstrap(&tenancy, &self.data_dir)
            .map_err(|err| CliError::Failed(format!("{err:#}")))?
        {
            eprintln!(
                "first use of {}: created the default tenant; its admin key is in {}",
                self.data_dir.display(),
                path.display()
            );
        }
        let tenants = tenancy
            .tenants()
            .map_err(|err| CliError::Failed(err.to_string()))?;
        let tenant = match &self.tenant {
            Some(id) => tenants.iter().find(|t| &t.id == id).ok_or_else(|| {
                CliError::Usage(format!("no tenant {id} in {}", self.data_dir.display()))
            })?,
            None => tenants
                .iter()
                .min_by(|a, b| a.created_at.cmp(&b.created_at))
                .ok_or_else(|| CliError::Failed("the data directory has no tenant".into()))?,
        };
        let user = tenancy
            .ensure_user(&tenant.id, &self.user)
            .map_err(|err| CliError::Failed(err.to_string()))?;
        let minted = tenancy
            .mint_key(&user, &self.name, scopes)
            .map_err(|err| CliError::Failed(err.to_string()))?;
        records
            .durable()
            .await
            .map_err(|err| CliError::Failed(err.to_string()))?;
        eprintln!(
            "minted key {} for {} in tenant {} with scopes {}; it is printed once on stdout",
            minted.record.id,
            user.email,
            tenant.id,
            minted
                .record
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        println!("{}", minted.secret);
        Ok(ExitCode::SUCCESS)
    }
}
