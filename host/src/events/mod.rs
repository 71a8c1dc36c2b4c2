//! Events: what contacts did, from a server (`POST /v1/events`) or from the
//! tracker on a web site (`/t.js` and `POST /v1/track`, in [`tracker`]).
//!
//! Events are the highest-volume writes of the product, so their layout is
//! chosen for range reads:
//!
//! - `events_by_tenant` (`TENANT\0MS`), `events_by_contact`
//!   (`TENANT\0CONTACT\0MS`) and `events_by_anonymous` (`TENANT\0ANON\0MS`)
//!   are ordered by the time the event occurred (milliseconds, zero-padded),
//!   so a contact's latest 50 events are one reverse range read of 50 index
//!   keys, however many events are stored;
//! - `events_by_time` (`MS`) is what the retention sweep reads from its
//!   oldest end ([`Events::sweep`]).
//!
//! A batch (up to [`MAX_BATCH`]) is checked whole before anything is
//! written, then written in one durable write: all of it or none.
//!
//! An anonymous id (the tracker's visitor) becomes a contact with
//! [`Events::identify`]: an [`AnonymousLink`] sends its later events to the
//! contact, and its earlier ones are moved over.

pub mod tracker;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actions::epoch_ms;
use crate::contacts::{Contact, find_or_create_in, properties};
use crate::runtime::FieldError;
use crate::store::{IndexEntry, PageQuery, Record, Records, StoreError};
use crate::tenancy::{new_ordered_id, now};

/// The most events one request writes.
pub const MAX_BATCH: usize = 1000;
/// The longest event name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest url, in bytes.
pub const MAX_URL_BYTES: usize = 4096;
/// How far ahead of the server's clock `occurred_at` may be.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(24 * 3600);
/// How many events one write of a sweep or an erasure removes.
const REMOVE_BATCH: usize = 500;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// `POST /v1/events`, with a secret key.
    Api,
    /// The site tracker, with a publishable key.
    Tracker,
}

/// A stored event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// `ev_…`, ordered by when it was received.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// `pageview`, or any name.
    pub event: String,
    /// The page, when there is one.
    pub url: Option<String>,
    /// The contact, once known.
    pub contact_id: Option<String>,
    /// The tracker's visitor id.
    pub anonymous_id: Option<String>,
    /// RFC 3339, milliseconds.
    pub occurred_at: String,
    /// The same, in milliseconds since the epoch (the indexes' order).
    pub occurred_ms: u64,
    /// Free properties.
    pub properties: Map<String, Value>,
    /// Where it came from.
    pub source: EventSource,
    /// RFC 3339.
    pub received_at: String,
}

impl Record for Event {
    const COLLECTION: &'static str = "events";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        let (tenant, ms) = (&self.tenant_id, self.occurred_ms);
        let mut entries = vec![
            IndexEntry::multi("events_by_tenant", format!("{tenant}\0{ms:013}")),
            IndexEntry::multi("events_by_time", format!("{ms:013}")),
        ];
        if let Some(contact) = &self.contact_id {
            entries.push(IndexEntry::multi(
                "events_by_contact",
                format!("{tenant}\0{contact}\0{ms:013}"),
            ));
        }
        if let Some(anonymous) = &self.anonymous_id {
            entries.push(IndexEntry::multi(
                "events_by_anonymous",
                format!("{tenant}\0{anonymous}\0{ms:013}"),
            ));
        }
        entries
    }
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"_id": "ev_0193a1b2c3d4e5f6a7b8", "event": "pageview", "url": "https://example.com/pricing", "contact_id": "ct_0193a1b2c3d4e5f6a7b8", "occurred_at": "2026-12-01T14:03:00.000Z", "properties": {"title": "Pricing"}}))]
pub struct EventView {
    /// `ev_…`.
    #[serde(rename = "_id")]
    pub id: String,
    /// `pageview`, or any name.
    pub event: String,
    /// The page.
    pub url: Option<String>,
    /// The contact, once known.
    pub contact_id: Option<String>,
    /// The tracker's visitor id.
    pub anonymous_id: Option<String>,
    /// RFC 3339.
    pub occurred_at: String,
    /// Free properties.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// `api` or `tracker`.
    pub source: EventSource,
    /// RFC 3339.
    pub received_at: String,
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        Self {
            id: event.id,
            event: event.event,
            url: event.url,
            contact_id: event.contact_id,
            anonymous_id: event.anonymous_id,
            occurred_at: event.occurred_at,
            properties: event.properties,
            source: event.source,
            received_at: event.received_at,
        }
    }
}

