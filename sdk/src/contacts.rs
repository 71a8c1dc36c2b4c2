//! The contact an action addresses, and who performs it (WIT 0.1.3).
//!
//! An action type is bound to a contact when its params have a top-level
//! `contact_id` field. The host checks that the contact exists, before the
//! action is accepted and again before each attempt, and hands it over
//! here: read it with [`crate::Context::contact`]. A plugin never looks a
//! contact up itself.
//!
//! ```no_run
//! use actionhost_sdk::{Action, Context, ExecuteError, JsonSchema, contacts};
//! use serde::Deserialize;
//!
//! /// Params of `tag_contact`.
//! #[derive(Deserialize, JsonSchema)]
//! struct TagParams {
//!     /// The contact (`ct_…`): binds the action to it.
//!     contact_id: String,
//!     /// The tag.
//!     tag: String,
//! }
//!
//! struct TagContact;
//!
//! impl Action for TagContact {
//!     const NAME: &'static str = "tag_contact";
//!     const TITLE: &'static str = "Tag a contact";
//!     const IDEMPOTENT: bool = true;
//!     type Params = TagParams;
//!     type Output = serde_json::Value;
//!
//!     fn execute(params: TagParams, ctx: &Context) -> Result<serde_json::Value, ExecuteError> {
//!         let contact = ctx.contact()?;
//!         let note = contacts::add_note(&format!("tagged {}", params.tag))?;
//!         Ok(serde_json::json!({ "contact": contact.id, "note": note }))
//!     }
//! }
//! # actionhost_sdk::plugin! { name: "tags", description: "Tags", actions: [TagContact] }
//! ```

use crate::bindings::actionhost::executor::contacts as wit;
use crate::error::ExecuteError;

/// A person the tenant knows.
#[derive(Debug, Clone)]
pub struct Contact {
    /// `ct_…`.
    pub id: String,
    /// Their address, when they have one.
    pub email: Option<String>,
    /// Their properties (`firstname`, `lastname`, `company`, …), a JSON
    /// object of strings, numbers and booleans.
    pub properties: serde_json::Value,
}

impl Contact {
    /// A property's value, when it is a string.
    pub fn property_str(&self, name: &str) -> Option<&str> {
        self.properties
            .get(name)
            .and_then(serde_json::Value::as_str)
    }

    /// `firstname lastname`, when the contact has either.
    pub fn full_name(&self) -> Option<String> {
        let name = [
            self.property_str("firstname"),
            self.property_str("lastname"),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        (!name.is_empty()).then_some(name)
    }
}

/// Who the action is performed as: its identity.
#[derive(Debug, Clone)]
pub struct Sender {
    /// `id_…`.
    pub id: String,
    /// Display name, such as `Ada Lovelace`.
    pub name: String,
    /// The identity's own address.
    pub email: Option<String>,
}

/// The contact this execution addresses, if its action type is bound to one.
pub fn contact() -> Option<Contact> {
    wit::get_contact().map(|contact| Contact {
        id: contact.id,
        email: contact.email,
        properties: serde_json::from_str(&contact.properties)
            .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
    })
}

/// Who this execution acts as, if the action names an identity.
pub fn sender() -> Option<Sender> {
    wit::get_sender().map(|sender| Sender {
        id: sender.id,
        name: sender.name,
        email: sender.email,
    })
}

/// Attaches a note to the execution's contact and returns its id. Every
/// attempt of one action writes the same note, so a retry replaces it.
pub fn add_note(body: &str) -> Result<String, ExecuteError> {
    wit::add_note(body).map_err(|error| match error {
        wit::ContactError::NotBound(message) => ExecuteError::Permanent(message),
        wit::ContactError::Rejected(message) => ExecuteError::Permanent(message),
        wit::ContactError::Unavailable(message) => ExecuteError::Transient(message),
    })
}
