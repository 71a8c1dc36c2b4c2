//! Pathbound's contacts (`/v1/contacts…`): create, list, get, update,
//! erase, batch upsert, timeline and notes.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Authorized, need};
use crate::contacts::{
    BatchRow, Contact, ContactError, ContactInput, ContactPatch, ContactQuery, ContactSort, Erased,
    NoteView, TimelineEntry, properties,
};

/// Contact and event properties, as the document states them.
pub struct Properties;

impl utoipa::PartialSchema for Properties {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        properties_schema(false)
    }
}

impl ToSchema for Properties {}

/// Changes to properties: a `null` value removes one.
pub struct PropertyChanges;

impl utoipa::PartialSchema for PropertyChanges {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        properties_schema(true)
    }
}

impl ToSchema for PropertyChanges {}

/// The rules of `properties::check` as a JSON Schema; with `removals`, a
/// value may also be `null`.
fn properties_schema(removals: bool) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    let mut values = AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(properties::MAX_VALUE_CHARS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean));
    if removals {
        values = values.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(properties::MAX_PROPERTIES))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^[A-Za-z0-9_.-]{{1,{}}}$",
                    properties::MAX_NAME_CHARS
                ))),
        ))
        .additional_properties(Some(utoipa::openapi::schema::Schema::AnyOf(values.build())))
        .into()
}

/// A contact as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"_id": "ct_0193a1b2c3d4e5f6a7b8", "email": "ada@example.com", "properties": {"firstname": "Ada", "lastname": "Lovelace", "company": "Analytical Engines", "lifecyclestage": "lead"}, "created_at": "2026-12-01T14:03:00.000Z", "updated_at": "2026-12-01T14:03:00.000Z"}))]
pub struct ContactView {
    /// `ct_…`: save it to attach events, notes and actions.
    #[serde(rename = "_id")]
    id: String,
    /// The address, unique in the tenant (without case).
    email: Option<String>,
    /// `firstname`, `lastname`, `company`, `lifecyclestage` and any others.
    #[schema(value_type = Properties)]
    properties: Map<String, Value>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
}

impl From<Contact> for ContactView {
    fn from(contact: Contact) -> Self {
        Self {
            id: contact.id,
            email: contact.email,
            properties: contact.properties,
            created_at: contact.created_at,
            updated_at: contact.updated_at,
        }
    }
}

/// The answer carrying one contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactAnswer {
    /// `success`.
    status: &'static str,
    /// The contact.
    contact: ContactView,
}

fn answer(contact: Contact) -> axum::Json<ContactAnswer> {
    axum::Json(ContactAnswer {
        status: "success",
        contact: contact.into(),
    })
}

impl From<ContactError> for ApiError {
    fn from(err: ContactError) -> Self {
        match err {
            ContactError::NotFound(id) => ApiError::not_found("contact", &id),
            ContactError::Invalid { message, fields } => {
                ApiError::invalid(message).with_fields(fields)
            }
            ContactError::Duplicate {
                ref existing_id, ..
            } => {
                let existing = existing_id.clone();
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
                    .with_existing(existing)
            }
            ContactError::Store(err) => err.into(),
        }
    }
}

/// `POST /v1/contacts`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "properties": {"firstname": "Ada", "lastname": "Lovelace", "company": "Analytical Engines", "lifecyclestage": "lead"}}))]
pub struct NewContact {
    /// Their address; unique in the tenant, compared without case. Optional.
    #[serde(default)]
    #[schema(format = "email", max_length = 254)]
    email: Option<String>,
    /// Properties: names of letters, digits, `_`, `-` or `.` (at most 100
    /// characters), values strings (at most 16 KiB), numbers or booleans; at
    /// most 256 of them.
    #[serde(default)]
    #[schema(value_type = Option<Properties>)]
    properties: Option<Value>,
}

/// Creates a contact. An email another contact of the tenant has is a 409
/// naming that contact (`existing_id`).
#[utoipa::path(
    post,
    path = "/v1/contacts",
    tag = "contacts",
    request_body = NewContact,
    responses(
        (status = 201, body = ContactAnswer),
        (status = 409, body = super::ErrorBody, description = "Another contact has this email; `existing_id` names it"),
    ),
    security(("bearer" = ["contacts:write"]), ("api_key" = ["contacts:write"]))
)]
pub async fn contacts_create(
    caller: Authorized<need::ContactsWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<NewContact>,
) -> Result<(StatusCode, axum::Json<ContactAnswer>), ApiError> {
    let input = ContactInput::parse(input.email.as_deref(), input.properties.as_ref(), "")?;
    let contact = state.contacts.create(caller.tenant(), input).await?;
    Ok((StatusCode::CREATED, answer(contact)))
}

