//! What an action's `execute` knows about the attempt and its account.

use serde::de::DeserializeOwned;

use crate::bindings;
use crate::contacts::{Contact, Sender};
use crate::error::ExecuteError;

/// The connected account an action runs as, without its secrets.
#[derive(Debug, Clone)]
pub struct Account {
    /// The account's id.
    pub id: String,
    /// The app the account belongs to, such as `gmail`.
    pub app_name: String,
    /// Non-secret metadata: provider choice, base URL, sender address.
    pub metadata: serde_json::Value,
}

impl Account {
    /// A string field of the metadata, if present.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(serde_json::Value::as_str)
    }

    /// The metadata deserialized into `T`; a mismatch is a permanent error
    /// that names the account, since retrying cannot fix it.
    pub fn metadata_as<T: DeserializeOwned>(&self) -> Result<T, ExecuteError> {
        serde_json::from_value(self.metadata.clone()).map_err(|err| {
            ExecuteError::Permanent(format!(
                "metadata of account {} is not usable: {err}",
                self.id
            ))
        })
    }
}

/// One attempt at carrying out an action.
#[derive(Debug, Clone)]
pub struct Context {
    /// The action's id, stable across attempts.
    pub action_id: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
    /// Identical for every attempt of this action; pass it to providers that
    /// deduplicate requests.
    pub idempotency_key: String,
    account: Option<Account>,
}

impl Context {
    pub(crate) fn from_request(request: &bindings::ExecuteRequest) -> Result<Self, ExecuteError> {
        let account = match &request.account {
            Some(account) => Some(Account {
                id: account.id.clone(),
                app_name: account.app_name.clone(),
                metadata: serde_json::from_str(&account.metadata).map_err(|err| {
                    ExecuteError::Permanent(format!(
                        "metadata of account {} is not JSON: {err}",
                        account.id
                    ))
                })?,
            }),
            None => None,
        };
        Ok(Self {
            action_id: request.action_id.clone(),
            attempt: request.attempt,
            idempotency_key: request.idempotency_key.clone(),
            account,
        })
    }

    /// The contact this action addresses, or a permanent error saying the
    /// action type binds none (its params need a top-level `contact_id`).
    pub fn contact(&self) -> Result<Contact, ExecuteError> {
        crate::contacts::contact().ok_or_else(|| {
            ExecuteError::Permanent(
                "this action addresses no contact: its params need a top-level `contact_id`"
                    .to_owned(),
            )
        })
    }

    /// Who this action is performed as: its identity, when it names one.
    pub fn sender(&self) -> Option<Sender> {
        crate::contacts::sender()
    }

    /// The connected account, or a permanent error saying one is needed.
    pub fn account(&self) -> Result<&Account, ExecuteError> {
        self.account.as_ref().ok_or_else(|| {
            ExecuteError::Permanent("this action needs a connected account".to_owned())
        })
    }
}
