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
//! only deserializes files it wrote itself. Each entry `NAME.cwasm` (exactly
//! what `Component::serialize` produced) has a sidecar `NAME.tag` holding a
//! keyed BLAKE3 hash (a MAC) of the engine hash and the entry's contents, under a key
//! generated at the cache's creation and kept in the cache directory with
//! mode 0600; an entry whose tag does not verify — truncated, bit-flipped,
//! without its tag, or written by anyone without the key — is deleted and
//! compiled anew, never loaded.
//!
//! A verified entry is loaded with `Component::deserialize_file`, which maps
//! the file rather than copying it onto the heap: a 36 MB JavaScript or
//! Python image costs resident memory only for the pages that run, and the
//! kernel shares them between processes. The file is verified, then mapped
//! by path: whoever could rewrite it in between runs as the server's user
//! and could read the key as well, so the tag guards against corruption and
//! foreign files, not against that user.
//!
//! Next to each compiled entry, `NAME.manifest` keeps what the component's
//! `describe` (and `reuse-policy`) answered, tagged the same way, so that a
//! warm start runs no plugin code at all: running `describe` touched each
//! interpreter's code pages (27 MB resident for the bundled JavaScript and
//! Python plugins, until the next restart). The host still
//! checks the cached manifest as it checks a fresh one. `describe` is
//! expected to answer the same for the same component; the answer a
//! component gave first is the one it keeps.
//!
//! BLAKE3 rather than HMAC-SHA256 because every warm start verifies every
//! entry: the bundled plugins' entries total 75 MB, and HMAC-SHA256 over
//! them was a fifth of a warm start's CPU (BLAKE3 hashes several times
//! faster). Tags of the earlier HMAC format (`AHCTAG01`) do not verify; their
//! entries are compiled anew once.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::{ComponentSource, LoadError};

