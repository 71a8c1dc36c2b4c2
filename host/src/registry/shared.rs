//! Uploaded plugins across replicas, when the store is shared (PostgreSQL).
//!
//! The database is the truth about uploads: a component is stored once
//! under its SHA-256 ([`PluginBlob`]), each uploaded version as a
//! [`SharedPlugin`], and each disabled version (uploaded or from the
//! plugins folder) as a [`PluginSwitch`]. The replica that takes a change
//! writes it to the database first, applies it to itself, and signals the
//! others ([`Topic::Plugins`]); each of them then brings its registry in
//! line ([`PluginRegistry::sync_shared`]): it fetches a new component into
//! its uploads folder (its local copy, compiled through its own cache),
//! unloads what was removed, and applies the switches. Without the signal
//! (its connection is down), a replica looks every [`POLL`].
//!
//! The first replica to serve a database publishes the uploads of its own
//! data dir (a sled server moving to PostgreSQL keeps its uploads); from
//! then on, an upload that is not in the database is removed from a
//! replica's data dir when it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{PluginRegistry, RegistryError, Source, key_of};
use crate::runtime::ComponentSource;
use crate::store::signals::next_of;
use crate::store::{Record, Records, Signals, StoreError, Topic};

/// How often a replica looks at the shared plugins without a signal.
const POLL: Duration = Duration::from_secs(5);

/// The meta key set once a replica has published its data dir's uploads.
const PUBLISHED: &str = "plugins_published";

/// An uploaded plugin version, as every replica serves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedPlugin {
    /// `name@version`.
    pub id: String,
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The SHA-256 of its component: the [`PluginBlob`] holding it.
    pub sha256: String,
    /// When it was uploaded (RFC 3339).
    pub uploaded_at: String,
}

impl Record for SharedPlugin {
    const COLLECTION: &'static str = "plugins";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A component's bytes, under their SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginBlob {
    /// The SHA-256 (lowercase hex).
    pub id: String,
    /// The component, base64.
    pub component: String,
}

impl Record for PluginBlob {
    const COLLECTION: &'static str = "plugin_blobs";
    fn id(&self) -> &str {
        &self.id
    }
}

/// A disabled plugin version (absent: enabled).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginSwitch {
    /// `name@version`.
    pub id: String,
    /// When it was disabled (RFC 3339).
    pub disabled_at: String,
}

impl Record for PluginSwitch {
    const COLLECTION: &'static str = "plugin_switches";
    fn id(&self) -> &str {
        &self.id
    }
}

/// The shared store and the signals of a registry whose uploads every
/// replica serves.
pub(super) struct Shared {
    records: Records,
    signals: Signals,
}

fn stored(err: StoreError) -> RegistryError {
    RegistryError::Io(format!("cannot store the plugin change: {err}"))
}

impl PluginRegistry {
    /// Shares this registry's uploads and switches with the other replicas
    /// of `records`. Call before [`Self::load_all`].
    pub fn share(&self, records: Records, signals: Signals) {
        let _ = self.inner.shared.set(Shared { records, signals });
    }

    pub(super) fn shared(&self) -> Option<&Shared> {
        self.inner.shared.get()
    }

    /// Records an upload in the shared store, before it serves here.
    /// `Ok(false)` when that version is there already with the same
    /// component; a different component under the same version is a
    /// conflict.
    pub(super) async fn publish(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<bool, RegistryError> {
        let Some(shared) = self.shared() else {
            return Ok(true);
        };
        let id = format!("{name}@{version}");
        let component = base64::engine::general_purpose::STANDARD.encode(bytes);
        let created = shared
            .records
            .transaction(|tx| {
                if let Some(existing) = tx.get::<SharedPlugin>(&id)? {
                    if existing.sha256 == sha256 {
                        return Ok(Ok(false));
                    }
                    return Ok(Err(RegistryError::Conflict(format!(
                        "{name} {version} is already uploaded (on another replica) with different contents; give the new build a new version"
                    ))));
                }
                if tx.get::<PluginBlob>(sha256)?.is_none() {
                    tx.put(&PluginBlob {
                        id: sha256.to_owned(),
                        component: component.clone(),
                    })?;
                }
                tx.put(&SharedPlugin {
                    id: id.clone(),
                    name: name.to_owned(),
                    version: version.to_owned(),
                    sha256: sha256.to_owned(),
                    uploaded_at: crate::tenancy::now(),
                })?;
                Ok(Ok(true))
            })
            .map_err(stored)??;
        shared.records.durable().await.map_err(stored)?;
        Ok(created)
    }

    /// Removes an upload from the shared store (and its component, unless
    /// another version has the same one).
    pub(super) async fn unpublish(&self, name: &str, version: &str) -> Result<(), RegistryError> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        let id = format!("{name}@{version}");
        let others = shared.records.list_all::<SharedPlugin>().map_err(stored)?;
        shared
            .records
            .transaction(|tx| {
                if let Some(plugin) = tx.remove::<SharedPlugin>(&id)?
                    && !others
                        .iter()
                        .any(|o| o.id != id && o.sha256 == plugin.sha256)
                {
                    tx.remove::<PluginBlob>(&plugin.sha256)?;
                }
                tx.remove::<PluginSwitch>(&id)?;
                Ok(())
            })
            .map_err(stored)?;
        shared.records.durable().await.map_err(stored)
    }

