//! The HTTP API: one router, one auth layer, one error type.
//!
//! **Architecture Invariant:** handlers never see a wasmtime or sled type;
//! they call [`Tenancy`], [`Accounts`] and [`Pipeline`].
//!
//! Every route is declared with `utoipa` and registered through
//! [`utoipa_axum::router::OpenApiRouter`], so `/openapi.json` is generated
//! from the very list of routes the server answers: an endpoint cannot exist
//! undocumented, and the black-box auth test walks that document. Each
//! operation's `security` names the scope it needs.
//!
//! Authentication: [`Authorized<S>`] reads `Authorization: Bearer KEY` or
//! `x-api-key: KEY` before any other extractor, so a request without a valid
//! key gets 401 and a key without the scope `S` gets 403 naming it, whatever
//! else is wrong with the request; an object of another tenant is a 404.

mod accounts;
mod actions;
mod agents;
mod compat;
mod composio;
pub mod console;
mod contacts;
mod events;
mod executions;
mod flowdash;
mod identities;
mod mcp;
mod openapi;
mod plugins;
mod tenancy;
mod tools;
mod unread;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::{AccountError, Accounts};
use crate::actions::{ActionError, Actions};
use crate::agents::Agents;
use crate::contacts::Contacts;
use crate::events::Events;
use crate::events::tracker::Tracker;
use crate::executions::{Pipeline, PipelineError};
use crate::identities::Identities;
use crate::runtime::FieldError;
use crate::store::StoreError;
use crate::tenancy::{Principal, Scope, Tenancy};

/// The largest offset (`skip`, `offset`) a listing takes: the document's
/// `int32` bound.
pub const MAX_OFFSET: usize = i32::MAX as usize;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Tenants, users, keys.
    pub tenancy: Tenancy,
    /// Auth configs and connected accounts.
    pub accounts: Accounts,
    /// The execution pipeline (and through it the plugins).
    pub pipeline: Pipeline,
    /// Stored actions and their scheduler.
    pub actions: Actions,
    /// Contacts, their notes and timelines.
    pub contacts: Contacts,
    /// Events.
    pub events: Events,
    /// The site tracker and its publishable keys.
    pub tracker: Tracker,
    /// Who actions are performed as.
    pub identities: Identities,
    /// Agents and their runs.
    pub agents: Agents,
    /// Language-model providers (Composio's `text`).
    pub models: crate::models::Models,
    /// Tool calls (MCP and `POST /api/v2/tools/execute`).
    pub tools: crate::tools::Tools,
    /// Settings the handlers need.
    pub settings: Arc<ApiSettings>,
    /// Console sign-in attempts, per client address.
    pub sign_ins: Arc<console::SignInLimiter>,
}

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest plugin upload, in bytes.
    pub max_plugin_bytes: usize,
    /// Where clients reach the server (`public_url`), for links and snippets.
    pub public_url: String,
    /// The Host headers `/mcp` answers (besides loopback ones and
    /// `public_url`'s).
    pub mcp_allowed_hosts: Vec<String>,
    /// How long a console session lasts.
    pub console_session_ttl: std::time::Duration,
    /// Cancelled when the server shuts down: ends `/mcp`'s open streams.
    pub shutdown: tokio_util::sync::CancellationToken,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "actionhost",
        description = "Self-hosted action execution: connected accounts, auth configs, and actions run by sandboxed WebAssembly plugins. Authenticate with `Authorization: Bearer KEY` or `x-api-key: KEY`; each operation's security requirement names the scope it needs."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

