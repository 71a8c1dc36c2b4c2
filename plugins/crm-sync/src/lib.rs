//! `crm_sync`: creates or updates contacts in HubSpot, by email, in one batch.
//!
//! `POST {base_url}/crm/v3/objects/contacts/batch/upsert` with
//! `{"inputs": [{"idProperty": "email", "id": <email>, "properties": {...}}]}`;
//! HubSpot answers with one result per contact whose `new` flag says whether
//! it was created or updated. The host adds the account's bearer token (a
//! private app token or an OAuth2 access token).
//!
//! Account metadata: `{"base_url": "https://api.hubapi.com"}`, optional.

use std::collections::{BTreeMap, BTreeSet};

use actionhost_sdk::email::is_address;
use actionhost_sdk::{Action, AuthScheme, Context, ExecuteError, FieldError, http, log};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const BASE_URL: &str = "https://api.hubapi.com";
/// HubSpot's limit for one batch request.
const MAX_CONTACTS: usize = 100;

/// One contact to create or update.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// The contact's email: the key HubSpot matches existing contacts on.
    pub email: String,
    /// HubSpot contact properties by internal name, such as `firstname`,
    /// `lastname`, `company`, `lifecyclestage`. Numbers and booleans are sent
    /// as strings, as HubSpot expects.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
}

/// A property value.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PropertyValue {
    /// Text.
    Text(String),
    /// A number.
    Number(serde_json::Number),
    /// A boolean.
    Flag(bool),
}

impl PropertyValue {
    fn to_hubspot(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(number) => number.to_string(),
            Self::Flag(flag) => flag.to_string(),
        }
    }
}

/// Params of `crm_sync`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmSyncParams {
    /// The contacts to upsert, 1 to 100, each email at most once.
    pub contacts: Vec<ContactInput>,
}

/// One upserted contact.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SyncedContact {
    /// HubSpot's id of the contact.
    pub id: String,
    /// The contact's email.
    pub email: String,
}

/// What HubSpot did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CrmSyncOutput {
    /// Contacts that did not exist before.
    pub created: Vec<SyncedContact>,
    /// Contacts that existed and were updated.
    pub updated: Vec<SyncedContact>,
    /// Per-contact errors HubSpot reported for a partial success (207).
    pub errors: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct HubSpotAccount {
    #[serde(default)]
    base_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchResponse {
    #[serde(default)]
    results: Vec<BatchResult>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct BatchResult {
    id: String,
    #[serde(default)]
    new: bool,
    #[serde(default)]
    properties: BTreeMap<String, Option<String>>,
}

fn is_property_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The `crm_sync` action.
pub struct CrmSync;

impl Action for CrmSync {
    const NAME: &'static str = "crm_sync";
    const TITLE: &'static str = "Sync contacts to HubSpot";
    const DESCRIPTION: &'static str = "Creates or updates up to 100 HubSpot contacts by email and reports which were \
         created and which updated.";
    const IDEMPOTENT: bool = true;
    const AUTH_SCHEMES: &'static [AuthScheme] = &[AuthScheme::Bearer, AuthScheme::OAuth2];
    type Params = CrmSyncParams;
    type Output = CrmSyncOutput;

    fn validate(params: &CrmSyncParams) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if params.contacts.is_empty() {
            errors.push(FieldError::new("/contacts", "needs at least one contact"));
        }
        if params.contacts.len() > MAX_CONTACTS {
            errors.push(FieldError::new(
                "/contacts",
                format!(
                    "{} contacts; HubSpot takes at most {MAX_CONTACTS} per batch",
                    params.contacts.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for (index, contact) in params.contacts.iter().enumerate() {
            if !is_address(&contact.email) {
                errors.push(FieldError::new(
                    format!("/contacts/{index}/email"),
                    format!("{:?} is not an email address", contact.email),
                ));
            } else if !seen.insert(contact.email.to_ascii_lowercase()) {
                errors.push(FieldError::new(
                    format!("/contacts/{index}/email"),
                    format!(
                        "{} appears more than once; HubSpot rejects duplicates in a batch",
                        contact.email
                    ),
                ));
            }
            for name in contact.properties.keys() {
                if !is_property_name(name) {
                    errors.push(FieldError::new(
                        format!("/contacts/{index}/properties/{name}"),
                        "property names are HubSpot internal names: lowercase letters, digits and _",
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn execute(params: CrmSyncParams, ctx: &Context) -> Result<CrmSyncOutput, ExecuteError> {
        Self::validate(&params).map_err(ExecuteError::InvalidInput)?;
        let account = ctx.account()?;
        let settings: HubSpotAccount = account.metadata_as()?;
        let base_url = settings
            .base_url
            .as_deref()
            .unwrap_or(BASE_URL)
            .trim_end_matches('/');

        let inputs: Vec<serde_json::Value> = params
            .contacts
            .iter()
            .map(|contact| {
                let mut properties: BTreeMap<&str, String> =
                    contact.properties.iter().map(|(k, v)| (k.as_str(), v.to_hubspot())).collect();
                properties.insert("email", contact.email.clone());
                serde_json::json!({ "idProperty": "email", "id": contact.email, "properties": properties })
            })
            .collect();
        log::info(format!("upserting {} contact(s)", inputs.len()));
        let response: BatchResponse =
            http::Request::post(format!("{base_url}/crm/v3/objects/contacts/batch/upsert"))
                .json(&serde_json::json!({ "inputs": inputs }))?
                .send()?
                .error_for_status()?
                .json()?;

        let mut output = CrmSyncOutput {
            created: Vec::new(),
            updated: Vec::new(),
            errors: response.errors,
        };
        for result in response.results {
            let email = result
                .properties
                .get("email")
                .cloned()
                .flatten()
                .unwrap_or_default();
            let synced = SyncedContact {
                id: result.id,
                email,
            };
            if result.new {
                output.created.push(synced)
            } else {
                output.updated.push(synced)
            }
        }
        Ok(output)
    }
}

actionhost_sdk::plugin! {
    name: "crm-sync",
    description: "Upserts contacts into HubSpot CRM",
    outbound_hosts: ["https://api.hubapi.com"],
    actions: [CrmSync],
}