    /// Records a version as disabled or enabled in the shared store.
    pub(super) async fn publish_switch(
        &self,
        name: &str,
        version: &str,
        disabled: bool,
    ) -> Result<(), RegistryError> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        let id = format!("{name}@{version}");
        shared
            .records
            .transaction(|tx| {
                if disabled {
                    tx.put(&PluginSwitch {
                        id: id.clone(),
                        disabled_at: crate::tenancy::now(),
                    })
                } else {
                    tx.remove::<PluginSwitch>(&id).map(drop)
                }
            })
            .map_err(stored)?;
        shared.records.durable().await.map_err(stored)
    }

    /// Tells the other replicas that the plugins changed.
    pub(super) fn announce(&self) {
        if let Some(shared) = self.shared() {
            shared.signals.send(Topic::Plugins);
        }
    }

    /// At start-up, after the local load: the first replica of a database
    /// publishes the uploads of its data dir; then the registry follows
    /// the shared store.
    pub(super) async fn adopt_shared(&self) {
        let Some(shared) = self.shared() else {
            return;
        };
        match shared.records.meta(PUBLISHED) {
            Ok(Some(_)) => {}
            Ok(None) => {
                let uploads: Vec<(String, String, String, std::path::PathBuf, bool)> = {
                    let snapshot = self.inner.snapshot.load();
                    snapshot
                        .versions
                        .iter()
                        .filter_map(|((name, version), entry)| match &entry.source {
                            Source::Upload(path) => Some((
                                name.clone(),
                                version.to_string(),
                                entry.plugin.sha256().to_owned(),
                                path.clone(),
                                entry.disabled,
                            )),
                            Source::Folder(_) => None,
                        })
                        .collect()
                };
                for (name, version, sha, path, disabled) in uploads {
                    let published = match std::fs::read(&path) {
                        Ok(bytes) => self.publish(&name, &version, &sha, &bytes).await,
                        Err(err) => Err(RegistryError::Io(err.to_string())),
                    };
                    let published = match published {
                        Ok(_) if disabled => self.publish_switch(&name, &version, true).await,
                        other => other.map(drop),
                    };
                    match published {
                        Ok(()) => {
                            tracing::info!(plugin = %name, %version, "published an upload of this data dir to the shared store")
                        }
                        Err(err) => {
                            tracing::error!(plugin = %name, %version, %err, "cannot publish an upload of this data dir to the shared store")
                        }
                    }
                }
                if let Err(err) = shared.records.set_meta(PUBLISHED, b"1") {
                    tracing::error!(%err, "cannot record that the uploads were published");
                }
            }
            Err(err) => tracing::error!(%err, "cannot read the shared plugins"),
        }
        if let Err(err) = self.sync_shared().await {
            tracing::error!(%err, "cannot follow the shared plugins; retrying");
        }
    }

    /// Follows the shared store until `stop`: on each plugin signal (or
    /// resync), and every [`POLL`] in case one was missed.
    pub async fn follow_shared(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(shared) = self.shared() else {
            return;
        };
        let mut signals = shared.signals.subscribe();
        let mut failing = false;
        loop {
            tokio::select! {
                true = next_of(&mut signals, &[Topic::Plugins]) => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            match self.sync_shared().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("following the shared plugins again");
                }
                Ok(()) => {}
                Err(err) if !failing => {
                    failing = true;
                    tracing::error!(%err, "cannot follow the shared plugins; retrying");
                }
                Err(_) => {}
            }
        }
    }

    /// Brings this replica's uploads and switches in line with the shared
    /// store.
    async fn sync_shared(&self) -> Result<(), RegistryError> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        let _uploads = self.inner.uploads_lock.lock().await;
        let wanted: BTreeMap<String, SharedPlugin> = shared
            .records
            .list_all::<SharedPlugin>()
            .map_err(stored)?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        let disabled: BTreeSet<String> = shared
            .records
            .list_all::<PluginSwitch>()
            .map_err(stored)?
            .into_iter()
            .map(|s| s.id)
            .collect();

        // Removed (or replaced) elsewhere.
        let gone: Vec<((String, semver::Version), std::path::PathBuf)> = {
            let snapshot = self.inner.snapshot.load();
            snapshot
                .versions
                .iter()
                .filter_map(|(key, entry)| match &entry.source {
                    Source::Upload(path)
                        if wanted
                            .get(&key_of(&key.0, &key.1))
                            .is_none_or(|p| p.sha256 != entry.plugin.sha256()) =>
                    {
                        Some((key.clone(), path.clone()))
                    }
                    _ => None,
                })
                .collect()
        };
        for (key, path) in gone {
            self.change(|s| {
                if let Err(err) = std::fs::remove_file(&path)
                    && err.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(RegistryError::Io(format!(
                        "cannot delete {}: {err}",
                        path.display()
                    )));
                }
                s.versions.remove(&key);
                Ok(())
            })
            .await?;
            tracing::info!(plugin = %key.0, version = %key.1, "plugin version removed on another replica; unloaded here (running executions finish on it)");
        }

        // The switches, before new versions load (they start as switched).
        {
            let mut local = self
                .inner
                .disabled
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *local != disabled {
                super::state::save_disabled(&self.inner.uploads, &disabled)?;
                local.clone_from(&disabled);
            }
        }
        let switched = {
            let snapshot = self.inner.snapshot.load();
            snapshot
                .versions
                .iter()
                .any(|(key, entry)| entry.disabled != disabled.contains(&key_of(&key.0, &key.1)))
        };
        if switched {
            self.change(|s| {
                for (key, entry) in &mut s.versions {
                    let now_disabled = disabled.contains(&key_of(&key.0, &key.1));
                    if entry.disabled != now_disabled {
                        entry.disabled = now_disabled;
                        tracing::info!(plugin = %key.0, version = %key.1, enabled = !now_disabled, "plugin version {} on another replica", if now_disabled { "disabled" } else { "enabled" });
                    }
                }
                Ok(())
            })
            .await?;
        }

        // New elsewhere.
        let missing: Vec<SharedPlugin> = {
            let snapshot = self.inner.snapshot.load();
            wanted
                .values()
                .filter(|p| {
                    !snapshot.versions.iter().any(|(key, entry)| {
                        key_of(&key.0, &key.1) == p.id && entry.plugin.sha256() == p.sha256
                    })
                })
                .cloned()
                .collect()
        };
        for plugin in missing {
            if let Err(err) = self.fetch(shared, &plugin).await {
                tracing::error!(plugin = %plugin.name, version = %plugin.version, %err, "cannot load a plugin uploaded on another replica; the versions already loaded keep serving");
            }
        }
        Ok(())
    }

    /// Fetches, stores locally, compiles and admits a plugin uploaded on
    /// another replica.
    async fn fetch(&self, shared: &Shared, plugin: &SharedPlugin) -> Result<(), RegistryError> {
        let blob = shared
            .records
            .get::<PluginBlob>(&plugin.sha256)
            .map_err(stored)?
            .ok_or_else(|| {
                RegistryError::Io(format!(
                    "the component {} of {} is missing from the store",
                    plugin.sha256, plugin.id
                ))
            })?;
        let bytes: Arc<[u8]> = base64::engine::general_purpose::STANDARD
            .decode(blob.component.as_bytes())
            .map_err(|err| {
                RegistryError::Io(format!("the stored component does not decode: {err}"))
            })?
            .into();
        let actual = crate::runtime::sha256_hex(&bytes);
        if actual != plugin.sha256 {
            return Err(RegistryError::Io(format!(
                "the stored component of {} has sha256 {actual}, not {}",
                plugin.id, plugin.sha256
            )));
        }
        let path = super::state::upload_path(&self.inner.uploads, &plugin.name, &plugin.version);
        let compiled = self
            .compile_bytes(
                &Source::Upload(path.clone()),
                &actual,
                ComponentSource::Bytes(bytes.clone()),
            )
            .await?;
        crate::files::write_durably(&path, &[&bytes])
            .map_err(|err| RegistryError::Io(format!("cannot store the upload: {err}")))?;
        match self.admit(Source::Upload(path.clone()), compiled).await {
            Ok(_) => {
                tracing::info!(plugin = %plugin.name, version = %plugin.version, "plugin uploaded on another replica loaded here");
                Ok(())
            }
            Err(err) => {
                let _ = std::fs::remove_file(&path);
                Err(err)
            }
        }
    }
}

