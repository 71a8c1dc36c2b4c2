//! Contacts: the people actions address (Pathbound's `/v1/contacts`), their
//! notes, and their timeline.
//!
//! How the pieces fit:
//!
//! - A [`Contact`] is an optional email address, unique per tenant compared
//!   without case (the `contacts_by_email` unique index holds the lower-case
//!   form, so two writers racing for one address cannot both win), and free
//!   properties ([`properties`]). Its id is time-ordered (`ct_` and the
//!   creation time in hex), so the `contacts_by_tenant` index lists a
//!   tenant's contacts in creation order without a sort.
//! - A [`Note`] hangs off a contact; the `note` action type writes them
//!   through the contract's `contacts.add-note`, keyed by the action, so a
//!   retried attempt replaces its note instead of adding one.
//! - [`timeline`] merges a contact's events, actions and notes, newest
//!   first: each source is read newest first from its own per-contact
//!   index, so a page costs a few range reads, however long the history.
//! - [`erase`] deletes a contact and everything about them: events, notes,
//!   anonymous ids; cancels their actions that have not run, and removes
//!   their email from the audit record of those that did. An erasure is
//!   recorded before it starts and resumed at start-up if the server
//!   stopped half-way, so it always finishes.

pub mod erase;
pub mod properties;
pub mod timeline;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actions::{Actions, epoch_ms};
use crate::events::Events;
use crate::runtime::FieldError;
use crate::store::{IndexEntry, PageQuery, Record, RecordTx, Records, StoreError, TxError};
use crate::tenancy::{new_ordered_id, now};

pub use erase::Erased;
pub use timeline::{TimelineEntry, TimelineItem};

/// The most contacts one batch upserts.
pub const MAX_BATCH: usize = 1000;

/// A person the tenant knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contact {
    /// `ct_…`, ordered by creation.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The address, as given (unique in the tenant, without case).
    pub email: Option<String>,
    /// Free properties: `firstname`, `lastname`, `company`, `lifecyclestage`, …
    pub properties: Map<String, Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl Contact {
    /// `firstname lastname`, or the email, or the id: how a person reads it.
    pub fn display_name(&self) -> String {
        let part = |name: &str| {
            self.properties
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let name = format!("{} {}", part("firstname"), part("lastname"))
            .trim()
            .to_owned();
        if !name.is_empty() {
            name
        } else {
            self.email.clone().unwrap_or_else(|| self.id.clone())
        }
    }

    fn stage(&self) -> Option<String> {
        self.properties
            .get("lifecyclestage")
            .and_then(properties::as_text)
            .map(|s| s.to_lowercase())
    }
}

/// The unique index value of an email in a tenant.
pub fn email_key(tenant_id: &str, email: &str) -> String {
    format!("{tenant_id}\0{}", email.to_lowercase())
}

impl Record for Contact {
    const COLLECTION: &'static str = "contacts";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        let mut entries = vec![IndexEntry::multi("contacts_by_tenant", &self.tenant_id)];
        if let Some(email) = &self.email {
            entries.push(IndexEntry::unique(
                "contacts_by_email",
                email_key(&self.tenant_id, email),
            ));
        }
        if let Some(stage) = self.stage() {
            entries.push(IndexEntry::multi(
                "contacts_by_stage",
                format!("{}\0{stage}", self.tenant_id),
            ));
        }
        entries
    }
}

/// A note on a contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    /// `nt_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The contact.
    pub contact_id: String,
    /// The text.
    pub body: String,
    /// The `note` action that wrote it.
    pub action_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Milliseconds since the epoch, for ordering.
    pub created_ms: u64,
}

impl Record for Note {
    const COLLECTION: &'static str = "notes";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi(
            "notes_by_contact",
            format!(
                "{}\0{}\0{:013}",
                self.tenant_id, self.contact_id, self.created_ms
            ),
        )]
    }
}

