//! `actionhost store copy`: move a stopped sled store into PostgreSQL.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::store::{PgStore, SledStore};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped server's sled store into an empty PostgreSQL
    /// database: tenants, keys, accounts (their credentials still sealed
    /// by the same secret key), actions with their history, executions,
    /// contacts, events, agents and runs, and the uploaded plugins (with
    /// which versions are disabled). Then count both sides.
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The data directory of the stopped server (its store is DATA_DIR/db).
    #[arg(long, value_name = "DATA_DIR")]
    from: PathBuf,
    /// The PostgreSQL database, `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (or ACTIONHOST_STORE); its schema is created if it is empty.
    #[arg(
        long,
        env = "ACTIONHOST_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    to: String,
}

impl StoreCommand {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Self::Copy(args) => args.run(),
        }
    }
}

impl CopyArgs {
    fn run(self) -> Result<ExitCode, CliError> {
        if !self.from.join("db").exists() {
            return Err(CliError::Usage(format!(
                "{} holds no store (no {}): give the data directory of a server that ran on sled",
                self.from.display(),
                self.from.join("db").display()
            )));
        }
        let failed = |err: crate::store::StoreError| CliError::Failed(err.to_string());
        let from = SledStore::open(&self.from).map_err(|err| {
            CliError::Failed(format!(
                "{err} (is the server still running? stop it first: the copy needs a store nobody writes)"
            ))
        })?;
        let to = std::sync::Arc::new(PgStore::open(&self.to, 4, true).map_err(failed)?);
        // No server may write into the database while it fills.
        to.claim_exclusive().map_err(failed)?;
        let copied = crate::store::copy::copy(&from, &*to).map_err(|err| match err {
            // Refused before anything was written.
            crate::store::StoreError::Rejected(_) => failed(err),
            err => CliError::Failed(format!(
                "{err}; the database may hold part of the copy: drop and create it again, then copy again"
            )),
        })?;
        for (name, source, destination) in &copied.trees {
            eprintln!(
                "{name}: {source} in {}, {destination} in {}",
                self.from.display(),
                to.target()
            );
        }
        if copied.answered > 0 {
            eprintln!(
                "index entries left out, since the database's tables answer for them: {}",
                copied.answered
            );
        }
        let uploads = self.from.join("plugins");
        let records = crate::store::Records::new(to.clone());
        let plugins = crate::registry::copy_uploads(&uploads, &records).map_err(|err| {
            CliError::Failed(format!(
                "{err}; the database holds part of the copy: drop and create it again, then copy again"
            ))
        })?;
        eprintln!(
            "uploaded plugins: {plugins} in {}, {plugins} in {}",
            uploads.display(),
            to.target()
        );
        eprintln!(
            "copied; start the server with store = the database and the same secret key (and keep {} for its keys and compiled cache)",
            self.from.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}
