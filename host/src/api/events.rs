//! Events (`/v1/events`), the site tracker (`GET /t.js`, `POST /v1/track`)
//! and the publishable keys it uses (`/v1/publishable-keys`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL, CONTENT_TYPE, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::contacts::{descending, page};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, need};
use crate::events::tracker::{PublishableKey, SCRIPT, TrackError, Tracked, Tracker};
use crate::events::{EventError, EventQuery, EventSource, EventView, MAX_BATCH, parse_event};
use crate::runtime::FieldError;

impl From<EventError> for ApiError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Invalid { message, fields } => {
                ApiError::invalid(message).with_fields(fields)
            }
            EventError::Store(err) => err.into(),
        }
    }
}

/// One event, as `POST /v1/events` takes it (or a list of them in `events`).
///
/// It documents the body; `events::parse_event` reads it, naming every
/// failing field at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event": "pageview", "url": "https://example.com/pricing", "email": "ada@example.com", "properties": {"title": "Pricing"}}))]
#[allow(dead_code)]
pub struct NewEventBody {
    /// `pageview`, or any name (1 to 100 printable characters).
    #[schema(min_length = 1, max_length = 100)]
    event: String,
    /// The page, an absolute http(s) url.
    #[schema(max_length = 4096)]
    url: Option<String>,
    /// Properties: strings, numbers or booleans, at most 256.
    #[schema(value_type = Option<super::contacts::Properties>)]
    properties: Option<Value>,
    /// When it happened (RFC 3339); default: now.
    #[schema(format = DateTime)]
    occurred_at: Option<String>,
    /// Who it is about: a contact …
    contact_id: Option<String>,
    /// … or an email (the contact is created if missing) …
    #[schema(format = "email")]
    email: Option<String>,
    /// … or a visitor not yet known (1 to 128 letters, digits, `_`, `-`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    anonymous_id: Option<String>,
}

/// A batch of events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EventBatch {
    /// 1 to 1,000 events, written all or none.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<NewEventBody>,
}

/// `POST /v1/events`'s body: one event, or `{"events": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EventsBody {
    /// One event.
    One(NewEventBody),
    /// Up to 1,000.
    Batch(EventBatch),
}

/// Stored events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    /// `success`.
    status: &'static str,
    /// How many were stored.
    accepted: usize,
    /// The stored events, in the request's order.
    events: Vec<EventView>,
}

/// Records one event, or a batch of up to 1,000 (`{"events": [...]}`),
/// all or none: each names who it is about with one of `contact_id`,
/// `email` (the contact is created if missing) or `anonymous_id`.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body = EventsBody,
    responses((status = 201, body = EventsAccepted)),
    security(("bearer" = ["events:write"]), ("api_key" = ["events:write"]))
)]
pub async fn events_create(
    caller: Authorized<need::EventsWrite>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, axum::Json<EventsAccepted>), ApiError> {
    let (items, batch): (Vec<(&Value, String)>, bool) = match body.get("events") {
        Some(Value::Array(items)) if body.as_object().is_some_and(|o| o.len() == 1) => (
            items
                .iter()
                .enumerate()
                .map(|(index, item)| (item, format!("/events/{index}")))
                .collect(),
            true,
        ),
        Some(_) if body.as_object().is_some_and(|o| o.len() == 1) => {
            return Err(EventError::fields(vec![FieldError::new(
                "/events",
                "must be a list of events",
            )])
            .into());
        }
        _ => (vec![(&body, String::new())], false),
    };
    if batch && (items.is_empty() || items.len() > MAX_BATCH) {
        return Err(EventError::fields(vec![FieldError::new(
            "/events",
            &format!("must hold 1 to {MAX_BATCH} events, not {}", items.len()),
        )])
        .into());
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (item, at) in items {
        match parse_event(item, &at, true) {
            Ok(event) => events.push(event),
            Err(mut found) => errors.append(&mut found),
        }
    }
    if !errors.is_empty() {
        return Err(EventError::fields(errors).into());
    }
    let stored = state
        .events
        .ingest(caller.tenant(), events, EventSource::Api)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EventsAccepted {
            status: "success",
            accepted: stored.len(),
            events: stored.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// `GET /v1/events`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// One contact's events.
    contact_id: Option<String>,
    /// One visitor's events.
    anonymous_id: Option<String>,
    /// Events of this name only.
    event: Option<String>,
    /// Occurred at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Occurred at or before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Results per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Results to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    offset: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    sort_dir: Option<String>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// `success`.
    status: &'static str,
    /// The page, by the time each occurred.
    events: Vec<EventView>,
    /// The page size used.
    limit: usize,
    /// The offset used.
    offset: usize,
}

fn time(text: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    text.map(|text| {
        crate::actions::parse_time(text)
            .map(crate::actions::epoch_ms)
            .map_err(|_| {
                ApiError::invalid(format!(
                    "{name} {text:?} is not an RFC 3339 time; for example 2026-01-31T09:00:00Z"
                ))
            })
    })
    .transpose()
}

/// Lists the tenant's events by the time they occurred, newest first
/// unless `sort_dir=asc`. With no events, an empty list.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventListParams),
    responses((status = 200, body = EventList)),
    security(("bearer" = ["events:read"]), ("api_key" = ["events:read"]))
)]
pub async fn events_list(
    caller: Authorized<need::EventsRead>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventListParams>,
) -> Result<axum::Json<EventList>, ApiError> {
    let (limit, offset) = page(params.limit.as_deref(), params.offset.as_deref())?;
    let query = EventQuery {
        contact_id: params.contact_id,
        anonymous_id: params.anonymous_id,
        event: params.event,
        since_ms: time(params.since.as_deref(), "since")?,
        until_ms: time(params.until.as_deref(), "until")?,
        limit,
        offset,
        descending: descending(params.sort_dir.as_deref())?,
    };
    let events = state.events.list(caller.tenant(), &query)?;
    Ok(axum::Json(EventList {
        status: "success",
        events: events.into_iter().map(Into::into).collect(),
        limit,
        offset,
    }))
}

