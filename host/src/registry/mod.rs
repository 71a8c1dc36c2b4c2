//! The loaded plugins and the action types they provide.
//!
//! This release loads every component of the plugins folder at start-up, in
//! parallel, and maps each action type to its plugin; a component that fails
//! to load is reported with its reason and the others go on. Two plugins
//! claiming one action type is an error naming both, and the first loaded
//! keeps it. (Hot-loading, versions and uploads come with the registry's next
//! step.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::runtime::{HostRule, Plugin, PluginOptions, Runtime};

/// A component that did not load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadFailure {
    /// Its file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The plugins that serve requests.
#[derive(Clone)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    plugins: Vec<Plugin>,
    by_type: BTreeMap<String, Plugin>,
    failures: Vec<LoadFailure>,
}

impl PluginRegistry {
    /// Loads every `*.wasm` of `dir` with `extra_hosts` granted.
    pub async fn load_dir(
        runtime: &Runtime,
        dir: &Path,
        extra_hosts: &[HostRule],
    ) -> std::io::Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, path) in paths.into_iter().enumerate() {
            let runtime = runtime.clone();
            let options = PluginOptions {
                extra_hosts: extra_hosts.to_vec(),
                limits: None,
            };
            tasks.spawn(async move {
                let loaded = match tokio::fs::read(&path).await {
                    Ok(bytes) => runtime
                        .load(bytes.into(), options)
                        .await
                        .map_err(|err| err.to_string()),
                    Err(err) => Err(format!("cannot read: {err}")),
                };
                (index, path, loaded)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                Err(err) => tracing::error!(%err, "a plugin load task failed"),
            }
        }
        results.sort_by_key(|(index, _, _)| *index);

        let mut plugins = Vec::new();
        let mut by_type: BTreeMap<String, Plugin> = BTreeMap::new();
        let mut failures = Vec::new();
        for (_, path, loaded) in results {
            let plugin = match loaded {
                Ok(plugin) => plugin,
                Err(reason) => {
                    tracing::error!(path = %path.display(), %reason, "plugin not loaded");
                    failures.push(LoadFailure { path, reason });
                    continue;
                }
            };
            let manifest = plugin.manifest();
            let clash = manifest.action_types.iter().find_map(|t| {
                by_type
                    .get(&t.name)
                    .map(|owner| (t.name.clone(), owner.clone()))
            });
            if let Some((action_type, owner)) = clash {
                let reason = format!(
                    "action type {action_type:?} is already provided by plugin {} {}; {} {} not loaded",
                    owner.manifest().name,
                    owner.manifest().version,
                    manifest.name,
                    manifest.version
                );
                tracing::error!(path = %path.display(), %reason, "plugin not loaded");
                failures.push(LoadFailure { path, reason });
                continue;
            }
            tracing::info!(
                plugin = %manifest.name,
                version = %manifest.version,
                cache = ?plugin.cache_outcome(),
                load_ms = plugin.load_time().as_millis() as u64,
                "plugin loaded"
            );
            for action_type in &manifest.action_types {
                by_type.insert(action_type.name.clone(), plugin.clone());
            }
            plugins.push(plugin);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                plugins,
                by_type,
                failures,
            }),
        })
    }

    /// The plugin providing `action_type`.
    pub fn plugin_for(&self, action_type: &str) -> Option<&Plugin> {
        self.inner.by_type.get(action_type)
    }

    /// Every action type, sorted.
    pub fn action_types(&self) -> Vec<&str> {
        self.inner.by_type.keys().map(String::as_str).collect()
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &[Plugin] {
        &self.inner.plugins
    }

    /// The components that did not load.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.inner.failures
    }
}
