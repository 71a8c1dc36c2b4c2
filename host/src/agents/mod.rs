//! Agents (Pathbound's `/v1/agents`): a playbook, the capabilities it may
//! propose with, the contacts it watches, a schedule and a model; and their
//! runs, which propose actions for people to approve.
//!
//! How the pieces fit:
//!
//! - An [`Agent`] is checked whole when it is created or changed
//!   ([`Agents::check`]): its capabilities map to loaded action types, its
//!   cron parses, its model provider is loaded and has an account, and the
//!   types it auto-approves allow it.
//! - A run ([`run`]) selects the contacts that match the filter (or the ones
//!   a trigger names), evaluates each with one model call whose only tool is
//!   `propose_actions`, and writes each contact's result, its proposed
//!   actions and the run's counts in one transaction: a contact is never
//!   proposed for twice, and a run interrupted by a crash resumes with the
//!   first contact without a result.
//! - [`schedule`] starts runs of enabled agents by their cron, once for a
//!   tick missed while the server was down.

pub mod filter;
mod queue;
pub mod run;
pub mod schedule;
pub mod templates;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actions::Actions;
use crate::contacts::Contacts;
use crate::identities;
use crate::models::Models;
use crate::runtime::FieldError;
use crate::store::{IndexEntry, Record, Records, StoreError};
use crate::tenancy::{new_ordered_id, now};

pub use filter::Filter;
pub use run::{AgentRun, ContactResult, RunStatus, RunSummary, RunsConfig};

/// The action type each capability proposes.
pub const CAPABILITIES: [(&str, &str); 4] = [
    ("email", "email_message"),
    ("linkedin", "linkedin_message"),
    ("notes", "note"),
    ("crm_sync", "crm_sync"),
];

/// The action type a capability proposes: one of [`CAPABILITIES`], or an
/// action type named directly (a third party's).
pub fn action_type_of(capability: &str) -> &str {
    CAPABILITIES
        .iter()
        .find(|(name, _)| *name == capability)
        .map_or(capability, |(_, action_type)| action_type)
}

/// The playbook: markdown, and any structured settings beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Playbook {
    /// The prompt: what to look for and what to propose.
    pub playbook_md: String,
    /// Anything else the playbook carries, kept as given.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

/// Who and when to monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// Which contacts.
    #[serde(default)]
    pub filter: Filter,
    /// When, as a 5-field cron expression (`0 14 * * 1-5`: 14:00 on
    /// weekdays), or 6 fields with seconds first.
    #[serde(default)]
    pub schedule_cron: Option<String>,
    /// The time zone of the schedule (IANA, such as `Europe/Paris`; default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The most contacts one run evaluates, 1 to 1,000 (default 25).
    #[serde(default = "default_max_contacts")]
    pub max_contacts_per_run: u32,
}

fn default_max_contacts() -> u32 {
    25
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            schedule_cron: None,
            timezone: None,
            max_contacts_per_run: default_max_contacts(),
        }
    }
}

/// The model an agent asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// A loaded provider plugin's provider: `anthropic`, `openai-compatible`, …
    pub provider: String,
    /// The model, such as `claude-opus-4-7`.
    pub model: String,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The most tokens one answer may use (default 1,024; at most 32,000).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The provider account to use, when the tenant has several.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// A stored agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    /// `ag_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The template it started from.
    pub playbook_template: Option<String>,
    /// Its playbook.
    pub playbook: Playbook,
    /// What it may propose (`email`, `linkedin`, `notes`, `crm_sync`, or an
    /// action type).
    pub capabilities: Vec<String>,
    /// The identity its actions are performed as.
    pub identity_id: Option<String>,
    /// Who and when.
    pub monitoring: Monitoring,
    /// The model.
    pub llm_config: LlmConfig,
    /// Action types whose proposals skip approval (when their plugin
    /// allows it).
    pub auto_approve: Vec<String>,
    /// Whether its schedule runs.
    pub enabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// When its schedule last started a run (ms), or when it was enabled.
    #[serde(default)]
    pub scheduled_ms: Option<u64>,
}

