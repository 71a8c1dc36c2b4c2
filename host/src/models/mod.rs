//! Calling language models: the provider plugin (`actionhost:model`) an
//! `llm_config.provider` names, its account, and retries.
//!
//! A provider's key is a connected account of the provider plugin's app
//! (`anthropic`, `openai-compatible`): the host opens it and injects it
//! into the plugin's requests, as for any executor. [`Models::complete`]
//! retries what may pass (a 429 after its `Retry-After`, an overload, a
//! 5xx) with exponential backoff and jitter, up to `max_attempts`, and
//! nothing else: a spent quota, a refused key or a bad request fail at once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::accounts::{AccountError, Accounts, ConnectedAccount, Lookup};
use crate::registry::PluginRegistry;
use crate::runtime::Plugin;
use crate::runtime::model::{Completion, CompletionRequest, ModelError, Usage};

/// Settings of model calls (`[models]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Attempts of one model call before its failure is final.
    pub max_attempts: u32,
    /// The first backoff; it doubles at each attempt.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// The longest backoff.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// The provider of Composio's `text` (an `llm_config.provider`), when set.
    pub text_provider: Option<String>,
    /// The model of Composio's `text`.
    pub text_model: Option<String>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            text_provider: None,
            text_model: None,
        }
    }
}

/// Why a model call did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ModelCallError {
    /// No loaded plugin serves the provider.
    #[error("no model provider {provider:?} is loaded; loaded providers: {known}")]
    UnknownProvider {
        /// The provider asked for.
        provider: String,
        /// The loaded ones.
        known: String,
    },
    /// The provider account could not be used.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The plugin faulted (trap, deadline, limit).
    #[error("the model provider plugin failed: {0}")]
    Fault(String),
    /// The provider answered with an error, after the retries it allowed.
    #[error("{error} (after {attempts} attempt(s))")]
    Model {
        /// The last error.
        error: ModelError,
        /// Attempts made.
        attempts: u32,
    },
}

/// A completion and what it took.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The model's answer.
    pub completion: Completion,
    /// Attempts made (1 without a retry).
    pub attempts: u32,
    /// Tokens of every attempt.
    pub usage: Usage,
}

/// Model providers and their accounts.
#[derive(Clone)]
pub struct Models {
    registry: PluginRegistry,
    accounts: Accounts,
    config: Arc<ModelsConfig>,
}

impl Models {
    /// Models served by the registry's provider plugins.
    pub fn new(registry: PluginRegistry, accounts: Accounts, config: ModelsConfig) -> Self {
        Self {
            registry,
            accounts,
            config: Arc::new(config),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ModelsConfig {
        &self.config
    }

    /// The newest active plugin serving `provider`.
    pub fn provider(&self, provider: &str) -> Result<Plugin, ModelCallError> {
        self.registry
            .model(provider)
            .ok_or_else(|| ModelCallError::UnknownProvider {
                provider: provider.to_owned(),
                known: {
                    let known = self.registry.providers();
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                },
            })
    }

    /// The account a tenant's calls to `provider` run as: `account_id`
    /// when given, else the tenant's only active account of the provider
    /// plugin's app (two are ambiguous, none is required).
    pub fn account(
        &self,
        tenant_id: &str,
        plugin: &Plugin,
        account_id: Option<&str>,
    ) -> Result<ConnectedAccount, AccountError> {
        self.accounts.resolve(
            tenant_id,
            &plugin.manifest().name,
            "",
            &Lookup {
                connected_account_id: account_id.map(str::to_owned),
                ..Lookup::default()
            },
        )
    }

    /// One model call, retried while the provider says waiting may help.
    pub async fn complete(
        &self,
        tenant_id: &str,
        provider: &str,
        account_id: Option<&str>,
        mut request: CompletionRequest,
    ) -> Result<Answer, ModelCallError> {
        let plugin = self.provider(provider)?;
        let account = self.account(tenant_id, &plugin, account_id)?;
        request.account = Some((account.id.clone(), account.metadata.clone()));
        let mut usage = Usage::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Granted again for each attempt: an OAuth2 token may have been
            // refreshed in between.
            let grant = Arc::new(self.accounts.grant(&account).await?);
            let outcome = plugin
                .complete(&request, grant)
                .await
                .map_err(|fault| ModelCallError::Fault(fault.kind.to_string()))?;
            match outcome {
                Ok(completion) => {
                    usage += completion.usage;
                    return Ok(Answer {
                        completion,
                        attempts: attempt,
                        usage,
                    });
                }
                Err(error) => {
                    let wait = error.retry();
                    if let (Some(after), true) = (wait, attempt < self.config.max_attempts) {
                        let delay = self.backoff(attempt).max(after.unwrap_or_default());
                        tracing::info!(provider, attempt, ?delay, %error, "model call failed; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    if matches!(error, ModelError::Unauthorized(_)) {
                        let reason = format!("the provider refused the key: {error}");
                        if let Err(err) = self.accounts.expire(&account.id, reason) {
                            tracing::error!(account = %account.id, %err, "could not mark the account expired");
                        }
                    }
                    return Err(ModelCallError::Model {
                        error,
                        attempts: attempt,
                    });
                }
            }
        }
    }

    /// The wait before attempt `attempt + 1`: exponential, with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .config
            .backoff_base
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = exponential.min(self.config.backoff_max);
        let jitter = f64::from(crate::tenancy::random_bytes::<1>()[0]) / 255.0;
        capped.mul_f64(0.75 + 0.5 * jitter)
    }
}
