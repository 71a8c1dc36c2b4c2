//! Auth configs, connected accounts, and the OAuth2 callback.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, need};
use crate::accounts::{
    AccountStatus, AuthConfig, ConnectedAccount, NewAccount, NewAuthConfig, SchemeConfig,
};

/// An auth config, without its client secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthConfigView {
    id: String,
    app_name: String,
    name: String,
    scheme: SchemeConfig,
    /// Whether a client secret is stored (it is never returned).
    has_client_secret: bool,
    hosts: Vec<String>,
    created_at: String,
}

impl From<AuthConfig> for AuthConfigView {
    fn from(config: AuthConfig) -> Self {
        Self {
            id: config.id,
            app_name: config.app_name,
            name: config.name,
            scheme: config.scheme,
            has_client_secret: config.client_secret.is_some(),
            hosts: config.hosts,
            created_at: config.created_at,
        }
    }
}

/// A list of auth configs.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthConfigList {
    items: Vec<AuthConfigView>,
}

/// Creates an auth config for an app.
#[utoipa::path(
    post,
    path = "/api/v1/auth-configs",
    tag = "accounts",
    request_body(content = NewAuthConfig, example = json!({"appName": "crm-sync", "scheme": {"type": "oauth2", "client_id": "hubspot-client", "authorize_url": "https://app.hubspot.com/oauth/authorize", "token_url": "https://api.hubapi.com/oauth/v1/token", "scopes": ["crm.objects.contacts.write"]}, "clientSecret": "s3cr3t", "hosts": ["https://api.hubapi.com"]})),
    responses((status = 201, body = AuthConfigView), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["accounts:write"]), ("api_key" = ["accounts:write"]))
)]
pub async fn auth_configs_create(
    caller: Authorized<need::AccountsWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewAuthConfig>,
) -> Result<(StatusCode, axum::Json<AuthConfigView>), ApiError> {
    let config = state.accounts.create_auth_config(caller.tenant(), input)?;
    state.accounts.durable().await?;
    Ok((StatusCode::CREATED, axum::Json(config.into())))
}

/// The tenant's auth configs.
#[utoipa::path(
    get,
    path = "/api/v1/auth-configs",
    tag = "accounts",
    responses((status = 200, body = AuthConfigList)),
    security(("bearer" = ["accounts:read"]), ("api_key" = ["accounts:read"]))
)]
pub async fn auth_configs_list(
    caller: Authorized<need::AccountsRead>,
    State(state): State<AppState>,
) -> Result<axum::Json<AuthConfigList>, ApiError> {
    let items = state.accounts.auth_configs(caller.tenant())?;
    Ok(axum::Json(AuthConfigList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// One auth config.
#[utoipa::path(
    get,
    path = "/api/v1/auth-configs/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "The auth config's id (`ac_…`)")),
    responses((status = 200, body = AuthConfigView), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["accounts:read"]), ("api_key" = ["accounts:read"]))
)]
pub async fn auth_configs_get(
    caller: Authorized<need::AccountsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<AuthConfigView>, ApiError> {
    Ok(axum::Json(
        state.accounts.auth_config(caller.tenant(), &id)?.into(),
    ))
}

/// Deletes an auth config that no account uses.
#[utoipa::path(
    delete,
    path = "/api/v1/auth-configs/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "The auth config's id (`ac_…`)")),
    responses((status = 204), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["accounts:write"]), ("api_key" = ["accounts:write"]))
)]
pub async fn auth_configs_delete(
    caller: Authorized<need::AccountsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.accounts.delete_auth_config(caller.tenant(), &id)?;
    state.accounts.durable().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A connected account: never its credentials.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedAccountView {
    /// A UUID.
    id: String,
    entity_id: String,
    app_name: String,
    auth_config_id: String,
    status: AccountStatus,
    /// Why it is not active.
    status_reason: Option<String>,
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    /// Whether credentials are stored (they are never returned).
    has_credentials: bool,
    /// When the OAuth2 access token expires (seconds since the epoch).
    token_expires_at: Option<u64>,
    created_at: String,
    updated_at: String,
    /// The app, lower case (Composio's field).
    app_unique_id: String,
    /// The auth config (Composio's field).
    integration_id: String,
    /// The end user (Composio's field; its client sends it back as `entityId`).
    client_unique_user_id: String,
    /// The account's non-secret `base_url`, if it has one (Composio's
    /// field; never credentials).
    #[schema(value_type = Object)]
    connection_params: serde_json::Value,
}

impl From<ConnectedAccount> for ConnectedAccountView {
    fn from(account: ConnectedAccount) -> Self {
        let connection_params = match account.metadata.get("base_url") {
            Some(url) => serde_json::json!({ "base_url": url }),
            None => serde_json::json!({}),
        };
        Self {
            app_unique_id: account.app_name.to_ascii_lowercase(),
            integration_id: account.auth_config_id.clone(),
            client_unique_user_id: account.entity_id.clone(),
            connection_params,
            id: account.id,
            entity_id: account.entity_id,
            app_name: account.app_name,
            auth_config_id: account.auth_config_id,
            status: account.status,
            status_reason: account.status_reason,
            metadata: account.metadata,
            has_credentials: account.secret.is_some(),
            token_expires_at: account.token_expires_at,
            created_at: account.created_at,
            updated_at: account.updated_at,
        }
    }
}

/// A new connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionCreated {
    /// The account's id.
    connected_account_id: String,
    /// `initiated` (send the user to `redirectUrl`) or `active`.
    connection_status: AccountStatus,
    /// For OAuth2: where the user gives consent.
    redirect_url: Option<String>,
    account: ConnectedAccountView,
}

