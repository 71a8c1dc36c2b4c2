//! The execution pipeline and its records.
//!
//! Every execution, whichever surface asked for it, goes through
//! [`Pipeline::execute`]: find the plugin, resolve the account, check the
//! params (JSON Schema, then the plugin's `validate`), run the plugin in the
//! sandbox with the account's credentials, and store an [`ExecutionRecord`]
//! on disk before the caller hears the result. Composio's `logId` and
//! `GET /v1/executions/{id}` name that record.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, Accounts, InlineAuth, Lookup};
use crate::identity::{new_id, now};
use crate::registry::PluginRegistry;
use crate::runtime::{
    AccountInfo, AuthScheme, ExecuteError, ExecuteRequest, ExecutionLog, FieldError, Grant,
    OutboundCall,
};
use crate::store::{IndexEntry, Record, Records, StoreError};

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// The plugin returned output.
    Succeeded,
    /// The plugin returned an error, or faulted.
    Failed,
}

/// A typed failure, as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    /// The taxonomy's code: `unauthorized`, `rate_limited`, `transient`,
    /// `permanent`, `invalid_input`, `plugin_fault`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
    /// How long the provider asked to wait, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For `plugin_fault`: which limit or trap (`deadline_exceeded`, `memory_limit`, `trap`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// For `invalid_input`: each failing field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub fields: Vec<FieldError>,
}

/// One attempt at an action, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// `exe_…`: Composio's `logId`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The action type.
    pub action_type: String,
    /// Plugin name and version that ran it.
    pub plugin: String,
    /// Plugin version.
    pub plugin_version: String,
    /// The params as given.
    pub params: serde_json::Value,
    /// The resolved account, if any.
    pub account_id: Option<String>,
    /// Whether the request supplied its own credentials (`authConfig`).
    pub inline_credentials: bool,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it ended.
    pub status: ExecutionStatus,
    /// The output, on success.
    pub output: Option<serde_json::Value>,
    /// The error, on failure.
    pub error: Option<ErrorInfo>,
    /// The captured plugin log.
    pub log: Vec<crate::runtime::LogLine>,
    /// Bytes of log dropped at the cap.
    pub log_truncated_bytes: u64,
    /// Outbound requests, when tracing was asked for.
    pub trace: Option<Vec<OutboundCall>>,
    /// The user on whose authority it ran.
    pub performed_by: String,
    /// The key that asked.
    pub key_id: String,
    /// The client's `sessionInfo`, echoed.
    pub session_info: Option<serde_json::Value>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Milliseconds in the sandbox.
    pub duration_ms: u64,
}

impl Record for ExecutionRecord {
    const COLLECTION: &'static str = "executions";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        Vec::new()
    }
}

/// What to execute.
#[derive(Debug)]
pub struct ExecuteCommand {
    /// Tenant.
    pub tenant_id: String,
    /// The user on whose authority it runs.
    pub performed_by: String,
    /// The key that asked.
    pub key_id: String,
    /// The action type.
    pub action_type: String,
    /// A version the caller pinned.
    pub version: Option<String>,
    /// An app the caller named; must be the plugin's.
    pub app_name: Option<String>,
    /// The params.
    pub params: serde_json::Value,
    /// How to find the account.
    pub lookup: Lookup,
    /// Credentials for this execution only.
    pub inline_auth: Option<InlineAuth>,
    /// Keep the outbound request log.
    pub trace: bool,
    /// Echoed back.
    pub session_info: Option<serde_json::Value>,
}

/// Why an execution did not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No plugin provides the type.
    #[error("unknown action type {action_type:?}; known action types: {known}")]
    UnknownAction {
        /// The type asked for.
        action_type: String,
        /// The loaded ones, comma-separated.
        known: String,
    },
    /// The pinned version or app does not match.
    #[error("{0}")]
    Mismatch(String),
    /// Params failed the schema or `validate`.
    #[error("invalid params: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidParams(Vec<FieldError>),
    /// The plugin faulted inside `validate`.
    #[error("the plugin failed while validating: {0}")]
    ValidateFault(String),
    /// Account resolution or credentials failed.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The record could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one execution pipeline.
#[derive(Clone)]
pub struct Pipeline {
    registry: PluginRegistry,
    accounts: Accounts,
    records: Records,
}

impl Pipeline {
    /// A pipeline over these parts.
    pub fn new(registry: PluginRegistry, accounts: Accounts, records: Records) -> Self {
        Self {
            registry,
            accounts,
            records,
        }
    }

    /// The plugins.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// An execution record of the tenant.
    pub fn record(&self, tenant_id: &str, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        Ok(self
            .records
            .get::<ExecutionRecord>(id)?
            .filter(|r| r.tenant_id == tenant_id))
    }