/// The routes and their OpenAPI document.
pub fn router(state: AppState) -> axum::Router {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenancy::auth_status))
        .routes(routes!(tenancy::api_keys_create, tenancy::api_keys_list))
        .routes(routes!(tenancy::api_keys_revoke))
        .routes(routes!(tenancy::tenants_create))
        .routes(routes!(
            accounts::auth_configs_create,
            accounts::auth_configs_list
        ))
        .routes(routes!(
            accounts::auth_configs_get,
            accounts::auth_configs_delete
        ))
        .routes(routes!(
            accounts::connected_accounts_create,
            accounts::connected_accounts_list
        ))
        .routes(routes!(
            accounts::connected_accounts_get,
            accounts::connected_accounts_delete
        ))
        .routes(routes!(accounts::connected_accounts_revoke))
        .routes(routes!(accounts::oauth_callback))
        .routes(routes!(compat::actions_execute))
        .routes(routes!(compat::actions_get))
        .routes(routes!(compat::apps_list))
        .routes(routes!(composio::apps_get))
        .routes(routes!(composio::actions_list))
        .routes(routes!(composio::triggers_list))
        .routes(routes!(composio::client_info))
        .routes(routes!(executions::executions_get))
        .routes(routes!(actions::actions_create, actions::actions_list))
        .routes(routes!(actions::actions_get))
        .routes(routes!(actions::actions_transitions))
        .routes(routes!(actions::actions_execute))
        .routes(routes!(actions::actions_cancel))
        .routes(routes!(actions::actions_approve))
        .routes(routes!(actions::actions_approve_bulk))
        .routes(routes!(actions::actions_resolve))
        .routes(routes!(actions::actions_process))
        .routes(routes!(flowdash::executions_create))
        .routes(routes!(flowdash::workflow_task_actions))
        .routes(routes!(flowdash::workflow_executions_create))
        .routes(routes!(flowdash::workflow_executions_get))
        .routes(routes!(plugins::plugins_list, plugins::plugins_upload))
        .routes(routes!(plugins::plugins_get))
        .routes(routes!(plugins::plugins_delete))
        .routes(routes!(plugins::plugins_enable))
        .routes(routes!(plugins::plugins_disable))
        .routes(routes!(plugins::action_types_list))
        .routes(routes!(contacts::contacts_create, contacts::contacts_list))
        .routes(routes!(
            contacts::contacts_get,
            contacts::contacts_update,
            contacts::contacts_delete
        ))
        .routes(routes!(contacts::contacts_batch))
        .routes(routes!(contacts::contacts_timeline))
        .routes(routes!(contacts::contacts_notes))
        .routes(routes!(events::events_create, events::events_list))
        .routes(routes!(events::track, events::track_preflight))
        .routes(routes!(events::tracker_script))
        .routes(routes!(
            events::publishable_keys_create,
            events::publishable_keys_list
        ))
        .routes(routes!(events::publishable_keys_revoke))
        .routes(routes!(
            identities::identities_create,
            identities::identities_list
        ))
        .routes(routes!(
            identities::identities_get,
            identities::identities_update,
            identities::identities_delete
        ))
        .routes(routes!(agents::agents_list, agents::agents_create))
        .routes(routes!(agents::agents_templates))
        .routes(routes!(
            agents::agents_get,
            agents::agents_update,
            agents::agents_delete
        ))
        .routes(routes!(agents::agents_trigger))
        .routes(routes!(agents::agents_runs))
        .routes(routes!(agents::agents_run_get))
        .routes(routes!(agents::agents_run_cancel))
        .routes(routes!(agents::agents_run_approve))
        .routes(routes!(agents::agents_action_approve))
        .routes(routes!(agents::agents_action_reject))
        .routes(routes!(tools::tools_list))
        .routes(routes!(tools::tools_execute))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .split_for_parts();
    openapi::complete(&mut openapi);
    let openapi = Arc::new(openapi);
    let max_body = state.settings.max_body_bytes;
    router
        .nest_service("/mcp", mcp::router(&state))
        .merge(console::router().with_state(state.clone()))
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let openapi = openapi.clone();
                async move { axum::Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /openapi.json for the list",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(unread::drain_unread_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_panic| {
            // The panic message may quote data; it is not echoed or logged here
            // (the panic hook already reported where it happened).
            ApiError::internal("a handler panicked").into_response()
        }))
        .with_state(state)
}

/// Liveness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: answers as soon as the server listens. No key needed.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)), security(()))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`; `loading` while the start-up load of plugins runs;
    /// `storage_failed` once a write could not be made durable (the server
    /// must be restarted, see `reason`).
    status: &'static str,
    /// Plugin versions loaded so far.
    plugins: usize,
    /// Files still loading.
    loading: usize,
    /// Files that failed to load (see `GET /v1/plugins`).
    failed: usize,
    /// With `storage_failed`: what failed and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Readiness: 200 once the plugins found at start-up are loaded (from the
/// compiled-code cache when it is warm), 503 before, and 503 for good once
/// the store has failed a write (a full disk). No key needed.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Readiness), (status = 503, body = Readiness)), security(()))]
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (StatusCode, axum::Json<Readiness>) {
    let registry = state.pipeline.registry();
    let (plugins, loading, failed) = registry.counts();
    let reason = state.tenancy.store_failure();
    let status = match (&reason, registry.is_ready()) {
        (Some(_), _) => "storage_failed",
        (None, true) => "ready",
        (None, false) => "loading",
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(Readiness {
            status,
            plugins,
            loading,
            failed,
            reason,
        }),
    )
}

