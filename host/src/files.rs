//! Writing files so that a crash leaves either the old file or the whole new
//! one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `parts` to `path` through a temporary file in the same folder,
/// synced, then renamed over it, and syncs the folder: a reader sees the old
/// file or the whole new one, and after the call returns the new one
/// survives a crash. Concurrent writers of one path each use their own
/// temporary file; the last rename wins.
pub(crate) fn write_durably(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent()
        && let Ok(dir) = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        dir.sync_all()?;
    }
    Ok(())
}
