//! The plugin registry: which plugin versions are loaded, in which state, and
//! which one serves each action type.
//!
//! A plugin version is known by its name and semver version, with its
//! manifest, content hash, WIT version, size, load time and state (`loading`,
//! `active`, `disabled`, or `failed` with the reason). Several versions of a
//! plugin can be loaded at once; an action type resolves to the newest active
//! version that provides it unless the request pins a `version`.
//!
//! Three ways in, one code path ([`PluginRegistry::admit`]):
//! - the plugins folder, scanned at start-up and watched afterwards
//!   (`watch.rs`): a new, changed or removed `.wasm` is loaded, swapped or
//!   unloaded;
//! - uploads through the API (`POST /v1/plugins`), kept in the data dir's
//!   `plugins/` folder so they survive a restart;
//! - the `actionhost plugin` CLI, a client of that API.
//!
//! **Architecture Invariant:** the registry's contents are one immutable
//! [`Snapshot`] behind an atomic pointer. A change builds a new snapshot and
//! swaps it in, so a reader sees the registry either before or after a
//! change, never half of one. A [`Plugin`] handed to a caller is a reference
//! count: an execution that started on a version finishes on it, and the
//! version's compiled code and instance slots are released when the last
//! execution holding it ends. Changes are serialized by one async lock;
//! compiling happens before it is taken, off the request path.

mod shared;
mod state;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::runtime::{
    CacheOutcome, ComponentSource, HostRule, Limits, LoadError, Plugin, PluginOptions, Runtime,
};
use sha2::{Digest, Sha256};

pub use shared::{PluginBlob, PluginSwitch, SharedPlugin, copy_uploads};
use state::{read_disabled, save_disabled, upload_path};
pub use watch::watch_folder;

/// A log line is written for a compile still running after this long, and
/// again at this interval.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// Where a plugin version came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A file of the watched plugins folder.
    Folder(PathBuf),
    /// An upload, stored at this path in the data dir.
    Upload(PathBuf),
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Self::Folder(path) | Self::Upload(path) => path,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Folder(_) => "folder",
            Self::Upload(_) => "upload",
        }
    }
}

/// The state of a plugin version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginState {
    /// Being compiled and checked.
    Loading,
    /// Serving its action types.
    Active,
    /// Loaded but not serving; enable it to serve again.
    Disabled,
    /// Could not be loaded; `reason` says why.
    Failed,
}

/// A loaded version.
#[derive(Clone)]
struct Entry {
    plugin: Plugin,
    source: Source,
    disabled: bool,
    loaded_at: String,
}

/// A file that is loading or failed to load, by the file it came from.
#[derive(Debug, Clone)]
struct Pending {
    state: PluginState,
    reason: Option<String>,
    sha256: Option<String>,
    since: String,
}

/// One immutable view of the registry.
#[derive(Clone, Default)]
struct Snapshot {
    versions: BTreeMap<(String, semver::Version), Entry>,
    /// Active versions providing each type, newest first.
    by_type: BTreeMap<String, Vec<Plugin>>,
    /// Folder files that are loading or failed, by path.
    pending: BTreeMap<PathBuf, Pending>,
}

impl Snapshot {
    fn reindex(&mut self) {
        let mut by_type: BTreeMap<String, Vec<Plugin>> = BTreeMap::new();
        // `versions` iterates oldest first within a name; insert at the front.
        for entry in self.versions.values().filter(|e| !e.disabled) {
            for action_type in &entry.plugin.manifest().action_types {
                by_type
                    .entry(action_type.name.clone())
                    .or_default()
                    .insert(0, entry.plugin.clone());
            }
        }
        self.by_type = by_type;
    }

    fn info(&self, key: &(String, semver::Version)) -> Option<PluginInfo> {
        self.versions.get(key).map(|entry| info(self, key, entry))
    }

    fn held_by(&self, source: &Source) -> Option<(&(String, semver::Version), &Entry)> {
        self.versions.iter().find(|(_, e)| &e.source == source)
    }
}