    /// Runs one execution and stores its record durably.
    pub async fn execute(&self, command: ExecuteCommand) -> Result<ExecutionRecord, PipelineError> {
        let plugin = self
            .registry
            .plugin_for(&command.action_type)
            .ok_or_else(|| PipelineError::UnknownAction {
                action_type: command.action_type.clone(),
                known: self.registry.action_types().join(", "),
            })?
            .clone();
        let manifest = plugin.manifest();
        if let Some(version) = &command.version
            && version != &manifest.version
            && version != "latest"
        {
            return Err(PipelineError::Mismatch(format!(
                "version {version:?} of {} is not loaded; loaded: {}",
                command.action_type, manifest.version
            )));
        }
        if let Some(app) = &command.app_name
            && !app.eq_ignore_ascii_case(&manifest.name)
        {
            return Err(PipelineError::Mismatch(format!(
                "action {} belongs to app {:?}, not {app:?}",
                command.action_type, manifest.name
            )));
        }
        let info = manifest.action_type(&command.action_type).ok_or_else(|| {
            PipelineError::UnknownAction {
                action_type: command.action_type.clone(),
                known: self.registry.action_types().join(", "),
            }
        })?;
        let needs_account = info
            .auth_schemes
            .iter()
            .any(|scheme| *scheme != AuthScheme::None);
        let account_optional =
            info.auth_schemes.is_empty() || info.auth_schemes.contains(&AuthScheme::None);

        // 1. The account, in SPEC.md's order, unless the request brings its own credentials.
        let inline = command.inline_auth.is_some();
        let mut inline_metadata = None;
        let (account, grant) = match command.inline_auth {
            Some(auth) => {
                let account = match (
                    &command.lookup.connected_account_id,
                    &command.lookup.entity_id,
                ) {
                    (None, None) => None,
                    _ => Some(self.accounts.resolve(
                        &command.tenant_id,
                        &manifest.name,
                        &command.lookup,
                    )?),
                };
                let (grant, metadata) = auth.into_grant()?;
                inline_metadata = metadata;
                (account, grant)
            }
            None if needs_account => {
                match self
                    .accounts
                    .resolve(&command.tenant_id, &manifest.name, &command.lookup)
                {
                    Ok(account) => {
                        let grant = self.accounts.grant(&account).await?;
                        (Some(account), grant)
                    }
                    Err(AccountError::Required(_)) if account_optional => (None, Grant::default()),
                    Err(err) => return Err(err.into()),
                }
            }
            None => (None, Grant::default()),
        };

        // 2. The params: schema, then the plugin's own rules.
        plugin
            .check_params(&command.action_type, &command.params)
            .map_err(PipelineError::InvalidParams)?;
        match plugin.validate(&command.action_type, &command.params).await {
            Ok(Ok(())) => {}
            Ok(Err(fields)) => return Err(PipelineError::InvalidParams(fields)),
            Err(fault) => return Err(PipelineError::ValidateFault(fault.kind.to_string())),
        }

        // 3. The sandbox.
        let id = new_id("exe");
        let started_at = now();
        let started = Instant::now();
        let request = ExecuteRequest {
            action_id: id.clone(),
            action_type: command.action_type.clone(),
            params: command.params.clone(),
            attempt: 1,
            idempotency_key: id.clone(),
            account: match (&account, inline_metadata) {
                (Some(a), _) => Some(AccountInfo {
                    id: a.id.clone(),
                    app_name: a.app_name.clone(),
                    metadata: a.metadata.clone(),
                }),
                (None, Some(metadata)) => Some(AccountInfo {
                    id: "inline".into(),
                    app_name: manifest.name.clone(),
                    metadata,
                }),
                (None, None) if inline => Some(AccountInfo {
                    id: "inline".into(),
                    app_name: manifest.name.clone(),
                    metadata: serde_json::json!({}),
                }),
                (None, None) => None,
            },
        };
        let result = plugin.execute(request, Arc::new(grant)).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, output, error, log): (_, _, _, ExecutionLog) = match result {
            Ok(execution) => match execution.outcome {
                Ok(output) => (
                    ExecutionStatus::Succeeded,
                    Some(output),
                    None,
                    execution.log,
                ),
                Err(error) => (
                    ExecutionStatus::Failed,
                    None,
                    Some(error_info(&error)),
                    execution.log,
                ),
            },
            Err(fault) => (
                ExecutionStatus::Failed,
                None,
                Some(ErrorInfo {
                    code: "plugin_fault".into(),
                    message: fault.kind.to_string(),
                    retryable: false,
                    retry_after_ms: None,
                    fault: Some(fault.kind.code().into()),
                    fields: Vec::new(),
                }),
                fault.log,
            ),
        };

        // A provider that rejects a stored credential expires the account.
        if let (Some(account), Some(error)) = (&account, &error)
            && error.code == "unauthorized"
            && !inline
        {
            let reason = format!("the provider rejected the credentials: {}", error.message);
            if let Err(err) = self.accounts.expire(&account.id, reason) {
                tracing::error!(account = %account.id, %err, "could not mark the account expired");
            }
        }

        // 4. The record, on disk before anyone hears of it.
        let record = ExecutionRecord {
            id,
            tenant_id: command.tenant_id,
            action_type: command.action_type,
            plugin: manifest.name.clone(),
            plugin_version: manifest.version.clone(),
            params: command.params,
            account_id: account.map(|a| a.id),
            inline_credentials: inline,
            attempt: 1,
            status,
            output,
            error,
            log: log.lines,
            log_truncated_bytes: log.truncated_bytes,
            trace: command.trace.then_some(log.outbound),
            performed_by: command.performed_by,
            key_id: command.key_id,
            session_info: command.session_info,
            started_at,
            finished_at: now(),
            duration_ms,
        };
        self.records.insert(&record)?;
        self.records.durable().await?;
        tracing::info!(
            execution = %record.id,
            action_type = %record.action_type,
            status = ?record.status,
            duration_ms,
            "executed"
        );
        Ok(record)
    }
}

fn error_info(error: &ExecuteError) -> ErrorInfo {
    ErrorInfo {
        code: error.code().into(),
        message: error.to_string(),
        retryable: error.retryable(),
        retry_after_ms: match error {
            ExecuteError::RateLimited {
                retry_after: Some(after),
                ..
            } => Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            _ => None,
        },
        fault: None,
        fields: match error {
            ExecuteError::InvalidInput(fields) => fields.clone(),
            _ => Vec::new(),
        },
    }
}
