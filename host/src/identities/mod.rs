//! Identities: who acts (`identity_id` in Pathbound's actions and agents).
//!
//! An identity is a name, an email address, and the connected account it
//! uses for each capability: `email` (a send-email account), `linkedin`,
//! `crm_sync`, … An action's `identity_id` resolves through its identity
//! first: the account for the action type's capability
//! ([`capability_of`]); an identity without one is refused with the
//! capability named. An `identity_id` that names no identity keeps its
//! older meaning (a connected account id, or an entity id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::accounts::ConnectedAccount;
use crate::contacts::properties;
use crate::runtime::FieldError;
use crate::store::{IndexEntry, Record, Records, StoreError};
use crate::tenancy::{new_ordered_id, now};

/// The longest identity name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The capability an action type needs an account for: what an identity's
/// `accounts` and an agent's `capabilities` name. A type not listed here is
/// its own plugin's app name.
pub fn capability_of(action_type: &str) -> Option<&'static str> {
    Some(match action_type {
        "email_message" | "send_email" => "email",
        "linkedin_message" => "linkedin",
        "crm_sync" => "crm_sync",
        "note" => "notes",
        "slack_post_message" => "slack",
        "webhook_post" => "webhook",
        _ => return None,
    })
}

/// Who performs actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    /// `id_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// A display name, such as `Ada Lovelace`.
    pub name: String,
    /// The identity's address: the `From` of its emails.
    pub email: Option<String>,
    /// The connected account for each capability (`email`, `linkedin`,
    /// `crm_sync`, or a plugin's app name).
    pub accounts: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl Record for Identity {
    const COLLECTION: &'static str = "identities";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi("identities_by_tenant", &self.tenant_id)]
    }
}

impl Identity {
    /// The account this identity uses for `action_type` of plugin `app`,
    /// by the type's capability, then by the app name.
    pub fn account_for(&self, action_type: &str, app: &str) -> Option<&str> {
        capability_of(action_type)
            .and_then(|capability| self.accounts.get(capability))
            .or_else(|| self.accounts.get(app))
            .map(String::as_str)
    }

    /// The name of what it needs an account for: the capability, or the app.
    pub fn capability_name(action_type: &str, app: &str) -> String {
        capability_of(action_type).map_or_else(|| app.to_owned(), str::to_owned)
    }
}

/// Why an identity operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Not in the caller's tenant.
    #[error("identity {0} not found")]
    NotFound(String),
    /// The request is wrong.
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

fn invalid(fields: Vec<FieldError>) -> IdentityError {
    IdentityError::Invalid {
        message: format!("invalid identity: {}", FieldError::summary(&fields)),
        fields,
    }
}

/// An identity's fields as a request sends them; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct IdentityChange {
    /// The name.
    pub name: Option<String>,
    /// The email; `Some(None)` removes it.
    pub email: Option<Option<String>>,
    /// Accounts to set by capability; a `null` removes one.
    pub accounts: Option<serde_json::Map<String, Value>>,
}

/// The identities of every tenant.
#[derive(Clone)]
pub struct Identities {
    records: Records,
}

impl Identities {
    /// Identities over `records`.
    pub fn new(records: Records) -> Self {
        Self { records }
    }

    /// An identity of the tenant.
    pub fn get(&self, tenant_id: &str, id: &str) -> Result<Identity, IdentityError> {
        find(&self.records, tenant_id, id)?.ok_or_else(|| IdentityError::NotFound(id.to_owned()))
    }

    /// The tenant's identities, oldest first.
    pub fn list(&self, tenant_id: &str) -> Result<Vec<Identity>, IdentityError> {
        Ok(self.records.list_by("identities_by_tenant", tenant_id)?)
    }

    /// Creates an identity, durably. A name is required.
    pub async fn create(
        &self,
        tenant_id: &str,
        change: IdentityChange,
    ) -> Result<Identity, IdentityError> {
        if change.name.is_none() {
            return Err(invalid(vec![FieldError::new(
                "/name",
                "is required: who this identity is, such as Ada Lovelace",
            )]));
        }
        let at = now();
        let mut identity = Identity {
            id: new_ordered_id("id"),
            tenant_id: tenant_id.to_owned(),
            name: String::new(),
            email: None,
            accounts: BTreeMap::new(),
            created_at: at.clone(),
            updated_at: at,
        };
        self.apply(&mut identity, change)?;
        self.records.put_durably(identity.clone()).await?;
        Ok(identity)
    }

    /// Changes an identity, durably.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        change: IdentityChange,
    ) -> Result<Identity, IdentityError> {
        let mut identity = self.get(tenant_id, id)?;
        self.apply(&mut identity, change)?;
        identity.updated_at = now();
        self.records.put_durably(identity.clone()).await?;
        Ok(identity)
    }

    /// Removes an identity, durably. Actions that name it fail to resolve
    /// their account from then on, with a message that says so.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<Identity, IdentityError> {
        let identity = self.get(tenant_id, id)?;
        let id = identity.id.clone();
        self.records
            .commit(move |tx| {
                tx.remove::<Identity>(&id)?;
                Ok(())
            })
            .await?;
        Ok(identity)
    }

    /// Checks `change` and applies it to `identity`, collecting every problem.
    fn apply(&self, identity: &mut Identity, change: IdentityChange) -> Result<(), IdentityError> {
        let mut errors = Vec::new();
        if let Some(name) = change.name {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                errors.push(FieldError::new(
                    "/name",
                    &format!("must be 1 to {MAX_NAME_CHARS} characters"),
                ));
            } else {
                identity.name = name;
            }
        }
        match change.email {
            None => {}
            Some(None) => identity.email = None,
            Some(Some(email)) => match properties::check_email(&email) {
                Ok(email) => identity.email = Some(email),
                Err(message) => errors.push(FieldError::new("/email", &message)),
            },
        }
        for (capability, account) in change.accounts.unwrap_or_default() {
            let at = format!("/accounts/{}", properties::escape_pointer(&capability));
            let valid_capability = !capability.is_empty()
                && capability.len() <= 64
                && capability
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !valid_capability {
                errors.push(FieldError::new(
                    &at,
                    "a capability is 1 to 64 lower-case letters, digits, `_` or `-`, such as email or linkedin",
                ));
                continue;
            }
            match account {
                Value::Null => {
                    identity.accounts.remove(&capability);
                }
                Value::String(account_id) => {
                    let known = self
                        .records
                        .get::<ConnectedAccount>(&account_id)?
                        .is_some_and(|a| a.tenant_id == identity.tenant_id);
                    if known {
                        identity.accounts.insert(capability, account_id);
                    } else {
                        errors.push(FieldError::new(
                            &at,
                            &format!(
                                "no connected account {:?} in this tenant; create it with POST /api/v1/connectedAccounts",
                                properties::truncated(&account_id)
                            ),
                        ));
                    }
                }
                _ => errors.push(FieldError::new(
                    &at,
                    "must be a connected account id, or null to remove it",
                )),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(invalid(errors))
        }
    }
}

/// An identity of the tenant, if there is one.
pub fn find(records: &Records, tenant_id: &str, id: &str) -> Result<Option<Identity>, StoreError> {
    Ok(records
        .get::<Identity>(id)?
        .filter(|identity| identity.tenant_id == tenant_id))
}