/// `GET /v1/contacts`'s query. Besides these, `properties.NAME=value`
/// keeps the contacts whose property `NAME` is `value` (without case).
///
/// It documents the query; the handler reads the pairs itself, since
/// `properties.NAME` cannot be a field.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ContactListParams {
    /// Exactly this email, without case.
    #[param(max_length = 254)]
    email: Option<String>,
    /// `properties.lifecyclestage`, without case (`lead`, `customer`, …).
    #[param(max_length = 1000)]
    lifecycle_stage: Option<String>,
    /// Text in the name, email or company, without case.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Results per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// Results to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    offset: Option<usize>,
    /// `created_at` (default), `updated_at` or `email`.
    #[param(pattern = "^(created_at|updated_at|email)$")]
    sort_by: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    sort_dir: Option<String>,
}

/// A page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactList {
    /// `success`.
    status: &'static str,
    /// The page.
    contacts: Vec<ContactView>,
    /// How many contacts match.
    total: usize,
    /// The page size used.
    limit: usize,
    /// The offset used.
    offset: usize,
}

/// The page parameters shared by the listings here: `limit` 1–100 (default
/// 20) and `offset`.
pub(super) fn page(limit: Option<&str>, offset: Option<&str>) -> Result<(usize, usize), ApiError> {
    let limit = match limit {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "limit must be a number from 1 to 100, not {text:?}"
                ))
            })?,
    };
    let offset = match offset {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= super::MAX_OFFSET)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "offset must be a whole number from 0 to {}, not {text:?}",
                    super::MAX_OFFSET
                ))
            })?,
    };
    Ok((limit, offset))
}

/// `asc` or `desc` (the default) as "descending".
pub(super) fn descending(sort_dir: Option<&str>) -> Result<bool, ApiError> {
    match sort_dir {
        None | Some("desc") => Ok(true),
        Some("asc") => Ok(false),
        Some(other) => Err(ApiError::invalid(format!(
            "sort_dir must be asc or desc, not {other:?}"
        ))),
    }
}

/// Lists the tenant's contacts, filtered, searched, sorted and paginated.
#[utoipa::path(
    get,
    path = "/v1/contacts",
    tag = "contacts",
    params(ContactListParams),
    responses((status = 200, body = ContactList)),
    security(("bearer" = ["contacts:read"]), ("api_key" = ["contacts:read"]))
)]
pub async fn contacts_list(
    caller: Authorized<need::ContactsRead>,
    State(state): State<AppState>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<axum::Json<ContactList>, ApiError> {
    let mut query = ContactQuery::default();
    let (mut limit, mut offset, mut sort_by, mut sort_dir) = (None, None, None, None);
    for (name, value) in &pairs {
        match name.as_str() {
            "email" if value.chars().count() > 254 => {
                return Err(ApiError::invalid(
                    "email is at most 254 characters; no contact's address is longer",
                ));
            }
            "lifecycle_stage" if value.chars().count() > 1000 => {
                return Err(ApiError::invalid(
                    "lifecycle_stage is at most 1,000 characters",
                ));
            }
            "email" => query.email = Some(value.trim().to_owned()),
            "lifecycle_stage" => query.lifecycle_stage = Some(value.clone()),
            "q" if value.chars().count() > 200 => {
                return Err(ApiError::invalid(
                    "q must be at most 200 characters; search for a shorter text",
                ));
            }
            "q" => query.q = Some(value.clone()).filter(|q| !q.trim().is_empty()),
            "limit" => limit = Some(value.as_str()),
            "offset" => offset = Some(value.as_str()),
            "sort_by" => sort_by = Some(value.as_str()),
            "sort_dir" => sort_dir = Some(value.as_str()),
            other => match other.strip_prefix("properties.") {
                Some(property) if properties::valid_name(property) => {
                    query.properties.push((property.to_owned(), value.clone()));
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "unknown query parameter {:?}; filters are email, lifecycle_stage, q and properties.NAME",
                        properties::truncated(other)
                    )));
                }
            },
        }
    }
    (query.limit, query.offset) = page(limit, offset)?;
    query.descending = descending(sort_dir)?;
    query.sort_by = match sort_by {
        None => ContactSort::default(),
        Some(text) => text
            .parse()
            .map_err(|message: String| ApiError::invalid(message))?,
    };
    let found = state.contacts.list(caller.tenant(), &query)?;
    Ok(axum::Json(ContactList {
        status: "success",
        contacts: found.contacts.into_iter().map(Into::into).collect(),
        total: found.total,
        limit: query.limit,
        offset: query.offset,
    }))
}

