//! Listing a tenant's actions: filters, sorts and pages.

use super::{Action, ActionStatus, Actions, Result};
use crate::store::PageQuery;

/// A page of actions.
#[derive(Debug)]
pub struct Page {
    /// The actions of the page.
    pub actions: Vec<Action>,
    /// How many match the filters.
    pub total: usize,
}

/// Filters and order of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// By status.
    pub status: Option<ActionStatus>,
    /// By action type.
    pub action_type: Option<String>,
    /// By list.
    pub list_id: Option<String>,
    /// By list item.
    pub item_id: Option<String>,
    /// By identity.
    pub identity_id: Option<String>,
    /// By the contact it addresses.
    pub contact_id: Option<String>,
    /// By the agent that proposed it.
    pub agent_id: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Offset.
    pub skip: usize,
    /// `created_at` (default), `updated_at`, `scheduled_time`, `due_at`, `status`, `type`.
    pub sort_by: SortField,
    /// Descending (default) or ascending.
    pub descending: bool,
}

/// A field actions can be sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortField {
    /// Creation time (the id order).
    #[default]
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// The requested time.
    ScheduledTime,
    /// The next due time.
    DueAt,
    /// Status name.
    Status,
    /// Action type.
    Type,
}

impl std::str::FromStr for SortField {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "scheduled_time" => Self::ScheduledTime,
            "due_at" => Self::DueAt,
            "status" => Self::Status,
            "type" => Self::Type,
            other => {
                return Err(format!(
                    "cannot sort by {other:?}; one of: created_at, updated_at, scheduled_time, due_at, status, type"
                ));
            }
        })
    }
}

impl Actions {
    /// One page of the tenant's actions.
    pub fn list(&self, tenant_id: &str, query: &ListQuery) -> Result<Page> {
        let records = self.records();
        // A store with a table of actions (PostgreSQL) filters, sorts and
        // counts on its indexes.
        if let Some(selected) = records.select_page(&page_query(tenant_id, query)) {
            let (ids, total) = selected?;
            let mut actions = Vec::new();
            for id in &ids {
                if let Some(action) = records.get::<Action>(id)? {
                    actions.push(action);
                }
            }
            return Ok(Page { actions, total });
        }
        // The most selective index the filters name; the rest filter in memory.
        let (index, value) = if let Some(contact) = &query.contact_id {
            ("actions_by_contact", format!("{tenant_id}\0{contact}"))
        } else if let Some(agent) = &query.agent_id {
            ("actions_by_agent", format!("{tenant_id}\0{agent}"))
        } else if let Some(status) = query.status {
            ("actions_by_status", format!("{tenant_id}\0{status}"))
        } else if let Some(item) = &query.item_id {
            ("actions_by_item", format!("{tenant_id}\0{item}"))
        } else if let Some(list) = &query.list_id {
            ("actions_by_list", format!("{tenant_id}\0{list}"))
        } else if let Some(identity) = &query.identity_id {
            ("actions_by_identity", format!("{tenant_id}\0{identity}"))
        } else if let Some(action_type) = &query.action_type {
            ("actions_by_type", format!("{tenant_id}\0{action_type}"))
        } else {
            ("actions_by_tenant", tenant_id.to_owned())
        };
        let filters_used = [
            query.contact_id.is_some(),
            query.agent_id.is_some(),
            query.status.is_some(),
            query.item_id.is_some(),
            query.list_id.is_some(),
            query.identity_id.is_some(),
            query.action_type.is_some(),
        ]
        .into_iter()
        .filter(|used| *used)
        .count();
        // Ids are time-ordered, so the index order is the creation order.
        let mut ids = records.ids_by(index, &value)?;
        if filters_used <= 1 && query.sort_by == SortField::CreatedAt {
            let total = ids.len();
            if query.descending {
                ids.reverse();
            }
            let mut actions = Vec::new();
            for id in ids.iter().skip(query.skip).take(query.limit) {
                if let Some(action) = records.get::<Action>(id)? {
                    actions.push(action);
                }
            }
            return Ok(Page { actions, total });
        }
        let mut matching = Vec::new();
        for id in &ids {
            let Some(action) = records.get::<Action>(id)? else {
                continue;
            };
            let keep = query.status.is_none_or(|s| action.status == s)
                && query
                    .action_type
                    .as_ref()
                    .is_none_or(|t| &action.action_type == t)
                && query
                    .list_id
                    .as_ref()
                    .is_none_or(|l| action.list_id.as_ref() == Some(l))
                && query
                    .item_id
                    .as_ref()
                    .is_none_or(|i| action.item_id.as_ref() == Some(i))
                && query
                    .identity_id
                    .as_ref()
                    .is_none_or(|i| &action.identity_id == i)
                && query
                    .contact_id
                    .as_ref()
                    .is_none_or(|c| action.contact_id.as_ref() == Some(c))
                && query
                    .agent_id
                    .as_ref()
                    .is_none_or(|a| action.agent_id.as_ref() == Some(a));
            if keep {
                matching.push(action);
            }
        }
        // A stable sort on top of the creation order: ties stay in it.
        match query.sort_by {
            SortField::CreatedAt => {}
            SortField::UpdatedAt => matching.sort_by(|a, b| a.updated_at.cmp(&b.updated_at)),
            SortField::ScheduledTime => {
                matching.sort_by(|a, b| a.scheduled_time.cmp(&b.scheduled_time));
            }
            SortField::DueAt => matching.sort_by_key(|a| a.due_ms),
            SortField::Status => matching.sort_by(|a, b| a.status.as_str().cmp(b.status.as_str())),
            SortField::Type => matching.sort_by(|a, b| a.action_type.cmp(&b.action_type)),
        }
        if query.descending {
            matching.reverse();
        }
        let total = matching.len();
        let actions = matching
            .into_iter()
            .skip(query.skip)
            .take(query.limit)
            .collect();
        Ok(Page { actions, total })
    }
}

/// The listing as a [`PageQuery`] of the `actions` table.
fn page_query<'a>(tenant_id: &'a str, query: &'a ListQuery) -> PageQuery<'a> {
    let filters = [
        ("status", query.status.map(ActionStatus::as_str)),
        ("action_type", query.action_type.as_deref()),
        ("list_id", query.list_id.as_deref()),
        ("item_id", query.item_id.as_deref()),
        ("identity_id", query.identity_id.as_deref()),
        ("contact_id", query.contact_id.as_deref()),
        ("agent_id", query.agent_id.as_deref()),
    ]
    .into_iter()
    .filter_map(|(column, value)| Some((column, value?)))
    .collect();
    let sort = match query.sort_by {
        SortField::CreatedAt => None,
        SortField::UpdatedAt => Some("updated_at"),
        SortField::ScheduledTime => Some("scheduled_time"),
        SortField::DueAt => Some("due_ms"),
        SortField::Status => Some("status"),
        SortField::Type => Some("action_type"),
    };
    PageQuery {
        collection: "actions",
        tenant: tenant_id,
        filters,
        between: None,
        sort,
        descending: query.descending,
        skip: query.skip,
        limit: query.limit,
        count: true,
    }
}