impl Record for Agent {
    const COLLECTION: &'static str = "agents";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        let mut entries = vec![IndexEntry::multi("agents_by_tenant", &self.tenant_id)];
        if self.enabled && self.monitoring.schedule_cron.is_some() {
            entries.push(IndexEntry::multi("agents_scheduled", "all"));
        }
        entries
    }
}

impl Agent {
    /// The action types its capabilities propose.
    pub fn action_types(&self) -> Vec<String> {
        self.capabilities
            .iter()
            .map(|c| action_type_of(c).to_owned())
            .collect()
    }
}

/// An agent's fields as a request sends them; `None` keeps a field (in an
/// update) or takes its default (in a create).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Display name.
    pub name: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// A template to start from.
    pub playbook_template: Option<String>,
    /// The playbook; in an update, `playbook_md` alone revises the prompt.
    pub playbook: Option<Map<String, Value>>,
    /// Capabilities.
    pub capabilities: Option<Vec<String>>,
    /// The identity.
    pub identity_id: Option<String>,
    /// Monitoring; in an update, the fields sent replace those stored.
    pub monitoring: Option<Map<String, Value>>,
    /// The model; in an update, the fields sent replace those stored.
    pub llm_config: Option<Map<String, Value>>,
    /// Action types to auto-approve.
    pub auto_approve: Option<Vec<String>>,
    /// Whether the schedule runs.
    pub enabled: Option<bool>,
}

/// Why an agent operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Not in the caller's tenant.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `agent`, `run`, …
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The request is wrong.
    #[error("{message}")]
    Invalid {
        /// What to fix.
        message: String,
        /// Each failing field.
        fields: Vec<FieldError>,
    },
    /// The request does not fit the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AgentError {
    fn fields(fields: Vec<FieldError>) -> Self {
        Self::Invalid {
            message: format!("invalid agent: {}", FieldError::summary(&fields)),
            fields,
        }
    }

    fn not_found(kind: &'static str, id: &str) -> Self {
        Self::NotFound {
            kind,
            id: id.to_owned(),
        }
    }
}

type Result<T, E = AgentError> = std::result::Result<T, E>;

