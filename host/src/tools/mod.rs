//! Action types as tools for language-model agents.
//!
//! Every action type a loaded plugin provides is a tool: listed over MCP
//! (`/mcp`, in `api/mcp.rs`) and as ready-to-send tool lists for the
//! OpenAI and Anthropic APIs (`GET /api/v2/tools`, converted in
//! [`convert`]). [`catalog`] names the tools; [`Tools::call`] runs one.
//!
//! A call goes one of two ways, decided by the type and the key:
//! - **it runs** through [`Pipeline::execute`], like Composio's execute,
//!   when the type needs no approval and the key may execute (it holds
//!   `actions:execute` and its policy is not `propose_only`);
//! - **it proposes**: otherwise a stored action is created in
//!   `pending_approval` through [`Actions::create`], exactly as
//!   `POST /v1/actions` would, and the call answers at once with its id. A
//!   reviewer decides it; nothing runs behind their back.
//!
//! Either way the end user's account is resolved by the execute rules
//! (`connectedAccountId`, then `entityId`, then the only active account of
//! the app): an ambiguous account is refused with the candidates, never
//! guessed. A proposal pins the account it resolved as the action's
//! `identity_id`, so the reviewer approves a run as that very account.
//!
//! **Architecture Invariant:** a tool call has no path of its own to a
//! plugin: it is an execution of the pipeline or a stored action.

pub mod convert;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::accounts::{AccountError, Accounts, Lookup};
use crate::actions::{Action, ActionError, ActionStatus, Actions, Actor, NewAction};
use crate::executions::{Admission, ExecuteCommand, ExecutionRecord, PipelineError};
use crate::registry::PluginRegistry;
use crate::runtime::{ActionTypeInfo, AuthScheme, FieldError};
use crate::store::StoreError;
use crate::tenancy::Principal;

/// The longest tool name the OpenAI, Anthropic and MCP clients accept.
pub const MAX_NAME_CHARS: usize = 64;

/// The most tools one list holds.
pub const MAX_TOOLS_PER_LIST: usize = 128;

/// Names the MCP server keeps for its own tools.
pub const RESERVED_NAMES: [&str; 2] = ["get_action", "list_pending_actions"];

/// One action type as a tool.
#[derive(Debug, Clone)]
pub struct ToolDef {
    /// The tool's name: the action type's, or a mapping of it into
    /// `[a-zA-Z0-9_-]{1,64}`.
    pub name: String,
    /// The action type.
    pub action_type: String,
    /// The plugin (app) providing it.
    pub app: String,
    /// The type's manifest entry.
    pub info: ActionTypeInfo,
    /// Whether it reaches a provider outside the server: its plugin
    /// declares outbound hosts, or the type takes credentials.
    pub open_world: bool,
}

impl ToolDef {
    /// Whether running it may change something that cannot be taken back:
    /// a type that reaches a provider, or is not idempotent. A type that
    /// only adds to the server's own records (such as `note`) is not.
    pub fn destructive(&self) -> bool {
        self.open_world || !self.info.idempotent
    }

    /// Whether a call needs a connected account.
    fn needs_account(&self) -> bool {
        !self.info.auth_schemes.is_empty() && !self.info.auth_schemes.contains(&AuthScheme::None)
    }
}

/// Every loaded action type as a tool, sorted by tool name.
pub fn catalog(registry: &PluginRegistry) -> Vec<ToolDef> {
    let mut defs = Vec::new();
    for plugin in registry.plugins() {
        let manifest = plugin.manifest();
        // The registry serves one version of a type; list that one.
        for info in &manifest.action_types {
            let serving = registry.plugin_for(&info.name);
            if serving.is_none_or(|p| p.manifest().version != manifest.version) {
                continue;
            }
            let takes_credentials =
                !info.auth_schemes.is_empty() && !info.auth_schemes.contains(&AuthScheme::None);
            defs.push(ToolDef {
                name: String::new(),
                action_type: info.name.clone(),
                app: manifest.name.clone(),
                info: info.clone(),
                open_world: !manifest.outbound_hosts.is_empty() || takes_credentials,
            });
        }
    }
    let names = tool_names(defs.iter().map(|d| d.action_type.as_str()));
    for def in &mut defs {
        def.name = names[&def.action_type].clone();
    }
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    defs
}

/// The tool with this name, if a loaded type has it.
pub fn find(registry: &PluginRegistry, name: &str) -> Option<ToolDef> {
    catalog(registry).into_iter().find(|def| def.name == name)
}