/// The taxonomy's code named `code`, as the `'static` text errors carry
/// (`internal` for a code the taxonomy does not have).
pub fn static_code(code: &str) -> &'static str {
    const CODES: [&str; 19] = [
        "invalid_input",
        "unauthorized",
        "forbidden",
        "not_found",
        "conflict",
        "account_required",
        "account_ambiguous",
        "account_expired",
        "payload_too_large",
        "rate_limited",
        "unavailable",
        "transient",
        "permanent",
        "outcome_unknown",
        "plugin_fault",
        "internal",
        "awaiting_approval",
        "cancelled",
        "rejected",
    ];
    CODES.into_iter().find(|c| *c == code).unwrap_or("internal")
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Always `error`.
    status: &'static str,
    /// Always false (Composio's field).
    successful: bool,
    /// Composio's deprecated spelling of `successful`.
    successfull: bool,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    data: Option<()>,
    /// What was wrong and how to fix it.
    error: String,
    /// The taxonomy's code: `invalid_input`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `account_required`, `account_ambiguous`,
    /// `account_expired`, `payload_too_large`, `rate_limited`, `unavailable`,
    /// `internal`.
    error_code: &'static str,
    /// Whether the same request may succeed later.
    retryable: bool,
    /// For `invalid_input`: each failing field (`path` is a JSON Pointer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    errors: Vec<FieldError>,
    /// For `account_ambiguous`: the candidate account ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<String>,
    /// For a `conflict` over a unique value: the object that holds it.
    #[serde(rename = "existing_id", skip_serializing_if = "Option::is_none")]
    existing_id: Option<String>,
    /// For an execute with `text`: the input the language model derived.
    #[serde(rename = "derived_input", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    derived_input: Option<serde_json::Value>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retryable: bool,
    fields: Vec<FieldError>,
    candidates: Vec<String>,
    /// Seconds for a `Retry-After` header.
    retry_after_secs: Option<u32>,
    /// What some errors add: boxed, since an error travels in every
    /// handler's `Result` and these are rare.
    details: Option<Box<Details>>,
}

/// The rarer parts of an [`ApiError`].
#[derive(Debug, Default)]
struct Details {
    existing_id: Option<String>,
    derived_input: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with a status, a code and a message saying what to fix.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            fields: Vec::new(),
            candidates: Vec::new(),
            retry_after_secs: None,
            details: None,
        }
    }

    /// The same error, naming each failing field.
    pub fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.fields = fields;
        self
    }

    /// The same error, listing candidate account ids.
    pub fn with_candidates(mut self, candidates: Vec<String>) -> Self {
        self.candidates = candidates;
        self
    }

    /// The same error, naming the object that holds a unique value.
    pub fn with_existing(mut self, id: String) -> Self {
        self.details.get_or_insert_default().existing_id = Some(id);
        self
    }

    /// The same error, with the input a language model derived.
    pub fn with_derived_input(mut self, input: serde_json::Value) -> Self {
        self.details.get_or_insert_default().derived_input = Some(input);
        self
    }

    /// The same error, with `Retry-After: secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        self
    }

    /// 400 or 422: the request is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    /// 404 for an object the caller's tenant does not have.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} {id} not found"),
        )
    }

    /// 500 with a generic message; the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details under this request's x-request-id",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::info!(status = self.status.as_u16(), code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            status: "error",
            successful: false,
            successfull: false,
            data: None,
            error: self.message,
            error_code: self.code,
            retryable: self.retryable,
            errors: self.fields,
            candidates: self.candidates,
            existing_id: self.details.as_ref().and_then(|d| d.existing_id.clone()),
            derived_input: self.details.and_then(|d| d.derived_input),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate { index, value, .. } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{index} {value:?} already exists"),
            ),
            StoreError::NotFound { collection, id } => ApiError::not_found(collection, &id),
            StoreError::Rejected(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Storage(cause) if cause.contains("No space left") => {
                tracing::error!(%cause, "storage full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "unavailable",
                    "the server's storage is full: this request was not recorded, and nothing more is until an operator frees space and restarts the server (every write acknowledged before is on disk); retry then, with the same Idempotency-Key",
                )
            }
            StoreError::Storage(cause) => {
                tracing::error!(%cause, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable; the request was not completed; try again later (GET /readyz says whether the server must be restarted)",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(message) => ApiError::invalid(message),
            AccountError::NotFound { kind, id } => ApiError::not_found(kind, &id),
            AccountError::Required(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "account_required",
                message,
            ),
            AccountError::Ambiguous {
                message,
                candidates,
            } => ApiError {
                candidates,
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "account_ambiguous",
                    message,
                )
            },
            AccountError::Expired(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "account_expired", message)
            }
            AccountError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            AccountError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "transient", message)
            }
            AccountError::Sealed(err) => ApiError::internal(err),
            AccountError::Store(err) => err.into(),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(err: PipelineError) -> Self {
        match err {
            PipelineError::UnknownAction { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            PipelineError::Mismatch(message) => ApiError::invalid(message),
            PipelineError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            PipelineError::InvalidParams(fields) => ApiError {
                fields: fields.clone(),
                ..ApiError::invalid(PipelineError::InvalidParams(fields).to_string())
            },
            PipelineError::ValidateFault(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_fault",
                format!("the plugin failed while validating the params: {message}"),
            ),
            PipelineError::NotApproved { .. }
            | PipelineError::AwaitingApproval
            | PipelineError::ApprovalRequired(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            PipelineError::Busy(busy) => busy.into(),
            PipelineError::Account(err) => err.into(),
            PipelineError::Store(err) => err.into(),
        }
    }
}

impl From<crate::executions::Busy> for ApiError {
    fn from(busy: crate::executions::Busy) -> Self {
        ApiError {
            retry_after_secs: u32::try_from(crate::executions::BUSY_RETRY_AFTER_MS.div_ceil(1000))
                .ok(),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                busy.to_string(),
            )
        }
    }
}