/// The agents of every tenant, and their runs.
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    records: Records,
    actions: Actions,
    contacts: Contacts,
    models: Models,
    config: RunsConfig,
    queue: tokio::sync::mpsc::UnboundedSender<String>,
    receiver: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    tasks: tokio_util::task::TaskTracker,
    /// The runs this process is executing (each also marked `running_on`
    /// this replica in the store).
    running: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Agents {
    /// Agents over `records`, proposing through `actions`.
    pub fn new(
        records: Records,
        actions: Actions,
        contacts: Contacts,
        models: Models,
        config: RunsConfig,
    ) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                records,
                actions,
                contacts,
                models,
                config,
                queue,
                receiver: std::sync::Mutex::new(Some(receiver)),
                tasks: tokio_util::task::TaskTracker::new(),
                running: std::sync::Mutex::default(),
            }),
        }
    }

    fn records(&self) -> &Records {
        &self.inner.records
    }

    /// An agent of the tenant.
    pub fn get(&self, tenant_id: &str, id: &str) -> Result<Agent> {
        self.records()
            .get::<Agent>(id)?
            .filter(|a| a.tenant_id == tenant_id)
            .ok_or_else(|| AgentError::not_found("agent", id))
    }

    /// The tenant's agents, oldest first, filtered.
    pub fn list(
        &self,
        tenant_id: &str,
        enabled: Option<bool>,
        template: Option<&str>,
    ) -> Result<Vec<Agent>> {
        Ok(self
            .records()
            .list_by::<Agent>("agents_by_tenant", tenant_id)?
            .into_iter()
            .filter(|a| enabled.is_none_or(|e| a.enabled == e))
            .filter(|a| template.is_none_or(|t| a.playbook_template.as_deref() == Some(t)))
            .collect())
    }

    /// Creates an agent, durably.
    pub async fn create(&self, tenant_id: &str, spec: AgentSpec) -> Result<Agent> {
        let at = now();
        let mut agent = Agent {
            id: new_ordered_id("ag"),
            tenant_id: tenant_id.to_owned(),
            name: String::new(),
            description: None,
            playbook_template: None,
            playbook: Playbook::default(),
            capabilities: Vec::new(),
            identity_id: None,
            monitoring: Monitoring::default(),
            llm_config: LlmConfig {
                provider: String::new(),
                model: String::new(),
                temperature: None,
                max_tokens: None,
                account_id: None,
            },
            auto_approve: Vec::new(),
            enabled: false,
            created_at: at.clone(),
            updated_at: at,
            scheduled_ms: None,
        };
        if spec.name.is_none() {
            return Err(AgentError::fields(vec![FieldError::new(
                "/name",
                "is required: the agent's display name",
            )]));
        }
        if spec.llm_config.is_none() {
            return Err(AgentError::fields(vec![FieldError::new(
                "/llm_config",
                "is required: {\"provider\", \"model\"} of a loaded model provider",
            )]));
        }
        self.apply(&mut agent, spec, true)?;
        self.records().put_durably(agent.clone()).await?;
        tracing::info!(agent = %agent.id, "agent created");
        Ok(agent)
    }

    /// Changes the fields sent, durably.
    pub async fn update(&self, tenant_id: &str, id: &str, spec: AgentSpec) -> Result<Agent> {
        let mut agent = self.get(tenant_id, id)?;
        self.apply(&mut agent, spec, false)?;
        agent.updated_at = now();
        self.records().put_durably(agent.clone()).await?;
        Ok(agent)
    }

    /// Applies `spec` to `agent` and checks the result whole.
    fn apply(&self, agent: &mut Agent, spec: AgentSpec, creating: bool) -> Result<()> {
        let mut errors = Vec::new();
        if let Some(name) = spec.name {
            agent.name = name.trim().to_owned();
        }
        if let Some(description) = spec.description {
            agent.description = Some(description);
        }
        if let Some(template) = &spec.playbook_template {
            match templates::named(template) {
                Some(found) => {
                    agent.playbook_template = Some(template.clone());
                    // A template fills what the request leaves out.
                    if creating || spec.playbook.is_none() {
                        agent.playbook.playbook_md = found.playbook_md.to_owned();
                    }
                    if spec.capabilities.is_none() {
                        agent.capabilities =
                            found.capabilities.iter().map(|c| (*c).to_owned()).collect();
                    }
                    if spec
                        .monitoring
                        .as_ref()
                        .is_none_or(|m| !m.contains_key("filter"))
                    {
                        agent.monitoring.filter = found.filter.clone();
                    }
                }
                None => errors.push(FieldError::new(
                    "/playbook_template",
                    &format!(
                        "unknown template {template:?}; templates: {}",
                        templates::all()
                            .iter()
                            .map(|t| t.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        if let Some(playbook) = spec.playbook {
            let mut merged = serde_json::to_value(&agent.playbook)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            merged.extend(playbook);
            match serde_json::from_value::<Playbook>(Value::Object(merged)) {
                Ok(playbook) => agent.playbook = playbook,
                Err(err) => errors.push(FieldError::new("/playbook", &err.to_string())),
            }
        }
        if let Some(capabilities) = spec.capabilities {
            agent.capabilities = capabilities;
        }
        if let Some(identity) = spec.identity_id {
            agent.identity_id = Some(identity).filter(|i| !i.is_empty());
        }
        if let Some(changes) = spec.monitoring {
            let mut merged = serde_json::to_value(&agent.monitoring)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            merged.extend(changes);
            match serde_path_to_error::deserialize::<_, Monitoring>(Value::Object(merged)) {
                Ok(monitoring) => agent.monitoring = monitoring,
                Err(err) => errors.push(FieldError::new(
                    &format!(
                        "/monitoring/{}",
                        err.path()
                            .to_string()
                            .trim_start_matches('.')
                            .replace('.', "/")
                    ),
                    &err.inner().to_string(),
                )),
            }
        }
        if let Some(changes) = spec.llm_config {
            let mut merged = if creating {
                Map::new()
            } else {
                serde_json::to_value(&agent.llm_config)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default()
            };
            merged.extend(changes);
            match serde_path_to_error::deserialize::<_, LlmConfig>(Value::Object(merged)) {
                Ok(config) => agent.llm_config = config,
                Err(err) => errors.push(FieldError::new(
                    &format!(
                        "/llm_config/{}",
                        err.path()
                            .to_string()
                            .trim_start_matches('.')
                            .replace('.', "/")
                    ),
                    &err.inner().to_string(),
                )),
            }
        }
        if let Some(types) = spec.auto_approve {
            agent.auto_approve = types;
        }
        let was_enabled = agent.enabled;
        if let Some(enabled) = spec.enabled {
            agent.enabled = enabled;
        }
        if agent.enabled && !was_enabled {
            // The schedule counts from now, not from the agent's creation.
            agent.scheduled_ms = Some(crate::actions::epoch_ms(std::time::SystemTime::now()));
        }
        if errors.is_empty() {
            errors = self.check(agent);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AgentError::fields(errors))
        }
    }

    /// Every rule an agent must satisfy, each failure named by its field.
    pub fn check(&self, agent: &Agent) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let registry = self.inner.actions.pipeline().registry();
        if agent.name.is_empty() || agent.name.chars().count() > 200 {
            errors.push(FieldError::new("/name", "must be 1 to 200 characters"));
        }
        if agent.playbook.playbook_md.trim().is_empty() {
            errors.push(FieldError::new(
                "/playbook/playbook_md",
                "is required (or a playbook_template): the prompt the model reasons with",
            ));
        } else if agent.playbook.playbook_md.chars().count() > 50_000 {
            errors.push(FieldError::new(
                "/playbook/playbook_md",
                "must be at most 50,000 characters",
            ));
        }
        if agent.capabilities.is_empty() {
            errors.push(FieldError::new(
                "/capabilities",
                "needs at least one of email, linkedin, notes, crm_sync (or an action type)",
            ));
        }
        let known: BTreeSet<&str> = CAPABILITIES.iter().map(|(c, _)| *c).collect();
        for (index, capability) in agent.capabilities.iter().enumerate() {
            let action_type = action_type_of(capability);
            let at = format!("/capabilities/{index}");
            if !known.contains(capability.as_str()) && registry.plugin_for(capability).is_none() {
                errors.push(FieldError::new(
                    &at,
                    &format!(
                        "unknown capability {capability:?}; capabilities: email, linkedin, notes, crm_sync, or a loaded action type ({})",
                        registry.action_types().join(", ")
                    ),
                ));
            } else if registry.plugin_for(action_type).is_none() {
                errors.push(FieldError::new(
                    &at,
                    &format!("no loaded plugin serves {action_type}, which {capability:?} proposes; install it first"),
                ));
            }
        }
        let types = agent.action_types();
        for (index, action_type) in agent.auto_approve.iter().enumerate() {
            let at = format!("/auto_approve/{index}");
            if !types.contains(action_type) {
                errors.push(FieldError::new(
                    &at,
                    &format!(
                        "{action_type:?} is not one of the agent's action types ({})",
                        types.join(", ")
                    ),
                ));
            } else if registry
                .plugin_for(action_type)
                .and_then(|p| {
                    p.manifest()
                        .action_type(action_type)
                        .map(|t| t.requires_approval)
                })
                .unwrap_or(false)
            {
                errors.push(FieldError::new(
                    &at,
                    &format!("{action_type} always needs a person's approval (its plugin says so); it cannot be auto-approved"),
                ));
            }
        }
        if let Some(identity) = &agent.identity_id {
            match identities::find(self.records(), &agent.tenant_id, identity) {
                Ok(Some(found)) => {
                    for action_type in &types {
                        let needs = registry.plugin_for(action_type).is_some_and(|p| {
                            p.manifest().action_type(action_type).is_some_and(|t| {
                                !t.auth_schemes.is_empty()
                                    && !t.auth_schemes.contains(&crate::runtime::AuthScheme::None)
                            })
                        });
                        let app = registry
                            .plugin_for(action_type)
                            .map(|p| p.manifest().name.clone())
                            .unwrap_or_default();
                        if needs && found.account_for(action_type, &app).is_none() {
                            errors.push(FieldError::new(
                                "/identity_id",
                                &crate::accounts::missing_capability(&found, action_type, &app),
                            ));
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => errors.push(FieldError::new("/identity_id", &err.to_string())),
            }
        }
        let monitoring = &agent.monitoring;
        if !(1..=1000).contains(&monitoring.max_contacts_per_run) {
            errors.push(FieldError::new(
                "/monitoring/max_contacts_per_run",
                &format!(
                    "must be 1 to 1,000, not {}",
                    monitoring.max_contacts_per_run
                ),
            ));
        }
        errors.extend(monitoring.filter.check("/monitoring/filter"));
        if let Some(cron) = &monitoring.schedule_cron
            && let Err(reason) = schedule::parse(cron, monitoring.timezone.as_deref())
        {
            errors.push(FieldError::new("/monitoring/schedule_cron", &reason));
        }
        if monitoring.schedule_cron.is_none() && monitoring.timezone.is_some() {
            errors.push(FieldError::new(
                "/monitoring/timezone",
                "goes with schedule_cron",
            ));
        }
        let llm = &agent.llm_config;
        if let Some(temperature) = llm.temperature
            && !(0.0..=2.0).contains(&temperature)
        {
            errors.push(FieldError::new(
                "/llm_config/temperature",
                &format!("must be 0 to 2, not {temperature}"),
            ));
        }
        if let Some(tokens) = llm.max_tokens
            && !(1..=32_000).contains(&tokens)
        {
            errors.push(FieldError::new(
                "/llm_config/max_tokens",
                "must be 1 to 32,000",
            ));
        }
        if llm.model.trim().is_empty() {
            errors.push(FieldError::new(
                "/llm_config/model",
                "is required, such as claude-opus-4-7",
            ));
        }
        match self.inner.models.provider(&llm.provider) {
            Err(err) => errors.push(FieldError::new("/llm_config/provider", &err.to_string())),
            Ok(plugin) => {
                if let Err(err) =
                    self.inner
                        .models
                        .account(&agent.tenant_id, &plugin, llm.account_id.as_deref())
                {
                    errors.push(FieldError::new(
                        "/llm_config/provider",
                        &format!("the provider {} has no usable account: {err}", llm.provider),
                    ));
                }
            }
        }
        errors
    }

    /// Removes an agent and its runs, durably; cancels the proposals that
    /// have not run, each with a history entry. Executed actions keep their
    /// `agent_id`. Returns how many runs were removed and actions cancelled.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<(usize, usize)> {
        let agent = self.get(tenant_id, id)?;
        let runs = self
            .records()
            .ids_by("runs_by_agent", &format!("{tenant_id}\0{}", agent.id))?;
        for run in &runs {
            self.records()
                .remove_listed::<ContactResult>("results_by_run", &format!("{run}\0"), None, 500)
                .await?;
        }
        let (agent_id, run_ids) = (agent.id.clone(), runs.clone());
        self.records()
            .commit(move |tx| {
                for run in &run_ids {
                    tx.remove::<AgentRun>(run)?;
                }
                tx.remove::<Agent>(&agent_id)?;
                Ok(())
            })
            .await?;
        let cancelled = self
            .inner
            .actions
            .cancel_for_agent(tenant_id, &agent.id)
            .await
            .map_err(|err| AgentError::Store(StoreError::Storage(err.to_string())))?;
        tracing::info!(agent = %agent.id, runs = runs.len(), cancelled, "agent deleted");
        Ok((runs.len(), cancelled))
    }

    /// Waits for the runs in flight, for at most `timeout`.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}
