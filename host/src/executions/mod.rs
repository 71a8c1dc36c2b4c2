//! The execution pipeline and its records.
//!
//! Every execution, whichever surface asked for it, goes through
//! [`Pipeline::execute`]: find the plugin, resolve the account, check the
//! params (JSON Schema, then the plugin's `validate`), run the plugin in the
//! sandbox with the account's credentials, and store an [`ExecutionRecord`]
//! on disk before the caller hears the result. Composio's `logId` and
//! `GET /v1/executions/{id}` name that record.

pub mod gate;

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, Accounts, ConnectedAccount, InlineAuth, Lookup};
use crate::contacts::{self, ContactError};
use crate::identities;
use crate::registry::{PluginRegistry, ResolveError};
use crate::runtime::{
    AccountInfo, AuthScheme, ContactBinding, ContactInfo, ExecuteError, ExecuteRequest,
    ExecutionLog, FieldError, Grant, NoteError, NoteWriter, OutboundCall, Plugin, SenderInfo,
    ValidatedInstance,
};
use crate::store::{IndexEntry, Record, Records, StoreError};
use crate::tenancy::{new_id, now};

pub use self::gate::{Busy, ConcurrencyConfig, Gate, Slot};

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Accepted and not finished yet (asynchronous executions).
    Pending,
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
    /// The action it belongs to, for executions of stored actions.
    #[serde(default)]
    pub action_id: Option<String>,
    /// What it did: `execute`, or a reviewer's transition asked for
    /// through `POST /v1/executions`.
    #[serde(default = "default_transition")]
    pub transition: String,
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
    /// Composio's `text` the params were derived from, when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The key the plugin was given for provider-side deduplication.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Milliseconds in the sandbox.
    pub duration_ms: u64,
    /// The replica that ran it (`rep_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

fn default_transition() -> String {
    "execute".into()
}

impl Record for ExecutionRecord {
    const COLLECTION: &'static str = "executions";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        // From the oldest end: what retention removes (RFC 3339 with
        // milliseconds sorts as time does).
        vec![IndexEntry::multi("executions_by_time", &self.finished_at)]
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
    /// The `text` the params were derived from.
    pub text: Option<String>,
    /// The stored action this runs, if any.
    pub action_id: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Given to the plugin for provider-side deduplication; the execution
    /// id when absent.
    pub idempotency_key: Option<String>,
    /// Use this id for the record (an asynchronous execution's, already
    /// announced to the client); a new one when absent.
    pub execution_id: Option<String>,
    /// For an action that needs approval: the hash of the approved params
    /// (empty when none was given). The pipeline refuses anything else.
    pub approved_hash: Option<String>,
    /// What to do when the tenant or the plugin is at its concurrency cap.
    pub admission: Admission,
}

/// How an execution gets its place under the concurrency caps.
#[derive(Debug, Default)]
pub enum Admission {
    /// Refused at once with [`PipelineError::Busy`] when the tenant or the
    /// plugin is at its cap: a synchronous request, whose client can retry.
    #[default]
    Refuse,
    /// Waits until both have room: a run in the background that holds no
    /// other scarce resource while it waits (Flowdash's executions).
    Wait,
    /// Already taken by the caller ([`Pipeline::admit`]) before it claimed
    /// the action: the scheduler, and synchronous runs of stored actions.
    Held(Slot),
}

impl ExecuteCommand {
    /// A command with the defaults of a one-off execution.
    pub fn new(
        tenant_id: impl Into<String>,
        action_type: impl Into<String>,
        params: serde_json::Value,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            performed_by: String::new(),
            key_id: String::new(),
            action_type: action_type.into(),
            version: None,
            app_name: None,
            params,
            lookup: Lookup::default(),
            inline_auth: None,
            trace: false,
            session_info: None,
            text: None,
            action_id: None,
            attempt: 1,
            idempotency_key: None,
            execution_id: None,
            approved_hash: None,
            admission: Admission::Refuse,
        }
    }
}

