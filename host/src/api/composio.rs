//! What Composio's own client (PyPI `composio-core`) needs beyond the
//! execute API, so that it works against actionhost unmodified with only
//! `COMPOSIO_BASE_URL=http://HOST/api` and `COMPOSIO_API_KEY` changed
//! (see docs/composio.md):
//!
//! - the key check, `GET /api/v1/client/auth/client_info`;
//! - one app, `GET /api/v1/apps/{app}`, and the apps in Composio's shape;
//! - the action list, `GET /api/v2/actions?apps=`, named by Composio's
//!   upper-case slugs, and an empty trigger list;
//! - action names in any case (`CRM_SYNC` is `crm_sync`), versions as
//!   Composio writes them (`latest:base`, `1_0`), and `authConfig` in
//!   Composio's shape (`parameters`, `base_url`, `body`).
//!
//! Nothing here changes a name of the core: each route translates to it.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::compat::ActionView;
use super::{ApiError, ApiPath, ApiQuery, AppState, Authorized, need};
use crate::runtime::{AuthScheme, Plugin};

/// The action type `name` names, in any case: the exact name if a plugin
/// provides it, else the one equal to it ignoring case; else `name`
/// unchanged (its lookup then says it is unknown).
pub(super) fn canonical_action(state: &AppState, name: &str) -> String {
    let types = state.pipeline.registry().action_types();
    if types.iter().any(|t| t == name) {
        return name.to_owned();
    }
    types
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| name.to_owned())
}

/// A version as Composio's client sends it, as actionhost names it:
/// `latest` and `latest:base` (the client's default) are the newest active
/// version (`None`); `1_0` or `v1.0` is the newest active `1.0.x`; an exact
/// version stays itself. What matches nothing is passed on as given, so
/// that the refusal lists the active versions.
pub(super) fn composio_version(
    state: &AppState,
    action: &str,
    version: Option<&str>,
) -> Option<String> {
    let version = version?;
    if version == "latest" || version == "latest:base" {
        return None;
    }
    let dotted = version.trim_start_matches('v').replace('_', ".");
    let active = state
        .pipeline
        .registry()
        .action_type_entries()
        .into_iter()
        .find(|entry| entry.name == action)
        .map(|entry| entry.versions)
        .unwrap_or_default();
    if active.contains(&dotted) {
        return Some(dotted);
    }
    let prefix = format!("{dotted}.");
    active
        .into_iter()
        .find(|v| dotted.split('.').count() == 2 && v.starts_with(&prefix))
        .or_else(|| Some(version.to_owned()))
}

/// Rewrites an `authConfig` in Composio's shape (`{"base_url", "parameters":
/// [{"in", "name", "value"}], "body"}`) into actionhost's (`{"credentials",
/// "metadata"}`), in place; actionhost's own shape is left as it is.
/// One parameter, in a header or the query: `Authorization: Bearer …` is a
/// bearer token, any other an API key under that name. `base_url` becomes
/// the metadata the plugin reads as its account's.
pub(super) fn composio_auth_config(body: &mut serde_json::Value) -> Result<(), ApiError> {
    let Some(config) = body.get_mut("authConfig") else {
        return Ok(());
    };
    let Some(object) = config.as_object() else {
        return Ok(());
    };
    if !object.contains_key("parameters") {
        return Ok(());
    }
    let invalid = |path: &str, message: &str| {
        ApiError::invalid(format!("authConfig{path}: {message}")).with_fields(vec![
            crate::runtime::FieldError::new(&format!("/authConfig{path}"), message),
        ])
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "parameters" | "base_url" | "body"))
    {
        return Err(invalid(
            &format!("/{key}"),
            "unknown field; Composio's authConfig has parameters, base_url and body",
        ));
    }
    match object.get("body") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) if map.is_empty() => {}
        Some(_) => {
            return Err(invalid(
                "/body",
                "must be {} here: actionhost's plugins build their own request bodies, so credentials cannot be put in one",
            ));
        }
    }
    let parameters = match object.get("parameters") {
        Some(serde_json::Value::Array(list)) => list,
        _ => {
            return Err(invalid(
                "/parameters",
                "must be a list of {in, name, value}",
            ));
        }
    };
    let [parameter] = parameters.as_slice() else {
        return Err(invalid(
            "/parameters",
            &format!(
                "must hold exactly one credential (one header or query parameter), not {}",
                parameters.len()
            ),
        ));
    };
    let field = |name: &str| {
        parameter
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                invalid(
                    &format!("/parameters/0/{name}"),
                    "must be a non-empty string",
                )
            })
    };
    let (place, name, value) = (field("in")?, field("name")?, field("value")?);
    let credentials = match place {
        "header" if name.eq_ignore_ascii_case("authorization") => {
            match value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
            {
                Some(token) => serde_json::json!({ "type": "bearer", "token": token.trim() }),
                None => serde_json::json!({ "type": "api_key", "header": name, "value": value }),
            }
        }
        "header" => serde_json::json!({ "type": "api_key", "header": name, "value": value }),
        "query" => serde_json::json!({ "type": "api_key", "query": name, "value": value }),
        other => {
            return Err(invalid(
                "/parameters/0/in",
                &format!("{other:?} is not supported; put the credential in a header or the query"),
            ));
        }
    };
    let metadata = match object.get("base_url") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(url)) => Some(serde_json::json!({ "base_url": url })),
        Some(_) => return Err(invalid("/base_url", "must be a string")),
    };
    let mut converted = serde_json::json!({ "credentials": credentials });
    if let Some(metadata) = metadata {
        converted["metadata"] = metadata;
    }
    *config = converted;
    Ok(())
}