/// A tracker visitor who turned out to be a contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnonymousLink {
    /// Derived from the tenant and the anonymous id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The visitor.
    pub anonymous_id: String,
    /// The contact.
    pub contact_id: String,
    /// RFC 3339.
    pub linked_at: String,
}

impl AnonymousLink {
    fn id_for(tenant_id: &str, anonymous_id: &str) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{tenant_id}\0{anonymous_id}").as_bytes());
        format!("anon_{}", &hex::encode(digest)[..32])
    }
}

impl Record for AnonymousLink {
    const COLLECTION: &'static str = "anonymous_links";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi(
            "anonymous_by_contact",
            format!("{}\0{}", self.tenant_id, self.contact_id),
        )]
    }
}

/// Who an incoming event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A known contact.
    Contact(String),
    /// An email: the contact, created if missing.
    Email(String),
    /// A visitor not (yet) known as a contact.
    Anonymous(String),
}

/// An incoming event, checked.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its name.
    pub event: String,
    /// The page.
    pub url: Option<String>,
    /// Its properties.
    pub properties: Map<String, Value>,
    /// When it happened, milliseconds since the epoch.
    pub occurred_ms: u64,
    /// Who it is about.
    pub subject: Subject,
    /// Where the request had it (a JSON Pointer, such as `/events/3`), for
    /// errors found when it is written.
    pub at: String,
}

/// Why an event operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The request is wrong; `fields` names each problem.
    #[error("{message}")]
    Invalid {
        /// What to fix.
        message: String,
        /// Each failing field.
        fields: Vec<FieldError>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventError {
    /// An `Invalid` naming `fields`.
    pub fn fields(fields: Vec<FieldError>) -> Self {
        Self::Invalid {
            message: format!("invalid events: {}", FieldError::summary(&fields)),
            fields,
        }
    }
}

/// Whether `id` may be an anonymous id: 1 to 128 letters, digits, `_` or `-`.
pub fn valid_anonymous_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks one event object of a request at `at` (such as `/events/3`).
/// `subjects` lists the fields that may name who it is about: the API
/// takes `contact_id`, `email` or `anonymous_id`; the tracker sets the
/// subject itself and takes none.
pub fn parse_event(value: &Value, at: &str, subjects: bool) -> Result<NewEvent, Vec<FieldError>> {
    let Value::Object(fields) = value else {
        return Err(vec![FieldError::new(at, "must be an event object")]);
    };
    let mut errors = Vec::new();
    let known: &[&str] = if subjects {
        &[
            "event",
            "url",
            "properties",
            "occurred_at",
            "contact_id",
            "email",
            "anonymous_id",
        ]
    } else {
        &["event", "url", "properties", "occurred_at"]
    };
    for name in fields.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(FieldError::new(
            &format!("{at}/{}", properties::escape_pointer(name)),
            &format!("unknown field; an event has {}", known.join(", ")),
        ));
    }
    let text = |name: &str, errors: &mut Vec<FieldError>| -> Option<String> {
        match fields.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::new(&format!("{at}/{name}"), "must be a string"));
                None
            }
        }
    };
    let event = match text("event", &mut errors) {
        Some(name)
            if !name.trim().is_empty()
                && name.chars().count() <= MAX_NAME_CHARS
                && !name.chars().any(char::is_control) =>
        {
            name
        }
        Some(_) => {
            errors.push(FieldError::new(
                &format!("{at}/event"),
                &format!("must be 1 to {MAX_NAME_CHARS} printable characters, such as pageview"),
            ));
            String::new()
        }
        None => {
            if !fields.contains_key("event") {
                errors.push(FieldError::new(
                    &format!("{at}/event"),
                    "is required: `pageview` or any event name",
                ));
            }
            String::new()
        }
    };
    let url = text("url", &mut errors).and_then(|url| {
        let fine = url.len() <= MAX_URL_BYTES
            && url::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if fine {
            Some(url)
        } else {
            errors.push(FieldError::new(
                &format!("{at}/url"),
                &format!("must be an absolute http or https url of at most {MAX_URL_BYTES} bytes"),
            ));
            None
        }
    });
    let properties = match fields.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(value) => properties::check(value, &format!("{at}/properties"), false).unwrap_or_else(
            |mut found| {
                errors.append(&mut found);
                Map::new()
            },
        ),
    };
    let now_ms = epoch_ms(SystemTime::now());
    let occurred_ms = match text("occurred_at", &mut errors) {
        None => now_ms,
        Some(time) => match crate::actions::parse_time(&time).map(epoch_ms) {
            Ok(ms) if ms <= now_ms + MAX_CLOCK_SKEW.as_millis() as u64 => ms,
            Ok(_) => {
                errors.push(FieldError::new(
                    &format!("{at}/occurred_at"),
                    "is more than a day in the future; send the time the event happened",
                ));
                now_ms
            }
            Err(_) => {
                errors.push(FieldError::new(
                    &format!("{at}/occurred_at"),
                    &format!(
                        "{:?} is not an RFC 3339 time; for example 2026-01-31T09:00:00Z",
                        properties::truncated(&time)
                    ),
                ));
                now_ms
            }
        },
    };
    let subject = if subjects {
        let contact = text("contact_id", &mut errors);
        let email = text("email", &mut errors);
        let anonymous = text("anonymous_id", &mut errors);
        match (contact, email, anonymous) {
            (Some(id), None, None) => Some(Subject::Contact(id)),
            (None, Some(email), None) => match properties::check_email(&email) {
                Ok(email) => Some(Subject::Email(email)),
                Err(message) => {
                    errors.push(FieldError::new(&format!("{at}/email"), &message));
                    None
                }
            },
            (None, None, Some(id)) if valid_anonymous_id(&id) => Some(Subject::Anonymous(id)),
            (None, None, Some(_)) => {
                errors.push(FieldError::new(
                    &format!("{at}/anonymous_id"),
                    "must be 1 to 128 letters, digits, `_` or `-`",
                ));
                None
            }
            (None, None, None) => {
                errors.push(FieldError::new(
                    at,
                    "name who the event is about: one of contact_id, email or anonymous_id",
                ));
                None
            }
            _ => {
                errors.push(FieldError::new(
                    at,
                    "give only one of contact_id, email or anonymous_id",
                ));
                None
            }
        }
    } else {
        Some(Subject::Anonymous(String::new()))
    };
    match subject {
        Some(subject) if errors.is_empty() => Ok(NewEvent {
            event,
            url,
            properties,
            occurred_ms,
            subject,
            at: at.to_owned(),
        }),
        _ => Err(errors),
    }
}

