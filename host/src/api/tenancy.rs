//! `GET /v1/auth/status`, API keys, tenants: the tenancy surface.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiPath, AppState, Authorized, need};
use crate::tenancy::{ApiKey, KeyPolicy, Scope};

/// Who the key belongs to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "success", "user_id": "usr_1a2b3c", "email": "admin@localhost", "tenant_id": "ten_4d5e6f", "key_id": "key_7a8b9c", "scopes": ["actions:read", "actions:execute"]}))]
pub struct AuthStatus {
    /// Always `success`.
    status: &'static str,
    /// The key's user.
    user_id: String,
    /// The user's e-mail.
    email: String,
    /// The user's tenant.
    tenant_id: String,
    /// The key's id.
    key_id: String,
    /// What the key may do.
    #[schema(value_type = Vec<String>)]
    scopes: Vec<Scope>,
    /// What its tool calls may do: `execute` or `propose_only`.
    policy: KeyPolicy,
}

/// The key that authenticates the request: its user, tenant and scopes.
#[utoipa::path(
    get,
    path = "/v1/auth/status",
    tag = "identity",
    responses((status = 200, body = AuthStatus), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn auth_status(caller: Authorized<need::AnyScope>) -> axum::Json<AuthStatus> {
    let principal = caller.principal;
    axum::Json(AuthStatus {
        status: "success",
        user_id: principal.user.id,
        email: principal.user.email,
        tenant_id: principal.key.tenant_id,
        key_id: principal.key.id,
        scopes: principal.key.scopes,
        policy: principal.key.policy,
    })
}

/// A key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    id: String,
    name: String,
    user_id: String,
    tenant_id: String,
    #[schema(value_type = Vec<String>)]
    scopes: Vec<Scope>,
    /// The first characters of the key.
    prefix: String,
    /// What its tool calls may do: `execute` (a type that needs no approval
    /// runs, given `actions:execute`) or `propose_only` (every call waits in
    /// `pending_approval`).
    policy: KeyPolicy,
    created_at: String,
    revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            user_id: key.user_id,
            tenant_id: key.tenant_id,
            scopes: key.scopes,
            prefix: key.prefix,
            policy: key.policy,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A key to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "outreach-agent", "scopes": ["actions:read", "actions:execute"], "user_email": "agent@example.com"}))]
pub struct NewApiKey {
    /// A label.
    #[serde(default)]
    name: Option<String>,
    /// Scopes; each must be one the calling key holds.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// The user the key acts for, in the caller's tenant (created if new);
    /// default: the caller's user.
    #[serde(default)]
    #[schema(pattern = "^[^@ \t\r\n]+@[^@ \t\r\n]+$", max_length = 320)]
    user_email: Option<String>,
    /// `execute` (the default) or `propose_only`: every tool call of a
    /// `propose_only` key becomes an action in `pending_approval`, and the
    /// key can neither execute nor approve through the REST API. A `propose_only` key can
    /// mint only `propose_only` keys.
    #[serde(default)]
    policy: Option<KeyPolicy>,
}

/// A minted key: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct MintedKeyView {
    status: &'static str,
    api_key: ApiKeyView,
    /// The key itself. It is not stored and cannot be shown again.
    key: String,
}

/// Mints a scoped key.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "identity",
    request_body = NewApiKey,
    responses((status = 201, body = MintedKeyView), (status = 403, body = super::ErrorBody), (status = 422, body = super::ErrorBody)),
    security(("bearer" = ["keys:write"]), ("api_key" = ["keys:write"]))
)]
pub async fn api_keys_create(
    caller: Authorized<need::KeysWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewApiKey>,
) -> Result<(StatusCode, axum::Json<MintedKeyView>), ApiError> {
    if let Some(scope) = input.scopes.iter().find(|s| !caller.holds(**s)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("cannot grant the scope {scope}: the calling key does not hold it"),
        ));
    }
    if input.scopes.is_empty() {
        return Err(ApiError::invalid("scopes must name at least one scope"));
    }
    let user = match &input.user_email {
        Some(email) => {
            if !plausible_email(email) {
                return Err(ApiError::invalid(format!(
                    "user_email {email:?} is not an e-mail address"
                )));
            }
            state.tenancy.ensure_user(caller.tenant(), email)?
        }
        None => caller.principal.user.clone(),
    };
    let policy = match (caller.principal.key.policy, input.policy) {
        (KeyPolicy::ProposeOnly, Some(KeyPolicy::Execute)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "cannot mint an `execute` key: the calling key is `propose_only`",
            ));
        }
        (KeyPolicy::ProposeOnly, _) => KeyPolicy::ProposeOnly,
        (KeyPolicy::Execute, asked) => asked.unwrap_or_default(),
    };
    let minted = state.tenancy.mint_key_with(
        &user,
        input.name.as_deref().unwrap_or("api key"),
        input.scopes,
        policy,
    )?;
    state.accounts.durable().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(MintedKeyView {
            status: "success",
            api_key: minted.record.into(),
            key: minted.secret,
        }),
    ))
}

