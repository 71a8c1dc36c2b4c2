//! Auth configs, connected accounts, and the secrets they hold.
//!
//! An [`AuthConfig`] says how an app (a plugin) authenticates: its scheme
//! (OAuth2, API key, bearer, basic, SMTP login), the OAuth2 client, and which
//! outbound hosts receive the credential. A [`ConnectedAccount`] is one end
//! user's connection to that app: `initiated` (OAuth2 consent pending) →
//! `active` → `expired` (the provider rejected it or a refresh failed) or
//! `revoked`. Its credentials are write-only: sealed with [`SecretBox`]
//! before they reach the store, opened only to build the [`Grant`] of one
//! execution, never serialized into a response.
//!
//! [`Accounts::resolve`] picks the account of an execution in the order
//! SPEC.md gives, never guessing; [`Accounts::grant`] turns it into
//! credentials, refreshing an OAuth2 token that is about to expire. A token
//! the provider rejects mid-execution is refreshed through [`AccountToken`],
//! one refresh per account however many executions ask at once.

pub mod oauth;
mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use secrets::{KeySource, OpenError, SecretBox};

use crate::identities::{self, Identity};
use crate::runtime::{
    Credentials, Grant, HostRule, SmtpServer, SmtpTls, TokenError, TokenFuture, TokenSource,
};
use crate::store::{IndexEntry, Record, Records, StoreError};
use crate::tenancy::{new_id, now};

/// Refresh an OAuth2 token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long an OAuth2 consent may take.
const OAUTH_STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// The scheme of an auth config, with its non-secret settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SchemeConfig {
    /// OAuth2 authorization code with PKCE; the access token goes out as a bearer token.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// Client id.
        client_id: String,
        /// The provider's authorization endpoint.
        authorize_url: String,
        /// The provider's token endpoint.
        token_url: String,
        /// Scopes to ask for.
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// Header carrying the key, such as `x-api-key`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// Query parameter carrying the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
    },
    /// `Authorization: Bearer`.
    Bearer,
    /// HTTP basic authentication.
    Basic,
    /// A secret that the host signs outbound requests with (signed
    /// webhooks); it is never sent, and the plugin never sees it.
    SigningSecret,
    /// An SMTP server login; host and port may be set here for every account.
    Smtp {
        /// Default server host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Default server port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
}

impl SchemeConfig {
    /// The scheme's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::OAuth2 { .. } => "oauth2",
            Self::ApiKey { .. } => "api_key",
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::Smtp { .. } => "smtp",
            Self::SigningSecret => "signing_secret",
        }
    }
}

/// How an app authenticates, for one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthConfig {
    /// `ac_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The app (plugin name), such as `crm-sync`.
    pub app_name: String,
    /// A label.
    pub name: String,
    /// Scheme and settings.
    pub scheme: SchemeConfig,
    /// The OAuth2 client secret, sealed.
    pub client_secret: Option<String>,
    /// Outbound hosts that receive the credential (empty: every host the plugin may reach).
    pub hosts: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl Record for AuthConfig {
    const COLLECTION: &'static str = "auth_configs";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi("auth_configs_by_tenant", &self.tenant_id)]
    }
}

/// The state of a connected account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// OAuth2 consent pending.
    Initiated,
    /// Usable.
    Active,
    /// The provider rejected it, or a refresh failed: reconnect.
    Expired,
    /// Revoked by a client or an operator.
    Revoked,
}

/// One end user's connection to an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectedAccount {
    /// A UUID.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Its auth config.
    pub auth_config_id: String,
    /// The app (plugin name).
    pub app_name: String,
    /// The end user it belongs to (`default` when not given).
    pub entity_id: String,
    /// State.
    pub status: AccountStatus,
    /// Why it is not active, in the provider's words where there are some.
    pub status_reason: Option<String>,
    /// Non-secret metadata for the plugin (address, display name, base URL).
    pub metadata: serde_json::Value,
    /// The credentials, sealed.
    pub secret: Option<String>,
    /// When the OAuth2 access token expires (seconds since the epoch).
    pub token_expires_at: Option<u64>,
    /// Where to send the user after OAuth2 consent.
    pub redirect_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl Record for ConnectedAccount {
    const COLLECTION: &'static str = "accounts";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![
            IndexEntry::multi("accounts_by_tenant", &self.tenant_id),
            IndexEntry::multi(
                "accounts_by_app",
                format!("{}\0{}", self.tenant_id, self.app_name),
            ),
        ]
    }
}

/// A pending OAuth2 consent, keyed by its `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OAuthState {
    id: String,
    tenant_id: String,
    account_id: String,
    /// The PKCE verifier, sealed.
    verifier: String,
    created_at: u64,
}

