//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes from milliseconds (a small Rust
//! plugin) to seconds (a JavaScript or Python one), so the machine code is
//! kept on disk, keyed by the component's SHA-256 and by
//! [`Engine::precompile_compatibility_hash`] (a new wasmtime or a changed
//! engine setting never reads an old entry).
//!
//! Deserializing compiled code is `unsafe`: the bytes are trusted to be
//! machine code wasmtime produced. **Architecture Invariant:** the runtime
//! only deserializes files it wrote itself. Each entry carries an HMAC-SHA256
//! over its contents under a key generated at the cache's creation and kept in
//! the cache directory with mode 0600; an entry whose tag does not verify —
//! truncated, bit-flipped, or written by anyone without the key — is deleted
//! and compiled anew, never loaded.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"AHCWASM1";
const TAG_LEN: usize = 32;

/// What a load found in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Loaded from a verified entry: no compilation.
    Hit,
    /// Not cached: compiled and stored.
    Miss,
    /// A corrupt or foreign entry was found, discarded, and recompiled.
    Rebuilt,
}

/// Errors of the compiled-code cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory or its key could not be set up.
    #[error("compiled-code cache at {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A directory of compiled components.
pub struct CompiledCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_hash: String,
}

impl CompiledCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, CacheError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let key_path = dir.join("cache.key");
        let key = match fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            _ => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|err| CacheError::Io {
                    path: key_path.clone(),
                    source: std::io::Error::other(err.to_string()),
                })?;
                write_private(&key_path, &key).map_err(io(&key_path))?;
                // Entries signed with a previous key can no longer verify.
                key
            }
        };
        let mut hasher = DigestHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..12]);
        Ok(Self {
            dir: dir.to_owned(),
            key,
            engine_hash,
        })
    }

    fn entry_path(&self, content_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{content_sha256}-{}.cwasm", self.engine_hash))
    }

    /// The compiled form of `bytes` (whose SHA-256 is `content_sha256`), from
    /// the cache when a verified entry exists, compiled and stored otherwise.
    /// Compilation runs on a blocking thread.
    pub async fn load(
        &self,
        engine: &Engine,
        bytes: std::sync::Arc<[u8]>,
        content_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(content_sha256);
        let mut outcome = CacheOutcome::Miss;
        if let Ok(entry) = fs::read(&path) {
            match self.verified_payload(&entry) {
                Some(payload) => {
                    // SAFETY: the payload carries a valid HMAC under this
                    // cache's private key, so it is exactly the bytes this
                    // runtime produced with `Component::serialize` for an
                    // engine with the same compatibility hash.
                    #[allow(unsafe_code)]
                    let component = unsafe { Component::deserialize(engine, payload) };
                    match component {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        Err(err) => {
                            tracing::warn!(path = %path.display(), error = %err, "compiled cache entry rejected by wasmtime; recompiling");
                        }
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "compiled cache entry failed verification (corrupt or not ours); recompiling");
                }
            }
            let _ = fs::remove_file(&path);
            outcome = CacheOutcome::Rebuilt;
        }

        let compile_engine = engine.clone();
        let component =
            tokio::task::spawn_blocking(move || Component::new(&compile_engine, &bytes[..]))
                .await
                .map_err(|err| wasmtime::format_err!("compilation thread failed: {err}"))??;
        match component.serialize() {
            Ok(serialized) => {
                if let Err(err) = self.store(&path, &serialized) {
                    tracing::warn!(path = %path.display(), error = %err, "could not write compiled cache entry; the next load compiles again");
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not serialize compiled component"),
        }
        Ok((component, outcome))
    }

    fn tag(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.engine_hash.as_bytes());
        mac.update(payload);
        mac
    }

    fn verified_payload<'a>(&self, entry: &'a [u8]) -> Option<&'a [u8]> {
        let rest = entry.strip_prefix(MAGIC)?;
        if rest.len() < TAG_LEN {
            return None;
        }
        let (tag, payload) = rest.split_at(TAG_LEN);
        self.tag(payload).verify_slice(tag).ok()?;
        Some(payload)
    }

    fn store(&self, path: &Path, payload: &[u8]) -> std::io::Result<()> {
        let tag = self.tag(payload).finalize().into_bytes();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&tag)?;
            file.write_all(payload)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Feeds `Hash` output into a SHA-256 digest (stable, unlike `DefaultHasher`).
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    /// Unused: `Hash` implementations only call `write`; the digest is read
    /// from the inner `Sha256`.
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
