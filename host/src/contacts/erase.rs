//! Erasing a contact: the contact, its events, notes and anonymous ids go;
//! its actions that have not run are cancelled (each with a history entry
//! that says why); the actions that ran keep their audit record, with the
//! contact's email removed from it.
//!
//! The contact is removed first, together with a [`ContactErasure`] record,
//! in one durable write: from then on nothing new can attach to it (an
//! event, an action or a note naming it is refused). The rest is removed in
//! bounded batches, and the erasure record last. A server that stops
//! half-way finds the record at start-up and finishes the job
//! ([`Contacts::resume_erasures`]).

use serde::{Deserialize, Serialize};

use super::{Contact, ContactError, Contacts, Note};
use crate::store::{IndexEntry, Record};
use crate::tenancy::now;

/// How many records one write of an erasure removes.
const BATCH: usize = 500;

/// An erasure that has started and not finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContactErasure {
    /// The contact's id.
    id: String,
    tenant_id: String,
    /// Their email, to remove from the audit records.
    email: Option<String>,
    started_at: String,
}

impl Record for ContactErasure {
    const COLLECTION: &'static str = "contact_erasures";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi("contact_erasures", "all")]
    }
}

/// What an erasure removed and changed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// The contact itself (1).
    pub contacts: usize,
    /// Events removed.
    pub events: usize,
    /// Notes removed.
    pub notes: usize,
    /// Anonymous (tracker) ids that were linked to the contact, unlinked.
    pub anonymous_ids: usize,
    /// Actions that had not run, cancelled.
    pub actions_cancelled: usize,
    /// Actions that ran (or were refused), kept with the email removed.
    pub actions_scrubbed: usize,
    /// Actions executing at that moment: they finish as they are.
    pub actions_running: usize,
}

impl Contacts {
    /// Erases a contact of the tenant, durably, and says what went.
    pub async fn erase(&self, tenant_id: &str, id: &str) -> Result<Erased, ContactError> {
        let contact = self.get(tenant_id, id)?;
        let erasure = ContactErasure {
            id: contact.id.clone(),
            tenant_id: contact.tenant_id.clone(),
            email: contact.email.clone(),
            started_at: now(),
        };
        let (tenant, contact_id, record) =
            (tenant_id.to_owned(), contact.id.clone(), erasure.clone());
        let removed = self
            .records()
            .commit(move |tx| {
                let Some(_) = tx
                    .get::<Contact>(&contact_id)?
                    .filter(|c| c.tenant_id == tenant)
                else {
                    return Ok(false);
                };
                tx.remove::<Contact>(&contact_id)?;
                tx.put(&record)?;
                Ok(true)
            })
            .await?;
        if !removed {
            return Err(ContactError::NotFound(id.to_owned()));
        }
        let erased = self.finish(erasure).await?;
        tracing::info!(contact = %id, ?erased, "contact erased");
        Ok(erased)
    }

    /// Finishes the erasures a stopped server left half-done; returns how
    /// many.
    pub async fn resume_erasures(&self) -> Result<usize, ContactError> {
        let pending: Vec<ContactErasure> = self.records().list_by("contact_erasures", "all")?;
        let count = pending.len();
        for erasure in pending {
            let id = erasure.id.clone();
            let erased = self.finish(erasure).await?;
            tracing::warn!(contact = %id, ?erased, "finished an erasure the last run left half-done");
        }
        Ok(count)
    }

    async fn finish(&self, erasure: ContactErasure) -> Result<Erased, ContactError> {
        let (tenant, contact) = (erasure.tenant_id.as_str(), erasure.id.as_str());
        let (events, anonymous_ids) = self.events().erase_contact(tenant, contact).await?;
        let notes = self.erase_notes(tenant, contact).await?;
        let released = self
            .actions()
            .release_contact(tenant, contact, erasure.email.as_deref())
            .await
            .map_err(|err| match err {
                crate::actions::ActionError::Store(err) => ContactError::Store(err),
                other => ContactError::Store(crate::store::StoreError::Storage(other.to_string())),
            })?;
        let id = erasure.id.clone();
        self.records()
            .commit(move |tx| {
                tx.remove::<ContactErasure>(&id)?;
                Ok(())
            })
            .await?;
        Ok(Erased {
            contacts: 1,
            events,
            notes,
            anonymous_ids,
            actions_cancelled: released.cancelled,
            actions_scrubbed: released.scrubbed,
            actions_running: released.running,
        })
    }

    async fn erase_notes(&self, tenant_id: &str, contact_id: &str) -> Result<usize, ContactError> {
        Ok(self
            .records()
            .remove_listed::<Note>(
                "notes_by_contact",
                &format!("{tenant_id}\0{contact_id}\0"),
                None,
                BATCH,
            )
            .await?)
    }
}

/// Replaces every occurrence of `email` (without case) in the strings of
/// `value` with `[erased]`; returns whether anything changed.
pub fn scrub(value: &mut serde_json::Value, email: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => match scrub_text(text, email) {
            Some(clean) => {
                *text = clean;
                true
            }
            None => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| scrub(item, email) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, item| scrub(item, email) | changed),
        _ => false,
    }
}

/// `text` with every occurrence of `needle` (ASCII case ignored) replaced,
/// or `None` when it has none.
fn scrub_text(text: &str, needle: &str) -> Option<String> {
    if needle.is_empty() || text.len() < needle.len() {
        return None;
    }
    let haystack = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    if !haystack.contains(&needle) {
        return None;
    }
    // ASCII lower-casing keeps byte offsets, so they apply to `text`.
    let mut clean = String::with_capacity(text.len());
    let mut rest = 0;
    for (at, _) in haystack.match_indices(&needle) {
        clean.push_str(&text[rest..at]);
        clean.push_str("[erased]");
        rest = at + needle.len();
    }
    clean.push_str(&text[rest..]);
    Some(clean)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::scrub;

    #[test]
    fn scrub_replaces_every_occurrence_in_any_case_and_says_so() {
        let mut value = json!({
            "to": "Ada <ADA@example.com>",
            "log": ["relaying to ada@example.com", "done"],
            "n": 3,
        });
        assert!(scrub(&mut value, "ada@example.com"));
        assert_eq!(
            value,
            json!({"to": "Ada <[erased]>", "log": ["relaying to [erased]", "done"], "n": 3})
        );
        assert!(!scrub(&mut value, "ada@example.com"));
    }
}