impl From<ActionError> for ApiError {
    fn from(err: ActionError) -> Self {
        match err {
            ActionError::NotFound(id) => ApiError::not_found("action", &id),
            ActionError::Forbidden(forbidden) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", forbidden.to_string())
            }
            ActionError::Invalid { message, fields } => ApiError {
                fields,
                ..ApiError::invalid(message)
            },
            ActionError::KeyReused
            | ActionError::KeyInProgress
            | ActionError::KeyInterrupted(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            ActionError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            ActionError::LeaseLost(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            ActionError::Busy(busy) => busy.into(),
            ActionError::Store(err) => err.into(),
        }
    }
}

/// The `Idempotency-Key` header, if sent.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(Self(None)),
            Some(value) => value
                .to_str()
                .map(|key| Self(Some(key.to_owned())))
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_input",
                        "Idempotency-Key must be visible ASCII",
                    )
                }),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => ApiError::invalid(format!(
                "the body does not fit this endpoint: {}",
                std::error::Error::source(&err)
                    .map_or_else(|| err.body_text(), ToString::to_string)
            )),
            JsonRejection::JsonSyntaxError(err) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!(
                    "the body is not valid JSON: {}",
                    std::error::Error::source(&err)
                        .map_or_else(|| err.body_text(), ToString::to_string)
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_input",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than the server's limit (max_body_bytes)",
                )
            }
            other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid(format!(
            "the query string is invalid: {}",
            rejection.body_text()
        ))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("the path is invalid: {}", rejection.body_text()),
        )
    }
}

/// `axum::extract::Path` with errors in the API's shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A JSON object body, read into `T`, with errors in the API's shape: a
/// body that is not an object is refused whatever `T` is (serde would read
/// a struct from an array of its fields), and a field that does not fit is
/// named by its path.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_request(request, state).await?;
        if !value.is_object() {
            return Err(ApiError::invalid(
                "the body must be a JSON object; see /openapi.json for this endpoint's fields",
            ));
        }
        parse(value).map(ApiJson)
    }
}

/// Reads a JSON value into `T`, naming the path of a field that does not fit.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    body: serde_json::Value,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ApiError::invalid(format!("the body does not fit this endpoint: {inner}"))
        } else {
            ApiError::invalid(format!(
                "the body does not fit this endpoint: {path}: {inner}"
            ))
        }
    })
}

/// `axum::extract::Query` with errors in the API's shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The scope an endpoint needs, as a type: `Authorized<need::AccountsWrite>`.
pub trait RequiredScope {
    /// The key must hold one of these; empty for any valid key.
    const ANY_OF: &'static [Scope];
}

/// Marker types naming the scope each endpoint needs.
pub mod need {
    use super::{RequiredScope, Scope};

