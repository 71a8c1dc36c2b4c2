//! A contact's timeline: events, actions and notes merged, newest first —
//! the "unified profile" agents read.
//!
//! Each source has a per-contact index ordered by time (events and notes
//! carry the time in the index value, actions in their time-ordered id), so
//! a page at `offset` reads at most `offset + limit` entries of each source,
//! newest first, merges them by time and loads only the records of the page.

use serde::Serialize;

use super::{ContactError, Contacts, Note, NoteView};
use crate::actions::{Action, ActionStatus, action_id_ms};
use crate::events::{Event, EventView};
use crate::store::Records;

/// What a timeline entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimelineItem {
    /// An event (`event` is set).
    Event,
    /// An action (`action` is set).
    Action,
    /// A note (`note` is set).
    Note,
}

/// An action as the timeline shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionBrief {
    /// `act_…`.
    pub id: String,
    /// The action type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its status now.
    pub status: ActionStatus,
    /// "Email to ada@example.com".
    pub summary: String,
    /// Its params.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The agent that proposed it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Action> for ActionBrief {
    fn from(action: Action) -> Self {
        Self {
            id: action.id,
            action_type: action.action_type,
            status: action.status,
            summary: action.summary,
            params: action.params,
            agent_id: action.agent_id,
            created_at: action.created_at,
            updated_at: action.updated_at,
        }
    }
}

/// One entry of a timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// `event`, `action` or `note`.
    pub kind: TimelineItem,
    /// When it happened (an event's `occurred_at`, an action's or a note's
    /// creation), RFC 3339.
    pub at: String,
    /// The event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventView>,
    /// The action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionBrief>,
    /// The note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<NoteView>,
}

/// A reference to an entry before its record is read.
struct Head {
    ms: u64,
    kind: TimelineItem,
    id: String,
}

impl Contacts {
    /// A page of the contact's timeline, newest first, and how many entries
    /// it has in all.
    pub fn timeline(
        &self,
        tenant_id: &str,
        contact_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<TimelineEntry>, usize), ContactError> {
        self.get(tenant_id, contact_id)?;
        let records = self.records();
        let wanted = offset.saturating_add(limit);
        let prefix = format!("{tenant_id}\0{contact_id}\0");
        let mut heads = Vec::new();
        let mut total = 0;
        for (index, kind) in [
            ("events_by_contact", TimelineItem::Event),
            ("notes_by_contact", TimelineItem::Note),
        ] {
            total += records.index_count(index, &prefix, None, None)?;
            for (value, id) in records.index_range(index, &prefix, None, None, true, 0, wanted)? {
                let ms = value
                    .rsplit('\0')
                    .next()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                heads.push(Head { ms, kind, id });
            }
        }
        let action_prefix = format!("{tenant_id}\0{contact_id}\0");
        total += records.index_count("actions_by_contact", &action_prefix, None, None)?;
        for (_, id) in records.index_range(
            "actions_by_contact",
            &action_prefix,
            None,
            None,
            true,
            0,
            wanted,
        )? {
            heads.push(Head {
                ms: action_id_ms(&id).unwrap_or(0),
                kind: TimelineItem::Action,
                id,
            });
        }
        // Newest first; ties in a fixed order so that pages never overlap.
        heads.sort_by(|a, b| b.ms.cmp(&a.ms).then_with(|| b.id.cmp(&a.id)));
        let mut entries = Vec::with_capacity(limit);
        for head in heads.into_iter().skip(offset).take(limit) {
            if let Some(entry) = load(records, head)? {
                entries.push(entry);
            }
        }
        Ok((entries, total))
    }
}

fn load(records: &Records, head: Head) -> Result<Option<TimelineEntry>, ContactError> {
    let entry = |kind, at| TimelineEntry {
        kind,
        at,
        event: None,
        action: None,
        note: None,
    };
    Ok(match head.kind {
        TimelineItem::Event => records.get::<Event>(&head.id)?.map(|event| TimelineEntry {
            event: Some(event.clone().into()),
            ..entry(TimelineItem::Event, event.occurred_at)
        }),
        TimelineItem::Action => records
            .get::<Action>(&head.id)?
            .map(|action| TimelineEntry {
                at: action.created_at.clone(),
                action: Some(action.into()),
                ..entry(TimelineItem::Action, String::new())
            }),
        TimelineItem::Note => records.get::<Note>(&head.id)?.map(|note| TimelineEntry {
            at: note.created_at.clone(),
            note: Some(note.into()),
            ..entry(TimelineItem::Note, String::new())
        }),
    })
}