/// The keys of the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    status: &'static str,
    api_keys: Vec<ApiKeyView>,
}

/// The tenant's keys (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "identity",
    responses((status = 200, body = ApiKeyList)),
    security(("bearer" = ["keys:read"]), ("api_key" = ["keys:read"]))
)]
pub async fn api_keys_list(
    caller: Authorized<need::KeysRead>,
    State(state): State<AppState>,
) -> Result<axum::Json<ApiKeyList>, ApiError> {
    let keys = state.tenancy.keys(caller.tenant())?;
    Ok(axum::Json(ApiKeyList {
        status: "success",
        api_keys: keys.into_iter().map(Into::into).collect(),
    }))
}

/// A revoked key.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedKey {
    status: &'static str,
    api_key: ApiKeyView,
}

/// Revokes a key: it stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "identity",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses((status = 200, body = RevokedKey), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["keys:write"]), ("api_key" = ["keys:write"]))
)]
pub async fn api_keys_revoke(
    caller: Authorized<need::KeysWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<RevokedKey>, ApiError> {
    if state.tenancy.key(caller.tenant(), &id)?.is_none() {
        return Err(ApiError::not_found("api key", &id));
    }
    let key = state.tenancy.revoke_key(&id)?;
    state.accounts.durable().await?;
    Ok(axum::Json(RevokedKey {
        status: "success",
        api_key: key.into(),
    }))
}

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "acme", "admin_email": "ops@acme.example"}))]
pub struct NewTenant {
    /// Its name.
    #[schema(pattern = r"\S")]
    name: String,
    /// Its first user, who gets an admin key.
    #[schema(pattern = "^[^@ \t\r\n]+@[^@ \t\r\n]+$", max_length = 320)]
    admin_email: String,
}

/// A created tenant and its admin key (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTenant {
    status: &'static str,
    tenant_id: String,
    name: String,
    user_id: String,
    api_key: ApiKeyView,
    /// The admin key of the new tenant; not stored, not shown again.
    key: String,
}

/// Creates a tenant with an admin user and key (operator only).
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "identity",
    request_body = NewTenant,
    responses((status = 201, body = CreatedTenant)),
    security(("bearer" = ["tenants:write"]), ("api_key" = ["tenants:write"]))
)]
pub async fn tenants_create(
    _caller: Authorized<need::TenantsWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewTenant>,
) -> Result<(StatusCode, axum::Json<CreatedTenant>), ApiError> {
    if input.name.trim().is_empty() {
        return Err(ApiError::invalid("name must not be empty"));
    }
    if !plausible_email(&input.admin_email) {
        return Err(ApiError::invalid(format!(
            "admin_email {:?} is not an e-mail address",
            input.admin_email
        )));
    }
    let (tenant, user, key) = state.tenancy.create_tenant_with_admin(
        &input.name,
        &input.admin_email,
        Scope::tenant_admin(),
    )?;
    state.accounts.durable().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedTenant {
            status: "success",
            tenant_id: tenant.id,
            name: tenant.name,
            user_id: user.id,
            api_key: key.record.into(),
            key: key.secret,
        }),
    ))
}

/// What the document promises of a user's address: one `@` between two
/// non-empty parts without spaces, tabs or line breaks, at most 320 bytes.
fn plausible_email(email: &str) -> bool {
    email.len() <= 320
        && !email.contains([' ', '\t', '\r', '\n'])
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
}
