//! The uploads folder's files: where an uploaded version is kept, and
//! `state.json`, the disabled versions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::RegistryError;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
/// `state.json`.
struct StateFile {
    disabled: Vec<String>,
}

/// Where an uploaded version is kept in the uploads folder.
pub(super) fn upload_path(uploads: &Path, name: &str, version: &str) -> PathBuf {
    uploads.join(format!("{name}-{version}.wasm"))
}

/// The disabled versions listed in `uploads/state.json` (none without it).
pub(super) fn read_disabled(uploads: &Path) -> std::io::Result<BTreeSet<String>> {
    let path = uploads.join("state.json");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice::<StateFile>(&bytes)
            .map_err(|err| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: {err}; fix or delete the file (it lists disabled plugin versions)",
                        path.display()
                    ),
                )
            })?
            .disabled
            .into_iter()
            .collect()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(err) => Err(err),
    }
}

/// Saves the disabled versions as `uploads/state.json`, durably.
pub(super) fn save_disabled(
    uploads: &Path,
    disabled: &BTreeSet<String>,
) -> Result<(), RegistryError> {
    let file = StateFile {
        disabled: disabled.iter().cloned().collect(),
    };
    let json = serde_json::to_vec_pretty(&file).unwrap_or_default();
    crate::files::write_durably(&uploads.join("state.json"), &[&json])
        .map_err(|err| RegistryError::Io(format!("cannot save the plugin states: {err}")))
}
