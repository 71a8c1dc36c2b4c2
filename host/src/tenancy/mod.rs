//! Tenants, users, API keys and scopes.
//!
//! Every key belongs to a user, every user to a tenant. A key is shown once,
//! when it is minted; the store keeps only its SHA-256 (keys are 192 random
//! bits, so a fast hash is enough) and a short prefix to recognise it by.
//! On first start [`bootstrap`] creates a tenant, an admin user and an admin
//! key, and writes the key to `DATA_DIR/admin.key` (mode 0600).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{IndexEntry, Record, Records, StoreError};

mod sessions;
pub use sessions::ConsoleSession;

/// A permission a key carries.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// Read actions and executions.
    #[serde(rename = "actions:read")]
    ActionsRead,
    /// Create and change actions.
    #[serde(rename = "actions:write")]
    ActionsWrite,
    /// Approve, reject or edit actions.
    #[serde(rename = "actions:approve")]
    ActionsApprove,
    /// Execute actions.
    #[serde(rename = "actions:execute")]
    ActionsExecute,
    /// Read auth configs and connected accounts (never their secrets).
    #[serde(rename = "accounts:read")]
    AccountsRead,
    /// Create, change and delete auth configs and connected accounts.
    #[serde(rename = "accounts:write")]
    AccountsWrite,
    /// Read plugins, apps and action types.
    #[serde(rename = "plugins:read")]
    PluginsRead,
    /// Install, enable, disable and remove plugins.
    #[serde(rename = "plugins:write")]
    PluginsWrite,
    /// List API keys.
    #[serde(rename = "keys:read")]
    KeysRead,
    /// Mint and revoke API keys.
    #[serde(rename = "keys:write")]
    KeysWrite,
    /// Create tenants (the operator's bootstrap key only).
    #[serde(rename = "tenants:write")]
    TenantsWrite,
    /// Read agents.
    #[serde(rename = "agents:read")]
    AgentsRead,
    /// Change agents.
    #[serde(rename = "agents:write")]
    AgentsWrite,
    /// Start and cancel agent runs.
    #[serde(rename = "agents:trigger")]
    AgentsTrigger,
    /// Approve or reject what agent runs propose.
    #[serde(rename = "agents:approve")]
    AgentsApprove,
    /// Read contacts.
    #[serde(rename = "contacts:read")]
    ContactsRead,
    /// Change contacts.
    #[serde(rename = "contacts:write")]
    ContactsWrite,
    /// Read events.
    #[serde(rename = "events:read")]
    EventsRead,
    /// Write events.
    #[serde(rename = "events:write")]
    EventsWrite,
    /// Read identities (who actions are performed as).
    #[serde(rename = "identities:read")]
    IdentitiesRead,
    /// Create, change and delete identities.
    #[serde(rename = "identities:write")]
    IdentitiesWrite,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 21] = [
        Self::ActionsRead,
        Self::ActionsWrite,
        Self::ActionsApprove,
        Self::ActionsExecute,
        Self::AccountsRead,
        Self::AccountsWrite,
        Self::PluginsRead,
        Self::PluginsWrite,
        Self::KeysRead,
        Self::KeysWrite,
        Self::TenantsWrite,
        Self::AgentsRead,
        Self::AgentsWrite,
        Self::AgentsTrigger,
        Self::AgentsApprove,
        Self::ContactsRead,
        Self::ContactsWrite,
        Self::EventsRead,
        Self::EventsWrite,
        Self::IdentitiesRead,
        Self::IdentitiesWrite,
    ];

    /// The scope's name, such as `actions:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActionsRead => "actions:read",
            Self::ActionsWrite => "actions:write",
            Self::ActionsApprove => "actions:approve",
            Self::ActionsExecute => "actions:execute",
            Self::AccountsRead => "accounts:read",
            Self::AccountsWrite => "accounts:write",
            Self::PluginsRead => "plugins:read",
            Self::PluginsWrite => "plugins:write",
            Self::KeysRead => "keys:read",
            Self::KeysWrite => "keys:write",
            Self::TenantsWrite => "tenants:write",
            Self::AgentsRead => "agents:read",
            Self::AgentsWrite => "agents:write",
            Self::AgentsTrigger => "agents:trigger",
            Self::AgentsApprove => "agents:approve",
            Self::ContactsRead => "contacts:read",
            Self::ContactsWrite => "contacts:write",
            Self::EventsRead => "events:read",
            Self::EventsWrite => "events:write",
            Self::IdentitiesRead => "identities:read",
            Self::IdentitiesWrite => "identities:write",
        }
    }

    /// Every scope but `tenants:write`: what a tenant's own admin key gets.
    pub fn tenant_admin() -> Vec<Scope> {
        Self::ALL
            .into_iter()
            .filter(|s| *s != Self::TenantsWrite)
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {text:?}; known scopes: {}", known.join(", "))
            })
    }
}

