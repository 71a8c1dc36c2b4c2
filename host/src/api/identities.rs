//! Identities (`/v1/identities…`): who actions are performed as.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiPath, AppState, Authorized, need};
use crate::identities::{Identity, IdentityChange, IdentityError};

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::NotFound(id) => ApiError::not_found("identity", &id),
            IdentityError::Invalid { message, fields } => {
                ApiError::invalid(message).with_fields(fields)
            }
            IdentityError::Store(err) => err.into(),
        }
    }
}

/// An identity as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"_id": "id_0193a1b2c3d4e5f6a7b8", "name": "Ada Lovelace", "email": "ada@example.com", "accounts": {"email": "ca_0193a1b2c3d4e5f6a7b8"}, "created_at": "2026-12-01T14:03:00.000Z", "updated_at": "2026-12-01T14:03:00.000Z"}))]
pub struct IdentityView {
    /// `id_…`: the `identity_id` of actions and agents.
    #[serde(rename = "_id")]
    id: String,
    /// Display name.
    name: String,
    /// The address its emails come from.
    email: Option<String>,
    /// The connected account for each capability (`email`, `linkedin`,
    /// `crm_sync`, `notes`, `slack`, `webhook`, or a plugin's app name).
    accounts: BTreeMap<String, String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
}

impl From<Identity> for IdentityView {
    fn from(identity: Identity) -> Self {
        Self {
            id: identity.id,
            name: identity.name,
            email: identity.email,
            accounts: identity.accounts,
            created_at: identity.created_at,
            updated_at: identity.updated_at,
        }
    }
}

/// The answer carrying one identity.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityAnswer {
    /// `success`.
    status: &'static str,
    /// The identity.
    identity: IdentityView,
}

fn answer(identity: Identity) -> axum::Json<IdentityAnswer> {
    axum::Json(IdentityAnswer {
        status: "success",
        identity: identity.into(),
    })
}

/// An identity's fields; in an update each one sent is changed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "email": "ada@example.com", "accounts": {"email": "ca_0193a1b2c3d4e5f6a7b8", "linkedin": "ca_0193a1b2c3d4e5f6a7b9"}}))]
pub struct IdentityBody {
    /// Display name (1 to 200 characters); required to create.
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// The address its emails come from; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = "email", max_length = 254)]
    email: Option<Option<String>>,
    /// Connected account ids by capability; in an update a `null` removes one.
    #[schema(value_type = Option<Object>)]
    accounts: Option<serde_json::Map<String, Value>>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl From<IdentityBody> for IdentityChange {
    fn from(body: IdentityBody) -> Self {
        Self {
            name: body.name,
            email: body.email,
            accounts: body.accounts,
        }
    }
}

/// Creates an identity: a name, an address, and the account to use for
/// each capability.
#[utoipa::path(
    post,
    path = "/v1/identities",
    tag = "identities",
    request_body = IdentityBody,
    responses((status = 201, body = IdentityAnswer)),
    security(("bearer" = ["identities:write"]), ("api_key" = ["identities:write"]))
)]
pub async fn identities_create(
    caller: Authorized<need::IdentitiesWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<IdentityBody>,
) -> Result<(StatusCode, axum::Json<IdentityAnswer>), ApiError> {
    let identity = state
        .identities
        .create(caller.tenant(), input.into())
        .await?;
    Ok((StatusCode::CREATED, answer(identity)))
}

/// The tenant's identities.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityList {
    /// `success`.
    status: &'static str,
    /// Oldest first.
    identities: Vec<IdentityView>,
}

/// Lists the tenant's identities.
#[utoipa::path(
    get,
    path = "/v1/identities",
    tag = "identities",
    responses((status = 200, body = IdentityList)),
    security(("bearer" = ["identities:read"]), ("api_key" = ["identities:read"]))
)]
pub async fn identities_list(
    caller: Authorized<need::IdentitiesRead>,
    State(state): State<AppState>,
) -> Result<axum::Json<IdentityList>, ApiError> {
    Ok(axum::Json(IdentityList {
        status: "success",
        identities: state
            .identities
            .list(caller.tenant())?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// One identity.
#[utoipa::path(
    get,
    path = "/v1/identities/{id}",
    tag = "identities",
    params(("id" = String, Path, description = "The identity id")),
    responses((status = 200, body = IdentityAnswer)),
    security(("bearer" = ["identities:read"]), ("api_key" = ["identities:read"]))
)]
pub async fn identities_get(
    caller: Authorized<need::IdentitiesRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<IdentityAnswer>, ApiError> {
    Ok(answer(state.identities.get(caller.tenant(), &id)?))
}

/// Changes an identity: each field sent; accounts are merged (`null`
/// removes one).
#[utoipa::path(
    patch,
    path = "/v1/identities/{id}",
    tag = "identities",
    params(("id" = String, Path, description = "The identity id")),
    request_body = IdentityBody,
    responses((status = 200, body = IdentityAnswer)),
    security(("bearer" = ["identities:write"]), ("api_key" = ["identities:write"]))
)]
pub async fn identities_update(
    caller: Authorized<need::IdentitiesWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<IdentityBody>,
) -> Result<axum::Json<IdentityAnswer>, ApiError> {
    let identity = state
        .identities
        .update(caller.tenant(), &id, input.into())
        .await?;
    Ok(answer(identity))
}

/// Removes an identity. Actions that name it then fail to find their
/// account, with a message that says so.
#[utoipa::path(
    delete,
    path = "/v1/identities/{id}",
    tag = "identities",
    params(("id" = String, Path, description = "The identity id")),
    responses((status = 200, body = IdentityAnswer)),
    security(("bearer" = ["identities:write"]), ("api_key" = ["identities:write"]))
)]
pub async fn identities_delete(
    caller: Authorized<need::IdentitiesWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<IdentityAnswer>, ApiError> {
    Ok(answer(state.identities.delete(caller.tenant(), &id).await?))
}
