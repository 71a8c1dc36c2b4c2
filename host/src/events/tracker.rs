//! The site tracker: `GET /t.js`, publishable keys, and `POST /v1/track`.
//!
//! A site includes `/t.js` with a *publishable* key (`pk_…`): it is public
//! by design (it sits in the page), so it can do one thing only, append
//! events of its tenant, and only from the origins listed with it. The
//! script sends a `pageview` on each load and single-page navigation, with
//! an anonymous id kept in the site's own storage, and
//! `actionhost.identify(email)` links that id to a contact.
//!
//! `POST /v1/track` takes `navigator.sendBeacon` bodies (`text/plain` JSON,
//! which browsers send without a CORS preflight). A request whose `Origin`
//! is not on the key's list stores nothing and gets no CORS headers; each
//! key is rate-limited on its own ([`TrackerConfig`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{EventError, EventSource, Events, Subject, parse_event, valid_anonymous_id};
use crate::contacts::properties;
use crate::runtime::FieldError;
use crate::store::{IndexEntry, Record, Records, StoreError};
use crate::tenancy::{now, random_bytes};

/// The tracker script.
pub const SCRIPT: &str = include_str!("../../assets/t.js");

/// The most events one beacon carries.
pub const MAX_BEACON_EVENTS: usize = 50;
/// The most origins one publishable key lists.
pub const MAX_ORIGINS: usize = 50;

/// A publishable key: public, tied to origins, able only to track.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishableKey {
    /// The key itself, `pk_…`: it is public, and is its own id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// A label.
    pub name: String,
    /// The origins (`https://example.com`) whose pages may send events.
    pub allowed_origins: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once revoked.
    pub revoked_at: Option<String>,
}

impl Record for PublishableKey {
    const COLLECTION: &'static str = "publishable_keys";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi(
            "publishable_keys_by_tenant",
            &self.tenant_id,
        )]
    }
}

/// Settings of the tracker endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Requests per second each publishable key may send, sustained.
    pub rate_per_second: u32,
    /// Requests a key may send at once above the rate.
    pub burst: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            rate_per_second: 50,
            burst: 200,
        }
    }
}

/// Why a tracking request stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// No such key, or a revoked one.
    #[error(
        "unknown or revoked publishable key; copy the snippet again from POST /v1/publishable-keys"
    )]
    UnknownKey,
    /// The page's origin is not on the key's list (or was not sent).
    #[error(
        "the origin {0} may not send events with this key; add it to the key's allowed_origins"
    )]
    Origin(String),
    /// The key sent more than its rate.
    #[error("too many tracking requests for this key; retry in {} ms", .0.as_millis())]
    RateLimited(Duration),
    /// The body is wrong.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a beacon did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tracked {
    /// `success`.
    pub status: &'static str,
    /// Events stored.
    pub accepted: usize,
    /// The contact, after an `identify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
}

/// The body of `POST /v1/track`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Beacon {
    /// Read first, by [`Tracker::key_of`].
    #[serde(rename = "key")]
    _key: String,
    anonymous_id: String,
    #[serde(default)]
    events: Vec<Value>,
    #[serde(default)]
    identify: Option<Identify>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identify {
    email: String,
}