/// A tenant: the unit of isolation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    /// `ten_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

impl Record for Tenant {
    const COLLECTION: &'static str = "tenants";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::multi("tenants_all", "")]
    }
}

/// A user of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// `usr_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// E-mail address, unique in the tenant.
    pub email: String,
    /// RFC 3339.
    pub created_at: String,
}

impl Record for User {
    const COLLECTION: &'static str = "users";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![IndexEntry::unique(
            "users_by_email",
            format!("{}\0{}", self.tenant_id, self.email.to_ascii_lowercase()),
        )]
    }
}

/// A stored API key: never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// `key_…`.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The user on whose authority it acts.
    pub user_id: String,
    /// A label.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The first characters of the key, to recognise it by.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once revoked.
    pub revoked_at: Option<String>,
    /// What its calls of tools may do (`execute` when absent: keys minted
    /// before policies existed).
    #[serde(default)]
    pub policy: KeyPolicy,
}

/// What a key's tool calls (MCP, `POST /api/v2/tools/execute`) may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyPolicy {
    /// A call of a type that needs no approval runs at once (with
    /// `actions:execute`).
    #[default]
    Execute,
    /// Every call becomes a stored action in `pending_approval`, and the
    /// key cannot execute through the REST API either.
    ProposeOnly,
}

impl ApiKey {
    /// Whether a tool call under this key may run at once: its policy
    /// allows it and it holds `actions:execute`. Otherwise it proposes.
    pub fn may_execute(&self) -> bool {
        self.policy == KeyPolicy::Execute && self.scopes.contains(&Scope::ActionsExecute)
    }
}

impl Record for ApiKey {
    const COLLECTION: &'static str = "api_keys";
    fn id(&self) -> &str {
        &self.id
    }
    fn indexes(&self) -> Vec<IndexEntry> {
        vec![
            IndexEntry::unique("api_keys_by_hash", &self.hash),
            IndexEntry::multi("api_keys_by_tenant", &self.tenant_id),
        ]
    }
}

/// The current time, RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A new id: `prefix_` and 20 random hex characters.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<10>()))
}