/// Filters and order of an event listing.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// One contact's events.
    pub contact_id: Option<String>,
    /// One visitor's events.
    pub anonymous_id: Option<String>,
    /// Events of this name.
    pub event: Option<String>,
    /// Occurred at or after, ms.
    pub since_ms: Option<u64>,
    /// Occurred at or before, ms.
    pub until_ms: Option<u64>,
    /// Page size.
    pub limit: usize,
    /// Offset.
    pub offset: usize,
    /// Newest first.
    pub descending: bool,
}

/// Settings of events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events that occurred longer ago than this are removed.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the retention sweep runs.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(400 * 24 * 3600),
            sweep_interval: Duration::from_secs(3600),
        }
    }
}

/// The events of every tenant.
#[derive(Clone)]
pub struct Events {
    records: Records,
    config: EventsConfig,
}

impl Events {
    /// Events over `records`.
    pub fn new(records: Records, config: EventsConfig) -> Self {
        Self { records, config }
    }

    /// Stores checked events in one durable write, all or none: a contact
    /// named by id must exist, one named by email is created if missing,
    /// and a visitor already linked to a contact is filed under it.
    pub async fn ingest(
        &self,
        tenant_id: &str,
        events: Vec<NewEvent>,
        source: EventSource,
    ) -> Result<Vec<Event>, EventError> {
        let received_at = now();
        // Ids are made here: the body may run more than once.
        let planned: Vec<(NewEvent, String, String)> = events
            .into_iter()
            .map(|event| (event, new_ordered_id("ev"), new_ordered_id("ct")))
            .collect();
        let tenant = tenant_id.to_owned();
        let stored = self
            .records
            .commit(move |tx| {
                // Every read that can refuse the batch comes before any write.
                let mut missing = Vec::new();
                for (event, _, _) in &planned {
                    if let Subject::Contact(id) = &event.subject
                        && tx.get::<Contact>(id)?.is_none_or(|c| c.tenant_id != tenant)
                    {
                        missing.push(FieldError::new(
                            &format!("{}/contact_id", event.at),
                            &format!("no contact {id} in this tenant (unknown or deleted)"),
                        ));
                    }
                }
                if !missing.is_empty() {
                    return Ok(Err(EventError::fields(missing)));
                }
                let mut stored = Vec::with_capacity(planned.len());
                for (event, id, new_contact_id) in &planned {
                    let (contact_id, anonymous_id) = match &event.subject {
                        Subject::Contact(id) => (Some(id.clone()), None),
                        Subject::Email(email) => (
                            Some(find_or_create_in(tx, &tenant, email, new_contact_id)?),
                            None,
                        ),
                        Subject::Anonymous(anonymous) => {
                            let link = tx
                                .get::<AnonymousLink>(&AnonymousLink::id_for(&tenant, anonymous))?;
                            (link.map(|l| l.contact_id), Some(anonymous.clone()))
                        }
                    };
                    let record = Event {
                        id: id.clone(),
                        tenant_id: tenant.clone(),
                        event: event.event.clone(),
                        url: event.url.clone(),
                        contact_id,
                        anonymous_id,
                        occurred_at: rfc3339_ms(event.occurred_ms),
                        occurred_ms: event.occurred_ms,
                        properties: event.properties.clone(),
                        source,
                        received_at: received_at.clone(),
                    };
                    tx.put(&record)?;
                    stored.push(record);
                }
                Ok(Ok(stored))
            })
            .await??;
        Ok(stored)
    }