/// Whether every action type of the plugin runs without credentials: the
/// client then sends no account.
fn no_auth(plugin: &Plugin) -> bool {
    plugin
        .manifest()
        .action_types
        .iter()
        .all(|t| t.auth_schemes.is_empty() || t.auth_schemes.contains(&AuthScheme::None))
}

/// An app: a loaded plugin, in actionhost's shape and Composio's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// The app name (plugin name).
    name: String,
    /// Same as `name` (Composio's field; its client compares it, lower
    /// case, with `appUniqueId` and the actions' `appName`).
    key: String,
    /// Same as `name` (Composio's field).
    app_id: String,
    version: String,
    description: String,
    /// Its action types.
    actions: Vec<String>,
    /// Where it may send requests.
    outbound_hosts: Vec<String>,
    /// Always empty (Composio's field).
    categories: Vec<String>,
    /// The plugin's versions and limits of note (Composio's field).
    #[schema(value_type = Object)]
    meta: serde_json::Value,
    /// Whether its actions run without an account (Composio's field).
    #[serde(rename = "no_auth")]
    no_auth: bool,
    /// Always true: only active plugins are apps (Composio's field).
    enabled: bool,
}

impl AppView {
    pub(super) fn of(plugin: &Plugin) -> Self {
        let manifest = plugin.manifest();
        Self {
            name: manifest.name.clone(),
            key: manifest.name.clone(),
            app_id: manifest.name.clone(),
            version: manifest.version.clone(),
            description: manifest.description.clone(),
            actions: manifest
                .action_types
                .iter()
                .map(|t| t.name.clone())
                .collect(),
            outbound_hosts: manifest
                .outbound_hosts
                .iter()
                .map(ToString::to_string)
                .collect(),
            categories: Vec::new(),
            meta: serde_json::json!({ "version": manifest.version }),
            no_auth: no_auth(plugin),
            enabled: true,
        }
    }
}

/// One app, by its name in any case (Composio's client asks for `CRM-SYNC`
/// and `crm-sync`).
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}",
    tag = "execute",
    params(("app" = String, Path, description = "The app (plugin) name, in any case")),
    responses((status = 200, body = AppView), (status = 404, body = super::ErrorBody)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn apps_get(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
    ApiPath(app): ApiPath<String>,
) -> Result<axum::Json<AppView>, ApiError> {
    state
        .pipeline
        .registry()
        .plugins()
        .iter()
        .find(|p| p.manifest().name.eq_ignore_ascii_case(&app))
        .map(|plugin| axum::Json(AppView::of(plugin)))
        .ok_or_else(|| ApiError::not_found("app", &app))
}

/// Filters of the action list, as Composio's client sends them.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ComposioActionQuery {
    /// Only the actions of these apps, comma-separated, in any case.
    apps: Option<String>,
    /// Only these actions, comma-separated, in any case.
    actions: Option<String>,
    /// Only actions with one of these tags, comma-separated (actionhost's
    /// actions have none).
    tags: Option<String>,
    /// At most this many.
    limit: Option<usize>,
    /// Accepted and not used: Composio ranks by it with a model of its own.
    #[expect(dead_code, reason = "accepted from Composio's client, not used")]
    use_case: Option<String>,
    /// Accepted and not used (Composio's).
    #[expect(dead_code, reason = "accepted from Composio's client, not used")]
    filter_important_actions: Option<bool>,
    /// Accepted and not used (Composio's).
    #[expect(dead_code, reason = "accepted from Composio's client, not used")]
    show_all: Option<bool>,
}