/// A new id that sorts by creation: `prefix_`, 12 hex digits of the
/// milliseconds since the epoch, then 8 more. An index of such ids lists its
/// records in creation order.
///
/// Within one process the ids are strictly increasing, as monotonic ULIDs
/// are: the first id of a millisecond takes a random tail, and the next ones
/// in that millisecond (or after the clock stepped back) count up from it.
/// Ids made by different replicas in the same millisecond are ordered only by
/// their random tails.
pub fn new_ordered_id(prefix: &str) -> String {
    static LAST: std::sync::Mutex<(u64, u32)> = std::sync::Mutex::new((0, 0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (ms, tail) = {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = next_ordered(*last, now, u32::from_be_bytes(random_bytes::<4>()));
        *last
    };
    format!("{prefix}_{ms:012x}{tail:08x}")
}

/// The (milliseconds, tail) that follows `last` at time `now`: a fresh random
/// tail in a new millisecond, else the last tail plus one (moving to the next
/// millisecond when the tail is spent). The random tail keeps its top bit
/// clear, so a busy millisecond has 2^31 ids to count through.
fn next_ordered(last: (u64, u32), now: u64, random: u32) -> (u64, u32) {
    if now > last.0 {
        return (now, random >> 1);
    }
    match last.1.checked_add(1) {
        Some(tail) => (last.0, tail),
        None => (last.0 + 1, random >> 1),
    }
}

/// The creation time, in milliseconds since the epoch, of an id made by
/// [`new_ordered_id`].
pub fn ordered_id_ms(id: &str) -> Option<u64> {
    let (_, rest) = id.split_once('_')?;
    u64::from_str_radix(rest.get(..12)?, 16).ok()
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not something a server can work around.
    getrandom::fill(&mut bytes)
        .unwrap_or_else(|err| panic!("the os random generator failed: {err}"));
    bytes
}

/// The hash under which a key is stored.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A freshly minted key: the record, and the key itself (shown once).
pub struct MintedKey {
    /// What is stored.
    pub record: ApiKey,
    /// The key; never stored, never logged.
    pub secret: String,
}

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedKey")
            .field("record", &self.record)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Tenants, users and keys over the store.
#[derive(Clone)]
pub struct Tenancy {
    records: Records,
    /// Active keys seen so far, by hash: every request authenticates, and
    /// three store reads per request were a measurable share of its cost.
    known: Arc<RwLock<KnownKeys>>,
}

/// The most keys [`Tenancy::authenticate`] remembers; past that it reads
/// the store for keys it has not seen.
const KNOWN_KEYS_MAX: usize = 10_000;

/// The authentication cache. Only active keys are entered, so unknown
/// secrets cannot fill it. A revocation removes the key and bumps
/// `generation`, and a lookup that began before a revocation does not enter
/// its (possibly stale) result: a revoked key is refused from the moment
/// `revoke_key` returns. Users are never changed or removed, so a cached
/// user stays right.
#[derive(Default)]
struct KnownKeys {
    generation: u64,
    principals: HashMap<String, Principal>,
}

/// Who is calling: the key's record, its user and its tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key.
    pub key: ApiKey,
    /// Its user.
    pub user: User,
}

impl Tenancy {
    /// Why the store refuses reads and writes until a restart, if it does
    /// (see `Store::failure`).
    pub fn store_failure(&self) -> Option<String> {
        self.records.store_failure()
    }

    /// Tenancy over `records`.
    pub fn new(records: Records) -> Self {
        Self {
            records,
            known: Arc::default(),
        }
    }

    /// The active key `secret` names, with its user.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        let hash = key_hash(secret);
        let generation = {
            let known = self.known.read().unwrap_or_else(|e| e.into_inner());
            if let Some(principal) = known.principals.get(&hash) {
                return Ok(Some(principal.clone()));
            }
            known.generation
        };
        let Some(key) = self.records.get_by::<ApiKey>("api_keys_by_hash", &hash)? else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        let Some(user) = self.records.get::<User>(&key.user_id)? else {
            return Ok(None);
        };
        let principal = Principal { key, user };
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if known.generation == generation && known.principals.len() < KNOWN_KEYS_MAX {
            known.principals.insert(hash, principal.clone());
        }
        Ok(Some(principal))
    }

    /// Creates a tenant.
    pub fn create_tenant(&self, name: &str) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: new_id("ten"),
            name: name.to_owned(),
            created_at: now(),
        };
        self.records.insert(&tenant)?;
        Ok(tenant)
    }

    /// The tenants.
    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.records.list_by("tenants_all", "")
    }

    /// The user with this e-mail in the tenant, created if missing.
    pub fn ensure_user(&self, tenant_id: &str, email: &str) -> Result<User, StoreError> {
        let lookup = format!("{tenant_id}\0{}", email.to_ascii_lowercase());
        if let Some(user) = self.records.get_by::<User>("users_by_email", &lookup)? {
            return Ok(user);
        }
        let user = User {
            id: new_id("usr"),
            tenant_id: tenant_id.to_owned(),
            email: email.to_owned(),
            created_at: now(),
        };
        match self.records.insert(&user) {
            Ok(()) => Ok(user),
            // Created concurrently: take the winner.
            Err(StoreError::Duplicate { .. }) => self
                .records
                .get_by::<User>("users_by_email", &lookup)?
                .ok_or_else(|| StoreError::Storage("user vanished after a duplicate".into())),
            Err(err) => Err(err),
        }
    }

    /// Mints a key for `user`.
    pub fn mint_key(
        &self,
        user: &User,
        name: &str,
        scopes: Vec<Scope>,
    ) -> Result<MintedKey, StoreError> {
        self.mint_key_with(user, name, scopes, KeyPolicy::Execute)
    }

    /// Mints a key with a policy for its tool calls.
    pub fn mint_key_with(
        &self,
        user: &User,
        name: &str,
        scopes: Vec<Scope>,
        policy: KeyPolicy,
    ) -> Result<MintedKey, StoreError> {
        let secret = format!("ahk_{}", hex::encode(random_bytes::<24>()));
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        let record = ApiKey {
            id: new_id("key"),
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            name: name.to_owned(),
            scopes,
            hash: key_hash(&secret),
            prefix: secret[..12].to_owned(),
            created_at: now(),
            revoked_at: None,
            policy,
        };
        self.records.insert(&record)?;
        Ok(MintedKey { record, secret })
    }

    /// A user of the tenant, by e-mail address (any case) or `usr_…` id,
    /// with the scopes of their keys that are not revoked.
    pub fn user_with_scopes(
        &self,
        tenant_id: &str,
        who: &str,
    ) -> Result<Option<(User, Vec<Scope>)>, StoreError> {
        let user = match self.records.get::<User>(who)? {
            Some(user) if user.tenant_id == tenant_id => Some(user),
            _ => self.records.get_by::<User>(
                "users_by_email",
                &format!("{tenant_id}\0{}", who.to_ascii_lowercase()),
            )?,
        };
        let Some(user) = user else {
            return Ok(None);
        };
        let mut scopes: Vec<Scope> = self
            .keys(tenant_id)?
            .into_iter()
            .filter(|k| k.user_id == user.id && k.revoked_at.is_none())
            .flat_map(|k| k.scopes)
            .collect();
        scopes.sort_by_key(|s| s.as_str());
        scopes.dedup();
        Ok(Some((user, scopes)))
    }

    /// The keys of a tenant.
    pub fn keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        self.records.list_by("api_keys_by_tenant", tenant_id)
    }

    /// A key of the tenant, by id.
    pub fn key(&self, tenant_id: &str, id: &str) -> Result<Option<ApiKey>, StoreError> {
        Ok(self
            .records
            .get::<ApiKey>(id)?
            .filter(|key| key.tenant_id == tenant_id))
    }

    /// Revokes a key; revoking twice keeps the first time.
    pub fn revoke_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        let revoked = self.records.update::<ApiKey>(id, |key| {
            if key.revoked_at.is_none() {
                key.revoked_at = Some(now());
            }
            Ok(())
        })?;
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.generation += 1;
        known
            .principals
            .retain(|_, principal| principal.key.id != id);
        Ok(revoked)
    }

    /// Creates a tenant with an admin user and a key holding `scopes`.
    pub fn create_tenant_with_admin(
        &self,
        name: &str,
        email: &str,
        scopes: Vec<Scope>,
    ) -> Result<(Tenant, User, MintedKey), StoreError> {
        let tenant = self.create_tenant(name)?;
        let user = self.ensure_user(&tenant.id, email)?;
        let key = self.mint_key(&user, "admin", scopes)?;
        Ok((tenant, user, key))
    }
}