/// Tool names for action types. A type whose name is already a valid tool
/// name, unique and not reserved, keeps it; any other gets the valid
/// characters of its name, cut to fit, and 8 hex digits of its SHA-256:
/// the same name for the same type, whatever else is loaded.
pub fn tool_names<'a>(types: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
    let types: Vec<&str> = types.collect();
    let mut plain: BTreeMap<String, usize> = BTreeMap::new();
    for name in &types {
        *plain.entry(sanitize(name)).or_default() += 1;
    }
    types
        .iter()
        .map(|&name| {
            let clean = sanitize(name);
            let keeps =
                clean == name && plain.get(&clean) == Some(&1) && !RESERVED_NAMES.contains(&name);
            let tool = if keeps {
                clean
            } else {
                let hash = hex::encode(&Sha256::digest(name.as_bytes())[..4]);
                let stem: String = clean.chars().take(MAX_NAME_CHARS - 9).collect();
                format!("{stem}_{hash}")
            };
            (name.to_owned(), tool)
        })
        .collect()
}

/// The characters of `name` a tool name may hold (others become `_`),
/// at most [`MAX_NAME_CHARS`].
fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

/// Who calls, and as which end user.
#[derive(Debug, Clone)]
pub struct ToolCaller {
    /// The key and its user.
    pub principal: Principal,
    /// How to find the end user's account.
    pub lookup: Lookup,
}

impl ToolCaller {
    fn tenant(&self) -> &str {
        &self.principal.key.tenant_id
    }

    fn actor(&self) -> Actor {
        Actor::Key {
            key_id: self.principal.key.id.clone(),
            user_id: self.principal.user.id.clone(),
        }
    }
}

/// How a tool call ended.
#[derive(Debug)]
pub enum ToolOutcome {
    /// It ran: the plugin's output or its failure, recorded.
    Ran(Box<ExecutionRecord>),
    /// It waits for a reviewer as this stored action.
    Proposed(Box<Action>),
    /// Nothing ran, and nothing was stored: the arguments, the account or
    /// the server's capacity said no.
    Refused(Refusal),
}

/// Why a call did not run, in the error taxonomy.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// `invalid_input`, `account_required`, `account_ambiguous`,
    /// `account_expired`, `rate_limited`, `unavailable`, `conflict`, …
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
    /// For `invalid_input`: each failing argument (`path` is a JSON Pointer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `account_ambiguous`: the candidate account ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// For `rate_limited`: how long to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    fn invalid(message: String, errors: Vec<FieldError>) -> Self {
        Self {
            code: "invalid_input".into(),
            message,
            retryable: false,
            errors,
            candidates: Vec::new(),
            retry_after_ms: None,
        }
    }
}

impl From<PipelineError> for Refusal {
    fn from(err: PipelineError) -> Self {
        let info = err.info();
        let candidates = match &err {
            PipelineError::Account(AccountError::Ambiguous { candidates, .. }) => {
                candidates.clone()
            }
            _ => Vec::new(),
        };
        Self {
            code: info.code,
            message: info.message,
            retryable: info.retryable,
            errors: info.fields,
            candidates,
            retry_after_ms: info.retry_after_ms,
        }
    }
}

impl From<AccountError> for Refusal {
    fn from(err: AccountError) -> Self {
        PipelineError::Account(err).into()
    }
}

/// Why a call could not be answered at all.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The detached run was lost (the server is shutting down).
    #[error("the call's run ended without an answer: {0}")]
    Lost(String),
}

/// Tool calls: runs and proposals.
#[derive(Clone)]
pub struct Tools {
    actions: Actions,
    accounts: Accounts,
}

impl Tools {
    /// Tool calls over the actions and their pipeline.
    pub fn new(actions: Actions, accounts: Accounts) -> Self {
        Self { actions, accounts }
    }

    /// The plugins.
    pub fn registry(&self) -> &PluginRegistry {
        self.actions.pipeline().registry()
    }

    /// Whether a call of `def` by `caller` proposes rather than runs.
    pub fn proposes(def: &ToolDef, caller: &ToolCaller) -> bool {
        def.info.requires_approval || !caller.principal.key.may_execute()
    }