/// What a caller sees of one plugin version.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// The plugin's name, such as `send-email`; for a file that has not
    /// loaded, the file name.
    pub name: String,
    /// Its semantic version; null while loading or when it failed.
    pub version: Option<String>,
    /// `loading`, `active`, `disabled` or `failed`.
    pub state: PluginState,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of the component, hex.
    pub sha256: Option<String>,
    /// The `actionhost:executor` version it was built against.
    pub wit_version: Option<String>,
    /// Size of the component in bytes.
    pub size: Option<usize>,
    /// When it was loaded (or started loading, or failed), RFC 3339.
    pub loaded_at: String,
    /// How long the load took, in milliseconds.
    pub load_ms: Option<u64>,
    /// Whether the load compiled (`miss`) or used the compiled-code cache (`hit`).
    #[schema(value_type = Option<String>)]
    pub cache: Option<CacheOutcome>,
    /// `folder` or `upload`.
    pub source: &'static str,
    /// The file it was loaded from.
    pub path: String,
    /// The action types it provides.
    pub action_types: Vec<String>,
    /// The action types this version serves right now (it is the newest
    /// active version providing them).
    pub serving: Vec<String>,
    /// The sandbox limits its executions run under: `[limits]`, or the
    /// plugin's own `[plugin_limits.NAME]`; null while loading or when it
    /// failed.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Limits>,
    /// Instance reuse, for a plugin that opted in (`reuse-policy`) where
    /// the operator allows it: executions that ran on a reused instance,
    /// instances retired after their last call, and instances idle now.
    /// Null when its instances are not reused.
    #[schema(value_type = Option<Object>)]
    pub reuse: Option<crate::runtime::ReuseStats>,
}

/// An action type and the versions that provide it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionTypeEntry {
    /// The action type, such as `send_email`.
    pub name: String,
    /// Its title.
    pub title: String,
    /// What it does.
    pub description: String,
    /// The plugin providing it.
    pub plugin: String,
    /// The version that serves requests without a pinned `version`.
    pub version: String,
    /// Every active version, newest first; a request may pin any of them.
    pub versions: Vec<String>,
    /// Whether the type is idempotent.
    pub idempotent: bool,
    /// Whether every action of the type needs approval.
    pub requires_approval: bool,
    /// JSON Schema of the params (of the serving version).
    #[schema(value_type = Object)]
    pub params_schema: serde_json::Value,
}

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The component did not load: corrupt, traps in `describe`, unknown WIT
    /// version, bad manifest.
    #[error("{0}")]
    Load(#[from] LoadError),
    /// Another plugin provides one of its action types.
    #[error("{0}")]
    Clash(String),
    /// The same name and version is loaded with different contents, or the
    /// change does not apply to that source.
    #[error("{0}")]
    Conflict(String),
    /// The operator allows only listed components to be uploaded
    /// (`allowed_plugin_sha256`), and this one is not listed.
    #[error(
        "the upload's sha256 {actual} is not in the server's allowed_plugin_sha256; nothing was installed (ask the operator to add it)"
    )]
    NotAllowed {
        /// What arrived.
        actual: String,
    },
    /// The expected SHA-256 does not match the upload.
    #[error("the upload's sha256 is {actual}, not the expected {expected}; nothing was installed")]
    Checksum {
        /// What the client expected.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// No such plugin version.
    #[error("{0}")]
    NotFound(String),
    /// The start-up load is still running.
    #[error("plugins are still loading after start-up; try again in a moment")]
    Loading,
    /// The data dir could not be written.
    #[error("{0}")]
    Io(String),
}

/// Why an action type did not resolve to a plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// No active version provides it.
    #[error("unknown action type {action_type:?}; known action types: {known}")]
    Unknown {
        /// The type asked for.
        action_type: String,
        /// The known types, comma-separated.
        known: String,
    },
    /// The plugins are still loading after start-up.
    #[error("plugins are still loading; try again in a moment")]
    Loading,
    /// The pinned version is not active.
    #[error("version {version:?} of {action_type} is not active; active versions: {active}")]
    Version {
        /// The type.
        action_type: String,
        /// The version asked for.
        version: String,
        /// The active versions, comma-separated.
        active: String,
    },
}

