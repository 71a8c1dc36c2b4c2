//! `actionhost exec`: one action, end to end, without a server.
//!
//! Loads every component in the plugins folder, finds the one that provides
//! the action type, checks the params against its schema and its `validate`,
//! executes with the account file's credentials, and prints
//! `{"successful", "data", "error", "error_code"}` on stdout. The execution
//! log goes to stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::{CliError, bundled_plugins_dir, default_cache_dir};
use crate::runtime::{
    AccountInfo, Credentials, ExecuteRequest, ExecutionLog, FieldError, HostRule, Plugin,
    PluginOptions, Runtime, RuntimeConfig,
};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Folder of plugin components (`*.wasm`); default: the bundled plugins.
    #[arg(long, env = "ACTIONHOST_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// The action type, such as `send_email`.
    #[arg(long = "type", value_name = "TYPE")]
    action_type: String,
    /// The params as a JSON object, or `@FILE` to read them from a file.
    #[arg(long, value_name = "JSON")]
    params: String,
    /// The connected account: a JSON file with id, app_name, metadata and
    /// credentials (see the README).
    #[arg(long, value_name = "FILE")]
    account: Option<PathBuf>,
    /// Allow an outbound destination beyond the plugin's manifest, such as
    /// `http://127.0.0.1:*`. Repeatable.
    #[arg(long = "allow-host", value_name = "RULE")]
    allow_hosts: Vec<String>,
    /// Allow private, loopback and link-local addresses (local peers, tests).
    #[arg(long)]
    allow_private_network: bool,
    /// Wall-clock deadline of the execution, such as `30s` or `500ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
    /// Where compiled components are cached.
    #[arg(long, env = "ACTIONHOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

/// The account file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    id: String,
    app_name: String,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    credentials: Credentials,
}

impl ExecArgs {
    pub async fn run(self) -> Result<ExitCode, CliError> {
        let params = self.read_params()?;
        let (account, credentials) = match &self.account {
            Some(path) => {
                let (info, credentials) = read_account(path)?;
                (Some(info), credentials)
            }
            None => (None, Credentials::None),
        };
        let extra_hosts = self
            .allow_hosts
            .iter()
            .map(|rule| rule.parse::<HostRule>().map_err(CliError::Usage))
            .collect::<Result<Vec<_>, _>>()?;

        let mut config =
            RuntimeConfig::new(self.cache_dir.clone().unwrap_or_else(default_cache_dir));
        config.allow_private_network = self.allow_private_network;
        if let Some(deadline) = self.deadline {
            config.limits.deadline = deadline;
        }
        let runtime = Runtime::new(config).map_err(|err| CliError::Failed(err.to_string()))?;
        let plugins_dir = self.plugins_dir.clone().unwrap_or_else(bundled_plugins_dir);
        let plugin = find_plugin(&runtime, &plugins_dir, &self.action_type, extra_hosts).await?;

        if let Err(errors) = plugin.check_params(&self.action_type, &params) {
            return Ok(print_failure(
                "invalid_input",
                &invalid_params(&errors),
                None,
            ));
        }
        match plugin.validate(&self.action_type, &params).await {
            Ok(Ok(())) => {}
            Ok(Err(errors)) => {
                return Ok(print_failure(
                    "invalid_input",
                    &invalid_params(&errors),
                    None,
                ));
            }
            Err(fault) => {
                return Ok(print_failure(
                    fault.kind.code(),
                    &fault.to_string(),
                    Some(&fault.log),
                ));
            }
        }

        let action_id = format!("exec_{}", std::process::id());
        let request = ExecuteRequest {
            idempotency_key: action_id.clone(),
            action_id,
            action_type: self.action_type.clone(),
            params,
            attempt: 1,
            account,
            reuse_key: None,
        };
        match plugin.execute(request, Arc::new(credentials.into())).await {
            Ok(execution) => {
                print_log(&execution.log);
                match execution.outcome {
                    Ok(data) => {
                        print_json(&serde_json::json!({
                            "successful": true,
                            "data": data,
                            "error": null,
                        }));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(error) => {
                        let mut body = serde_json::json!({
                            "successful": false,
                            "data": null,
                            "error": error.to_string(),
                            "error_code": error.code(),
                            "retryable": error.retryable(),
                        });
                        if let crate::runtime::ExecuteError::RateLimited {
                            retry_after: Some(after),
                            ..
                        } = &error
                        {
                            body["retry_after_ms"] = (after.as_millis() as u64).into();
                        }
                        print_json(&body);
                        Ok(ExitCode::from(1))
                    }
                }
            }
            Err(fault) => Ok(print_failure(
                fault.kind.code(),
                &fault.to_string(),
                Some(&fault.log),
            )),
        }
    }

    fn read_params(&self) -> Result<serde_json::Value, CliError> {
        let text = match self.params.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|err| CliError::Usage(format!("cannot read params file {path}: {err}")))?,
            None => self.params.clone(),
        };
        let params: serde_json::Value = serde_json::from_str(&text)
            .map_err(|err| CliError::Usage(format!("--params is not valid JSON: {err}")))?;
        if !params.is_object() {
            return Err(CliError::Usage("--params must be a JSON object".into()));
        }
        Ok(params)
    }
}