    /// Links a visitor to the contact with `email` (created if missing):
    /// their later events go to the contact, and their earlier ones are
    /// moved over. Returns the contact's id and how many events moved.
    pub async fn identify(
        &self,
        tenant_id: &str,
        anonymous_id: &str,
        email: &str,
    ) -> Result<(String, usize), EventError> {
        let (tenant, anonymous, email, new_id) = (
            tenant_id.to_owned(),
            anonymous_id.to_owned(),
            email.to_owned(),
            new_ordered_id("ct"),
        );
        let contact_id = self
            .records
            .commit(move |tx| {
                let contact_id = find_or_create_in(tx, &tenant, &email, &new_id)?;
                tx.put(&AnonymousLink {
                    id: AnonymousLink::id_for(&tenant, &anonymous),
                    tenant_id: tenant.clone(),
                    anonymous_id: anonymous.clone(),
                    contact_id: contact_id.clone(),
                    linked_at: now(),
                })?;
                Ok(contact_id)
            })
            .await?;
        // The link is durable: every event written from now on finds it,
        // and every one written before is in the index read below.
        let prefix = format!("{tenant_id}\0{anonymous_id}\0");
        let mut moved = 0;
        let mut skip = 0;
        loop {
            // Linking leaves an event in this index, so pages by offset are stable.
            let ids: Vec<String> = self
                .records
                .index_range(
                    "events_by_anonymous",
                    &prefix,
                    None,
                    None,
                    false,
                    skip,
                    REMOVE_BATCH,
                )?
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            let read = ids.len();
            skip += read;
            let contact = contact_id.clone();
            moved += self
                .records
                .commit(move |tx| {
                    let mut moved = 0;
                    for id in &ids {
                        if let Some(mut event) = tx.get::<Event>(id)?
                            && event.contact_id.is_none()
                        {
                            event.contact_id = Some(contact.clone());
                            tx.put(&event)?;
                            moved += 1;
                        }
                    }
                    Ok(moved)
                })
                .await?;
            if read < REMOVE_BATCH {
                break;
            }
        }
        Ok((contact_id, moved))
    }