impl Record for OAuthState {
    const COLLECTION: &'static str = "oauth_states";
    fn id(&self) -> &str {
        &self.id
    }
}

/// The credentials kept (sealed) in an account.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AccountSecret {
    Bearer {
        token: String,
    },
    ApiKey {
        key: String,
    },
    Basic {
        username: String,
        password: String,
    },
    Smtp {
        host: Option<String>,
        port: Option<u16>,
        tls: SmtpTls,
        username: Option<String>,
        password: Option<String>,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        access_token: String,
        refresh_token: Option<String>,
    },
    SigningSecret {
        secret: String,
    },
}

/// What the client sends as an account's credentials, per scheme.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenInput {
    token: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningSecretInput {
    secret: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyInput {
    api_key: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicInput {
    username: String,
    password: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpInput {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tls: SmtpTls,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuth2Input {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The request is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// No such object in the tenant.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// No account for the app.
    #[error("{0}")]
    Required(String),
    /// Several candidates.
    #[error("{message}")]
    Ambiguous {
        /// What is ambiguous.
        message: String,
        /// The candidate account ids.
        candidates: Vec<String>,
    },
    /// The account cannot be used.
    #[error("{0}")]
    Expired(String),
    /// The provider's token endpoint could not give a token now; the
    /// account is fine.
    #[error("{0}")]
    Unavailable(String),
    /// The object is in a state that forbids this.
    #[error("{0}")]
    Conflict(String),
    /// A credential does not decrypt.
    #[error(transparent)]
    Sealed(#[from] OpenError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = AccountError> = std::result::Result<T, E>;

/// A new auth config.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAuthConfig {
    /// The app (plugin name), such as `crm-sync`.
    pub app_name: String,
    /// A label; defaults to the app name.
    #[serde(default)]
    pub name: Option<String>,
    /// Scheme and its settings.
    pub scheme: SchemeConfig,
    /// OAuth2 client secret (write-only).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<SecretString>,
    /// Outbound hosts that receive the credential, such as `https://api.hubapi.com`.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// A new connected account. `Debug` never shows its credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccount {
    /// Its auth config.
    pub auth_config_id: String,
    /// The end user (default `default`).
    #[serde(default)]
    pub entity_id: Option<String>,
    /// Non-secret metadata (a JSON object).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Credentials for the auth config's scheme (write-only): `{"token"}`
    /// for bearer, `{"api_key"}`, `{"username","password"}` for basic,
    /// `{"host","port","tls","username","password"}` for SMTP, and for OAuth2
    /// either `{"access_token","refresh_token","expires_in"}` or nothing to
    /// start the consent flow.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Value>,
    /// Where to send the user after OAuth2 consent.
    #[serde(default)]
    pub redirect_url: Option<String>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("auth_config_id", &self.auth_config_id)
            .field("entity_id", &self.entity_id)
            .field("metadata", &self.metadata)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[REDACTED]"),
            )
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

/// What to resolve an execution's account from.
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    /// An explicit account.
    pub connected_account_id: Option<String>,
    /// The end user.
    pub entity_id: Option<String>,
    /// The action's identity: an identity (`id_…`, whose account for the
    /// action type's capability is used), else an account id or an entity id.
    pub identity_id: Option<String>,
}

/// Auth configs and connected accounts.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    records: Records,
    secrets: SecretBox,
    callback_url: String,
    token_timeout: Duration,
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// For the refresh's lock across replicas.
    replicas: crate::replica::Replicas,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn parse_input<T: serde::de::DeserializeOwned>(
    scheme: &str,
    value: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|err| AccountError::Invalid(format!("credentials for a {scheme} account: {err}")))
}

impl Accounts {
    /// The service; `callback_url` is this server's OAuth2 callback.
    /// `token_timeout` bounds each exchange with a provider's token
    /// endpoint, connection included.
    pub fn new(
        records: Records,
        secrets: SecretBox,
        callback_url: String,
        token_timeout: Duration,
        replicas: crate::replica::Replicas,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                records,
                secrets,
                callback_url,
                token_timeout,
                refreshing: Mutex::new(HashMap::new()),
                replicas,
            }),
        }
    }

    /// Writes made so far reach the disk.
    pub async fn durable(&self) -> Result<()> {
        Ok(self.inner.records.durable().await?)
    }

    /// Creates an auth config.
    pub fn create_auth_config(&self, tenant_id: &str, input: NewAuthConfig) -> Result<AuthConfig> {
        if input.app_name.trim().is_empty() {
            return Err(AccountError::Invalid("appName must not be empty".into()));
        }
        for rule in &input.hosts {
            rule.parse::<HostRule>()
                .map_err(|err| AccountError::Invalid(format!("hosts: {err}")))?;
        }
        match &input.scheme {
            SchemeConfig::OAuth2 {
                authorize_url,
                token_url,
                ..
            } => {
                for (name, value) in [("authorize_url", authorize_url), ("token_url", token_url)] {
                    let url = url::Url::parse(value).map_err(|err| {
                        AccountError::Invalid(format!("scheme.{name} {value:?}: {err}"))
                    })?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(AccountError::Invalid(format!(
                            "scheme.{name} {value:?} must be an http or https url"
                        )));
                    }
                }
                if input.client_secret.is_none() {
                    return Err(AccountError::Invalid(
                        "an oauth2 auth config needs clientSecret".into(),
                    ));
                }
            }
            SchemeConfig::ApiKey { header, query } => {
                let credentials = Credentials::ApiKey {
                    header: header.clone(),
                    query: query.clone(),
                    value: SecretString::from("x"),
                };
                credentials.check().map_err(AccountError::Invalid)?;
            }
            _ if input.client_secret.is_some() => {
                return Err(AccountError::Invalid(format!(
                    "clientSecret is only for oauth2 auth configs, not {}",
                    input.scheme.name()
                )));
            }
            _ => {}
        }
        let id = new_id("ac");
        let config = AuthConfig {
            client_secret: input.client_secret.as_ref().map(|secret| {
                self.inner
                    .secrets
                    .seal(&id, secret.expose_secret().as_bytes())
            }),
            id,
            tenant_id: tenant_id.to_owned(),
            name: input.name.unwrap_or_else(|| input.app_name.clone()),
            app_name: input.app_name,
            scheme: input.scheme,
            hosts: input.hosts,
            created_at: now(),
        };
        self.inner.records.insert(&config)?;
        Ok(config)
    }

    /// An auth config of the tenant.
    pub fn auth_config(&self, tenant_id: &str, id: &str) -> Result<AuthConfig> {
        self.inner
            .records
            .get::<AuthConfig>(id)?
            .filter(|c| c.tenant_id == tenant_id)
            .ok_or_else(|| AccountError::NotFound {
                kind: "auth config",
                id: id.to_owned(),
            })
    }

    /// The tenant's auth configs.
    pub fn auth_configs(&self, tenant_id: &str) -> Result<Vec<AuthConfig>> {
        Ok(self
            .inner
            .records
            .list_by("auth_configs_by_tenant", tenant_id)?)
    }

    /// Deletes an auth config no account uses.
    pub fn delete_auth_config(&self, tenant_id: &str, id: &str) -> Result<()> {
        let config = self.auth_config(tenant_id, id)?;
        let users: Vec<String> = self
            .accounts(tenant_id)?
            .into_iter()
            .filter(|a| a.auth_config_id == config.id && a.status != AccountStatus::Revoked)
            .map(|a| a.id)
            .collect();
        if !users.is_empty() {
            return Err(AccountError::Conflict(format!(
                "auth config {id} is used by connected accounts {}; delete or revoke them first",
                users.join(", ")
            )));
        }
        self.inner.records.remove::<AuthConfig>(id)?;
        Ok(())
    }

    /// Creates a connected account. With OAuth2 and no tokens it starts the
    /// consent flow and returns the URL to send the user to.
    pub fn create_account(
        &self,
        tenant_id: &str,
        input: NewAccount,
    ) -> Result<(ConnectedAccount, Option<String>)> {
        let config = self.auth_config(tenant_id, &input.auth_config_id)?;
        let metadata = input.metadata.unwrap_or_else(|| serde_json::json!({}));
        if !metadata.is_object() {
            return Err(AccountError::Invalid(
                "metadata must be a JSON object".into(),
            ));
        }
        if let Some(url) = &input.redirect_url {
            url::Url::parse(url)
                .map_err(|err| AccountError::Invalid(format!("redirectUrl {url:?}: {err}")))?;
        }
        let entity_id = input.entity_id.unwrap_or_else(|| "default".to_owned());
        if entity_id.is_empty() {
            return Err(AccountError::Invalid("entityId must not be empty".into()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let scheme = config.scheme.name();
        let (secret, expires_at) = match (&config.scheme, input.credentials) {
            (SchemeConfig::OAuth2 { .. }, None) => (None, None),
            (_, None) => {
                return Err(AccountError::Invalid(format!(
                    "credentials are required for a {scheme} account"
                )));
            }
            (SchemeConfig::Bearer, Some(value)) => {
                let TokenInput { token } = parse_input(scheme, value)?;
                (Some(AccountSecret::Bearer { token }), None)
            }
            (SchemeConfig::ApiKey { .. }, Some(value)) => {
                let ApiKeyInput { api_key } = parse_input(scheme, value)?;
                (Some(AccountSecret::ApiKey { key: api_key }), None)
            }
            (SchemeConfig::SigningSecret, Some(value)) => {
                let SigningSecretInput { secret } = parse_input(scheme, value)?;
                Credentials::SigningSecret {
                    secret: SecretString::from(secret.clone()),
                }
                .check()
                .map_err(AccountError::Invalid)?;
                (Some(AccountSecret::SigningSecret { secret }), None)
            }
            (SchemeConfig::Basic, Some(value)) => {
                let BasicInput { username, password } = parse_input(scheme, value)?;
                (Some(AccountSecret::Basic { username, password }), None)
            }
            (SchemeConfig::Smtp { host, .. }, Some(value)) => {
                let input: SmtpInput = parse_input(scheme, value)?;
                if input.host.is_none() && host.is_none() {
                    return Err(AccountError::Invalid(
                        "credentials.host is required: the auth config names no smtp host".into(),
                    ));
                }
                if input.username.is_some() != input.password.is_some() {
                    return Err(AccountError::Invalid(
                        "smtp credentials take both username and password, or neither".into(),
                    ));
                }
                (
                    Some(AccountSecret::Smtp {
                        host: input.host,
                        port: input.port,
                        tls: input.tls,
                        username: input.username,
                        password: input.password,
                    }),
                    None,
                )
            }
            (SchemeConfig::OAuth2 { .. }, Some(value)) => {
                let input: OAuth2Input = parse_input(scheme, value)?;
                (
                    Some(AccountSecret::OAuth2 {
                        access_token: input.access_token,
                        refresh_token: input.refresh_token,
                    }),
                    input.expires_in.map(|secs| unix_now() + secs),
                )
            }
        };
        let stamp = now();
        let mut account = ConnectedAccount {
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            auth_config_id: config.id.clone(),
            app_name: config.app_name.clone(),
            entity_id,
            status: if secret.is_some() {
                AccountStatus::Active
            } else {
                AccountStatus::Initiated
            },
            status_reason: None,
            metadata,
            secret: None,
            token_expires_at: expires_at,
            redirect_url: input.redirect_url,
            created_at: stamp.clone(),
            updated_at: stamp,
        };
        account.secret = secret.map(|s| self.seal_secret(&id, &s));

        let redirect = if account.status == AccountStatus::Initiated {
            let settings = self.oauth_client(&config)?;
            let (url, state, verifier) =
                oauth::authorize_url(&settings).map_err(AccountError::Invalid)?;
            let pending = OAuthState {
                verifier: self.inner.secrets.seal(&state, verifier.as_bytes()),
                id: state,
                tenant_id: tenant_id.to_owned(),
                account_id: id.clone(),
                created_at: unix_now(),
            };
            self.inner.records.insert(&account)?;
            self.inner.records.insert(&pending)?;
            Some(url)
        } else {
            self.inner.records.insert(&account)?;
            None
        };
        Ok((account, redirect))
    }

    fn seal_secret(&self, account_id: &str, secret: &AccountSecret) -> String {
        let json = serde_json::to_vec(secret).unwrap_or_default();
        self.inner.secrets.seal(account_id, &json)
    }

    fn open_secret(&self, account: &ConnectedAccount) -> Result<Option<AccountSecret>> {
        let Some(sealed) = &account.secret else {
            return Ok(None);
        };
        let bytes = self.inner.secrets.open(&account.id, sealed)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| AccountError::Sealed(OpenError))
    }

    fn client_secret(&self, config: &AuthConfig) -> Result<String> {
        let sealed = config.client_secret.as_deref().ok_or_else(|| {
            AccountError::Invalid(format!("auth config {} has no client secret", config.id))
        })?;
        let bytes = self.inner.secrets.open(&config.id, sealed)?;
        String::from_utf8(bytes).map_err(|_| AccountError::Sealed(OpenError))
    }

    /// The OAuth2 client of an auth config.
    fn oauth_client(&self, config: &AuthConfig) -> Result<oauth::ClientSettings> {
        let SchemeConfig::OAuth2 {
            client_id,
            authorize_url,
            token_url,
            scopes,
        } = &config.scheme
        else {
            return Err(AccountError::Invalid(format!(
                "auth config {} is {}, not oauth2",
                config.id,
                config.scheme.name()
            )));
        };
        Ok(oauth::ClientSettings {
            client_id: client_id.clone(),
            client_secret: self.client_secret(config)?,
            authorize_url: authorize_url.clone(),
            token_url: token_url.clone(),
            redirect_url: self.inner.callback_url.clone(),
            scopes: scopes.clone(),
            timeout: self.inner.token_timeout,
        })
    }

    /// Completes an OAuth2 consent: exchanges the code, activates the account.
    /// Returns the account and where to send the user.
    pub async fn complete_oauth(
        &self,
        state: &str,
        outcome: std::result::Result<&str, String>,
    ) -> Result<ConnectedAccount> {
        let pending = self
            .inner
            .records
            .remove::<OAuthState>(state)?
            .ok_or_else(|| {
                AccountError::Invalid(
                    "unknown or already used oauth2 state; start the connection again".into(),
                )
            })?;
        if unix_now().saturating_sub(pending.created_at) > OAUTH_STATE_TTL.as_secs() {
            return Err(AccountError::Invalid(
                "the oauth2 consent took too long; start the connection again".into(),
            ));
        }
        let account = self.account(&pending.tenant_id, &pending.account_id)?;
        let code = match outcome {
            Ok(code) => code,
            Err(reason) => {
                self.set_status(&account.id, AccountStatus::Expired, Some(reason.clone()))?;
                return Err(AccountError::Invalid(format!(
                    "the provider refused the connection: {reason}"
                )));
            }
        };
        let config = self.auth_config(&account.tenant_id, &account.auth_config_id)?;
        let verifier = String::from_utf8(self.inner.secrets.open(&pending.id, &pending.verifier)?)
            .map_err(|_| AccountError::Sealed(OpenError))?;
        let settings = self.oauth_client(&config)?;
        let tokens = match oauth::exchange_code(&settings, code, &verifier).await {
            Ok(tokens) => tokens,
            Err(reason) => {
                self.set_status(&account.id, AccountStatus::Expired, Some(reason.clone()))?;
                return Err(AccountError::Invalid(format!(
                    "the token exchange failed: {reason}"
                )));
            }
        };
        let sealed = self.seal_secret(
            &account.id,
            &AccountSecret::OAuth2 {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
            },
        );
        let expires = tokens.expires_in.map(|d| unix_now() + d.as_secs());
        let account = self
            .inner
            .records
            .update::<ConnectedAccount>(&account.id, |a| {
                a.secret = Some(sealed.clone());
                a.token_expires_at = expires;
                a.status = AccountStatus::Active;
                a.status_reason = None;
                a.updated_at = now();
                Ok(())
            })?;
        Ok(account)
    }

    /// An account of the tenant.
    pub fn account(&self, tenant_id: &str, id: &str) -> Result<ConnectedAccount> {
        self.inner
            .records
            .get::<ConnectedAccount>(id)?
            .filter(|a| a.tenant_id == tenant_id)
            .ok_or_else(|| AccountError::NotFound {
                kind: "connected account",
                id: id.to_owned(),
            })
    }

    /// The tenant's accounts.
    pub fn accounts(&self, tenant_id: &str) -> Result<Vec<ConnectedAccount>> {
        Ok(self
            .inner
            .records
            .list_by("accounts_by_tenant", tenant_id)?)
    }

    /// Revokes an account: its credentials are erased and it can no longer run.
    pub fn revoke_account(&self, tenant_id: &str, id: &str) -> Result<ConnectedAccount> {
        self.account(tenant_id, id)?;
        Ok(self.inner.records.update::<ConnectedAccount>(id, |a| {
            a.status = AccountStatus::Revoked;
            a.status_reason = Some("revoked through the api".into());
            a.secret = None;
            a.token_expires_at = None;
            a.updated_at = now();
            Ok(())
        })?)
    }

    /// Deletes an account and its credentials.
    pub fn delete_account(&self, tenant_id: &str, id: &str) -> Result<()> {
        self.account(tenant_id, id)?;
        self.inner.records.remove::<ConnectedAccount>(id)?;
        Ok(())
    }

    /// Marks an active account `expired`, noting why; an account already
    /// expired (say by a failed refresh) keeps its first reason.
    pub fn expire(&self, id: &str, reason: String) -> Result<ConnectedAccount> {
        Ok(self.inner.records.update::<ConnectedAccount>(id, |a| {
            if a.status == AccountStatus::Active {
                a.status = AccountStatus::Expired;
                a.status_reason = Some(reason.clone());
                a.updated_at = now();
            }
            Ok(())
        })?)
    }

    /// Moves an account to `status`, noting why.
    pub fn set_status(
        &self,
        id: &str,
        status: AccountStatus,
        reason: Option<String>,
    ) -> Result<ConnectedAccount> {
        Ok(self.inner.records.update::<ConnectedAccount>(id, |a| {
            a.status = status;
            a.status_reason = reason.clone();
            a.updated_at = now();
            Ok(())
        })?)
    }

    /// The account of an execution, in SPEC.md's order: `connectedAccountId`,
    /// then (`entityId`, app), then the action's `identity_id`, then the only
    /// active account of the app in the tenant. Never guesses.
    pub fn resolve(
        &self,
        tenant_id: &str,
        app: &str,
        action_type: &str,
        lookup: &Lookup,
    ) -> Result<ConnectedAccount> {
        let usable = |account: ConnectedAccount| -> Result<ConnectedAccount> {
            if account.app_name != app {
                return Err(AccountError::Invalid(format!(
                    "connected account {} belongs to app {:?}, not {app:?}",
                    account.id, account.app_name
                )));
            }
            match account.status {
                AccountStatus::Active => Ok(account),
                AccountStatus::Initiated => Err(AccountError::Expired(format!(
                    "connected account {} is still waiting for the user's consent; finish the connection first",
                    account.id
                ))),
                AccountStatus::Expired => Err(AccountError::Expired(format!(
                    "connected account {} has expired ({}); reconnect it",
                    account.id,
                    account
                        .status_reason
                        .as_deref()
                        .unwrap_or("no reason given")
                ))),
                AccountStatus::Revoked => Err(AccountError::Expired(format!(
                    "connected account {} was revoked; connect a new one",
                    account.id
                ))),
            }
        };
        if let Some(id) = &lookup.connected_account_id {
            return usable(self.account(tenant_id, id)?);
        }
        let of_app: Vec<ConnectedAccount> = self
            .inner
            .records
            .list_by("accounts_by_app", &format!("{tenant_id}\0{app}"))?;
        let pick = |candidates: Vec<ConnectedAccount>, what: String| -> Result<ConnectedAccount> {
            let active: Vec<&ConnectedAccount> = candidates
                .iter()
                .filter(|a| a.status == AccountStatus::Active)
                .collect();
            match active.len() {
                1 => Ok(active[0].clone()),
                0 => match candidates.into_iter().next() {
                    Some(inactive) => usable(inactive),
                    None => Err(AccountError::Required(format!(
                        "no connected account of app {app:?} for {what}; connect one with POST /api/v1/connectedAccounts or pass connectedAccountId"
                    ))),
                },
                _ => Err(AccountError::Ambiguous {
                    message: format!(
                        "{} active connected accounts of app {app:?} match {what}; pass connectedAccountId to choose",
                        active.len()
                    ),
                    candidates: active.iter().map(|a| a.id.clone()).collect(),
                }),
            }
        };
        if let Some(entity) = &lookup.entity_id {
            let candidates = of_app
                .into_iter()
                .filter(|a| &a.entity_id == entity)
                .collect();
            return pick(candidates, format!("entity {entity:?}"));
        }
        if let Some(identity) = &lookup.identity_id {
            if let Some(found) = identities::find(&self.inner.records, tenant_id, identity)? {
                let Some(account) = found.account_for(action_type, app) else {
                    return Err(AccountError::Required(missing_capability(
                        &found,
                        action_type,
                        app,
                    )));
                };
                return usable(self.account(tenant_id, account).map_err(|_| {
                    AccountError::Required(format!(
                        "identity {} names connected account {account}, which no longer exists; set another with PATCH /v1/identities/{}",
                        found.id, found.id
                    ))
                })?);
            }
            if let Ok(account) = self.account(tenant_id, identity) {
                return usable(account);
            }
            let candidates = of_app
                .into_iter()
                .filter(|a| &a.entity_id == identity)
                .collect();
            return pick(candidates, format!("identity {identity:?}"));
        }
        pick(of_app, "the tenant".into())
    }

    /// The credentials of one execution as `account`, refreshing an OAuth2
    /// token that is about to expire.
    pub async fn grant(&self, account: &ConnectedAccount) -> Result<Grant> {
        let config = self.auth_config(&account.tenant_id, &account.auth_config_id)?;
        let hosts = config
            .hosts
            .iter()
            .filter_map(|rule| rule.parse::<HostRule>().ok())
            .collect();
        let secret = self.open_secret(account)?.ok_or_else(|| {
            AccountError::Expired(format!(
                "connected account {} has no credentials",
                account.id
            ))
        })?;
        let credentials = match (secret, &config.scheme) {
            (AccountSecret::Bearer { token }, _) => Credentials::Bearer {
                token: token.into(),
            },
            (AccountSecret::ApiKey { key }, SchemeConfig::ApiKey { header, query }) => {
                Credentials::ApiKey {
                    header: header.clone(),
                    query: query.clone(),
                    value: key.into(),
                }
            }
            (AccountSecret::SigningSecret { secret }, _) => Credentials::SigningSecret {
                secret: secret.into(),
            },
            (AccountSecret::Basic { username, password }, _) => Credentials::Basic {
                username,
                password: password.into(),
            },
            (
                AccountSecret::Smtp {
                    host,
                    port,
                    tls,
                    username,
                    password,
                },
                SchemeConfig::Smtp {
                    host: default_host,
                    port: default_port,
                },
            ) => Credentials::Smtp(SmtpServer {
                host: host.or_else(|| default_host.clone()).unwrap_or_default(),
                port: port.or(*default_port).unwrap_or(587),
                tls,
                username,
                password: password.map(SecretString::from),
            }),
            (AccountSecret::OAuth2 { access_token, .. }, _) => {
                let near_expiry = account
                    .token_expires_at
                    .is_some_and(|at| at <= unix_now() + REFRESH_MARGIN.as_secs());
                let token = if near_expiry {
                    match self.refresh(&account.id, None).await {
                        Ok(token) => token,
                        Err(TokenError::Rejected(reason)) => {
                            return Err(AccountError::Expired(reason));
                        }
                        // An outage of the token endpoint: the token it was
                        // to replace still works until it expires.
                        Err(TokenError::Unavailable(reason))
                            if account.token_expires_at.is_some_and(|at| at > unix_now()) =>
                        {
                            tracing::warn!(account = %account.id, %reason, "token refresh failed; using the current token until it expires");
                            SecretString::from(access_token)
                        }
                        Err(TokenError::Unavailable(reason)) => {
                            return Err(AccountError::Unavailable(format!(
                                "the access token of connected account {} has expired and could not be refreshed: {reason}; the account stays active, try again later",
                                account.id
                            )));
                        }
                    }
                } else {
                    SecretString::from(access_token)
                };
                Credentials::OAuth2(Arc::new(AccountToken {
                    accounts: self.clone(),
                    account_id: account.id.clone(),
                    token: Mutex::new(token),
                }))
            }
            (_, scheme) => {
                return Err(AccountError::Invalid(format!(
                    "connected account {} does not fit its {} auth config",
                    account.id,
                    scheme.name()
                )));
            }
        };
        Ok(Grant {
            credentials,
            hosts,
            binding: None,
        })
    }

    /// Refreshes an account's OAuth2 token. With `rejected`, only if that is
    /// still the current token (another execution may have refreshed it);
    /// without, only if it is about to expire. One refresh per account at a
    /// time. The provider's refusal of the grant marks the account
    /// `expired` with its reason; an outage of the token endpoint leaves
    /// the account as it is.
    async fn refresh(
        &self,
        account_id: &str,
        rejected: Option<&str>,
    ) -> std::result::Result<SecretString, TokenError> {
        let unavailable = |err: &dyn std::fmt::Display| TokenError::Unavailable(err.to_string());
        let lock = {
            let mut locks = self
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            locks.entry(account_id.to_owned()).or_default().clone()
        };
        let _turn = lock.lock().await;
        // One refresh per account across replicas too: the others wait,
        // then find the token it stored. The hold outlasts the exchange
        // (`token_timeout`), and lapses if this replica dies holding it.
        let _held = self
            .inner
            .replicas
            .lock(
                &format!("refresh/{account_id}"),
                self.inner.token_timeout * 2,
                self.inner.token_timeout * 2,
            )
            .await
            .map_err(|err| unavailable(&err))?
            .ok_or_else(|| {
                TokenError::Unavailable(format!(
                    "another replica is refreshing the token of connected account {account_id}; try again"
                ))
            })?;
        let account = self
            .inner
            .records
            .get::<ConnectedAccount>(account_id)
            .map_err(|err| unavailable(&err))?
            .ok_or_else(|| {
                TokenError::Rejected(format!("connected account {account_id} no longer exists"))
            })?;
        if account.status != AccountStatus::Active {
            return Err(TokenError::Rejected(format!(
                "connected account {account_id} is {:?}: {}",
                account.status,
                account.status_reason.as_deref().unwrap_or("reconnect it")
            )));
        }
        let Some(AccountSecret::OAuth2 {
            access_token,
            refresh_token,
        }) = self
            .open_secret(&account)
            .map_err(|err| unavailable(&err))?
        else {
            return Err(TokenError::Rejected(format!(
                "connected account {account_id} has no oauth2 token"
            )));
        };
        let still_current = match rejected {
            Some(rejected) => rejected == access_token,
            None => account
                .token_expires_at
                .is_some_and(|at| at <= unix_now() + REFRESH_MARGIN.as_secs()),
        };
        if !still_current {
            return Ok(SecretString::from(access_token));
        }
        let fail = |reason: String| {
            let _ = self.set_status(account_id, AccountStatus::Expired, Some(reason.clone()));
            TokenError::Rejected(reason)
        };
        let Some(refresh_token) = refresh_token else {
            return Err(fail(
                "the access token was rejected or expired and there is no refresh token".into(),
            ));
        };
        let config = self
            .auth_config(&account.tenant_id, &account.auth_config_id)
            .map_err(|err| unavailable(&err))?;
        let settings = self
            .oauth_client(&config)
            .map_err(|err| TokenError::Rejected(err.to_string()))?;
        let refreshed = oauth::refresh(&settings, &refresh_token).await;
        crate::metrics::oauth2_refresh(match &refreshed {
            Ok(_) => "ok",
            Err(TokenError::Rejected(_)) => "rejected",
            Err(TokenError::Unavailable(_)) => "unavailable",
        });
        let tokens = match refreshed {
            Ok(tokens) => tokens,
            Err(TokenError::Rejected(reason)) => {
                tracing::warn!(account = account_id, %reason, "the provider refused the token refresh; account expired");
                return Err(fail(format!("token refresh failed: {reason}")));
            }
            Err(TokenError::Unavailable(reason)) => {
                tracing::warn!(account = account_id, %reason, "token refresh failed; the account stays active");
                return Err(TokenError::Unavailable(format!(
                    "token refresh failed: {reason}"
                )));
            }
        };
        let fresh = tokens.access_token.clone();
        let sealed = self.seal_secret(
            account_id,
            &AccountSecret::OAuth2 {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token.or(Some(refresh_token)),
            },
        );
        let expires = tokens.expires_in.map(|d| unix_now() + d.as_secs());
        self.inner
            .records
            .update::<ConnectedAccount>(account_id, |a| {
                a.secret = Some(sealed.clone());
                a.token_expires_at = expires;
                a.updated_at = now();
                Ok(())
            })
            .map_err(|err| unavailable(&err))?;
        self.inner
            .records
            .durable()
            .await
            .map_err(|err| unavailable(&err))?;
        tracing::info!(account = account_id, "refreshed an oauth2 token");
        Ok(SecretString::from(fresh))
    }
}

/// The OAuth2 token of one execution, refreshed through [`Accounts`].
pub struct AccountToken {
    accounts: Accounts,
    account_id: String,
    token: Mutex<SecretString>,
}

impl TokenSource for AccountToken {
    fn current(&self) -> TokenFuture<'_> {
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Box::pin(async move { Ok(token) })
    }

    fn refresh<'a>(&'a self, rejected: &'a SecretString) -> TokenFuture<'a> {
        Box::pin(async move {
            let fresh = self
                .accounts
                .refresh(&self.account_id, Some(rejected.expose_secret()))
                .await?;
            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
            Ok(fresh)
        })
    }
}

