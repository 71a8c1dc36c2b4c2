//! `Idempotency-Key`, with Stripe's semantics: the same key and the same
//! request replay the first response (status and body); the same key with a
//! different request is a 409; a request that fails validation saves
//! nothing, so it may be corrected and sent again with the same key.
//!
//! Keys are per tenant and kept at least [`SchedulerConfig::idempotency_ttl`]
//! (24 hours by default); the scheduler sweeps older ones through a
//! time-ordered index.
//!
//! [`SchedulerConfig::idempotency_ttl`]: super::SchedulerConfig

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::store::{IndexEntry, Record, RecordTx, Records, StoreError, TxError};
use crate::tenancy::now;

/// A stored key and the response it produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// `TENANT/KEY`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// SHA-256 of the method, path and canonical body of the first request.
    pub request_hash: String,
    /// The response, once there is one; `None` while the first request runs.
    pub response: Option<StoredResponse>,
    /// The action or execution the first request created, if any.
    pub target: Option<String>,
    /// The replica (server run) that took it: a key left unanswered by a
    /// replica whose lease has expired was interrupted.
    pub boot_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Milliseconds since the epoch, for the sweep.
    pub created_ms: u64,
}

/// A response to replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: serde_json::Value,
}

impl Record for IdempotencyRecord {
    const COLLECTION: &'static str = "idempotency";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi(
            "idempotency_by_time",
            format!("{:013}", self.created_ms),
        )]
    }
}

/// What a key says about a request.
#[derive(Debug, Clone)]
pub enum Claim {
    /// First use: go ahead (the key is now held by this request).
    New,
    /// Seen with the same request: answer this again.
    Replay(StoredResponse),
    /// Seen with a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
    /// The first request was cut short by a restart before it answered.
    Interrupted {
        /// What it had created.
        target: Option<String>,
    },
}

/// A validated key and the hash of the request that carries it.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    /// The client's key.
    pub key: String,
    /// SHA-256 of method, path and canonical body.
    pub request_hash: String,
}

impl KeyedRequest {
    /// Checks the key's form (1–255 visible ASCII characters) and hashes
    /// the request.
    pub fn new(
        key: &str,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Self, String> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)"
                    .into(),
            );
        }
        let mut hasher = sha2::Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update(b" ");
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
        // serde_json's map is ordered by key, so this is canonical.
        hasher.update(serde_json::to_vec(body).unwrap_or_default());
        Ok(Self {
            key: key.to_owned(),
            request_hash: hex::encode(hasher.finalize()),
        })
    }
}

/// The keys of every tenant.
#[derive(Clone)]
pub struct Idempotency {
    records: Records,
    replicas: crate::replica::Replicas,
}

fn record_id(tenant_id: &str, key: &str) -> String {
    format!("{tenant_id}/{key}")
}

fn now_ms() -> u64 {
    super::epoch_ms(std::time::SystemTime::now())
}

impl Idempotency {
    /// Keys stored in `records`, each held while it answers by the
    /// replica that took it (this run's: [`crate::replica::id`]).
    pub fn new(records: Records, replicas: crate::replica::Replicas) -> Self {
        Self { records, replicas }
    }

    /// Looks the key up inside a transaction; on first use, holds it for
    /// this request with `response` (or as in progress when `None`).
    pub fn claim_in(
        &self,
        tx: &RecordTx<'_>,
        tenant_id: &str,
        request: &KeyedRequest,
        response: Option<StoredResponse>,
        target: Option<String>,
    ) -> Result<Claim, TxError> {
        let id = record_id(tenant_id, &request.key);
        if let Some(found) = tx.get::<IdempotencyRecord>(&id)? {
            return Ok(self.judge(found, request));
        }
        tx.insert(&IdempotencyRecord {
            id,
            tenant_id: tenant_id.to_owned(),
            request_hash: request.request_hash.clone(),
            response,
            target,
            boot_id: crate::replica::id().to_owned(),
            created_at: now(),
            created_ms: now_ms(),
        })?;
        Ok(Claim::New)
    }

    /// What the key says about the request, without holding it.
    pub fn peek(&self, tenant_id: &str, request: &KeyedRequest) -> Result<Claim, StoreError> {
        Ok(self
            .records
            .get::<IdempotencyRecord>(&record_id(tenant_id, &request.key))?
            .map_or(Claim::New, |found| self.judge(found, request)))
    }

    fn judge(&self, found: IdempotencyRecord, request: &KeyedRequest) -> Claim {
        if found.request_hash != request.request_hash {
            Claim::Mismatch
        } else if let Some(response) = found.response {
            Claim::Replay(response)
        } else if found.boot_id == crate::replica::id()
            // Still answering on another replica, or, if that cannot be
            // told now, taken to be: the client retries.
            || self.replicas.is_live(&found.boot_id).unwrap_or(true)
        {
            Claim::InProgress
        } else {
            Claim::Interrupted {
                target: found.target,
            }
        }
    }

    /// [`Idempotency::claim_in`] in a transaction of its own.
    pub fn claim(&self, tenant_id: &str, request: &KeyedRequest) -> Result<Claim, StoreError> {
        self.records
            .transaction(|tx| self.claim_in(tx, tenant_id, request, None, None))
    }

    /// Stores the response of a claimed key.
    pub fn complete(
        &self,
        tenant_id: &str,
        key: &str,
        response: StoredResponse,
    ) -> Result<(), StoreError> {
        self.records
            .update::<IdempotencyRecord>(&record_id(tenant_id, key), |record| {
                record.response = Some(response.clone());
                Ok(())
            })
            .map(drop)
    }

    /// Lets go of a claimed key: the request failed validation and saved
    /// nothing, so the client may correct it and reuse the key.
    pub fn release(&self, tenant_id: &str, key: &str) -> Result<(), StoreError> {
        self.records
            .transaction(|tx| {
                let id = record_id(tenant_id, key);
                if tx
                    .get::<IdempotencyRecord>(&id)?
                    .is_some_and(|r| r.response.is_none())
                {
                    tx.remove::<IdempotencyRecord>(&id)?;
                }
                Ok(())
            })
            .map(drop)
    }

    /// Removes keys older than `ttl`; returns how many.
    pub fn sweep(&self, ttl: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut removed = 0;
        loop {
            let batch = self.records.scan_index("idempotency_by_time", "", 256)?;
            let expired: Vec<String> = batch
                .iter()
                .take_while(|(value, _)| value.parse::<u64>().is_ok_and(|ms| ms < cutoff))
                .map(|(_, id)| id.clone())
                .collect();
            if expired.is_empty() {
                return Ok(removed);
            }
            for id in &expired {
                self.records.remove::<IdempotencyRecord>(id)?;
            }
            removed += expired.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_and_whitespace_but_not_the_path() {
        let hash = |path: &str, body: &str| {
            let body = serde_json::from_str(body).expect("json");
            KeyedRequest::new("k-1", "POST", path, &body)
                .expect("valid key")
                .request_hash
        };
        let a = hash("/v1/actions", r#"{"a": 1, "b": [1, 2]}"#);
        assert_eq!(a, hash("/v1/actions", r#"{"b":[1,2],"a":1}"#));
        assert_ne!(a, hash("/v1/executions", r#"{"b":[1,2],"a":1}"#));
        assert_ne!(a, hash("/v1/actions", r#"{"a": 2, "b": [1, 2]}"#));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in ["", "has space", &"x".repeat(256), "tab\t"] {
            assert!(
                KeyedRequest::new(key, "POST", "/", &serde_json::json!({})).is_err(),
                "{key:?}"
            );
        }
    }
}