    /// One page of the tenant's events.
    pub fn list(&self, tenant_id: &str, query: &EventQuery) -> Result<Vec<Event>, EventError> {
        // Where the store keeps a table of events (PostgreSQL), the page is
        // one query on its indexes, whatever the filters.
        let bound = |ms: Option<u64>| ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let page = PageQuery {
            collection: Event::COLLECTION,
            tenant: tenant_id,
            filters: [
                ("contact_id", query.contact_id.as_deref()),
                // As below: a contact's events, else a visitor's.
                (
                    "anonymous_id",
                    query
                        .anonymous_id
                        .as_deref()
                        .filter(|_| query.contact_id.is_none()),
                ),
                ("event", query.event.as_deref()),
            ]
            .into_iter()
            .filter_map(|(column, value)| Some((column, value?)))
            .collect(),
            between: (query.since_ms.is_some() || query.until_ms.is_some())
                .then(|| ("occurred_ms", bound(query.since_ms), bound(query.until_ms))),
            sort: Some("occurred_ms"),
            descending: query.descending,
            skip: query.offset,
            limit: query.limit,
            count: false,
        };
        if let Some(selected) = self.records.select_page(&page) {
            let mut events = Vec::new();
            for id in selected?.0 {
                events.extend(self.records.get::<Event>(&id)?);
            }
            return Ok(events);
        }
        let (index, prefix) = match (&query.contact_id, &query.anonymous_id) {
            (Some(contact), _) => ("events_by_contact", format!("{tenant_id}\0{contact}\0")),
            (None, Some(anonymous)) => {
                ("events_by_anonymous", format!("{tenant_id}\0{anonymous}\0"))
            }
            (None, None) => ("events_by_tenant", format!("{tenant_id}\0")),
        };
        let lower = query.since_ms.map(|ms| format!("{ms:013}"));
        let upper = query
            .until_ms
            .map(|ms| format!("{:013}", ms.saturating_add(1)));
        let wanted = query.offset.saturating_add(query.limit);
        let mut matching = Vec::new();
        let mut skip = 0;
        // Without a name filter one read is the page; with one, pages of
        // index entries are read until enough events match.
        let chunk = if query.event.is_some() { 500 } else { wanted };
        loop {
            let heads = self.records.index_range(
                index,
                &prefix,
                lower.as_deref(),
                upper.as_deref(),
                query.descending,
                skip,
                chunk,
            )?;
            let read = heads.len();
            skip += read;
            for (_, id) in heads {
                let Some(event) = self.records.get::<Event>(&id)? else {
                    continue;
                };
                if query.event.as_ref().is_none_or(|name| &event.event == name) {
                    matching.push(event);
                }
            }
            if read < chunk || matching.len() >= wanted {
                break;
            }
        }
        Ok(matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect())
    }

    /// Removes a contact's events and unlinks its anonymous ids, in bounded
    /// writes; returns how many of each.
    pub async fn erase_contact(
        &self,
        tenant_id: &str,
        contact_id: &str,
    ) -> Result<(usize, usize), StoreError> {
        let events = self
            .records
            .remove_listed::<Event>(
                "events_by_contact",
                &format!("{tenant_id}\0{contact_id}\0"),
                None,
                REMOVE_BATCH,
            )
            .await?;
        let links = self.records.ids_by(
            "anonymous_by_contact",
            &format!("{tenant_id}\0{contact_id}"),
        )?;
        let anonymous = links.len();
        // A visitor's events from before the link were moved to the
        // contact and are gone with it; those still filed only under the
        // visitor id go too, since the visitor is this person.
        let mut unlinked_events = 0;
        for id in &links {
            if let Some(link) = self.records.get::<AnonymousLink>(id)? {
                unlinked_events += self
                    .records
                    .remove_listed::<Event>(
                        "events_by_anonymous",
                        &format!("{tenant_id}\0{}\0", link.anonymous_id),
                        None,
                        REMOVE_BATCH,
                    )
                    .await?;
            }
        }
        self.records
            .commit(move |tx| {
                for id in &links {
                    tx.remove::<AnonymousLink>(id)?;
                }
                Ok(())
            })
            .await?;
        Ok((events + unlinked_events, anonymous))
    }

    /// Removes every event that occurred before `cutoff_ms`; returns how many.
    pub async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        crate::retention::remove_paced::<Event>(
            &self.records,
            "events_by_time",
            &format!("{cutoff_ms:013}"),
        )
        .await
    }

    /// The retention sweep, every `sweep_interval` until `stop`.
    pub async fn run_retention(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let cutoff = epoch_ms(SystemTime::now()).saturating_sub(
                u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX),
            );
            let swept = self.sweep(cutoff).await;
            if let Ok(removed) = swept {
                crate::metrics::retention_removed("events", removed);
            }
            match swept {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    retention = %humantime::format_duration(self.config.retention),
                    "events retention: removed events older than the retention"
                ),
                Err(err) => {
                    tracing::error!(%err, "events retention sweep failed; it runs again later")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.sweep_interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// RFC 3339 with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