/// The first bytes of a tag file (a new format gets a new magic).
const MAGIC: &[u8; 8] = b"AHCTAG02";
const TAG_LEN: usize = 32;
/// Mixed into a manifest entry's tag, so that no compiled entry's tag can
/// pass for a manifest's or the other way round. Its version changes when
/// the host's reading of a manifest does.
const MANIFEST_DOMAIN: &[u8] = b"actionhost manifest v1\0";

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

    /// The compiled form of `component` (whose SHA-256 is `content_sha256`),
    /// from the cache when a verified entry exists, compiled and stored
    /// otherwise (only then are its bytes read). Compilation runs on a
    /// blocking thread.
    pub async fn load(
        &self,
        engine: &Engine,
        component: &ComponentSource,
        content_sha256: &str,
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let failed = |err: wasmtime::Error| LoadError::Compile(format!("{err:#}"));
        let path = self.entry_path(content_sha256);
        let tag_path = path.with_extension("tag");
        let mut outcome = CacheOutcome::Miss;
        if path.exists() || tag_path.exists() {
            let verifier = self.verifier();
            let (check_path, check_tag, check_engine) =
                (path.clone(), tag_path.clone(), engine.clone());
            // Reading and hashing tens of megabytes: off the async threads,
            // and in parallel with other plugins' loads.
            let loaded = tokio::task::spawn_blocking(move || {
                if !verifier.verify(&check_path, &check_tag) {
                    return None;
                }
                // SAFETY: the file's contents carry a valid MAC under this
                // cache's private key, so they are exactly the bytes this
                // runtime produced with `Component::serialize` for an engine
                // with the same compatibility hash (see the module docs for
                // what the tag does not cover).
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize_file(&check_engine, &check_path) };
                Some(component)
            })
            .await
            .map_err(|err| LoadError::Compile(format!("cache read thread failed: {err}")))?;
            match loaded {
                Some(Ok(component)) => return Ok((component, CacheOutcome::Hit)),
                Some(Err(err)) => {
                    tracing::warn!(path = %path.display(), error = %err, "compiled cache entry rejected by wasmtime; recompiling");
                }
                None => {
                    tracing::warn!(path = %path.display(), "compiled cache entry failed verification (corrupt, untagged or not ours); recompiling");
                }
            }
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&tag_path);
            outcome = CacheOutcome::Rebuilt;
        }

        let compile_engine = engine.clone();
        let (source, sha256) = (component.clone(), content_sha256.to_owned());
        let component = tokio::task::spawn_blocking(move || {
            let bytes = source.read(&sha256)?;
            Component::new(&compile_engine, &bytes[..]).map_err(failed)
        })
        .await
        .map_err(|err| LoadError::Compile(format!("compilation thread failed: {err}")))??;
        match component.serialize() {
            Ok(serialized) => {
                if let Err(err) = self.store(&path, &tag_path, &serialized) {
                    tracing::warn!(path = %path.display(), error = %err, "could not write compiled cache entry; the next load compiles again");
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not serialize compiled component"),
        }
        Ok((component, outcome))
    }

    fn manifest_path(&self, content_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{content_sha256}-{}.manifest", self.engine_hash))
    }

    /// What `describe` answered for the component whose SHA-256 is
    /// `content_sha256`, if a verified entry holds it. The entry is one
    /// file: the magic, a tag over the engine hash, [`MANIFEST_DOMAIN`] and
    /// the JSON, then the JSON. One that does not verify or decode is
    /// deleted (the caller runs `describe` and stores a new one).
    pub(super) fn manifest<T: serde::de::DeserializeOwned>(
        &self,
        content_sha256: &str,
    ) -> Option<T> {
        let path = self.manifest_path(content_sha256);
        let bytes = fs::read(&path).ok()?;
        let verifier = self.verifier();
        let decoded = bytes
            .strip_prefix(MAGIC)
            .filter(|rest| rest.len() >= TAG_LEN)
            .map(|rest| rest.split_at(TAG_LEN))
            .filter(|(tag, json)| {
                // `Hash`'s equality is constant-time.
                <[u8; TAG_LEN]>::try_from(*tag)
                    .is_ok_and(|tag| verifier.manifest_tag(json) == blake3::Hash::from_bytes(tag))
            })
            .and_then(|(_, json)| serde_json::from_slice(json).ok());
        if decoded.is_none() {
            tracing::warn!(path = %path.display(), "manifest cache entry failed verification (corrupt, untagged or not ours); running describe");
            let _ = fs::remove_file(&path);
        }
        decoded
    }

    /// Keeps `describe`'s answer for the component whose SHA-256 is
    /// `content_sha256`; a failure to write is logged, not fatal.
    pub(super) fn store_manifest<T: serde::Serialize>(&self, content_sha256: &str, manifest: &T) {
        let path = self.manifest_path(content_sha256);
        let written = serde_json::to_vec(manifest)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                let tag = self.verifier().manifest_tag(&json);
                crate::files::write_durably(&path, &[MAGIC, tag.as_bytes(), &json])
            });
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), error = %err, "could not write manifest cache entry; the next load runs describe again");
        }
    }

    fn verifier(&self) -> Verifier {
        Verifier {
            key: self.key,
            engine_hash: self.engine_hash.clone(),
        }
    }

    /// Writes the entry, then its tag (each through a temporary file and a
    /// rename); a crash in between leaves an entry without its tag, which
    /// the next load rebuilds.
    fn store(&self, path: &Path, tag_path: &Path, payload: &[u8]) -> std::io::Result<()> {
        let mut mac = self.verifier().mac();
        mac.update(payload);
        let tag = mac.finalize();
        let _ = fs::remove_file(tag_path);
        crate::files::write_durably(path, &[payload])?;
        crate::files::write_durably(tag_path, &[MAGIC, tag.as_bytes()])
    }
}

/// Checks entries against their tags (owned, for a blocking thread).
struct Verifier {
    key: [u8; 32],
    engine_hash: String,
}

impl Verifier {
    fn mac(&self) -> blake3::Hasher {
        let mut mac = blake3::Hasher::new_keyed(&self.key);
        mac.update(self.engine_hash.as_bytes());
        mac
    }

    /// The tag of a manifest entry's JSON.
    fn manifest_tag(&self, json: &[u8]) -> blake3::Hash {
        let mut mac = self.mac();
        mac.update(MANIFEST_DOMAIN);
        mac.update(json);
        mac.finalize()
    }

    /// Whether `path`'s contents match the tag in `tag_path`; streams the
    /// file rather than reading it onto the heap.
    fn verify(&self, path: &Path, tag_path: &Path) -> bool {
        let Ok(tag_file) = fs::read(tag_path) else {
            return false;
        };
        let Some(tag) = tag_file.strip_prefix(MAGIC) else {
            return false;
        };
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        let Ok(file) = fs::File::open(path) else {
            return false;
        };
        let mut mac = self.mac();
        if mac.update_reader(file).is_err() {
            return false;
        }
        // `Hash`'s equality is constant-time.
        mac.finalize() == blake3::Hash::from_bytes(tag)
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