/// Connects an account: stores credentials, or starts the OAuth2 flow.
#[utoipa::path(
    post,
    path = "/api/v1/connectedAccounts",
    tag = "accounts",
    request_body(content = NewAccount, example = json!({"authConfigId": "ac_0123456789abcdef0123", "entityId": "user-42", "metadata": {"from": "Ada <ada@example.com>"}, "credentials": {"token": "provider-token"}})),
    responses((status = 201, body = ConnectionCreated), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["accounts:write"]), ("api_key" = ["accounts:write"]))
)]
pub async fn connected_accounts_create(
    caller: Authorized<need::AccountsWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewAccount>,
) -> Result<(StatusCode, axum::Json<ConnectionCreated>), ApiError> {
    let (account, redirect_url) = state.accounts.create_account(caller.tenant(), input)?;
    state.accounts.durable().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ConnectionCreated {
            connected_account_id: account.id.clone(),
            connection_status: account.status,
            redirect_url,
            account: account.into(),
        }),
    ))
}

/// Filters of the account list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountFilter {
    /// Only this app's accounts.
    app_name: Option<String>,
    /// Only this end user's accounts.
    entity_id: Option<String>,
    /// Only accounts in this state.
    status: Option<AccountStatus>,
    /// Only these end users' accounts, comma-separated (Composio's
    /// `entityId` filter).
    #[serde(rename = "user_uuid")]
    #[param(rename = "user_uuid")]
    user_uuid: Option<String>,
    /// Only these apps' accounts, comma-separated, in any case (Composio's).
    app_names: Option<String>,
    /// Only active accounts (Composio's).
    show_active_only: Option<bool>,
    /// Accepted (Composio's client sends it); every account is listed.
    #[expect(
        dead_code,
        reason = "accepted from Composio's client; the list is not paged"
    )]
    page_size: Option<i64>,
    /// Accepted (Composio's); every account is on page 1.
    #[expect(
        dead_code,
        reason = "accepted from Composio's client; the list is not paged"
    )]
    page: Option<i64>,
}

/// A list of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectedAccountList {
    items: Vec<ConnectedAccountView>,
}

/// The tenant's connected accounts.
#[utoipa::path(
    get,
    path = "/api/v1/connectedAccounts",
    tag = "accounts",
    params(AccountFilter),
    responses((status = 200, body = ConnectedAccountList)),
    security(("bearer" = ["accounts:read"]), ("api_key" = ["accounts:read"]))
)]
pub async fn connected_accounts_list(
    caller: Authorized<need::AccountsRead>,
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<AccountFilter>,
) -> Result<axum::Json<ConnectedAccountList>, ApiError> {
    let items = state
        .accounts
        .accounts(caller.tenant())?
        .into_iter()
        .filter(|a| {
            filter
                .app_name
                .as_ref()
                .is_none_or(|app| &a.app_name == app)
        })
        .filter(|a| filter.entity_id.as_ref().is_none_or(|e| &a.entity_id == e))
        .filter(|a| filter.status.is_none_or(|s| a.status == s))
        .filter(|a| {
            filter
                .user_uuid
                .as_ref()
                .is_none_or(|list| list.split(',').any(|e| e.trim() == a.entity_id))
        })
        .filter(|a| {
            filter.app_names.as_ref().is_none_or(|list| {
                list.split(',')
                    .any(|app| app.trim().eq_ignore_ascii_case(&a.app_name))
            })
        })
        .filter(|a| filter.show_active_only != Some(true) || a.status == AccountStatus::Active)
        .map(Into::into)
        .collect();
    Ok(axum::Json(ConnectedAccountList { items }))
}