/// A JSON Schema as Composio's client reads one: an object with `title`,
/// `type` and `properties` (each property with a `type`).
pub(super) fn composio_schema(
    schema: Option<&serde_json::Value>,
    title: &str,
) -> serde_json::Value {
    let mut schema = schema
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(object) = schema.as_object_mut() {
        object
            .entry("title")
            .or_insert_with(|| serde_json::Value::String(title.to_owned()));
        object
            .entry("type")
            .or_insert_with(|| serde_json::Value::String("object".into()));
        let properties = object
            .entry("properties")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(properties) = properties.as_object_mut() {
            for property in properties.values_mut() {
                // A property without one (an `anyOf` of a type and null,
                // say) gets the type of its first typed branch: Composio's
                // client reads every property's `type`.
                if let Some(property) = property.as_object_mut()
                    && !property.contains_key("type")
                    && let Some(kind) = ["anyOf", "oneOf"]
                        .iter()
                        .filter_map(|k| property.get(*k)?.as_array())
                        .flatten()
                        .filter_map(|branch| branch.get("type")?.as_str())
                        .find(|kind| *kind != "null")
                        .map(str::to_owned)
                {
                    property.insert("type".into(), serde_json::Value::String(kind));
                }
            }
        }
    }
    schema
}

/// The action list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComposioActionList {
    /// Each named by its upper-case slug.
    items: Vec<ActionView>,
}

/// The action types of the active plugins, in Composio's list shape.
#[utoipa::path(
    get,
    path = "/api/v2/actions",
    tag = "execute",
    params(ComposioActionQuery),
    responses((status = 200, body = ComposioActionList)),
    security(("bearer" = ["plugins:read"]), ("api_key" = ["plugins:read"]))
)]
pub async fn actions_list(
    _caller: Authorized<need::PluginsRead>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ComposioActionQuery>,
) -> Result<axum::Json<ComposioActionList>, ApiError> {
    let list = |value: &Option<String>| -> Option<Vec<String>> {
        value.as_ref().map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
    };
    let (apps, actions, tags) = (list(&query.apps), list(&query.actions), list(&query.tags));
    let items = state
        .pipeline
        .registry()
        .action_type_entries()
        .iter()
        .filter(|e| {
            apps.as_ref()
                .is_none_or(|a| a.contains(&e.plugin.to_ascii_lowercase()))
        })
        .filter(|e| {
            actions
                .as_ref()
                .is_none_or(|a| a.contains(&e.name.to_ascii_lowercase()))
        })
        // No action has a tag: a tag filter leaves none.
        .filter(|_| tags.as_ref().is_none_or(Vec::is_empty))
        .filter_map(|e| {
            let plugin = state.pipeline.registry().plugin_for(&e.name)?;
            ActionView::of(&plugin, &e.name, e.versions.clone())
        })
        .map(ActionView::with_upper_case_name)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(axum::Json(ComposioActionList { items }))
}

/// The triggers: none (actionhost runs actions, it does not watch apps).
#[utoipa::path(
    get,
    path = "/api/v1/triggers",
    tag = "execute",
    responses((status = 200, body = Vec<Object>, description = "Always empty")),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn triggers_list(
    _caller: Authorized<need::AnyScope>,
) -> axum::Json<Vec<serde_json::Value>> {
    axum::Json(Vec::new())
}

/// Who a key is, as Composio's client checks it before its first call.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// The key's tenant, as Composio's client.
    #[schema(value_type = Object)]
    client: serde_json::Value,
    /// The key (its id and scopes; never the key).
    #[schema(value_type = Object)]
    api_key: serde_json::Value,
}

/// The key check of Composio's client: 200 for a valid key, 401 for
/// another (which its client turns into `ApiKeyError`).
#[utoipa::path(
    get,
    path = "/api/v1/client/auth/client_info",
    tag = "execute",
    responses((status = 200, body = ClientInfo), (status = 401, body = super::ErrorBody)),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn client_info(caller: Authorized<need::AnyScope>) -> axum::Json<ClientInfo> {
    let key = &caller.principal.key;
    axum::Json(ClientInfo {
        client: serde_json::json!({ "id": caller.tenant() }),
        api_key: serde_json::json!({ "id": key.id, "scopes": key.scopes }),
    })
}