    /// Calls the tool `def` with `arguments` (a JSON object).
    pub async fn call(
        &self,
        caller: &ToolCaller,
        def: &ToolDef,
        arguments: serde_json::Value,
    ) -> Result<ToolOutcome, ToolError> {
        let arguments = convert::drop_optional_nulls(&def.info.params_schema, arguments);
        if Self::proposes(def, caller) {
            self.propose(caller, def, arguments).await
        } else {
            self.run(caller, def, arguments).await
        }
    }

    async fn run(
        &self,
        caller: &ToolCaller,
        def: &ToolDef,
        arguments: serde_json::Value,
    ) -> Result<ToolOutcome, ToolError> {
        let command = ExecuteCommand {
            performed_by: caller.principal.user.id.clone(),
            key_id: caller.principal.key.id.clone(),
            lookup: caller.lookup.clone(),
            // The client waits on the answer: at a cap, it hears so at once.
            admission: Admission::Refuse,
            ..ExecuteCommand::new(caller.tenant(), def.action_type.clone(), arguments)
        };
        // In a task of its own: a client that goes away does not cut the
        // run short, and its record is written all the same.
        let pipeline = self.actions.pipeline().clone();
        let outcome = self
            .actions
            .detach(async move { pipeline.execute(command).await })
            .await
            .map_err(|err| ToolError::Lost(err.to_string()))?;
        Ok(match outcome {
            Ok(record) => ToolOutcome::Ran(Box::new(record)),
            Err(PipelineError::Store(err)) => return Err(err.into()),
            Err(err) => ToolOutcome::Refused(err.into()),
        })
    }

    async fn propose(
        &self,
        caller: &ToolCaller,
        def: &ToolDef,
        arguments: serde_json::Value,
    ) -> Result<ToolOutcome, ToolError> {
        let lookup = &caller.lookup;
        let identity_id = if def.needs_account() {
            match self
                .accounts
                .resolve(caller.tenant(), &def.app, &def.action_type, lookup)
            {
                Ok(account) => account.id,
                Err(AccountError::Store(err)) => return Err(err.into()),
                Err(err) => return Ok(ToolOutcome::Refused(err.into())),
            }
        } else {
            lookup
                .connected_account_id
                .clone()
                .or_else(|| lookup.entity_id.clone())
                .unwrap_or_else(|| caller.principal.user.id.clone())
        };
        let new = NewAction {
            action_type: def.action_type.clone(),
            params: arguments,
            identity_id,
            direct: false,
            scheduled_time: None,
            list_id: None,
            item_id: None,
            description: Some(format!(
                "proposed by a tool call under key {} ({})",
                caller.principal.key.name, caller.principal.key.id
            )),
            require_approval: true,
            version: None,
        };
        match self
            .actions
            .create(caller.tenant(), &caller.actor(), new, None)
            .await
        {
            Ok(created) => match created.action {
                Some(action) => Ok(ToolOutcome::Proposed(Box::new(action))),
                None => Err(ToolError::Lost("the create returned no action".to_owned())),
            },
            Err(ActionError::Invalid { message, fields }) => {
                // The create names params as `/params/…`; a tool's are its arguments.
                let fields = fields
                    .into_iter()
                    .map(|field| FieldError {
                        path: field
                            .path
                            .strip_prefix("/params")
                            .map_or_else(|| field.path.clone(), str::to_owned),
                        ..field
                    })
                    .collect();
                Ok(ToolOutcome::Refused(Refusal::invalid(
                    message.replace("/params", ""),
                    fields,
                )))
            }
            Err(ActionError::Store(err)) => Err(err.into()),
            Err(ActionError::Busy(busy)) => {
                Ok(ToolOutcome::Refused(PipelineError::Busy(busy).into()))
            }
            Err(ActionError::Unavailable(message)) => Ok(ToolOutcome::Refused(Refusal {
                code: "unavailable".into(),
                retryable: true,
                ..Refusal::invalid(message, Vec::new())
            })),
            Err(other) => Ok(ToolOutcome::Refused(Refusal {
                code: "conflict".into(),
                ..Refusal::invalid(other.to_string(), Vec::new())
            })),
        }
    }

    /// An action of the caller's tenant.
    pub fn action(&self, caller: &ToolCaller, id: &str) -> Result<Option<Action>, StoreError> {
        match self.actions.get(caller.tenant(), id) {
            Ok(action) => Ok(Some(action)),
            Err(ActionError::NotFound(_)) => Ok(None),
            Err(ActionError::Store(err)) => Err(err),
            Err(other) => Err(StoreError::Storage(other.to_string())),
        }
    }

