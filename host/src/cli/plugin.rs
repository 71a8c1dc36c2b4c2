//! `actionhost plugin …`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::actions::{Remote, call_raw, encode, new_table, print, text};
use super::{CliError, default_cache_dir, harness, scaffold};
use crate::runtime::{PluginOptions, Runtime, RuntimeConfig};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin skeleton (params schema, validate, execute, test
    /// cases, the WIT contract) into ./NAME.
    New {
        /// The plugin's name, kebab-case, such as `acme-notes`.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the plugin in the current folder (or DIR) into dist/NAME.wasm,
    /// installing the language's pinned tools first.
    Build {
        /// The plugin's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a component against test cases in the real sandbox, with the
    /// case's canned HTTP and SMTP exchanges instead of the network.
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// A case file (JSON); repeat for several.
        #[arg(long = "case", required = true)]
        cases: Vec<PathBuf>,
        /// Where compiled components are cached.
        #[arg(long, env = "ACTIONHOST_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Load a component in the sandbox and print its manifest as JSON.
    Inspect {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Where compiled components are cached.
        #[arg(long, env = "ACTIONHOST_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Upload a component to a running server (`POST /v1/plugins`); it
    /// serves as soon as this returns, and survives restarts.
    Install {
        #[command(flatten)]
        remote: Remote,
        /// The component (`.wasm`).
        file: PathBuf,
        /// Refuse unless the file's SHA-256 is this (hex).
        #[arg(long)]
        sha256: Option<String>,
    },
    /// List the plugin versions of a running server and their states.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Let a disabled version serve again.
    Enable(VersionArgs),
    /// Stop a version from serving, keeping it loaded (survives restarts).
    Disable(VersionArgs),
    /// Unload an uploaded version and delete it from the server's data dir.
    Remove(VersionArgs),
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    remote: Remote,
    /// The plugin's name, such as `send-email`.
    name: String,
    /// The version, such as `1.2.0`.
    version: String,
}

impl PluginCommand {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        match self {
            Self::New { name, lang, dir } => scaffold::new_plugin(&name, lang, dir),
            Self::Build { dir } => scaffold::build(&dir),
            Self::Test {
                file,
                cases,
                cache_dir,
            } => harness::run(&file, &cases, cache_dir).await,
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
            Self::Install {
                remote,
                file,
                sha256,
            } => {
                let bytes = std::fs::read(&file).map_err(|err| {
                    CliError::Usage(format!("cannot read {}: {err}", file.display()))
                })?;
                let path = match sha256 {
                    Some(sha) => format!("/v1/plugins?sha256={}", encode(&sha)),
                    None => "/v1/plugins".to_owned(),
                };
                let answer =
                    call_raw(&remote, "POST", &path, Some((bytes, "application/wasm"))).await?;
                print(&remote, &answer, |info| {
                    version_table(std::slice::from_ref(info))
                });
                Ok(ExitCode::SUCCESS)
            }
            Self::List { remote } => {
                let answer = call_raw(&remote, "GET", "/v1/plugins", None).await?;
                print(&remote, &answer, |answer| {
                    version_table(answer["items"].as_array().map_or(&[], Vec::as_slice))
                });
                Ok(ExitCode::SUCCESS)
            }
            Self::Enable(args) => change(&args, "POST", "enable").await,
            Self::Disable(args) => change(&args, "POST", "disable").await,
            Self::Remove(args) => change(&args, "DELETE", "").await,
        }
    }
}

async fn change(args: &VersionArgs, method: &str, verb: &str) -> Result<ExitCode, CliError> {
    let mut path = format!(
        "/v1/plugins/{}/{}",
        encode(&args.name),
        encode(&args.version)
    );
    if !verb.is_empty() {
        path = format!("{path}/{verb}");
    }
    let answer = call_raw(&args.remote, method, &path, None).await?;
    print(&args.remote, &answer, |info| {
        version_table(std::slice::from_ref(info))
    });
    Ok(ExitCode::SUCCESS)
}

fn version_table(items: &[Value]) -> String {
    let mut table = new_table(&[
        "NAME", "VERSION", "STATE", "WIT", "SERVING", "SOURCE", "CACHE", "LOAD MS",
    ]);
    for item in items {
        let mut state = text(&item["state"]);
        if let Some(reason) = item["reason"].as_str() {
            state = format!("{state}: {reason}");
        }
        table.add_row(vec![
            text(&item["name"]),
            text(&item["version"]),
            state,
            text(&item["wit_version"]),
            item["serving"]
                .as_array()
                .map(|types| {
                    types
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            text(&item["source"]),
            text(&item["cache"]),
            text(&item["load_ms"]),
        ]);
    }
    table.to_string()
}
