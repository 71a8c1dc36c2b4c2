//! Encryption at rest: XChaCha20-Poly1305 under the operator's key.
//!
//! Each sealed value is `base64(nonce ‖ ciphertext)` with a fresh random
//! 24-byte nonce, and the record's id as associated data, so a sealed value
//! copied into another record does not open.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::tenancy::{random_bytes, write_secret_file};

/// The key that seals credentials.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([REDACTED])")
    }
}

/// A sealed value does not open: wrong key, or damaged data.
#[derive(Debug, thiserror::Error)]
#[error(
    "a stored credential does not decrypt: the secret key differs from the one it was sealed with, or the data is damaged"
)]
pub struct OpenError;

/// Where the key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `ACTIONHOST_SECRET_KEY` (or `secret_key` in the config).
    Inline,
    /// A key file the operator named or a previous start generated.
    File(PathBuf),
    /// Generated now into the data directory.
    Generated(PathBuf),
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|err| err.to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| {
                "the secret key must be 64 hex characters or 32 bytes in base64".to_owned()
            })?
    };
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "the secret key is {} bytes; it must be 32 bytes (64 hex characters or base64)",
            bytes.len()
        )
    })
}

impl SecretBox {
    /// A box from raw key bytes.
    pub fn from_key(key: [u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// The key from `inline` (the environment), else `key_file`, else
    /// `DATA_DIR/secret.key`, generated there if absent.
    pub fn load(
        inline: Option<&str>,
        key_file: Option<&Path>,
        data_dir: &Path,
    ) -> anyhow::Result<(Self, KeySource)> {
        if let Some(text) = inline {
            let key =
                parse_key(text).map_err(|err| anyhow::anyhow!("ACTIONHOST_SECRET_KEY: {err}"))?;
            return Ok((Self::from_key(key), KeySource::Inline));
        }
        let (path, explicit) = match key_file {
            Some(path) => (path.to_path_buf(), true),
            None => (data_dir.join("secret.key"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = parse_key(&text)
                    .map_err(|err| anyhow::anyhow!("secret key file {}: {err}", path.display()))?;
                Ok((Self::from_key(key), KeySource::File(path)))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
                let key = random_bytes::<32>();
                std::fs::create_dir_all(data_dir)?;
                write_secret_file(&path, hex::encode(key).as_bytes())?;
                Ok((Self::from_key(key), KeySource::Generated(path)))
            }
            Err(err) => Err(anyhow::anyhow!(
                "cannot read the secret key file {}: {err}",
                path.display()
            )),
        }
    }

    /// Checks that this key is the one the store's credentials are sealed
    /// with: the first start seals a known value into the store's metadata,
    /// and every later start (of any replica, or after `store copy`) must
    /// open it. A server with another key would fail every execution that
    /// needs a credential; it is refused at start instead.
    pub fn check_against(&self, records: &crate::store::Records) -> anyhow::Result<()> {
        const KEY: &str = "secret_key_check";
        const CONTEXT: &str = "actionhost secret key check";
        let stored = records
            .set_meta_once(KEY, self.seal(CONTEXT, CONTEXT.as_bytes()).as_bytes())
            .map_err(|err| {
                anyhow::anyhow!("cannot check the secret key against the store: {err}")
            })?;
        let opens = std::str::from_utf8(&stored)
            .ok()
            .and_then(|sealed| self.open(CONTEXT, sealed).ok())
            .is_some_and(|plain| plain == CONTEXT.as_bytes());
        if !opens {
            anyhow::bail!(
                "this secret key is not the one the store's credentials are sealed with: give this server the key the store was first served with (secret_key, secret_key_file or DATA_DIR/secret.key; every replica of a database needs the same one). A lost key cannot be recovered: its credentials must be connected again"
            );
        }
        Ok(())
    }

    /// Seals `plaintext`, bound to `context` (the owning record's id).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce = random_bytes::<24>();
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption cannot fail for in-memory buffers of this size.
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| OpenError)?;
        if bytes.len() < 24 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_own_record() {
        let secrets = SecretBox::from_key([7; 32]);
        let sealed = secrets.seal("acct-1", b"tok-secret");
        assert!(!sealed.contains("tok-secret"));
        assert_eq!(
            secrets.open("acct-1", &sealed).expect("opens"),
            b"tok-secret"
        );
        assert!(
            secrets.open("acct-2", &sealed).is_err(),
            "bound to its record"
        );
        assert!(
            SecretBox::from_key([8; 32])
                .open("acct-1", &sealed)
                .is_err(),
            "bound to its key"
        );
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_bad_ones_are_explained() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key(&base64::engine::general_purpose::STANDARD.encode([1u8; 32])).is_ok());
        assert!(parse_key("short").expect_err("bad").contains("32 bytes"));
    }
}