/// A note as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NoteView {
    /// `nt_…`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The contact.
    pub contact_id: String,
    /// The text.
    pub body: String,
    /// The `note` action that wrote it.
    pub action_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl From<Note> for NoteView {
    fn from(note: Note) -> Self {
        Self {
            id: note.id,
            contact_id: note.contact_id,
            body: note.body,
            action_id: note.action_id,
            created_at: note.created_at,
        }
    }
}

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;

/// Why a contact operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// Not in the caller's tenant.
    #[error("contact {0} not found")]
    NotFound(String),
    /// The request is wrong; `fields` names each problem.
    #[error("{message}")]
    Invalid {
        /// What to fix.
        message: String,
        /// Each failing field.
        fields: Vec<FieldError>,
    },
    /// Another contact has the email.
    #[error(
        "a contact with the email {email} already exists: {existing_id}; update it with PATCH /v1/contacts/{existing_id}"
    )]
    Duplicate {
        /// The address.
        email: String,
        /// Its contact.
        existing_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ContactError {
    /// An `Invalid` naming `fields`.
    pub fn fields(fields: Vec<FieldError>) -> Self {
        Self::Invalid {
            message: format!("invalid contact: {}", FieldError::summary(&fields)),
            fields,
        }
    }
}

type Result<T, E = ContactError> = std::result::Result<T, E>;

/// What a create or an upsert writes.
#[derive(Debug, Clone, Default)]
pub struct ContactInput {
    /// The address, checked.
    pub email: Option<String>,
    /// The properties, checked (`null`s only in updates).
    pub properties: Map<String, Value>,
}

impl ContactInput {
    /// Checks a create's `email` and `properties`, collecting every problem.
    pub fn parse(email: Option<&str>, properties: Option<&Value>, at: &str) -> Result<Self> {
        let mut errors = Vec::new();
        let email = match email.map(properties::check_email) {
            None => None,
            Some(Ok(email)) => Some(email),
            Some(Err(message)) => {
                errors.push(FieldError::new(&format!("{at}/email"), &message));
                None
            }
        };
        let properties = match properties {
            None | Some(Value::Null) => Map::new(),
            Some(value) => match properties::check(value, &format!("{at}/properties"), false) {
                Ok(map) => map,
                Err(mut found) => {
                    errors.append(&mut found);
                    Map::new()
                }
            },
        };
        if errors.is_empty() {
            Ok(Self { email, properties })
        } else {
            Err(ContactError::fields(errors))
        }
    }
}

/// An update: each field present is changed, the rest kept.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    /// `Some(None)` removes the email.
    pub email: Option<Option<String>>,
    /// Properties to set; a `null` value removes one.
    pub properties: Option<Map<String, Value>>,
}

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContactSort {
    /// Creation time (the id order).
    #[default]
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// Email address, without case.
    Email,
}

impl std::str::FromStr for ContactSort {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "created_at" => Ok(Self::CreatedAt),
            "updated_at" => Ok(Self::UpdatedAt),
            "email" => Ok(Self::Email),
            other => Err(format!(
                "cannot sort contacts by {other:?}; one of: created_at, updated_at, email"
            )),
        }
    }
}

/// Filters and order of a listing.
#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    /// Exactly this email (any case).
    pub email: Option<String>,
    /// `properties.lifecyclestage`, any case.
    pub lifecycle_stage: Option<String>,
    /// `properties.NAME=value` filters, all of which must hold.
    pub properties: Vec<(String, String)>,
    /// Text in the name, email or company, any case.
    pub q: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Offset.
    pub offset: usize,
    /// Order.
    pub sort_by: ContactSort,
    /// Newest (or last) first.
    pub descending: bool,
}

/// A page of contacts.
#[derive(Debug)]
pub struct ContactPage {
    /// The page.
    pub contacts: Vec<Contact>,
    /// How many match.
    pub total: usize,
}