/// One contact.
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact id")),
    responses((status = 200, body = ContactAnswer)),
    security(("bearer" = ["contacts:read"]), ("api_key" = ["contacts:read"]))
)]
pub async fn contacts_get(
    caller: Authorized<need::ContactsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ContactAnswer>, ApiError> {
    Ok(answer(state.contacts.get(caller.tenant(), &id)?))
}

/// `PATCH /v1/contacts/{id}`'s body: each field sent is changed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"properties": {"lifecyclestage": "customer", "company": null}}))]
pub struct ContactUpdate {
    /// A new address; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = "email", max_length = 254)]
    email: Option<Option<String>>,
    /// Properties to set; a `null` value removes that property.
    #[serde(default)]
    #[schema(value_type = Option<PropertyChanges>)]
    properties: Option<Value>,
}

/// A field that was sent, `null` included, as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Changes a contact: the email, and the properties merged (a `null`
/// removes one).
#[utoipa::path(
    patch,
    path = "/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact id")),
    request_body = ContactUpdate,
    responses((status = 200, body = ContactAnswer), (status = 409, body = super::ErrorBody, description = "Another contact has this email")),
    security(("bearer" = ["contacts:write"]), ("api_key" = ["contacts:write"]))
)]
pub async fn contacts_update(
    caller: Authorized<need::ContactsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ContactUpdate>,
) -> Result<axum::Json<ContactAnswer>, ApiError> {
    let mut errors = Vec::new();
    let email = match input.email {
        None => None,
        Some(None) => Some(None),
        Some(Some(email)) => match properties::check_email(&email) {
            Ok(email) => Some(Some(email)),
            Err(message) => {
                errors.push(crate::runtime::FieldError::new("/email", &message));
                None
            }
        },
    };
    let changes = match &input.properties {
        None | Some(Value::Null) => None,
        Some(value) => match properties::check(value, "/properties", true) {
            Ok(map) => Some(map),
            Err(mut found) => {
                errors.append(&mut found);
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ContactError::fields(errors).into());
    }
    let contact = state
        .contacts
        .update(
            caller.tenant(),
            &id,
            ContactPatch {
                email,
                properties: changes,
            },
        )
        .await?;
    Ok(answer(contact))
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedAnswer {
    /// `success`.
    status: &'static str,
    /// The contact's id.
    #[serde(rename = "_id")]
    id: String,
    /// What was removed, cancelled and scrubbed.
    erased: Erased,
}

/// Erases a contact: it, its events, notes and anonymous ids go; its actions
/// that have not run are cancelled (with a history entry saying why); those
/// that ran keep their audit record, with the contact's email removed.
#[utoipa::path(
    delete,
    path = "/v1/contacts/{id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact id")),
    responses((status = 200, body = ErasedAnswer)),
    security(("bearer" = ["contacts:write"]), ("api_key" = ["contacts:write"]))
)]
pub async fn contacts_delete(
    caller: Authorized<need::ContactsWrite>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ErasedAnswer>, ApiError> {
    let erased = state.contacts.erase(caller.tenant(), &id).await?;
    Ok(axum::Json(ErasedAnswer {
        status: "success",
        id,
        erased,
    }))
}

/// `POST /v1/contacts/batch`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"contacts": [{"email": "ada@example.com", "properties": {"firstname": "Ada"}}, {"email": "grace@example.com", "properties": {"lifecyclestage": "lead"}}]}))]
pub struct ContactBatch {
    /// 1 to 1,000 rows, each `{email, properties}`: the contact with that
    /// email is updated (properties merged, `null` removes), or created.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<BatchRowBody>)]
    contacts: Vec<Map<String, Value>>,
}

/// One row of a batch. Its content is checked row by row, so that a row
/// without an email, with an address that is not one, or with properties
/// that break the rules of `POST /v1/contacts` fails alone, reported in its
/// result.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read only to check each row's shape.
pub struct BatchRowBody {
    /// The address the row upserts by.
    email: Option<String>,
    /// Properties to set; `null` removes one.
    #[schema(value_type = Option<Object>)]
    properties: Option<Map<String, Value>>,
}

/// What a batch did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// `success`, even when some rows failed (see each row).
    status: &'static str,
    /// Rows created.
    created: usize,
    /// Rows that updated a contact.
    updated: usize,
    /// Rows refused.
    failed: usize,
    /// One result per row, in the request's order.
    results: Vec<BatchRow>,
}