/// Credentials a request supplies for one execution (`authConfig`), never stored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineAuth {
    /// The credentials: `{"type": "bearer", "token"}`, `{"type": "api_key",
    /// "header" | "query", "value"}`, `{"type": "basic", "username",
    /// "password"}` or `{"type": "smtp", "host", "port", "tls", "username", "password"}`.
    #[schema(value_type = Object)]
    pub credentials: Credentials,
    /// Outbound hosts that receive them (default: every host the plugin may reach).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Non-secret metadata the plugin reads as its account's (such as `base_url`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl InlineAuth {
    /// The grant of the one execution, and the metadata to show the plugin.
    pub fn into_grant(self) -> Result<(Grant, Option<serde_json::Value>)> {
        if let Some(metadata) = &self.metadata
            && !metadata.is_object()
        {
            return Err(AccountError::Invalid(
                "authConfig.metadata must be a JSON object".into(),
            ));
        }
        self.credentials
            .check()
            .map_err(|err| AccountError::Invalid(format!("authConfig: {err}")))?;
        let hosts = self
            .hosts
            .iter()
            .map(|rule| {
                rule.parse::<HostRule>()
                    .map_err(|err| AccountError::Invalid(format!("authConfig.hosts: {err}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((
            Grant {
                credentials: self.credentials,
                hosts,
                binding: None,
            },
            self.metadata,
        ))
    }
}

/// Why an identity cannot perform `action_type`: it has no account for the
/// type's capability.
pub fn missing_capability(identity: &Identity, action_type: &str, app: &str) -> String {
    let capability = Identity::capability_name(action_type, app);
    format!(
        "identity {} ({}) has no {capability} account, which {action_type} needs; add one with PATCH /v1/identities/{} {{\"accounts\": {{\"{capability}\": \"ca_…\"}}}}",
        identity.id, identity.name, identity.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_account_never_prints_its_credentials() {
        let input: NewAccount = serde_json::from_value(serde_json::json!({
            "authConfigId": "ac_1",
            "credentials": { "token": "tok-secret-1" }
        }))
        .expect("parses");
        let printed = format!("{input:?}");
        assert!(
            printed.contains("ac_1") && !printed.contains("tok-secret-1"),
            "{printed}"
        );
    }
}