/// The plugins that serve requests. Cheap to clone.
#[derive(Clone)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    extra_hosts: Vec<HostRule>,
    folder: PathBuf,
    uploads: PathBuf,
    snapshot: ArcSwap<Snapshot>,
    /// Serializes changes (compiles happen before it is taken).
    write: tokio::sync::Mutex<()>,
    /// Serializes uploads and removals from check to file (held around
    /// `write`, never inside it).
    uploads_lock: tokio::sync::Mutex<()>,
    /// `name@version` of disabled versions, persisted in `uploads/state.json`.
    disabled: Mutex<BTreeSet<String>>,
    ready: AtomicBool,
    /// The SHA-256s an upload may have (lowercase hex); empty: any.
    allowed_uploads: BTreeSet<String>,
    /// The shared store, when uploads and switches hold across replicas.
    shared: std::sync::OnceLock<shared::Shared>,
}

fn key_of(name: &str, version: &semver::Version) -> String {
    format!("{name}@{version}")
}

/// The SHA-256 of a component file, streamed on a blocking thread (tens of
/// megabytes for a JavaScript or Python plugin, which a warm start then does
/// not read again: its compiled code comes from the cache).
async fn hash_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|err| std::io::Error::other(format!("hashing thread failed: {err}")))?
}

impl PluginRegistry {
    /// An empty registry over the plugins `folder`, keeping uploads (and the
    /// disabled list) in `uploads`. Nothing is loaded until [`Self::load_all`].
    pub fn new(
        runtime: Runtime,
        folder: PathBuf,
        uploads: PathBuf,
        extra_hosts: Vec<HostRule>,
        allowed_uploads: BTreeSet<String>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&uploads)?;
        let disabled = read_disabled(&uploads)?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime,
                extra_hosts,
                folder,
                uploads,
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                write: tokio::sync::Mutex::new(()),
                uploads_lock: tokio::sync::Mutex::new(()),
                disabled: Mutex::new(disabled),
                ready: AtomicBool::new(false),
                allowed_uploads,
                shared: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The watched plugins folder.
    pub fn folder(&self) -> &Path {
        &self.inner.folder
    }

    /// Whether the start-up load has finished.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Loads the uploads and the plugins folder, in parallel, then marks the
    /// registry ready (also when the folder cannot be read: the server then
    /// serves what it has, and `/readyz` does not stay 503 for ever). A
    /// component that fails is reported and skipped.
    pub async fn load_all(&self) -> std::io::Result<()> {
        let result = self.load_sources().await;
        self.adopt_shared().await;
        self.inner.ready.store(true, Ordering::Release);
        result
    }