/// One connected account.
#[utoipa::path(
    get,
    path = "/api/v1/connectedAccounts/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "The account's UUID")),
    responses((status = 200, body = ConnectedAccountView), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["accounts:read"]), ("api_key" = ["accounts:read"]))
)]
pub async fn connected_accounts_get(
    caller: Authorized<need::AccountsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConnectedAccountView>, ApiError> {
    Ok(axum::Json(
        state.accounts.account(caller.tenant(), &id)?.into(),
    ))
}

/// Deletes a connected account and its credentials.
#[utoipa::path(
    delete,
    path = "/api/v1/connectedAccounts/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "The account's UUID")),
    responses((status = 204), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["accounts:write"]), ("api_key" = ["accounts:write"]))
)]
pub async fn connected_accounts_delete(
    caller: Authorized<need::AccountsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.accounts.delete_account(caller.tenant(), &id)?;
    state.accounts.durable().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a connected account: its credentials are erased, its status
/// becomes `revoked`, and executions through it are refused.
#[utoipa::path(
    post,
    path = "/api/v1/connectedAccounts/{id}/revoke",
    tag = "accounts",
    params(("id" = String, Path, description = "The account's UUID")),
    responses((status = 200, body = ConnectedAccountView), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["accounts:write"]), ("api_key" = ["accounts:write"]))
)]
pub async fn connected_accounts_revoke(
    caller: Authorized<need::AccountsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConnectedAccountView>, ApiError> {
    let account = state.accounts.revoke_account(caller.tenant(), &id)?;
    state.accounts.durable().await?;
    Ok(axum::Json(account.into()))
}

/// What the provider sends back to the callback.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    #[param(min_length = 1)]
    code: Option<String>,
    /// The state the flow started with.
    #[param(min_length = 1)]
    state: Option<String>,
    /// The provider's refusal.
    #[param(min_length = 1)]
    error: Option<String>,
    /// Its explanation.
    error_description: Option<String>,
}

/// The completed connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackDone {
    status: &'static str,
    connected_account_id: String,
    connection_status: AccountStatus,
}

/// OAuth2 callback: the provider redirects the user here; the `state`
/// authenticates the request. Redirects to the account's `redirectUrl` when
/// one was given.
#[utoipa::path(
    get,
    path = "/api/v1/auth/callback",
    tag = "accounts",
    params(CallbackQuery),
    responses((status = 200, body = CallbackDone), (status = 303), (status = 422, body = super::ErrorBody)),
    security(())
)]
pub async fn oauth_callback(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let Some(flow) = query.state.as_deref() else {
        return Err(ApiError::invalid(
            "the callback needs the `state` the flow started with",
        ));
    };
    let outcome = match (&query.code, &query.error) {
        (_, Some(error)) => Err(match &query.error_description {
            Some(description) => format!("{error}: {description}"),
            None => error.clone(),
        }),
        (Some(code), None) => Ok(code.as_str()),
        (None, None) => return Err(ApiError::invalid("the callback needs `code` or `error`")),
    };
    let account = state.accounts.complete_oauth(flow, outcome).await;
    state.accounts.durable().await?;
    let account = account?;
    if let Some(target) = &account.redirect_url
        && let Ok(mut url) = url::Url::parse(target)
    {
        url.query_pairs_mut()
            .append_pair("connectedAccountId", &account.id)
            .append_pair("status", "active");
        return Ok(Redirect::to(url.as_str()).into_response());
    }
    Ok(axum::Json(CallbackDone {
        status: "success",
        connected_account_id: account.id,
        connection_status: account.status,
    })
    .into_response())
}