/// The name and version of an upload from its file name, `NAME-VERSION.wasm`
/// (a name may hold hyphens, so the version is the first tail that parses).
fn upload_name(path: &std::path::Path) -> Option<(String, semver::Version)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".wasm")?;
    stem.match_indices('-').find_map(|(at, _)| {
        let version = semver::Version::parse(&stem[at + 1..]).ok()?;
        Some((stem[..at].to_owned(), version))
    })
}

/// `actionhost store copy`: publishes the uploads of a stopped sled
/// server's data dir (`uploads`, its `DATA_DIR/plugins`) and its disabled
/// versions into `to`, as the first replica on that data dir would at
/// start-up; then counts both sides. Returns the number of uploads.
pub fn copy_uploads(uploads: &std::path::Path, to: &Records) -> Result<usize, String> {
    let disabled = super::state::read_disabled(uploads).map_err(|err| err.to_string())?;
    let files = match std::fs::read_dir(uploads) {
        Ok(entries) => entries
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|err| format!("{}: {err}", uploads.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(format!("{}: {err}", uploads.display())),
    };
    let mut count = 0;
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let (name, version) = upload_name(&path).ok_or_else(|| {
            format!(
                "{}: not an upload of actionhost (NAME-VERSION.wasm); move it out of the data dir and copy again",
                path.display()
            )
        })?;
        let bytes = std::fs::read(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        let sha256 = crate::runtime::sha256_hex(&bytes);
        let plugin = SharedPlugin {
            id: format!("{name}@{version}"),
            name,
            version: version.to_string(),
            sha256: sha256.clone(),
            uploaded_at: crate::tenancy::now(),
        };
        let blob = PluginBlob {
            id: sha256,
            component: base64::engine::general_purpose::STANDARD.encode(&bytes),
        };
        to.transaction(|tx| {
            tx.put(&blob)?;
            tx.put(&plugin)
        })
        .map_err(|err| format!("cannot store {}: {err}", path.display()))?;
        count += 1;
    }
    to.transaction(|tx| {
        for id in &disabled {
            tx.put(&PluginSwitch {
                id: id.clone(),
                disabled_at: crate::tenancy::now(),
            })?;
        }
        Ok(())
    })
    .map_err(|err| format!("cannot store the disabled versions: {err}"))?;
    to.set_meta(PUBLISHED, b"1")
        .map_err(|err| format!("cannot record that the uploads were copied: {err}"))?;
    let stored = to
        .list_all::<SharedPlugin>()
        .map_err(|err| format!("cannot count the copied uploads: {err}"))?
        .len();
    if stored != count {
        return Err(format!(
            "the copy does not add up: {count} uploads in {}, {stored} in the database",
            uploads.display()
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::upload_name;

    #[test]
    fn an_upload_file_names_its_plugin_and_version_even_with_hyphens() {
        let name =
            |file: &str| upload_name(std::path::Path::new(file)).map(|(n, v)| (n, v.to_string()));
        assert_eq!(
            name("slack-message-1.2.3.wasm"),
            Some((String::from("slack-message"), String::from("1.2.3")))
        );
        assert_eq!(
            name("a-1-2.0.0-beta.1.wasm"),
            Some((String::from("a-1"), String::from("2.0.0-beta.1")))
        );
        assert_eq!(name("notes.wasm"), None);
        assert_eq!(name("notes-1.0.0.txt"), None);
    }
}