/// SHA-256 of a params object in canonical form (keys sorted, no spaces),
/// hex: what an approval is bound to.
pub fn params_hash(params: &serde_json::Value) -> String {
    use sha2::Digest as _;
    // serde_json's map is a BTreeMap (no `preserve_order`), so keys are sorted.
    let canonical = serde_json::to_vec(params).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&canonical))
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
    /// The plugins are still loading after start-up.
    #[error("{0}")]
    Unavailable(String),
    /// Params failed the schema or `validate`.
    #[error("invalid params: {}", FieldError::summary(.0))]
    InvalidParams(Vec<FieldError>),
    /// The plugin faulted inside `validate`.
    #[error("the plugin failed while validating: {0}")]
    ValidateFault(String),
    /// Account resolution or credentials failed.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The action needs approval and has none.
    #[error("the action is waiting for approval; a reviewer must approve it first")]
    AwaitingApproval,
    /// A one-off execution of a type whose plugin demands an approval of
    /// every action.
    #[error(
        "{0} needs a person's approval before every run (its plugin demands it), so it cannot be executed at once: create it with POST /v1/actions, where it waits in pending_approval, or call it as a tool (MCP, POST /api/v2/tools/execute), which does the same"
    )]
    ApprovalRequired(String),
    /// The params are not the ones that were approved.
    #[error(
        "the params (hash {actual}) are not the approved revision (hash {approved}); approve this revision first"
    )]
    NotApproved {
        /// The hash of the approved params.
        approved: String,
        /// The hash of the params about to run.
        actual: String,
    },
    /// The tenant or the plugin is at its concurrency cap.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The record could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PipelineError {
    /// The failure as an execution record states it.
    pub fn info(&self) -> ErrorInfo {
        let (code, retryable) = match self {
            Self::UnknownAction { .. } => ("not_found", false),
            Self::Mismatch(_) | Self::InvalidParams(_) => ("invalid_input", false),
            Self::ValidateFault(_) => ("plugin_fault", false),
            Self::Account(AccountError::Required(_)) => ("account_required", false),
            Self::Account(AccountError::Ambiguous { .. }) => ("account_ambiguous", false),
            Self::Account(AccountError::Expired(_)) => ("account_expired", false),
            Self::Account(AccountError::NotFound { .. }) => ("not_found", false),
            Self::Account(AccountError::Invalid(_)) => ("invalid_input", false),
            Self::Account(_) | Self::Store(_) => ("transient", true),
            Self::Unavailable(_) => ("unavailable", true),
            Self::Busy(_) => ("rate_limited", true),
            Self::NotApproved { .. } | Self::AwaitingApproval | Self::ApprovalRequired(_) => {
                ("conflict", false)
            }
        };
        ErrorInfo {
            code: code.into(),
            message: self.to_string(),
            retryable,
            retry_after_ms: matches!(self, Self::Busy(_)).then_some(BUSY_RETRY_AFTER_MS),
            fault: None,
            fields: match self {
                Self::InvalidParams(fields) => fields.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl From<ResolveError> for PipelineError {
    fn from(err: ResolveError) -> Self {
        match err {
            ResolveError::Unknown { action_type, known } => {
                Self::UnknownAction { action_type, known }
            }
            ResolveError::Loading => Self::Unavailable(err.to_string()),
            ResolveError::Version { .. } => Self::Mismatch(err.to_string()),
        }
    }
}

/// How long a client refused at a concurrency cap is asked to wait.
pub const BUSY_RETRY_AFTER_MS: u64 = 1000;

/// An execution checked and ready to run: [`Pipeline::prepare`]'s result.
pub struct Prepared {
    plugin: Plugin,
    idempotent: bool,
    account: Option<ConnectedAccount>,
    grant: Grant,
    inline: bool,
    inline_metadata: Option<serde_json::Value>,
    command: ExecuteCommand,
    /// The instance whose `validate` accepted the params, which `execute`
    /// then runs in: one instantiation per execution instead of two.
    validated: Option<ValidatedInstance>,
    /// The execution's place under the concurrency caps, held until the
    /// plugin returns.
    slot: Slot,
    /// The contact and identity handed to the plugin.
    binding: ContactBinding,
}

/// The one execution pipeline.
#[derive(Clone)]
pub struct Pipeline {
    registry: PluginRegistry,
    accounts: Accounts,
    records: Records,
    gate: Gate,
}

impl Pipeline {
    /// A pipeline over these parts, with `concurrency`'s caps (this
    /// replica's share of them, by its `place`).
    pub fn new(
        registry: PluginRegistry,
        accounts: Accounts,
        records: Records,
        concurrency: ConcurrencyConfig,
        place: crate::replica::Place,
    ) -> Self {
        Self {
            registry,
            accounts,
            records,
            gate: Gate::new(concurrency, place),
        }
    }

    /// The plugins.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// A place under the concurrency caps for the tenant's execution of
    /// `action_type`, taken now or refused; `Ok(None)` when no plugin
    /// provides the type (the run will say so). For callers that must know
    /// before they claim a stored action.
    pub fn admit(&self, tenant_id: &str, action_type: &str) -> Result<Option<Slot>, Busy> {
        match self.registry.plugin_for(action_type) {
            Some(plugin) => self
                .gate
                .try_enter(tenant_id, &plugin.manifest().name)
                .map(Some),
            None => Ok(None),
        }
    }

    /// An execution record of the tenant.
    pub fn record(&self, tenant_id: &str, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        Ok(self
            .records
            .get::<ExecutionRecord>(id)?
            .filter(|r| r.tenant_id == tenant_id))
    }

    /// Runs one execution and stores its record durably. A request that
    /// cannot run reports its first unmet requirement.
    pub async fn execute(&self, command: ExecuteCommand) -> Result<ExecutionRecord, PipelineError> {
        let prepared = self
            .prepare(command)
            .await
            .map_err(|mut unmet| unmet.swap_remove(0))?;
        self.run(prepared).await
    }

    /// Finds the plugin, resolves the account and checks the params and the
    /// approval, collecting every unmet requirement (never empty on `Err`).
    pub async fn prepare(&self, command: ExecuteCommand) -> Result<Prepared, Vec<PipelineError>> {
        let plugin = self.plugin_of(&command).map_err(|err| vec![err])?;
        let manifest = plugin.manifest();
        let Some(info) = manifest.action_type(&command.action_type) else {
            return Err(vec![self.unknown(&command.action_type)]);
        };
        // Held from here: `validate` below already runs in an instance.
        let mut command = command;
        let slot = match std::mem::take(&mut command.admission) {
            Admission::Refuse => self
                .gate
                .try_enter(&command.tenant_id, &manifest.name)
                .map_err(|busy| vec![busy.into()])?,
            Admission::Wait => self.gate.enter(&command.tenant_id, &manifest.name).await,
            Admission::Held(slot) => slot,
        };
        let needs_account = info
            .auth_schemes
            .iter()
            .any(|scheme| *scheme != AuthScheme::None);
        let account_optional =
            info.auth_schemes.is_empty() || info.auth_schemes.contains(&AuthScheme::None);
        let idempotent = info.idempotent;
        let mut unmet = Vec::new();
        let mut validated = None;

        // 0. The contact the action addresses, and who it acts as.
        let mut binding = ContactBinding::default();
        if info.contact_bound() {
            match bound_contact(&self.records, &command.tenant_id, &command.params) {
                Ok(Some(contact)) => binding.contact = Some(contact),
                // A missing or mistyped `contact_id` is the schema's to report.
                Ok(None) => {}
                Err(error) => unmet.push(error),
            }
        }
        if let Some(identity_id) = &command.lookup.identity_id {
            match identities::find(&self.records, &command.tenant_id, identity_id) {
                Ok(Some(identity)) => {
                    binding.sender = Some(SenderInfo {
                        id: identity.id,
                        name: identity.name,
                        email: identity.email,
                    });
                }
                Ok(None) => {}
                Err(err) => unmet.push(err.into()),
            }
        }

        // 1. The account, in SPEC.md's order, unless the request brings its own credentials.
        let inline = command.inline_auth.is_some();
        let mut inline_metadata = None;
        let mut account = None;
        let mut grant = Grant::default();
        match command.inline_auth.take() {
            Some(auth) => {
                if command.lookup.connected_account_id.is_some()
                    || command.lookup.entity_id.is_some()
                {
                    match self.accounts.resolve(
                        &command.tenant_id,
                        &manifest.name,
                        &command.action_type,
                        &command.lookup,
                    ) {
                        Ok(found) => account = Some(found),
                        Err(err) => unmet.push(err.into()),
                    }
                }
                match auth.into_grant() {
                    Ok((inline_grant, metadata)) => {
                        grant = inline_grant;
                        inline_metadata = metadata;
                    }
                    Err(err) => unmet.push(err.into()),
                }
            }
            None if needs_account => {
                match self.accounts.resolve(
                    &command.tenant_id,
                    &manifest.name,
                    &command.action_type,
                    &command.lookup,
                ) {
                    Ok(found) => match self.accounts.grant(&found).await {
                        Ok(account_grant) => {
                            grant = account_grant;
                            account = Some(found);
                        }
                        Err(err) => unmet.push(err.into()),
                    },
                    Err(AccountError::Required(_)) if account_optional => {}
                    Err(err) => unmet.push(err.into()),
                }
            }
            None => {}
        }

        // 2. The params: schema, then the plugin's own rules.
        match plugin.check_params(&command.action_type, &command.params) {
            Err(fields) => unmet.push(PipelineError::InvalidParams(fields)),
            Ok(()) => match plugin
                .validate_keeping(&command.action_type, &command.params)
                .await
            {
                Ok(Ok(kept)) => validated = kept,
                Ok(Err(fields)) => unmet.push(PipelineError::InvalidParams(fields)),
                Err(fault) => unmet.push(PipelineError::ValidateFault(fault.kind.to_string())),
            },
        }

        // 3. The approval, bound to the exact params. A type whose plugin
        // demands one runs only as a stored, approved action.
        if command.approved_hash.is_none() && info.requires_approval {
            unmet.push(PipelineError::ApprovalRequired(command.action_type.clone()));
        }
        if let Some(approved) = &command.approved_hash {
            let actual = params_hash(&command.params);
            if approved.is_empty() {
                unmet.push(PipelineError::AwaitingApproval);
            } else if &actual != approved {
                unmet.push(PipelineError::NotApproved {
                    approved: approved.clone(),
                    actual,
                });
            }
        }

        if !unmet.is_empty() {
            return Err(unmet);
        }
        Ok(Prepared {
            plugin,
            idempotent,
            account,
            grant,
            inline,
            inline_metadata,
            command,
            validated,
            slot,
            binding,
        })
    }

    fn unknown(&self, action_type: &str) -> PipelineError {
        PipelineError::UnknownAction {
            action_type: action_type.to_owned(),
            known: self.registry.action_types().join(", "),
        }
    }

    fn plugin_of(&self, command: &ExecuteCommand) -> Result<Plugin, PipelineError> {
        let plugin = self
            .registry
            .resolve(&command.action_type, command.version.as_deref())?;
        let manifest = plugin.manifest();
        if let Some(app) = &command.app_name
            && !app.eq_ignore_ascii_case(&manifest.name)
        {
            return Err(PipelineError::Mismatch(format!(
                "action {} belongs to app {:?}, not {app:?}",
                command.action_type, manifest.name
            )));
        }
        Ok(plugin)
    }

    /// Runs a prepared execution in the sandbox and stores its record
    /// durably before returning it.
    pub async fn run(&self, prepared: Prepared) -> Result<ExecutionRecord, PipelineError> {
        let record = self.run_unstored(prepared).await;
        self.records.put_durably(record.clone()).await?;
        Ok(record)
    }

    /// Runs the plugin and returns the execution's record without storing
    /// it: the caller writes it in a transaction of its own (the action's
    /// outcome goes in the same one), so one write serves both.
    pub async fn run_unstored(&self, prepared: Prepared) -> ExecutionRecord {
        let Prepared {
            plugin,
            idempotent,
            account,
            grant,
            inline,
            inline_metadata,
            command,
            validated,
            slot,
            binding,
        } = prepared;
        let manifest = plugin.manifest();
        let id = command
            .execution_id
            .clone()
            .unwrap_or_else(|| new_id("exe"));
        let idempotency_key = command
            .idempotency_key
            .clone()
            .unwrap_or_else(|| id.clone());
        let started_at = now();
        let started = Instant::now();
        let request = ExecuteRequest {
            action_id: command.action_id.clone().unwrap_or_else(|| id.clone()),
            action_type: command.action_type.clone(),
            params: command.params.clone(),
            attempt: command.attempt,
            idempotency_key: idempotency_key.clone(),
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
            // Only executions with a stored account's own credentials share
            // reused instances; credentials given inline never do.
            reuse_key: account.as_ref().filter(|_| !inline).map(|a| a.id.clone()),
        };
        let mut grant = grant;
        let mut binding = binding;
        if let Some(contact) = &binding.contact {
            binding.notes = Some(Arc::new(ContactNotes {
                records: self.records.clone(),
                tenant_id: command.tenant_id.clone(),
                contact_id: contact.id.clone(),
                action_key: idempotency_key.clone(),
                action_id: command.action_id.clone(),
            }));
        }
        if binding.contact.is_some() || binding.sender.is_some() {
            grant.binding = Some(Arc::new(binding));
        }
        let result = plugin.execute_in(request, Arc::new(grant), validated).await;
        drop(slot);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status, output, mut error, log): (_, _, _, ExecutionLog) = match result {
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

        if let Some(failure) = &mut error {
            blame_the_provider(failure, &log.outbound, idempotent);
        }

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
            action_id: command.action_id,
            transition: default_transition(),
            action_type: command.action_type,
            plugin: manifest.name.clone(),
            plugin_version: manifest.version.clone(),
            params: command.params,
            account_id: account.map(|a| a.id),
            inline_credentials: inline,
            attempt: command.attempt,
            status,
            output,
            error,
            log: log.lines,
            log_truncated_bytes: log.truncated_bytes,
            trace: command.trace.then_some(log.outbound),
            performed_by: command.performed_by,
            key_id: command.key_id,
            session_info: command.session_info,
            text: command.text,
            idempotency_key: Some(idempotency_key),
            started_at,
            finished_at: now(),
            duration_ms,
            replica: Some(crate::replica::id().to_owned()),
        };
        crate::metrics::execution(
            &record.action_type,
            &record.plugin,
            &record.plugin_version,
            record.error.as_ref(),
            started.elapsed().as_secs_f64(),
        );
        tracing::info!(
            execution = %record.id,
            action = record.action_id.as_deref().unwrap_or("-"),
            action_type = %record.action_type,
            status = ?record.status,
            duration_ms,
            "executed"
        );
        record
    }

    /// The record of an attempt that could not start (its requirements
    /// failed when it was due), not yet stored: the caller stores it with
    /// the action's outcome.
    pub fn refusal_record(command: &ExecuteCommand, error: &PipelineError) -> ExecutionRecord {
        let at = now();
        ExecutionRecord {
            id: command
                .execution_id
                .clone()
                .unwrap_or_else(|| new_id("exe")),
            tenant_id: command.tenant_id.clone(),
            action_id: command.action_id.clone(),
            transition: default_transition(),
            action_type: command.action_type.clone(),
            plugin: String::new(),
            plugin_version: String::new(),
            params: command.params.clone(),
            account_id: None,
            inline_credentials: false,
            attempt: command.attempt,
            status: ExecutionStatus::Failed,
            output: None,
            error: Some(error.info()),
            log: Vec::new(),
            log_truncated_bytes: 0,
            trace: None,
            performed_by: command.performed_by.clone(),
            key_id: command.key_id.clone(),
            session_info: None,
            text: command.text.clone(),
            idempotency_key: command.idempotency_key.clone(),
            started_at: at.clone(),
            finished_at: at,
            duration_ms: 0,
            replica: Some(crate::replica::id().to_owned()),
        }
    }

    /// Stores a record as it is (a pending execution, or a reviewer's
    /// transition), without flushing: the caller's transaction does.
    pub fn records(&self) -> &Records {
        &self.records
    }
}

/// The contact a contact-bound action's params name: `Ok(None)` when they
/// name none (the schema reports that), an error at `/contact_id` when it
/// is not a contact of the tenant.
fn bound_contact(
    records: &Records,
    tenant_id: &str,
    params: &serde_json::Value,
) -> Result<Option<ContactInfo>, PipelineError> {
    let Some(id) = params.get("contact_id").and_then(serde_json::Value::as_str) else {
        return Ok(None);
    };
    match contacts::find(records, tenant_id, id)? {
        Some(contact) => Ok(Some(ContactInfo {
            id: contact.id,
            email: contact.email,
            properties: serde_json::Value::Object(contact.properties),
        })),
        None => Err(PipelineError::InvalidParams(vec![FieldError::new(
            "/contact_id",
            &format!("no contact {id} in this tenant (unknown or deleted)"),
        )])),
    }
}

/// Where a contact-bound execution's `add-note` writes: one note per
/// action (its idempotency key), so a retried attempt replaces it.
struct ContactNotes {
    records: Records,
    tenant_id: String,
    contact_id: String,
    action_key: String,
    action_id: Option<String>,
}

impl NoteWriter for ContactNotes {
    fn add_note(
        &self,
        body: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, NoteError>> + Send>>
    {
        let (records, tenant, contact, key, action) = (
            self.records.clone(),
            self.tenant_id.clone(),
            self.contact_id.clone(),
            self.action_key.clone(),
            self.action_id.clone(),
        );
        Box::pin(async move {
            contacts::add_note(&records, &tenant, &contact, &key, action, body)
                .await
                .map(|note| note.id)
                .map_err(|err| match err {
                    ContactError::Store(err) => NoteError::Unavailable(err.to_string()),
                    ContactError::NotFound(id) => {
                        NoteError::Rejected(format!("contact {id} was deleted"))
                    }
                    other => NoteError::Rejected(other.to_string()),
                })
        })
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

/// Turns a failure the provider caused into the provider's error, by the
/// execution's outbound calls:
/// - a deadline that struck while a request was still connecting (DNS
///   answered; connect, TLS, the SMTP greeting or the envelope hung): the
///   provider could not be reached and nothing was sent, so it may be tried
///   again, whatever the action type;
/// - a deadline that struck while a sent request waited for its answer: for
///   an idempotent type, the provider's fault and a failure to retry (only
///   a request still waiting then: one that failed before, followed by a
///   plugin that looped, is the plugin's);
/// - any failure but `rate_limited` after a request that was sent and never
///   answered, for a type that is not idempotent: the provider may have
///   acted on it, so it is `outcome_unknown`, not retried. This wins over
///   the first rule when an earlier request went unanswered.
fn blame_the_provider(failure: &mut ErrorInfo, outbound: &[OutboundCall], idempotent: bool) {
    let at_deadline = failure.fault.as_deref() == Some("deadline_exceeded");
    let waiting = outbound.last().filter(|c| !c.settled);
    if at_deadline && let Some(call) = waiting.filter(|c| !c.sent) {
        let message = format!(
            "{call} was still connecting when the deadline struck ({}); nothing was sent, so it may be tried again",
            failure.message
        );
        reclassify(failure, "transient", true, message);
    } else if idempotent
        && at_deadline
        && let Some(call) = waiting.filter(|c| c.sent)
    {
        let message = format!(
            "{call} got no answer before the deadline ({}); the action type is idempotent, so it may be tried again",
            failure.message
        );
        reclassify(failure, "transient", true, message);
    }
    let unanswered = outbound.iter().rev().find(|c| c.sent && c.status.is_none());
    if !idempotent
        && failure.code != "rate_limited"
        && let Some(call) = unanswered
    {
        let message = format!(
            "{call} was sent and no answer came ({}); the provider may have acted on it, so it is not retried automatically; check with the provider, then resolve the action",
            failure.message
        );
        reclassify(failure, "outcome_unknown", false, message);
    }
}

/// `failure` as the provider's error `code`, keeping the plugin's fault.
fn reclassify(failure: &mut ErrorInfo, code: &str, retryable: bool, message: String) {
    *failure = ErrorInfo {
        code: code.into(),
        message,
        retryable,
        retry_after_ms: None,
        fault: failure.fault.take(),
        fields: Vec::new(),
    };
}