/// What a batch did with one row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchRow {
    /// The row's position in the request, from 0.
    pub index: usize,
    /// `created`, `updated` or `error`.
    pub status: &'static str,
    /// The contact, unless the row failed.
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why the row failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each failing field of the row.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
}

/// The contacts of every tenant.
#[derive(Clone)]
pub struct Contacts {
    records: Records,
    events: Events,
    actions: Actions,
}

impl Contacts {
    /// Contacts over `records`; erasure reaches into `events` and `actions`.
    pub fn new(records: Records, events: Events, actions: Actions) -> Self {
        Self {
            records,
            events,
            actions,
        }
    }

    /// A contact of the tenant.
    pub fn get(&self, tenant_id: &str, id: &str) -> Result<Contact> {
        find(&self.records, tenant_id, id)?.ok_or_else(|| ContactError::NotFound(id.to_owned()))
    }

    /// Creates a contact, durably.
    pub async fn create(&self, tenant_id: &str, input: ContactInput) -> Result<Contact> {
        let at = now();
        let contact = Contact {
            id: new_ordered_id("ct"),
            tenant_id: tenant_id.to_owned(),
            email: input.email,
            properties: input.properties,
            created_at: at.clone(),
            updated_at: at,
        };
        let stored = contact.clone();
        self.records
            .commit(move |tx| tx.insert(&stored))
            .await
            .map_err(|err| duplicate(err, contact.email.as_deref()))?;
        tracing::info!(contact = %contact.id, "contact created");
        Ok(contact)
    }

    /// Changes a contact, durably: the email when given, and the
    /// properties merged (a `null` removes one).
    pub async fn update(&self, tenant_id: &str, id: &str, patch: ContactPatch) -> Result<Contact> {
        let (tenant, id_owned) = (tenant_id.to_owned(), id.to_owned());
        let email = patch.email.clone().flatten();
        let updated = self
            .records
            .commit(move |tx| {
                let Some(mut contact) = tx
                    .get::<Contact>(&id_owned)?
                    .filter(|c| c.tenant_id == tenant)
                else {
                    return Ok(Err(ContactError::NotFound(id_owned.clone())));
                };
                if let Some(email) = &patch.email {
                    contact.email.clone_from(email);
                }
                if let Some(changes) = &patch.properties
                    && let Err(error) =
                        properties::merge(&mut contact.properties, changes.clone(), "/properties")
                {
                    return Ok(Err(ContactError::fields(vec![error])));
                }
                contact.updated_at = now();
                tx.put(&contact)?;
                Ok(Ok(contact))
            })
            .await
            .map_err(|err| duplicate(err, email.as_deref()))??;
        Ok(updated)
    }

