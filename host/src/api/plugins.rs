//! The plugin registry over HTTP: list, upload, enable, disable and remove
//! plugin versions, and list the action types they serve.
//!
//! Plugins are server-wide: every tenant's actions run on the same loaded
//! versions, so changing them needs the `plugins:write` scope.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiPath, ApiQuery, AppState, Authorized, need};
use crate::registry::{ActionTypeEntry, PluginInfo, RegistryError};

/// The plugin versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// Every loaded version (oldest first within a plugin), then every file
    /// of the plugins folder that is loading or failed to load.
    items: Vec<PluginInfo>,
    /// Whether the start-up load has finished.
    ready: bool,
}

/// One plugin's versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersions {
    /// The plugin's name.
    name: String,
    /// Its loaded versions, oldest first.
    versions: Vec<PluginInfo>,
}

/// The action types.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionTypeList {
    /// Every action type an active plugin version provides, by name.
    items: Vec<ActionTypeEntry>,
}

/// A WebAssembly component's bytes: the body of an upload.
pub struct ComponentBytes;

impl utoipa::PartialSchema for ComponentBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for ComponentBytes {}

/// Query of an upload.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The SHA-256 (hex) the component must have; the upload is refused
    /// otherwise. Also accepted as the `x-expected-sha256` header.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    sha256: Option<String>,
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        match &err {
            RegistryError::Load(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_plugin",
                format!("the component was not installed: {err}"),
            ),
            RegistryError::Clash(_) | RegistryError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            RegistryError::Checksum { .. } => ApiError::invalid(err.to_string()),
            RegistryError::NotAllowed { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", err.to_string())
            }
            RegistryError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            RegistryError::Loading => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                err.to_string(),
            ),
            RegistryError::Io(_) => {
                tracing::error!(error = %err, "plugin registry storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the plugin could not be stored; nothing was changed; try again",
                )
            }
        }
    }
}

/// Every plugin version and its state.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses((status = 200, body = PluginList)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn plugins_list(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
) -> axum::Json<PluginList> {
    let registry = state.pipeline.registry();
    axum::Json(PluginList {
        items: registry.list(),
        ready: registry.is_ready(),
    })
}

/// Installs a plugin: the request body is the component (`.wasm`), at most
/// the configured component size. It is compiled and checked off the
/// request path of other requests, stored in the data dir, and serves its
/// action types as soon as this answers (if it is their newest version).
/// The body is read as the component whatever its content type
/// (`application/wasm` is as good as `application/octet-stream`).
#[utoipa::path(
    post,
    path = "/v1/plugins",
    tag = "plugins",
    params(UploadQuery),
    request_body(content = ComponentBytes, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = PluginInfo, description = "installed"),
        (status = 200, body = PluginInfo, description = "the same component was already installed"),
        (status = 403, body = super::ErrorBody, description = "the key lacks plugins:write, or the operator's allowed_plugin_sha256 does not list the component"),
        (status = 409, body = super::ErrorBody, description = "another plugin provides one of its action types, or this version exists with other contents"),
        (status = 413, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody, description = "not a loadable component; the reason says why")
    ),
    security(("bearer" = ["plugins:write"]), ("api_key" = ["plugins:write"]))
)]
pub async fn plugins_upload(
    _caller: Authorized<need::PluginsWrite>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<PluginInfo>), ApiError> {
    let limit = state.settings.max_plugin_bytes;
    let bytes = read_capped(body, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "the body is empty; send the component's bytes (curl --data-binary @plugin.wasm)",
        ));
    }
    let expected = query.sha256.or_else(|| {
        headers
            .get("x-expected-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if let Some(expected) = &expected
        && (expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::invalid("sha256 must be 64 hexadecimal digits"));
    }
    let (info, created) = state
        .pipeline
        .registry()
        .install(bytes.to_vec().into(), expected.as_deref())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(info)))
}

/// Reads a body of at most `limit` bytes. A larger one is read on (and
/// dropped) up to four times the limit before the 413, so that the client
/// gets the answer rather than a reset connection while it is still sending.
async fn read_capped(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use http_body_util::BodyExt as _;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a component may be at most {limit} bytes (setting max_plugin_bytes)"),
        )
    };
    let mut body = body;
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|err| ApiError::invalid(format!("reading the body failed: {err}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit.saturating_mul(4) {
            return Err(too_large());
        }
        if seen <= limit {
            bytes.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// One plugin's loaded versions.
#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name, such as `send-email`")),
    responses((status = 200, body = PluginVersions), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn plugins_get(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<PluginVersions>, ApiError> {
    let versions = state.pipeline.registry().info_of_name(&name);
    if versions.is_empty() {
        return Err(ApiError::not_found("plugin", &name));
    }
    Ok(axum::Json(PluginVersions { name, versions }))
}

/// Unloads an uploaded version and deletes it from the data dir. Executions
/// running on it finish. A version from the plugins folder is unloaded by
/// deleting its file (this answers 409 and says which).
#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}/{version}",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = String, Path, description = "The version, such as `1.2.0`")
    ),
    responses((status = 200, body = PluginInfo, description = "removed; its last state"), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)),
    security(("bearer" = ["plugins:write"]), ("api_key" = ["plugins:write"]))
)]
pub async fn plugins_delete(
    _caller: Authorized<need::PluginsWrite>,
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<axum::Json<PluginInfo>, ApiError> {
    Ok(axum::Json(
        state.pipeline.registry().remove(&name, &version).await?,
    ))
}

/// Enables a version: it serves its action types again (if it is their
/// newest active version, or when pinned).
#[utoipa::path(
    post,
    path = "/v1/plugins/{name}/{version}/enable",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = String, Path, description = "The version")
    ),
    responses((status = 200, body = PluginInfo), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["plugins:write"]), ("api_key" = ["plugins:write"]))
)]
pub async fn plugins_enable(
    _caller: Authorized<need::PluginsWrite>,
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<axum::Json<PluginInfo>, ApiError> {
    Ok(axum::Json(
        state
            .pipeline
            .registry()
            .set_enabled(&name, &version, true)
            .await?,
    ))
}

/// Disables a version: it stays loaded but serves nothing, and requests fall
/// back to the newest other active version. Survives a restart.
#[utoipa::path(
    post,
    path = "/v1/plugins/{name}/{version}/disable",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = String, Path, description = "The version")
    ),
    responses((status = 200, body = PluginInfo), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["plugins:write"]), ("api_key" = ["plugins:write"]))
)]
pub async fn plugins_disable(
    _caller: Authorized<need::PluginsWrite>,
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<axum::Json<PluginInfo>, ApiError> {
    Ok(axum::Json(
        state
            .pipeline
            .registry()
            .set_enabled(&name, &version, false)
            .await?,
    ))
}

/// Every action type, the version serving it, and the versions a request
/// may pin.
#[utoipa::path(
    get,
    path = "/v1/action-types",
    tag = "plugins",
    responses((status = 200, body = ActionTypeList)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn action_types_list(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
) -> axum::Json<ActionTypeList> {
    axum::Json(ActionTypeList {
        items: state.pipeline.registry().action_type_entries(),
    })
}