/// Publishable keys and the tracking endpoint.
#[derive(Clone)]
pub struct Tracker {
    records: Records,
    events: Events,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl Tracker {
    /// The tracker over `records`, storing into `events`.
    pub fn new(records: Records, events: Events, config: &TrackerConfig) -> Self {
        let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(rate);
        Self {
            records,
            events,
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }

    /// Mints a publishable key for the tenant.
    pub async fn mint(
        &self,
        tenant_id: &str,
        name: Option<String>,
        origins: &[String],
    ) -> Result<PublishableKey, EventError> {
        let allowed_origins = check_origins(origins)?;
        let key = PublishableKey {
            id: format!("pk_{}", hex::encode(random_bytes::<16>())),
            tenant_id: tenant_id.to_owned(),
            name: name.unwrap_or_else(|| "tracker".into()),
            allowed_origins,
            created_at: now(),
            revoked_at: None,
        };
        self.records.put_durably(key.clone()).await?;
        Ok(key)
    }

    /// The tenant's publishable keys.
    pub fn list(&self, tenant_id: &str) -> Result<Vec<PublishableKey>, StoreError> {
        self.records
            .list_by("publishable_keys_by_tenant", tenant_id)
    }

    /// Revokes a key of the tenant (`None` when it has no such key).
    pub async fn revoke(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<PublishableKey>, StoreError> {
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        self.records
            .commit(move |tx| {
                let Some(mut key) = tx
                    .get::<PublishableKey>(&id)?
                    .filter(|k| k.tenant_id == tenant)
                else {
                    return Ok(None);
                };
                if key.revoked_at.is_none() {
                    key.revoked_at = Some(now());
                    tx.put(&key)?;
                }
                Ok(Some(key))
            })
            .await
    }

    /// The active key `key` names, if its `origin` is allowed: the check a
    /// CORS answer depends on. `Ok(None)` for an unknown or revoked key.
    pub fn allowed(&self, key: &str, origin: Option<&str>) -> Result<PublishableKey, TrackError> {
        let Some(record) = self
            .records
            .get::<PublishableKey>(key)?
            .filter(|k| k.revoked_at.is_none())
        else {
            return Err(TrackError::UnknownKey);
        };
        match origin {
            Some(origin) if record.allowed_origins.iter().any(|o| o == origin) => Ok(record),
            Some(origin) => Err(TrackError::Origin(origin.to_owned())),
            None => Err(TrackError::Origin("(none sent)".into())),
        }
    }

    /// Whether `key` is a publishable key (active or revoked).
    pub fn is_publishable(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.records.get::<PublishableKey>(key)?.is_some())
    }

    /// Reads the key out of a beacon body, for the CORS decision, before
    /// the body is checked.
    pub fn key_of(body: &[u8]) -> Option<String> {
        let value: Value = serde_json::from_slice(body).ok()?;
        value.get("key")?.as_str().map(str::to_owned)
    }

    /// Handles one beacon from `origin`: the key, its origins and its rate,
    /// then the events and the identify. Nothing is stored unless all of
    /// it is valid.
    pub async fn track(&self, origin: Option<&str>, body: &[u8]) -> Result<Tracked, TrackError> {
        let key = Self::key_of(body).ok_or_else(|| {
            EventError::fields(vec![FieldError::new(
                "/key",
                "is required: the publishable key (pk_…) of the snippet",
            )])
        })?;
        let record = self.allowed(&key, origin)?;
        if let Err(not_until) = self.limiter.check_key(&record.id) {
            return Err(TrackError::RateLimited(
                not_until.wait_time_from(DefaultClock::default().now()),
            ));
        }
        let beacon: Beacon = serde_json::from_slice(body).map_err(|err| {
            EventError::fields(vec![FieldError::new(
                "",
                &format!("the body does not fit POST /v1/track: {err}"),
            )])
        })?;
        let mut errors = Vec::new();
        if !valid_anonymous_id(&beacon.anonymous_id) {
            errors.push(FieldError::new(
                "/anonymous_id",
                "must be 1 to 128 letters, digits, `_` or `-`",
            ));
        }
        if beacon.events.len() > MAX_BEACON_EVENTS {
            errors.push(FieldError::new(
                "/events",
                &format!(
                    "holds {} events; a beacon carries at most {MAX_BEACON_EVENTS}",
                    beacon.events.len()
                ),
            ));
        }
        let email = match &beacon.identify {
            None => None,
            Some(identify) => match properties::check_email(&identify.email) {
                Ok(email) => Some(email),
                Err(message) => {
                    errors.push(FieldError::new("/identify/email", &message));
                    None
                }
            },
        };
        let mut events = Vec::with_capacity(beacon.events.len());
        for (index, value) in beacon.events.iter().enumerate() {
            match parse_event(value, &format!("/events/{index}"), false) {
                Ok(mut event) => {
                    event.subject = Subject::Anonymous(beacon.anonymous_id.clone());
                    events.push(event);
                }
                Err(mut found) => errors.append(&mut found),
            }
        }
        if !errors.is_empty() {
            return Err(EventError::fields(errors).into());
        }
        let accepted = events.len();
        if !events.is_empty() {
            self.events
                .ingest(&record.tenant_id, events, EventSource::Tracker)
                .await?;
        }
        let contact_id = match email {
            Some(email) => Some(
                self.events
                    .identify(&record.tenant_id, &beacon.anonymous_id, &email)
                    .await?
                    .0,
            ),
            None => None,
        };
        Ok(Tracked {
            status: "success",
            accepted,
            contact_id,
        })
    }
}

/// Checks and normalises a key's origins: each `scheme://host[:port]`,
/// http or https, nothing after it.
fn check_origins(origins: &[String]) -> Result<Vec<String>, EventError> {
    if origins.is_empty() || origins.len() > MAX_ORIGINS {
        return Err(EventError::fields(vec![FieldError::new(
            "/allowed_origins",
            &format!("must list 1 to {MAX_ORIGINS} origins, such as https://www.example.com"),
        )]));
    }
    let mut normalised = Vec::with_capacity(origins.len());
    let mut errors = Vec::new();
    for (index, origin) in origins.iter().enumerate() {
        match origin_form(origin).then(|| serialise_origin(origin)) {
            Some(origin) => normalised.push(origin),
            None => errors.push(FieldError::new(
                &format!("/allowed_origins/{index}"),
                &format!(
                    "{:?} is not an origin; write scheme, host and port only, such as https://www.example.com or http://localhost:3000",
                    properties::truncated(origin)
                ),
            )),
        }
    }
    if errors.is_empty() {
        normalised.sort();
        normalised.dedup();
        Ok(normalised)
    } else {
        Err(EventError::fields(errors))
    }
}

/// An origin as browsers send it in `Origin`: lower case, no default port,
/// no trailing `/`. `origin` is in [`origin_form`].
fn serialise_origin(origin: &str) -> String {
    let lower = origin.trim_end_matches('/').to_ascii_lowercase();
    let default_port = if lower.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    lower
        .strip_suffix(default_port)
        .map_or(lower.clone(), str::to_owned)
}

/// `http` or `https`, `://`, host labels of letters, digits and `-`
/// separated by dots, an optional port from 1 to 65535, an optional `/`:
/// the pattern `/openapi.json` states for an origin.
fn origin_form(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = host.split('.').all(|label| {
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    let port_ok = port.is_none_or(|port| {
        !port.is_empty()
            && !port.starts_with('0')
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::check_origins;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let ok = check_origins(&[
            "https://www.example.com".into(),
            "http://127.0.0.1:8000/".into(),
            "https://www.example.com:443".into(),
            "https://WWW.Example.com/".into(),
        ])
        .expect("valid");
        assert_eq!(ok, ["http://127.0.0.1:8000", "https://www.example.com"]);
        for bad in [
            "www.example.com",
            "https://example.com/path",
            "ftp://example.com",
            "https://example.com?x=1",
            "*",
            "https://example.com*",
            "http://example.com:77854",
            "http://example.com:0",
        ] {
            assert!(check_origins(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(check_origins(&[]).is_err());
    }
}