fn read_account(path: &Path) -> Result<(AccountInfo, Credentials), CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::Usage(format!(
            "cannot read account file {}: {err}",
            path.display()
        ))
    })?;
    let file: AccountFile = serde_json::from_str(&text).map_err(|err| {
        CliError::Usage(format!("account file {} is invalid: {err}", path.display()))
    })?;
    file.credentials
        .check()
        .map_err(|err| CliError::Usage(format!("account file {}: {err}", path.display())))?;
    let metadata = file.metadata.unwrap_or_else(|| serde_json::json!({}));
    if !metadata.is_object() {
        return Err(CliError::Usage(format!(
            "account file {}: metadata must be a JSON object",
            path.display()
        )));
    }
    let info = AccountInfo {
        id: file.id,
        app_name: file.app_name,
        metadata,
    };
    Ok((info, file.credentials))
}

/// Loads the components of `dir` and returns the one providing `action_type`.
async fn find_plugin(
    runtime: &Runtime,
    dir: &Path,
    action_type: &str,
    extra_hosts: Vec<HostRule>,
) -> Result<Plugin, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|err| {
        CliError::Usage(format!(
            "cannot read the plugins folder {}: {err} (build the bundled plugins with scripts/build-plugins, or pass --plugins-dir)",
            dir.display()
        ))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    paths.sort();
    let mut found: Vec<(PathBuf, Plugin)> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for path in paths {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) => {
                eprintln!("warning: skipping {}: {err}", path.display());
                continue;
            }
        };
        let options = PluginOptions {
            extra_hosts: extra_hosts.clone(),
            ..PluginOptions::default()
        };
        match runtime.load(bytes.into(), options).await {
            Ok(plugin) => {
                known.extend(
                    plugin
                        .manifest()
                        .action_types
                        .iter()
                        .map(|t| t.name.clone()),
                );
                if plugin.manifest().action_type(action_type).is_some() {
                    found.push((path, plugin));
                }
            }
            Err(err) => eprintln!("warning: skipping {}: {err}", path.display()),
        }
    }
    match found.len() {
        1 => Ok(found.remove(0).1),
        0 => {
            known.sort();
            Err(CliError::Usage(format!(
                "unknown action type {action_type:?}; the plugins in {} provide: {}",
                dir.display(),
                if known.is_empty() {
                    "nothing".to_owned()
                } else {
                    known.join(", ")
                }
            )))
        }
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|(path, _)| path.display().to_string())
                .collect();
            Err(CliError::Usage(format!(
                "action type {action_type:?} is provided by several plugins: {}",
                names.join(", ")
            )))
        }
    }
}

fn invalid_params(errors: &[FieldError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("invalid params: {}", list.join("; "))
}

fn print_failure(code: &str, message: &str, log: Option<&ExecutionLog>) -> ExitCode {
    if let Some(log) = log {
        print_log(log);
    }
    print_json(&serde_json::json!({
        "successful": false,
        "data": null,
        "error": message,
        "error_code": code,
        "retryable": false,
    }));
    ExitCode::from(1)
}

fn print_log(log: &ExecutionLog) {
    for line in &log.lines {
        eprintln!(
            "[{:>5} ms {} {}] {}",
            line.at_ms,
            line.source.as_str(),
            line.level.as_str(),
            line.message
        );
    }
    if log.truncated_bytes > 0 {
        eprintln!("[log truncated: {} bytes dropped]", log.truncated_bytes);
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
