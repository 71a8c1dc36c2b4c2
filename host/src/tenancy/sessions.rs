//! Console sessions: a person signs in with an API key once, and the
//! browser holds a random session secret in an HttpOnly cookie instead of
//! the key. The store keeps the secret's hash, never the secret, so a copy
//! of the database opens no session; a session acts with its key's scopes
//! and ends with the key's revocation, at its expiry, or at sign-out.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Principal, Tenancy, User, key_hash, now, random_bytes};
use crate::store::{IndexEntry, Record, StoreError};

/// A signed-in console session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the cookie's secret.
    pub id: String,
    /// The key's tenant.
    pub tenant_id: String,
    /// The key it acts with.
    pub key_id: String,
    /// The token every change must carry in `X-CSRF-Token`.
    pub csrf_token: String,
    /// RFC 3339.
    pub created_at: String,
    /// When it ends, in milliseconds since the epoch.
    pub expires_ms: u64,
}

impl Record for ConsoleSession {
    const COLLECTION: &'static str = "console_sessions";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi(
            "console_sessions_by_expiry",
            format!("{:013}", self.expires_ms),
        )]
    }
}

impl ConsoleSession {
    /// When it ends, RFC 3339.
    pub fn expires_at(&self) -> String {
        humantime::format_rfc3339_millis(
            SystemTime::UNIX_EPOCH + Duration::from_millis(self.expires_ms),
        )
        .to_string()
    }
}

fn now_ms() -> u64 {
    crate::actions::epoch_ms(SystemTime::now())
}

/// Expired sessions removed per sign-in, at most.
const SWEEP: usize = 100;

impl Tenancy {
    /// Opens a session for `principal` lasting `ttl`: the cookie's secret
    /// (shown once, to the browser) and the session.
    pub fn open_session(
        &self,
        principal: &Principal,
        ttl: Duration,
    ) -> Result<(String, ConsoleSession), StoreError> {
        self.sweep_sessions()?;
        let secret = format!("ahs_{}", hex::encode(random_bytes::<32>()));
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let session = ConsoleSession {
            id: key_hash(&secret),
            tenant_id: principal.key.tenant_id.clone(),
            key_id: principal.key.id.clone(),
            csrf_token: hex::encode(random_bytes::<24>()),
            created_at: now(),
            expires_ms: now_ms().saturating_add(ttl_ms),
        };
        self.records.insert(&session)?;
        Ok((secret, session))
    }

    /// The live session the cookie's `secret` names, with its key and
    /// user: `None` when there is none, it has expired, or its key was
    /// revoked.
    pub fn session(&self, secret: &str) -> Result<Option<(ConsoleSession, Principal)>, StoreError> {
        let Some(session) = self.records.get::<ConsoleSession>(&key_hash(secret))? else {
            return Ok(None);
        };
        if session.expires_ms <= now_ms() {
            self.records.remove::<ConsoleSession>(&session.id)?;
            return Ok(None);
        }
        let Some(key) = self.records.get::<super::ApiKey>(&session.key_id)? else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        let Some(user) = self.records.get::<User>(&key.user_id)? else {
            return Ok(None);
        };
        Ok(Some((session, Principal { key, user })))
    }

    /// Ends the session the cookie's `secret` names, if there is one.
    pub fn close_session(&self, secret: &str) -> Result<(), StoreError> {
        self.records.remove::<ConsoleSession>(&key_hash(secret))?;
        Ok(())
    }

    /// Removes sessions that have expired (a few per call).
    fn sweep_sessions(&self) -> Result<(), StoreError> {
        let upper = format!("{:013}", now_ms());
        let expired = self.records.index_range(
            "console_sessions_by_expiry",
            "",
            None,
            Some(&upper),
            false,
            0,
            SWEEP,
        )?;
        for (_, id) in expired {
            self.records.remove::<ConsoleSession>(&id)?;
        }
        Ok(())
    }
}