    /// The tenant's actions waiting for approval, newest first.
    pub fn pending(
        &self,
        caller: &ToolCaller,
        limit: usize,
    ) -> Result<(Vec<Action>, usize), StoreError> {
        let query = crate::actions::ListQuery {
            status: Some(ActionStatus::PendingApproval),
            limit,
            descending: true,
            ..Default::default()
        };
        match self.actions.list(caller.tenant(), &query) {
            Ok(page) => Ok((page.actions, page.total)),
            Err(ActionError::Store(err)) => Err(err),
            Err(other) => Err(StoreError::Storage(other.to_string())),
        }
    }

    /// Cancels an action that has not run (`tasks/cancel`).
    pub async fn cancel(&self, caller: &ToolCaller, id: &str) -> Result<Action, ActionError> {
        self.actions
            .cancel(
                caller.tenant(),
                id,
                &caller.actor(),
                Some("cancelled by the MCP client that proposed it".to_owned()),
            )
            .await
    }
}

/// A proposal as a tool answers it: the stored action and where a person
/// decides it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProposalView {
    /// The stored action (`act_…`).
    pub action_id: String,
    /// `pending_approval`.
    #[schema(value_type = String)]
    pub status: ActionStatus,
    /// The action type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Who demanded the approval: `plugin` (the type always needs one) or
    /// `request` (the key proposes only).
    pub approval_required_by: Option<String>,
    /// `GET` it to follow the action.
    pub action_url: String,
    /// A reviewer `POST`s `{"action": "approve"}` (or `reject`, or `edit`
    /// with new `params`) here, with the scope `actions:approve`.
    pub approve_url: String,
}

impl ProposalView {
    /// The view of `action`, with links under `public_url`.
    pub fn of(action: &Action, public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            action_id: action.id.clone(),
            status: action.status,
            action_type: action.action_type.clone(),
            approval_required_by: action.approval_required_by.clone(),
            action_url: format!("{base}/v1/actions/{}", action.id),
            approve_url: format!("{base}/v1/actions/{}/approve", action.id),
        }
    }

    /// What the model reads.
    pub fn message(&self) -> String {
        format!(
            "{} was not run: it waits for a person's approval as action {} (status {}). A reviewer decides it at {}; follow it with get_action.",
            self.action_type,
            self.action_id,
            self.status.as_str(),
            self.approve_url
        )
    }
}

/// An action as `get_action` and `list_pending_actions` show it.
pub fn action_view(action: &Action, public_url: &str) -> serde_json::Value {
    let proposal = ProposalView::of(action, public_url);
    serde_json::json!({
        "action_id": action.id,
        "type": action.action_type,
        "status": action.status.as_str(),
        "params": action.params,
        "revision": action.revision,
        "identity_id": action.identity_id,
        "output": action.output,
        "error": action.last_error,
        "created_at": action.created_at,
        "updated_at": action.updated_at,
        "action_url": proposal.action_url,
        "approve_url": proposal.approve_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (1..=MAX_NAME_CHARS).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn valid_unique_names_are_kept_and_the_others_mapped_to_valid_distinct_ones() {
        let long = "x".repeat(80);
        let types = [
            "crm_sync",
            "send-email",
            "acme.crm/sync",
            "a.b",
            "a_b",
            "get_action",
            long.as_str(),
            "",
        ];
        let names = tool_names(types.iter().copied());
        assert_eq!(names["crm_sync"], "crm_sync");
        assert_eq!(names["send-email"], "send-email");
        for name in names.values() {
            assert!(valid(name), "{name:?}");
        }
        let mut distinct: Vec<&String> = names.values().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), types.len(), "{names:?}");
        // Invalid characters, a clash after mapping, a reserved name and a
        // long name each get a hash suffix.
        assert!(names["acme.crm/sync"].starts_with("acme_crm_sync_"));
        assert_ne!(names["a.b"], "a_b");
        assert_ne!(names["a_b"], "a_b");
        assert_ne!(names["get_action"], "get_action");
        assert_eq!(names[long.as_str()].len(), MAX_NAME_CHARS);
        // The same type gets the same name whatever else is loaded, once
        // nothing clashes with it.
        let alone = tool_names(["acme.crm/sync"].into_iter());
        assert_eq!(alone["acme.crm/sync"], names["acme.crm/sync"]);
    }
}