/// The tracker script. Include it with a publishable key:
/// `<script async src="https://HOST/t.js" data-key="pk_…"></script>`.
#[utoipa::path(
    get,
    path = "/t.js",
    tag = "events",
    responses((status = 200, description = "The tracker script", content_type = "text/javascript", body = String)),
    security(())
)]
pub async fn tracker_script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// What the tracker sends. The server reads the body as JSON whatever its
/// content type: the tracker sends it as `text/plain`, which browsers send
/// without a CORS preflight.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"key": "pk_0123456789abcdef0123456789abcdef", "anonymous_id": "5f0c1d2e3a4b", "events": [{"event": "pageview", "url": "https://example.com/pricing", "occurred_at": "2026-12-01T14:03:00.000Z", "properties": {"title": "Pricing"}}]}))]
#[allow(dead_code)]
pub struct TrackBody {
    /// The publishable key.
    key: String,
    /// The visitor's id, kept in the site's storage.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    anonymous_id: String,
    /// Up to 50 events (without a subject: the visitor is).
    #[schema(value_type = Option<Vec<Object>>, max_items = 50)]
    events: Option<Vec<Value>>,
    /// `{"email": …}`: the visitor is this contact (created if missing).
    #[schema(value_type = Option<Object>)]
    identify: Option<Value>,
}

/// CORS headers for an allowed origin.
fn allow(response: &mut Response, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(VARY, HeaderValue::from_static("Origin"));
    }
}

impl From<TrackError> for ApiError {
    fn from(err: TrackError) -> Self {
        match err {
            TrackError::UnknownKey => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", err.to_string())
            }
            TrackError::Origin(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", err.to_string())
            }
            TrackError::RateLimited(wait) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                err.to_string(),
            )
            .with_retry_after(wait.as_secs().max(1)),
            TrackError::Invalid(err) => err.into(),
            TrackError::Store(err) => err.into(),
        }
    }
}

/// Events from the site tracker, with a publishable key in the body. A
/// page whose origin is not on the key's list stores nothing (403, without
/// CORS headers); each key is rate-limited.
#[utoipa::path(
    post,
    path = "/v1/track",
    tag = "events",
    request_body(content = TrackBody, content_type = "application/json"),
    responses(
        (status = 200, body = Tracked),
        (status = 401, body = super::ErrorBody, description = "Unknown or revoked publishable key"),
        (status = 403, body = super::ErrorBody, description = "The page's origin is not on the key's list"),
        (status = 413, body = super::ErrorBody, description = "The body is larger than 64 KiB"),
        (status = 422, body = super::ErrorBody, description = "The body is not a valid beacon"),
        (status = 429, body = super::ErrorBody, description = "The key sent more than its rate"),
    ),
    security(())
)]
pub async fn track(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    if body.len() > TRACK_MAX_BYTES {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a beacon holds at most {TRACK_MAX_BYTES} bytes"),
        )
        .into_response();
    }
    // CORS headers only for a page its key allows: others cannot read
    // even the refusal.
    let cors = Tracker::key_of(&body)
        .and_then(|key| state.tracker.allowed(&key, origin).ok())
        .and(origin);
    let mut response = match state.tracker.track(origin, &body).await {
        Ok(tracked) => axum::Json(tracked).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    };
    if let Some(origin) = cors {
        allow(&mut response, origin);
    }
    response
}