/// The admin key file in a data directory.
pub fn admin_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.key")
}

/// On an empty store, creates the first tenant, its admin user and an admin
/// key with every scope, and writes the key to `DATA_DIR/admin.key` (0600).
/// Returns the path when it did so.
pub fn bootstrap(tenancy: &Tenancy, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !tenancy.tenants()?.is_empty() {
        return Ok(None);
    }
    // Before the tenant exists: a key that cannot be written is not minted.
    std::fs::create_dir_all(data_dir)
        .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", data_dir.display()))?;
    let (_tenant, _user, key) =
        tenancy.create_tenant_with_admin("default", "admin@localhost", Scope::ALL.to_vec())?;
    let path = admin_key_path(data_dir);
    write_secret_file(&path, key.secret.as_bytes())?;
    Ok(Some(path))
}

/// Writes a file only its owner can read.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let ids: Vec<String> = (0..2_000).map(|_| new_ordered_id("ct")).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

        assert_eq!(next_ordered((10, 5), 11, 0xffff_fffe), (11, 0x7fff_ffff));
        assert_eq!(next_ordered((10, 5), 10, 0), (10, 6));
        assert_eq!(next_ordered((10, 5), 9, 0), (10, 6));
        assert_eq!(next_ordered((10, u32::MAX), 10, 8), (11, 4));
    }
}