/// Upserts up to 1,000 contacts by email in one write. A bad row is
/// reported in its result and does not fail the others.
#[utoipa::path(
    post,
    path = "/v1/contacts/batch",
    tag = "contacts",
    request_body = ContactBatch,
    responses((status = 200, body = BatchAnswer)),
    security(("bearer" = ["contacts:write"]), ("api_key" = ["contacts:write"]))
)]
pub async fn contacts_batch(
    caller: Authorized<need::ContactsWrite>,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ContactBatch>,
) -> Result<axum::Json<BatchAnswer>, ApiError> {
    // The shape of each row is the document's (a 422 for the request);
    // what it holds is checked row by row.
    let mut rows = Vec::with_capacity(input.contacts.len());
    for (index, row) in input.contacts.into_iter().enumerate() {
        let row = Value::Object(row);
        serde_path_to_error::deserialize::<_, BatchRowBody>(&row).map_err(|err| {
            ApiError::invalid(format!(
                "contacts/{index} does not fit a batch row: {}: {}",
                err.path(),
                err.inner()
            ))
        })?;
        rows.push(row);
    }
    let results = state.contacts.upsert_batch(caller.tenant(), rows).await?;
    let count = |status: &str| results.iter().filter(|r| r.status == status).count();
    Ok(axum::Json(BatchAnswer {
        status: "success",
        created: count("created"),
        updated: count("updated"),
        failed: count("error"),
        results,
    }))
}

/// `limit` and `offset` of a contact's timeline or notes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Results per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Results to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 2147483647)]
    offset: Option<String>,
}

/// A page of a contact's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineAnswer {
    /// `success`.
    status: &'static str,
    /// The contact.
    contact: ContactView,
    /// Events, actions and notes, newest first.
    timeline: Vec<TimelineEntry>,
    /// How many entries the timeline has.
    total: usize,
    /// The page size used.
    limit: usize,
    /// The offset used.
    offset: usize,
}

/// The contact's timeline: its events, actions and notes merged, newest
/// first (the "unified profile" agents read).
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}/timeline",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact id"), PageParams),
    responses((status = 200, body = TimelineAnswer)),
    security(("bearer" = ["contacts:read"]), ("api_key" = ["contacts:read"]))
)]
pub async fn contacts_timeline(
    caller: Authorized<need::ContactsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<axum::Json<TimelineAnswer>, ApiError> {
    let (limit, offset) = page(params.limit.as_deref(), params.offset.as_deref())?;
    let contact = state.contacts.get(caller.tenant(), &id)?;
    let (timeline, total) = state
        .contacts
        .timeline(caller.tenant(), &id, offset, limit)?;
    Ok(axum::Json(TimelineAnswer {
        status: "success",
        contact: contact.into(),
        timeline,
        total,
        limit,
        offset,
    }))
}

/// A page of a contact's notes.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteList {
    /// `success`.
    status: &'static str,
    /// Newest first.
    notes: Vec<NoteView>,
    /// How many notes the contact has.
    total: usize,
    /// The page size used.
    limit: usize,
    /// The offset used.
    offset: usize,
}

/// The contact's notes, newest first (written by `note` actions).
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}/notes",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact id"), PageParams),
    responses((status = 200, body = NoteList)),
    security(("bearer" = ["contacts:read"]), ("api_key" = ["contacts:read"]))
)]
pub async fn contacts_notes(
    caller: Authorized<need::ContactsRead>,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<axum::Json<NoteList>, ApiError> {
    let (limit, offset) = page(params.limit.as_deref(), params.offset.as_deref())?;
    let (notes, total) = state.contacts.notes(caller.tenant(), &id, offset, limit)?;
    Ok(axum::Json(NoteList {
        status: "success",
        notes: notes.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}