/// The largest beacon.
const TRACK_MAX_BYTES: usize = 64 * 1024;

/// The CORS preflight of `POST /v1/track` (for trackers that send JSON):
/// it says what may be sent; the POST itself checks the origin.
#[utoipa::path(
    options,
    path = "/v1/track",
    tag = "events",
    responses((status = 204, description = "What a page may send")),
    security(())
)]
pub async fn track_preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        allow(&mut response, origin);
        let headers = response.headers_mut();
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

/// An origin: scheme, host and optional port, nothing after.
#[derive(ToSchema)]
#[schema(
    pattern = "^https?://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?/?$",
    example = "https://www.example.com"
)]
#[allow(dead_code)]
pub struct Origin(String);

/// A publishable key to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "marketing site", "allowed_origins": ["https://www.example.com"]}))]
pub struct NewPublishableKey {
    /// A label.
    #[schema(max_length = 200)]
    name: Option<String>,
    /// The origins (scheme, host and port, such as `https://www.example.com`)
    /// whose pages may send events with it; 1 to 50.
    #[schema(min_items = 1, max_items = 50, inline, value_type = Vec<Origin>)]
    allowed_origins: Vec<String>,
}

/// A publishable key: public, usable only by the tracker.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishableKeyView {
    /// The key, `pk_…`; also its id.
    id: String,
    /// A label.
    name: String,
    /// The origins whose pages may send events.
    allowed_origins: Vec<String>,
    /// The tag to put on the site.
    snippet: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, once revoked.
    revoked_at: Option<String>,
}

impl PublishableKeyView {
    fn new(key: PublishableKey, public_url: &str) -> Self {
        Self {
            snippet: format!(
                r#"<script async src="{}/t.js" data-key="{}"></script>"#,
                public_url.trim_end_matches('/'),
                key.id
            ),
            id: key.id,
            name: key.name,
            allowed_origins: key.allowed_origins,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// The answer carrying one publishable key.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishableKeyAnswer {
    /// `success`.
    status: &'static str,
    /// The key.
    publishable_key: PublishableKeyView,
}

/// The tenant's publishable keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishableKeyList {
    /// `success`.
    status: &'static str,
    /// Oldest first.
    publishable_keys: Vec<PublishableKeyView>,
}

/// Mints a publishable key for the site tracker: it can only append events
/// (`events:track`), only from its origins. It is public: it goes in the
/// page's `<script>` tag.
#[utoipa::path(
    post,
    path = "/v1/publishable-keys",
    tag = "events",
    request_body = NewPublishableKey,
    responses((status = 201, body = PublishableKeyAnswer)),
    security(("bearer" = ["keys:write"]), ("api_key" = ["keys:write"]))
)]
pub async fn publishable_keys_create(
    caller: Authorized<need::KeysWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewPublishableKey>,
) -> Result<(StatusCode, axum::Json<PublishableKeyAnswer>), ApiError> {
    if input.name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::invalid("name must be at most 200 characters"));
    }
    let key = state
        .tracker
        .mint(caller.tenant(), input.name, &input.allowed_origins)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PublishableKeyAnswer {
            status: "success",
            publishable_key: PublishableKeyView::new(key, &state.settings.public_url),
        }),
    ))
}

/// Lists the tenant's publishable keys.
#[utoipa::path(
    get,
    path = "/v1/publishable-keys",
    tag = "events",
    responses((status = 200, body = PublishableKeyList)),
    security(("bearer" = ["keys:read"]), ("api_key" = ["keys:read"]))
)]
pub async fn publishable_keys_list(
    caller: Authorized<need::KeysRead>,
    State(state): State<AppState>,
) -> Result<axum::Json<PublishableKeyList>, ApiError> {
    let keys = state.tracker.list(caller.tenant())?;
    Ok(axum::Json(PublishableKeyList {
        status: "success",
        publishable_keys: keys
            .into_iter()
            .map(|key| PublishableKeyView::new(key, &state.settings.public_url))
            .collect(),
    }))
}

/// Revokes a publishable key: its tracker's events are refused from now on.
#[utoipa::path(
    delete,
    path = "/v1/publishable-keys/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The key (`pk_…`)")),
    responses((status = 200, body = PublishableKeyAnswer)),
    security(("bearer" = ["keys:write"]), ("api_key" = ["keys:write"]))
)]
pub async fn publishable_keys_revoke(
    caller: Authorized<need::KeysWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<PublishableKeyAnswer>, ApiError> {
    let key = state
        .tracker
        .revoke(caller.tenant(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("publishable key", &id))?;
    Ok(axum::Json(PublishableKeyAnswer {
        status: "success",
        publishable_key: PublishableKeyView::new(key, &state.settings.public_url),
    }))
}