    /// Upserts up to [`MAX_BATCH`] contacts by email, in one durable write.
    /// A row that is invalid is reported and skipped; the others are
    /// written. Two rows with one address both apply, in order.
    pub async fn upsert_batch(&self, tenant_id: &str, rows: Vec<Value>) -> Result<Vec<BatchRow>> {
        if rows.is_empty() || rows.len() > MAX_BATCH {
            return Err(ContactError::fields(vec![FieldError::new(
                "/contacts",
                &format!("must hold 1 to {MAX_BATCH} contacts, not {}", rows.len()),
            )]));
        }
        let mut results: Vec<BatchRow> = Vec::with_capacity(rows.len());
        let mut valid = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            match batch_row(row, index) {
                Ok(input) => {
                    valid.push((index, input, new_ordered_id("ct")));
                    results.push(BatchRow {
                        index,
                        status: "created",
                        id: None,
                        error: None,
                        errors: Vec::new(),
                    });
                }
                Err(err) => {
                    let (error, errors) = match err {
                        ContactError::Invalid { message, fields } => (message, fields),
                        other => (other.to_string(), Vec::new()),
                    };
                    results.push(BatchRow {
                        index,
                        status: "error",
                        id: None,
                        error: Some(error),
                        errors,
                    });
                }
            }
        }
        let tenant = tenant_id.to_owned();
        let written = self
            .records
            .commit(move |tx| {
                let mut written = Vec::with_capacity(valid.len());
                for (index, input, new_id) in &valid {
                    let email = input.email.as_deref().unwrap_or_default();
                    let existing = tx
                        .find_unique("contacts_by_email", &email_key(&tenant, email))?
                        .map(|id| tx.get::<Contact>(&id))
                        .transpose()?
                        .flatten();
                    let outcome = match existing {
                        Some(mut contact) => {
                            match properties::merge(
                                &mut contact.properties,
                                input.properties.clone(),
                                &format!("/contacts/{index}/properties"),
                            ) {
                                Ok(()) => {
                                    contact.updated_at = now();
                                    tx.put(&contact)?;
                                    Ok(("updated", contact.id))
                                }
                                Err(error) => Err(error),
                            }
                        }
                        None => {
                            let at = now();
                            let mut properties = input.properties.clone();
                            properties.retain(|_, v| !v.is_null());
                            let contact = Contact {
                                id: new_id.clone(),
                                tenant_id: tenant.clone(),
                                email: input.email.clone(),
                                properties,
                                created_at: at.clone(),
                                updated_at: at,
                            };
                            tx.insert(&contact)?;
                            Ok(("created", contact.id))
                        }
                    };
                    written.push((*index, outcome));
                }
                Ok(written)
            })
            .await?;
        for (index, outcome) in written {
            let row = &mut results[index];
            match outcome {
                Ok((status, id)) => {
                    row.status = status;
                    row.id = Some(id);
                }
                Err(error) => {
                    row.status = "error";
                    row.error = Some(error.to_string());
                    row.errors = vec![error];
                }
            }
        }
        Ok(results)
    }

    /// One page of the tenant's contacts.
    pub fn list(&self, tenant_id: &str, query: &ContactQuery) -> Result<ContactPage> {
        let records = &self.records;
        let unfiltered = query.properties.is_empty() && query.q.is_none();
        if unfiltered {
            // Where the store keeps a table of contacts (PostgreSQL), the
            // filters, the sort and the count run on its indexes.
            let email = query.email.as_deref().map(str::to_lowercase);
            let stage = query.lifecycle_stage.as_deref().map(str::to_lowercase);
            let page = PageQuery {
                collection: Contact::COLLECTION,
                tenant: tenant_id,
                filters: [
                    ("email", email.as_deref()),
                    ("lifecycle_stage", stage.as_deref()),
                ]
                .into_iter()
                .filter_map(|(column, value)| Some((column, value?)))
                .collect(),
                between: None,
                sort: match query.sort_by {
                    ContactSort::CreatedAt => None,
                    ContactSort::UpdatedAt => Some("updated_at"),
                    ContactSort::Email => Some("email"),
                },
                descending: query.descending,
                skip: query.offset,
                limit: query.limit,
                count: true,
            };
            if let Some(selected) = records.select_page(&page) {
                let (ids, total) = selected?;
                let mut contacts = Vec::with_capacity(ids.len());
                for id in ids {
                    contacts.extend(records.get::<Contact>(&id)?);
                }
                return Ok(ContactPage { contacts, total });
            }
        }
        let candidates: Vec<Contact> = if let Some(email) = &query.email {
            records
                .get_by::<Contact>("contacts_by_email", &email_key(tenant_id, email))?
                .into_iter()
                .collect()
        } else if let Some(stage) = &query.lifecycle_stage {
            records.list_by(
                "contacts_by_stage",
                &format!("{tenant_id}\0{}", stage.to_lowercase()),
            )?
        } else if unfiltered && query.sort_by == ContactSort::CreatedAt {
            // The common page: straight from the time-ordered index.
            let prefix = format!("{tenant_id}\0");
            let total = records.index_count("contacts_by_tenant", &prefix, None, None)?;
            let ids = records.index_range(
                "contacts_by_tenant",
                &prefix,
                None,
                None,
                query.descending,
                query.offset,
                query.limit,
            )?;
            let mut contacts = Vec::with_capacity(ids.len());
            for (_, id) in ids {
                if let Some(contact) = records.get::<Contact>(&id)? {
                    contacts.push(contact);
                }
            }
            return Ok(ContactPage { contacts, total });
        } else {
            records.list_by("contacts_by_tenant", tenant_id)?
        };
        let needle = query.q.as_deref().map(str::to_lowercase);
        let mut matching: Vec<Contact> = candidates
            .into_iter()
            .filter(|contact| contact.tenant_id == tenant_id)
            .filter(|contact| {
                query.properties.iter().all(|(name, wanted)| {
                    contact
                        .properties
                        .get(name)
                        .and_then(properties::as_text)
                        .is_some_and(|value| value.eq_ignore_ascii_case(wanted))
                })
            })
            .filter(|contact| {
                needle.as_deref().is_none_or(|needle| {
                    let field = |name: &str| {
                        contact
                            .properties
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_lowercase()
                    };
                    contact.display_name().to_lowercase().contains(needle)
                        || contact
                            .email
                            .as_deref()
                            .is_some_and(|e| e.to_lowercase().contains(needle))
                        || field("company").contains(needle)
                })
            })
            .collect();
        // A stable sort on top of the id order (creation): ties keep it.
        match query.sort_by {
            ContactSort::CreatedAt => matching.sort_by(|a, b| a.id.cmp(&b.id)),
            ContactSort::UpdatedAt => matching.sort_by(|a, b| a.updated_at.cmp(&b.updated_at)),
            ContactSort::Email => {
                matching.sort_by_key(|c| c.email.as_deref().map(str::to_lowercase))
            }
        }
        if query.descending {
            matching.reverse();
        }
        let total = matching.len();
        let contacts = matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect();
        Ok(ContactPage { contacts, total })
    }

    /// The notes of a contact, newest first.
    pub fn notes(
        &self,
        tenant_id: &str,
        contact_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Note>, usize)> {
        self.get(tenant_id, contact_id)?;
        let prefix = format!("{tenant_id}\0{contact_id}\0");
        let total = self
            .records
            .index_count("notes_by_contact", &prefix, None, None)?;
        let mut notes = Vec::new();
        for (_, id) in self.records.index_range(
            "notes_by_contact",
            &prefix,
            None,
            None,
            true,
            offset,
            limit,
        )? {
            if let Some(note) = self.records.get::<Note>(&id)? {
                notes.push(note);
            }
        }
        Ok((notes, total))
    }

    /// The records, for the timeline and erasure.
    pub(crate) fn records(&self) -> &Records {
        &self.records
    }

    /// The events.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The actions.
    pub(crate) fn actions(&self) -> &Actions {
        &self.actions
    }
}