    async fn load_sources(&self) -> std::io::Result<()> {
        let mut sources: Vec<Source> = wasm_files(&self.inner.uploads)?
            .into_iter()
            .map(Source::Upload)
            .collect();
        sources.extend(
            wasm_files(&self.inner.folder)?
                .into_iter()
                .map(Source::Folder),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for (index, source) in sources.into_iter().enumerate() {
            let registry = self.clone();
            tasks.spawn(async move {
                let (sha, loaded) = registry.compile(&source).await;
                (index, source, sha, loaded)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(err) => tracing::error!(%err, "a plugin load task failed"),
            }
        }
        // Admit in a stable order (uploads, then the folder, by name), so a
        // clash always keeps the same one.
        results.sort_by_key(|(index, ..)| *index);
        for (_, source, sha, loaded) in results {
            self.settle(source, sha, loaded).await;
        }
        Ok(())
    }

    /// Brings the folder's plugins in line with its files: loads new and
    /// changed ones first, then unloads removed ones, so that replacing one
    /// file by another never leaves an action type unserved while the new
    /// one compiles.
    pub async fn sync_folder(&self) {
        let files = match wasm_files(&self.inner.folder) {
            Ok(files) => files,
            Err(err) => {
                tracing::error!(folder = %self.inner.folder.display(), %err, "cannot read the plugins folder");
                return;
            }
        };
        // New and changed files.
        for path in &files {
            let Ok(sha) = hash_file(path).await else {
                continue;
            };
            let source = Source::Folder(path.clone());
            let same = {
                let snapshot = self.inner.snapshot.load();
                snapshot
                    .held_by(&source)
                    .is_some_and(|(_, e)| e.plugin.sha256() == sha)
                    || snapshot
                        .pending
                        .get(path)
                        .is_some_and(|p| p.sha256.as_deref() == Some(sha.as_str()))
            };
            if same {
                continue;
            }
            tracing::info!(path = %path.display(), "plugin file new or changed; loading");
            let loaded = self
                .compile_bytes(&source, &sha, ComponentSource::File(path.clone()))
                .await;
            self.settle(source, Some(sha), loaded).await;
        }
        // Removed files.
        let present: BTreeSet<&PathBuf> = files.iter().collect();
        let removed: Vec<((String, semver::Version), PathBuf)> = self
            .inner
            .snapshot
            .load()
            .versions
            .iter()
            .filter_map(|(key, entry)| match &entry.source {
                Source::Folder(path) if !present.contains(path) => {
                    Some((key.clone(), path.clone()))
                }
                _ => None,
            })
            .collect();
        for (key, path) in removed {
            self.unload_removed(&path, &key).await;
        }
        let _ = self
            .change(|s| {
                s.pending.retain(|path, _| present.contains(path));
                Ok(())
            })
            .await;
    }

    async fn unload_removed(&self, path: &Path, key: &(String, semver::Version)) {
        let result = self
            .change(|s| {
                if s.versions.get(key).is_some_and(|e| e.source.path() == path) {
                    s.versions.remove(key);
                }
                Ok(())
            })
            .await;
        if result.is_ok() {
            tracing::info!(plugin = %key.0, version = %key.1, path = %path.display(), "plugin file removed; version unloaded (running executions finish on it)");
        }
    }

    /// Reads and compiles a source: the SHA-256 of the bytes read (if any)
    /// and the plugin.
    async fn compile(&self, source: &Source) -> (Option<String>, Result<Plugin, RegistryError>) {
        match hash_file(source.path()).await {
            Ok(sha) => {
                let component = ComponentSource::File(source.path().to_owned());
                let loaded = self.compile_bytes(source, &sha, component).await;
                (Some(sha), loaded)
            }
            Err(err) => (
                None,
                Err(RegistryError::Io(format!(
                    "cannot read {}: {err}",
                    source.path().display()
                ))),
            ),
        }
    }

    /// Compiles `bytes`, with a progress line for long compiles; a folder
    /// file is shown as `loading` meanwhile.
    async fn compile_bytes(
        &self,
        source: &Source,
        sha: &str,
        component: ComponentSource,
    ) -> Result<Plugin, RegistryError> {
        if let Source::Folder(path) = source {
            let _ = self
                .change(|s| {
                    s.pending.insert(
                        path.clone(),
                        Pending {
                            state: PluginState::Loading,
                            reason: None,
                            sha256: Some(sha.to_owned()),
                            since: crate::tenancy::now(),
                        },
                    );
                    Ok(())
                })
                .await;
        }
        let options = PluginOptions {
            extra_hosts: self.inner.extra_hosts.clone(),
            ..PluginOptions::default()
        };
        let load = self
            .inner
            .runtime
            .load_hashed(component, sha.to_owned(), options);
        tokio::pin!(load);
        let started = Instant::now();
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            tokio::select! {
                result = &mut load => {
                    crate::metrics::plugin_load(
                        result.is_ok(),
                        result.as_ref().ok().map(|p| p.cache_outcome() == CacheOutcome::Hit),
                        started.elapsed().as_secs_f64(),
                    );
                    return result.map_err(RegistryError::Load);
                }
                _ = progress.tick() => tracing::info!(
                    path = %source.path().display(),
                    elapsed_s = started.elapsed().as_secs(),
                    "still compiling a plugin; the current versions keep serving"
                ),
            }
        }
    }

    /// Admits a compiled folder or upload source, or records why not, under
    /// the hash of the bytes that were compiled (so a file that changes
    /// again is tried again).
    async fn settle(
        &self,
        source: Source,
        sha: Option<String>,
        loaded: Result<Plugin, RegistryError>,
    ) {
        let result = match loaded {
            Ok(plugin) => self.admit(source.clone(), plugin).await,
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            let reason = err.to_string();
            tracing::error!(path = %source.path().display(), %reason, "plugin not loaded; the versions already loaded keep serving");
            if let Source::Folder(path) = source {
                let _ = self
                    .change(|s| {
                        s.pending.insert(
                            path.clone(),
                            Pending {
                                state: PluginState::Failed,
                                reason: Some(reason.clone()),
                                sha256: sha.clone(),
                                since: crate::tenancy::now(),
                            },
                        );
                        Ok(())
                    })
                    .await;
            }
        }
    }

    /// The one way in: checks a compiled plugin against the registry and
    /// swaps it in, replacing whatever version `source` held before.
    async fn admit(&self, source: Source, plugin: Plugin) -> Result<PluginInfo, RegistryError> {
        let manifest = plugin.manifest().clone();
        let version = semver::Version::parse(&manifest.version)
            .map_err(|err| RegistryError::Conflict(format!("version: {err}")))?;
        let key = (manifest.name.clone(), version.clone());
        let (previous, after) = self
            .change_seen(|s| {
                let replaced = s.held_by(&source).map(|(k, _)| k.clone());
                // Another plugin claiming one of its action types (the
                // version this source held is being replaced: not a rival).
                for action_type in &manifest.action_types {
                    let owner = s.versions.iter().find(|((name, _), e)| {
                        *name != manifest.name
                            && e.source != source
                            && e.plugin.manifest().action_type(&action_type.name).is_some()
                    });
                    if let Some(((name, version), _)) = owner {
                        return Err(RegistryError::Clash(format!(
                            "action type {:?} is already provided by plugin {name} {version}; \
                             {} {} was not loaded (rename the action type, or remove {name} first)",
                            action_type.name, manifest.name, manifest.version
                        )));
                    }
                }
                // The same version from elsewhere.
                if let Some(existing) = s.versions.get(&key)
                    && existing.source != source
                {
                    let same = if existing.plugin.sha256() == plugin.sha256() {
                        "with the same contents"
                    } else {
                        "with different contents; give the new build a new version"
                    };
                    return Err(RegistryError::Conflict(format!(
                        "{} {} is already loaded from {} {same}",
                        manifest.name,
                        manifest.version,
                        existing.source.path().display()
                    )));
                }
                if let Some(old) = &replaced {
                    s.versions.remove(old);
                }
                // Read under the lock, so a concurrent disable is not undone.
                let disabled = self
                    .inner
                    .disabled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&key_of(&key.0, &key.1));
                s.versions.insert(
                    key.clone(),
                    Entry {
                        plugin: plugin.clone(),
                        source: source.clone(),
                        disabled,
                        loaded_at: crate::tenancy::now(),
                    },
                );
                s.pending.remove(source.path());
                Ok(replaced)
            })
            .await?;
        let info = after
            .info(&key)
            .unwrap_or_else(|| unreachable!("the snapshot it was just inserted into"));
        if previous.is_some() {
            crate::metrics::plugin_swap(&manifest.name);
        }
        tracing::info!(
            plugin = %manifest.name,
            version = %manifest.version,
            wit = %manifest.wit_version,
            cache = ?plugin.cache_outcome(),
            load_ms = plugin.load_time().as_millis() as u64,
            source = source.kind(),
            path = %source.path().display(),
            replaced = ?previous.as_ref().map(|(n, v)| key_of(n, v)),
            "plugin loaded"
        );
        Ok(info)
    }

