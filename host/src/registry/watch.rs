//! Watching the plugins folder: file-system events, debounced, trigger a
//! [`PluginRegistry::sync_folder`].

use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::PluginRegistry;

/// How long the folder must be quiet before it is scanned: a copy in
/// progress produces a burst of events, and a half-written file must not be
/// loaded. (A file that is still incomplete after the pause fails to load and
/// is tried again at its next event.)
const QUIET: Duration = Duration::from_millis(20);

/// Watches the registry's plugins folder until `stop` turns true.
pub async fn watch_folder(
    registry: PluginRegistry,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> notify::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_access() => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(err) => tracing::warn!(%err, "plugins folder watch error"),
        })?;
    watcher.watch(registry.folder(), RecursiveMode::NonRecursive)?;
    tracing::info!(folder = %registry.folder().display(), "watching the plugins folder");
    // A file that changed between the start-up load and the watch: caught here.
    registry.sync_folder().await;
    loop {
        tokio::select! {
            event = rx.recv() => {
                if event.is_none() {
                    return Ok(());
                }
            }
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        // Debounce: wait until the folder has been quiet for a moment.
        while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {}
        registry.sync_folder().await;
    }
}