/// A contact of the tenant, if there is one.
pub fn find(records: &Records, tenant_id: &str, id: &str) -> Result<Option<Contact>, StoreError> {
    Ok(records
        .get::<Contact>(id)?
        .filter(|contact| contact.tenant_id == tenant_id))
}

/// Inside a transaction: the tenant's contact with `email`, created with
/// no properties when there is none. Returns its id. `new_id` is the id a
/// new contact gets (made outside, as the body may run twice).
pub fn find_or_create_in(
    tx: &RecordTx<'_>,
    tenant_id: &str,
    email: &str,
    new_id: &str,
) -> Result<String, TxError> {
    if let Some(id) = tx.find_unique("contacts_by_email", &email_key(tenant_id, email))? {
        return Ok(id);
    }
    let at = now();
    let contact = Contact {
        id: new_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        email: Some(email.to_owned()),
        properties: Map::new(),
        created_at: at.clone(),
        updated_at: at,
    };
    tx.insert(&contact)?;
    Ok(contact.id)
}

/// Writes a note for an action's attempt: one note per action, so a retry
/// replaces it. The id is derived from the tenant and the action's
/// idempotency key.
pub async fn add_note(
    records: &Records,
    tenant_id: &str,
    contact_id: &str,
    action_key: &str,
    action_id: Option<String>,
    body: String,
) -> Result<Note> {
    if body.trim().is_empty() {
        return Err(ContactError::fields(vec![FieldError::new(
            "/body",
            "a note must not be empty",
        )]));
    }
    let chars = body.chars().count();
    if chars > MAX_NOTE_CHARS {
        return Err(ContactError::fields(vec![FieldError::new(
            "/body",
            &format!("is {chars} characters long; a note holds at most {MAX_NOTE_CHARS}"),
        )]));
    }
    let id = {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{tenant_id}\0{action_key}").as_bytes());
        format!("nt_{}", &hex::encode(digest)[..24])
    };
    let created_ms = epoch_ms(std::time::SystemTime::now());
    let note = Note {
        id,
        tenant_id: tenant_id.to_owned(),
        contact_id: contact_id.to_owned(),
        body,
        action_id,
        created_at: now(),
        created_ms,
    };
    let (stored, tenant, contact) = (note.clone(), tenant_id.to_owned(), contact_id.to_owned());
    records
        .commit(move |tx| {
            // The contact may have been erased while the plugin ran.
            if tx
                .get::<Contact>(&contact)?
                .is_none_or(|c| c.tenant_id != tenant)
            {
                return Ok(Err(ContactError::NotFound(contact.clone())));
            }
            match tx.get::<Note>(&stored.id)? {
                // A retry keeps the first time the note was written.
                Some(first) => tx.put(&Note {
                    created_at: first.created_at,
                    created_ms: first.created_ms,
                    ..stored.clone()
                })?,
                None => tx.put(&stored)?,
            }
            Ok(Ok(()))
        })
        .await??;
    Ok(note)
}