    /// Applies `edit` to a copy of the snapshot and swaps it in, unless it
    /// fails. The only writer of the snapshot.
    async fn change<T>(
        &self,
        edit: impl FnOnce(&mut Snapshot) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        self.change_seen(edit).await.map(|(value, _)| value)
    }

    /// [`Self::change`], also returning the snapshot it swapped in (later
    /// changes cannot have touched it).
    async fn change_seen<T>(
        &self,
        edit: impl FnOnce(&mut Snapshot) -> Result<T, RegistryError>,
    ) -> Result<(T, Arc<Snapshot>), RegistryError> {
        let _guard = self.inner.write.lock().await;
        let mut next = Snapshot::clone(&self.inner.snapshot.load());
        let value = edit(&mut next)?;
        next.reindex();
        let next = Arc::new(next);
        self.inner.snapshot.store(next.clone());
        Ok((value, next))
    }

    /// Installs an uploaded component: checks the operator's allow-list and
    /// the expected hash, compiles, admits, and keeps the file in the data
    /// dir. Installing the exact same
    /// component again is not an error (`Ok((info, false))`). Uploads and
    /// removals run one at a time, and not before the start-up load is done.
    pub async fn install(
        &self,
        bytes: Arc<[u8]>,
        expected_sha256: Option<&str>,
    ) -> Result<(PluginInfo, bool), RegistryError> {
        if !self.is_ready() {
            return Err(RegistryError::Loading);
        }
        let actual = crate::runtime::sha256_hex(&bytes);
        let allowed = &self.inner.allowed_uploads;
        if !allowed.is_empty() && !allowed.contains(&actual) {
            return Err(RegistryError::NotAllowed { actual });
        }
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&actual)
        {
            return Err(RegistryError::Checksum {
                expected: expected.to_owned(),
                actual,
            });
        }
        let staging = self.inner.uploads.join(format!("upload-{actual}"));
        let plugin = self
            .compile_bytes(
                &Source::Upload(staging),
                &actual,
                ComponentSource::Bytes(bytes.clone()),
            )
            .await?;
        let _uploads = self.inner.uploads_lock.lock().await;
        let manifest = plugin.manifest().clone();
        if let Some(info) = self
            .info_of_name(&manifest.name)
            .into_iter()
            .find(|i| i.version.as_deref() == Some(manifest.version.as_str()))
        {
            if info.sha256.as_deref() == Some(actual.as_str()) {
                return Ok((info, false));
            }
            return Err(RegistryError::Conflict(format!(
                "{} {} is already loaded (from {}) with different contents; give the new build a new version",
                manifest.name, manifest.version, info.path
            )));
        }
        let path = upload_path(&self.inner.uploads, &manifest.name, &manifest.version);
        // In the shared store (when there is one) and on disk before it
        // serves, so an acknowledged upload survives a crash.
        let published = self
            .publish(&manifest.name, &manifest.version, &actual, &bytes)
            .await?;
        let admitted = match crate::files::write_durably(&path, &[&bytes]) {
            Ok(()) => self.admit(Source::Upload(path.clone()), plugin).await,
            Err(err) => Err(RegistryError::Io(format!("cannot store the upload: {err}"))),
        };
        match admitted {
            Ok(info) => {
                self.announce();
                Ok((info, true))
            }
            Err(err) => {
                let _ = std::fs::remove_file(&path);
                if published
                    && let Err(undo) = self.unpublish(&manifest.name, &manifest.version).await
                {
                    tracing::error!(%undo, "cannot withdraw a failed upload from the shared store");
                }
                Err(err)
            }
        }
    }

    /// Enables or disables one version. A disabled version stays loaded and
    /// listed but serves nothing; the choice is on disk before it applies,
    /// and survives a restart.
    pub async fn set_enabled(
        &self,
        name: &str,
        version: &str,
        enabled: bool,
    ) -> Result<PluginInfo, RegistryError> {
        let key = self.key(name, version)?;
        if self.shared().is_some() {
            if !self.inner.snapshot.load().versions.contains_key(&key) {
                return Err(not_loaded(name, version));
            }
            self.publish_switch(name, version, !enabled).await?;
        }
        let ((), after) = self
            .change_seen(|s| {
                let Some(entry) = s.versions.get_mut(&key) else {
                    return Err(not_loaded(name, version));
                };
                self.persist_disabled(&key, !enabled)?;
                entry.disabled = !enabled;
                Ok(())
            })
            .await?;
        let info = after
            .info(&key)
            .unwrap_or_else(|| unreachable!("the snapshot it was just updated in"));
        self.announce();
        tracing::info!(
            plugin = name,
            version,
            enabled,
            "plugin version {}",
            if enabled { "enabled" } else { "disabled" }
        );
        Ok(info)
    }

    /// Records `key` as disabled or not in `state.json`, then in memory.
    /// Called under the write lock.
    fn persist_disabled(
        &self,
        key: &(String, semver::Version),
        disabled: bool,
    ) -> Result<(), RegistryError> {
        let mut set = self
            .inner
            .disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let id = key_of(&key.0, &key.1);
        if set.contains(&id) == disabled {
            return Ok(());
        }
        let mut next = set.clone();
        if disabled {
            next.insert(id);
        } else {
            next.remove(&id);
        }
        save_disabled(&self.inner.uploads, &next)?;
        *set = next;
        Ok(())
    }

    /// Unloads an uploaded version and deletes its file. Running executions
    /// finish on it. A folder version is removed by deleting its file.
    pub async fn remove(&self, name: &str, version: &str) -> Result<PluginInfo, RegistryError> {
        let key = self.key(name, version)?;
        let _uploads = self.inner.uploads_lock.lock().await;
        if self.shared().is_some()
            && matches!(
                self.inner
                    .snapshot
                    .load()
                    .versions
                    .get(&key)
                    .map(|e| &e.source),
                Some(Source::Upload(_))
            )
        {
            self.unpublish(name, version).await?;
        }
        let info = self
            .change(|s| {
                let Some(entry) = s.versions.get(&key) else {
                    return Err(not_loaded(name, version));
                };
                let Source::Upload(path) = entry.source.clone() else {
                    return Err(RegistryError::Conflict(format!(
                        "{name} {version} comes from the plugins folder ({}); delete that file to unload it, or disable it",
                        entry.source.path().display()
                    )));
                };
                let info = info(s, &key, entry);
                // The file goes first: if it cannot, nothing changes.
                if let Err(err) = std::fs::remove_file(&path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(RegistryError::Io(format!(
                        "cannot delete {}: {err}",
                        path.display()
                    )));
                }
                // A later upload of the same version starts enabled.
                self.persist_disabled(&key, false)?;
                s.versions.remove(&key);
                Ok(info)
            })
            .await?;
        self.announce();
        tracing::info!(
            plugin = name,
            version,
            "plugin version removed (running executions finish on it)"
        );
        Ok(info)
    }

    fn key(&self, name: &str, version: &str) -> Result<(String, semver::Version), RegistryError> {
        let parsed = semver::Version::parse(version).map_err(|_| not_loaded(name, version))?;
        Ok((name.to_owned(), parsed))
    }

    /// The plugin serving `action_type`: the newest active version, or the
    /// pinned `version` (`latest` means no pin).
    pub fn resolve(
        &self,
        action_type: &str,
        version: Option<&str>,
    ) -> Result<Plugin, ResolveError> {
        let snapshot = self.inner.snapshot.load();
        let Some(plugins) = snapshot.by_type.get(action_type).filter(|p| !p.is_empty()) else {
            if !self.is_ready() {
                return Err(ResolveError::Loading);
            }
            return Err(ResolveError::Unknown {
                action_type: action_type.to_owned(),
                known: snapshot
                    .by_type
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        match version.filter(|v| *v != "latest") {
            None => Ok(plugins[0].clone()),
            Some(pinned) => plugins
                .iter()
                .find(|p| p.manifest().version == pinned)
                .cloned()
                .ok_or_else(|| ResolveError::Version {
                    action_type: action_type.to_owned(),
                    version: pinned.to_owned(),
                    active: plugins
                        .iter()
                        .map(|p| p.manifest().version.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
        }
    }

    /// The newest active plugin providing `action_type`.
    pub fn plugin_for(&self, action_type: &str) -> Option<Plugin> {
        self.resolve(action_type, None).ok()
    }

    /// Every action type an active version provides, sorted.
    pub fn action_types(&self) -> Vec<String> {
        self.inner.snapshot.load().by_type.keys().cloned().collect()
    }

    /// The newest active version of each plugin.
    pub fn plugins(&self) -> Vec<Plugin> {
        let snapshot = self.inner.snapshot.load();
        let mut newest: BTreeMap<&str, &Plugin> = BTreeMap::new();
        for ((name, _), entry) in snapshot.versions.iter().filter(|(_, e)| !e.disabled) {
            newest.insert(name, &entry.plugin);
        }
        newest.into_values().cloned().collect()
    }

    /// The newest active plugin serving the model `provider`, if any.
    pub fn model(&self, provider: &str) -> Option<Plugin> {
        self.plugins()
            .into_iter()
            .filter(|plugin| {
                plugin
                    .manifest()
                    .model
                    .as_ref()
                    .is_some_and(|model| model.provider == provider)
            })
            .max_by(|a, b| {
                let version = |p: &Plugin| semver::Version::parse(&p.manifest().version).ok();
                version(a).cmp(&version(b))
            })
    }

    /// The model providers the active plugins serve, sorted.
    pub fn providers(&self) -> Vec<String> {
        let mut providers: Vec<String> = self
            .plugins()
            .iter()
            .filter_map(|plugin| plugin.manifest().model.as_ref().map(|m| m.provider.clone()))
            .collect();
        providers.sort();
        providers.dedup();
        providers
    }

    /// Every action type with the versions providing it.
    pub fn action_type_entries(&self) -> Vec<ActionTypeEntry> {
        let snapshot = self.inner.snapshot.load();
        snapshot
            .by_type
            .iter()
            .filter_map(|(name, plugins)| {
                let serving = plugins.first()?;
                let manifest = serving.manifest();
                let info = manifest.action_type(name)?;
                Some(ActionTypeEntry {
                    name: name.clone(),
                    title: info.title.clone(),
                    description: info.description.clone(),
                    plugin: manifest.name.clone(),
                    version: manifest.version.clone(),
                    versions: plugins
                        .iter()
                        .map(|p| p.manifest().version.clone())
                        .collect(),
                    idempotent: info.idempotent,
                    requires_approval: info.requires_approval,
                    params_schema: info.params_schema.clone(),
                })
            })
            .collect()
    }

    /// Every version, then every folder file loading or failed.
    pub fn list(&self) -> Vec<PluginInfo> {
        let snapshot = self.inner.snapshot.load();
        let mut list: Vec<PluginInfo> = snapshot
            .versions
            .iter()
            .map(|(key, entry)| info(&snapshot, key, entry))
            .collect();
        list.extend(snapshot.pending.iter().map(|(path, pending)| {
            PluginInfo {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                version: None,
                state: pending.state,
                reason: pending.reason.clone(),
                sha256: pending.sha256.clone(),
                wit_version: None,
                size: None,
                limits: None,
                reuse: None,
                loaded_at: pending.since.clone(),
                load_ms: None,
                cache: None,
                source: "folder",
                path: path.display().to_string(),
                action_types: Vec::new(),
                serving: Vec::new(),
            }
        }));
        list
    }

    /// The versions of plugin `name`, oldest first.
    pub fn info_of_name(&self, name: &str) -> Vec<PluginInfo> {
        let snapshot = self.inner.snapshot.load();
        snapshot
            .versions
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(key, entry)| info(&snapshot, key, entry))
            .collect()
    }

    /// How many versions are loaded, and how many files are loading or failed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let snapshot = self.inner.snapshot.load();
        let loading = snapshot
            .pending
            .values()
            .filter(|p| p.state == PluginState::Loading)
            .count();
        (
            snapshot.versions.len(),
            loading,
            snapshot.pending.len() - loading,
        )
    }
}

fn info(snapshot: &Snapshot, key: &(String, semver::Version), entry: &Entry) -> PluginInfo {
    let manifest = entry.plugin.manifest();
    let serving = if entry.disabled {
        Vec::new()
    } else {
        manifest
            .action_types
            .iter()
            .filter(|t| {
                snapshot
                    .by_type
                    .get(&t.name)
                    .and_then(|p| p.first())
                    .is_some_and(|p| {
                        p.manifest().version == manifest.version && p.manifest().name == key.0
                    })
            })
            .map(|t| t.name.clone())
            .collect()
    };
    PluginInfo {
        name: key.0.clone(),
        version: Some(key.1.to_string()),
        state: if entry.disabled {
            PluginState::Disabled
        } else {
            PluginState::Active
        },
        reason: None,
        sha256: Some(entry.plugin.sha256().to_owned()),
        wit_version: Some(manifest.wit_version.clone()),
        size: Some(entry.plugin.size()),
        limits: Some(entry.plugin.limits().clone()),
        reuse: entry.plugin.reuse_stats(),
        loaded_at: entry.loaded_at.clone(),
        load_ms: Some(u64::try_from(entry.plugin.load_time().as_millis()).unwrap_or(u64::MAX)),
        cache: Some(entry.plugin.cache_outcome()),
        source: entry.source.kind(),
        path: entry.source.path().display().to_string(),
        action_types: manifest
            .action_types
            .iter()
            .map(|t| t.name.clone())
            .collect(),
        serving,
    }
}

fn not_loaded(name: &str, version: &str) -> RegistryError {
    RegistryError::NotFound(format!("plugin {name} {version} is not loaded"))
}

/// The `*.wasm` files of `dir`, sorted.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}
