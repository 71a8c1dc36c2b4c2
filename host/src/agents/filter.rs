//! An agent's monitoring filter: which contacts it looks at.
//!
//! ```json
//! { "lifecycle_stage": "lead",
//!   "properties": { "company": "Analytical Engines" },
//!   "events": [ { "event": "pageview", "url_contains": "/pricing",
//!                 "min_count": 2, "within_days": 7 } ] }
//! ```
//!
//! Every part given must hold. Event conditions are read from the contact's
//! own time-ordered events, newest first and only back to the window, so a
//! contact that cannot qualify costs a range read and never a model call.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actions::epoch_ms;
use crate::contacts::{Contact, properties};
use crate::events::{Event, EventQuery, Events};
use crate::runtime::FieldError;

/// The most days an event condition may look back.
pub const MAX_WINDOW_DAYS: u32 = 400;

/// A condition on a contact's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCondition {
    /// The event name, such as `pageview`.
    pub event: String,
    /// Only events whose url contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_contains: Option<String>,
    /// At least this many such events (default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000)]
    pub min_count: u32,
    /// Within this many days (default 30).
    #[serde(default = "thirty")]
    #[schema(minimum = 1, maximum = 400)]
    pub within_days: u32,
}

fn one() -> u32 {
    1
}

fn thirty() -> u32 {
    30
}

/// Which contacts an agent looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `properties.lifecyclestage`, without case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_stage: Option<String>,
    /// Properties that must have these values (without case).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// Conditions on the contact's events; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventCondition>,
}

impl Filter {
    /// Checks the filter's values, naming each problem under `at`.
    pub fn check(&self, at: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(mut found) = properties::check(
            &Value::Object(self.properties.clone()),
            &format!("{at}/properties"),
            false,
        ) {
            errors.append(&mut found);
        }
        for (index, condition) in self.events.iter().enumerate() {
            let here = format!("{at}/events/{index}");
            if condition.event.trim().is_empty() || condition.event.chars().count() > 100 {
                errors.push(FieldError::new(
                    &format!("{here}/event"),
                    "must be 1 to 100 characters",
                ));
            }
            if !(1..=1000).contains(&condition.min_count) {
                errors.push(FieldError::new(
                    &format!("{here}/min_count"),
                    "must be 1 to 1,000",
                ));
            }
            if !(1..=MAX_WINDOW_DAYS).contains(&condition.within_days) {
                errors.push(FieldError::new(
                    &format!("{here}/within_days"),
                    &format!("must be 1 to {MAX_WINDOW_DAYS}"),
                ));
            }
        }
        errors
    }

    /// Whether the contact's properties match (no store read).
    pub fn matches_properties(&self, contact: &Contact) -> bool {
        let text = |name: &str| contact.properties.get(name).and_then(properties::as_text);
        self.lifecycle_stage.as_ref().is_none_or(|stage| {
            text("lifecyclestage").is_some_and(|s| s.eq_ignore_ascii_case(stage))
        }) && self.properties.iter().all(|(name, wanted)| {
            match (text(name), properties::as_text(wanted)) {
                (Some(have), Some(want)) => have.eq_ignore_ascii_case(&want),
                _ => false,
            }
        })
    }

    /// Whether the contact matches: properties, then each event condition.
    pub fn matches(
        &self,
        events: &Events,
        contact: &Contact,
    ) -> Result<bool, crate::events::EventError> {
        if !self.matches_properties(contact) {
            return Ok(false);
        }
        let now = epoch_ms(SystemTime::now());
        for condition in &self.events {
            let since = now.saturating_sub(u64::from(condition.within_days) * 86_400_000);
            let mut found = 0;
            let mut offset = 0;
            // Newest first, a page at a time, back to the window's start.
            loop {
                let page: Vec<Event> = events.list(
                    &contact.tenant_id,
                    &EventQuery {
                        contact_id: Some(contact.id.clone()),
                        event: Some(condition.event.clone()),
                        since_ms: Some(since),
                        limit: 100,
                        offset,
                        descending: true,
                        ..EventQuery::default()
                    },
                )?;
                found += page
                    .iter()
                    .filter(|e| {
                        condition.url_contains.as_ref().is_none_or(|needle| {
                            e.url
                                .as_deref()
                                .is_some_and(|url| url.contains(needle.as_str()))
                        })
                    })
                    .count();
                if found >= condition.min_count as usize || page.len() < 100 {
                    break;
                }
                offset += page.len();
            }
            if found < condition.min_count as usize {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