/// One row of a batch: an object with an `email` and optional `properties`.
fn batch_row(row: &Value, index: usize) -> Result<ContactInput> {
    let at = format!("/contacts/{index}");
    let Value::Object(fields) = row else {
        return Err(ContactError::fields(vec![FieldError::new(
            &at,
            "must be an object with `email` and `properties`",
        )]));
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "email" && *k != "properties") {
        return Err(ContactError::fields(vec![FieldError::new(
            &format!("{at}/{}", properties::escape_pointer(unknown)),
            "unknown field; a row has `email` and `properties`",
        )]));
    }
    let email = match fields.get("email") {
        Some(Value::String(email)) => email.as_str(),
        Some(_) => {
            return Err(ContactError::fields(vec![FieldError::new(
                &format!("{at}/email"),
                "must be a string",
            )]));
        }
        None => {
            return Err(ContactError::fields(vec![FieldError::new(
                &format!("{at}/email"),
                "is required: a batch upserts contacts by their email",
            )]));
        }
    };
    let mut errors = Vec::new();
    let email = match properties::check_email(email) {
        Ok(email) => Some(email),
        Err(message) => {
            errors.push(FieldError::new(&format!("{at}/email"), &message));
            None
        }
    };
    let properties = match fields.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(value) => match properties::check(value, &format!("{at}/properties"), true) {
            Ok(map) => map,
            Err(mut found) => {
                errors.append(&mut found);
                Map::new()
            }
        },
    };
    if errors.is_empty() {
        Ok(ContactInput { email, properties })
    } else {
        Err(ContactError::fields(errors))
    }
}

/// A store refusal for a taken email, as the error that names its owner.
fn duplicate(err: StoreError, email: Option<&str>) -> ContactError {
    match err {
        StoreError::Duplicate {
            index: "contacts_by_email",
            owner,
            ..
        } => ContactError::Duplicate {
            email: email.unwrap_or_default().to_owned(),
            existing_id: owner,
        },
        other => other.into(),
    }
}