    macro_rules! scopes {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("Needs `", stringify!($name), "`.")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RequiredScope for $name {
                const ANY_OF: &'static [Scope] = &[Scope::$name];
            }
        )*};
    }

    scopes!(
        ActionsRead,
        ActionsWrite,
        ActionsApprove,
        ActionsExecute,
        AccountsRead,
        AccountsWrite,
        PluginsRead,
        PluginsWrite,
        KeysRead,
        KeysWrite,
        TenantsWrite,
        ContactsRead,
        ContactsWrite,
        EventsRead,
        EventsWrite,
        IdentitiesRead,
        IdentitiesWrite,
        AgentsRead,
        AgentsWrite,
        AgentsTrigger,
        AgentsApprove,
    );

    /// Any valid key.
    #[derive(Debug, Clone, Copy)]
    pub struct AnyScope;
    impl RequiredScope for AnyScope {
        const ANY_OF: &'static [Scope] = &[];
    }

    /// Needs `actions:execute` or `actions:write`: a tool call, which runs
    /// or proposes by the key's scopes and policy.
    #[derive(Debug, Clone, Copy)]
    pub struct ToolsCall;
    impl RequiredScope for ToolsCall {
        const ANY_OF: &'static [Scope] = &[Scope::ActionsExecute, Scope::ActionsWrite];
    }
}

/// The authenticated caller, holding the scope `S`. Extracted before
/// anything else a handler takes, so a missing key or scope is reported
/// before the body is even read.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    /// The key and its user.
    pub principal: Principal,
    scope: std::marker::PhantomData<S>,
}

impl<S> Authorized<S> {
    /// Whether the key holds `scope`.
    pub fn holds(&self, scope: Scope) -> bool {
        self.principal.key.scopes.contains(&scope)
    }

    /// The caller's tenant.
    pub fn tenant(&self) -> &str {
        &self.principal.key.tenant_id
    }
}

fn missing_scope(scope: Scope) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this api key lacks the scope {scope}; use a key that has it"),
    )
}

impl<S: RequiredScope + Send + Sync> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A console session stands in for a key where no key is sent.
        let key_sent =
            parts.headers.contains_key("authorization") || parts.headers.contains_key("x-api-key");
        let principal = if !key_sent && console::session_secret(&parts.headers).is_some() {
            let (_, principal) = console::current(parts, state)?;
            tracing::Span::current().record("key", principal.key.id.as_str());
            principal
        } else {
            authenticate(&parts.headers, state)?
        };
        require(&principal, S::ANY_OF)?;
        Ok(Self {
            principal,
            scope: std::marker::PhantomData,
        })
    }
}

/// The active key the request's `Authorization: Bearer KEY` or
/// `x-api-key: KEY` names, with its user; 401 when there is none.
pub(super) fn authenticate(
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> Result<Principal, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key = match (header("authorization"), header("x-api-key")) {
        (Some(value), _) => match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the Authorization header must be `Bearer KEY`",
                ));
            }
        },
        (None, Some(key)) => key.trim(),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing api key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
            ));
        }
    };
    if key.starts_with("pk_") && state.tracker.is_publishable(key)? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a publishable key (pk_…) can only send tracker events to POST /v1/track; use a secret API key for this endpoint",
        ));
    }
    let Some(principal) = state.tenancy.authenticate(key)? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the api key is invalid or revoked",
        ));
    };
    tracing::Span::current().record("key", principal.key.id.as_str());
    Ok(principal)
}

/// 403 unless the key holds one of `any_of` (empty: any key will do), and
/// for an endpoint that only executes, unless its policy allows that.
pub(super) fn require(principal: &Principal, any_of: &[Scope]) -> Result<(), ApiError> {
    if let Some(first) = any_of.first()
        && !any_of.iter().any(|s| principal.key.scopes.contains(s))
    {
        return Err(match any_of {
            [_] => missing_scope(*first),
            several => {
                let names: Vec<&str> = several.iter().map(|s| s.as_str()).collect();
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "this api key holds none of the scopes {}; use a key that has one",
                        names.join(" or ")
                    ),
                )
            }
        });
    }
    if principal.key.policy == crate::tenancy::KeyPolicy::ProposeOnly {
        if any_of == [Scope::ActionsExecute] {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this api key's policy is propose_only: it cannot execute (its scope actions:execute does not apply); create an action for review with POST /v1/actions, or call the tool, which proposes",
            ));
        }
        // Approving runs what was approved: a person's key decides, not
        // the agent's that proposed.
        if any_of
            .iter()
            .any(|s| matches!(s, Scope::ActionsApprove | Scope::AgentsApprove))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this api key's policy is propose_only: it cannot approve (its approve scopes do not apply); a person approves with a key of their own",
            ));
        }
    }
    Ok(())
}
