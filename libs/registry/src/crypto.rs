//! Encryption of client secrets at rest with AES-256-GCM.
//!
//! Each secret gets a fresh 96-bit random nonce, and the provider's name is the associated
//! data, so a ciphertext copied onto another provider's record does not decrypt. Every
//! ciphertext names the key it was sealed with by a key id (the first 16 hex digits of the
//! key's SHA-256), which lets old keys stay readable during a rotation.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::record::StoredSecret;

/// A key could not be loaded.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error(
        "secret key reference {reference:?} is not env:NAME or file:/path: write it as one of those, so the key never sits in the configuration file"
    )]
    NotAReference { reference: String },
    #[error(
        "secret key variable {name} is not set: export it with 32 random bytes in base64 (openssl rand -base64 32)"
    )]
    MissingEnv { name: String },
    #[error("reading secret key file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "secret key from {reference} is not base64: store 32 random bytes in base64 (openssl rand -base64 32)"
    )]
    NotBase64 { reference: String },
    #[error(
        "secret key from {reference} has {length} bytes, expected 32: generate one with openssl rand -base64 32"
    )]
    WrongLength { reference: String, length: usize },
}

/// A secret could not be sealed or opened.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "no secret key is configured, so a client secret value cannot be stored: set registry.secret_key, or give the secret as env:NAME or file:/path"
    )]
    NoKey,
    #[error(
        "the client secret of provider {provider} was encrypted with key {key_id}, which is not configured: add that key to registry.previous_secret_keys or save the secret again"
    )]
    UnknownKey { provider: String, key_id: String },
    #[error(
        "the client secret of provider {provider} does not decrypt with key {key_id}: the record was altered or belongs to another provider; save the secret again"
    )]
    Corrupt { provider: String, key_id: String },
    #[error(
        "the client secret of provider {provider} is too long to encrypt: check that the value is the secret"
    )]
    TooLong { provider: String },
    #[error("the stored secret of provider {provider} is not encrypted")]
    NotEncrypted { provider: String },
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The current key, which seals, and earlier keys, which only open.
#[derive(Default)]
pub struct Keyring {
    current: Option<Key>,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.as_ref().map(|key| &key.id))
            .field(
                "previous",
                &self.previous.iter().map(|key| &key.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Loads the keys named by `current` and `previous` (each `env:NAME` or `file:/path`).
    pub fn load(current: Option<&str>, previous: &[String]) -> Result<Self, KeyError> {
        let current = current.map(load_key).transpose()?;
        let previous = previous
            .iter()
            .map(|reference| load_key(reference))
            .collect::<Result<_, _>>()?;
        Ok(Self { current, previous })
    }

    /// Builds a keyring from raw 32-byte keys, for tests.
    pub fn from_bytes(current: Option<[u8; 32]>, previous: &[[u8; 32]]) -> Self {
        Self {
            current: current.map(|bytes| key_from_bytes(&bytes)),
            previous: previous.iter().map(key_from_bytes).collect(),
        }
    }

    /// Returns the id of the key that seals, when one is configured.
    pub fn current_key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|key| key.id.as_str())
    }

    /// Encrypts `secret` for `provider` with the current key.
    pub fn seal(&self, provider: &str, secret: &str) -> Result<StoredSecret, CryptoError> {
        let key = self.current.as_ref().ok_or(CryptoError::NoKey)?;
        let mut nonce = [0_u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: provider.as_bytes(),
        };
        // AES-GCM rejects only plaintexts over 2^36 bytes, far beyond any client secret.
        let ciphertext = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| CryptoError::TooLong {
                provider: provider.to_owned(),
            })?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(StoredSecret::Encrypted {
            key_id: key.id.clone(),
            nonce: b64.encode(nonce),
            ciphertext: b64.encode(ciphertext),
        })
    }

    /// Decrypts an encrypted secret of `provider` with whichever configured key sealed it.
    pub fn open(&self, provider: &str, stored: &StoredSecret) -> Result<String, CryptoError> {
        let StoredSecret::Encrypted {
            key_id,
            nonce,
            ciphertext,
        } = stored
        else {
            return Err(CryptoError::NotEncrypted {
                provider: provider.to_owned(),
            });
        };
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|key| &key.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey {
                provider: provider.to_owned(),
                key_id: key_id.clone(),
            })?;
        let corrupt = || CryptoError::Corrupt {
            provider: provider.to_owned(),
            key_id: key_id.clone(),
        };

        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce = b64.decode(nonce).map_err(|_| corrupt())?;
        let ciphertext = b64.decode(ciphertext).map_err(|_| corrupt())?;
        if nonce.len() != 12 {
            return Err(corrupt());
        }
        let payload = Payload {
            msg: &ciphertext,
            aad: provider.as_bytes(),
        };
        let plaintext = key
            .cipher
            .decrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| corrupt())?;
        String::from_utf8(plaintext).map_err(|_| corrupt())
    }
}

fn load_key(reference: &str) -> Result<Key, KeyError> {
    let text = if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name).map_err(|_| KeyError::MissingEnv {
            name: name.to_owned(),
        })?
    } else if let Some(path) = reference.strip_prefix("file:") {
        std::fs::read_to_string(path).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source,
        })?
    } else {
        return Err(KeyError::NotAReference {
            reference: reference.to_owned(),
        });
    };

    let text = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| KeyError::NotBase64 {
            reference: reference.to_owned(),
        })?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::WrongLength {
            reference: reference.to_owned(),
            length: bytes.len(),
        })?;
    Ok(key_from_bytes(&bytes))
}

fn key_from_bytes(bytes: &[u8; 32]) -> Key {
    let digest = Sha256::digest(bytes);
    let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Key {
        id,
        cipher: Aes256Gcm::new(bytes.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::from_bytes(Some([7; 32]), &[])
    }

    #[test]
    fn sealed_secret_opens() {
        let keyring = keyring();
        let sealed = keyring.seal("okta", "s3cret").expect("sealing works");
        assert_eq!(keyring.open("okta", &sealed), Ok("s3cret".to_owned()));
    }

    #[test]
    fn sealed_secret_hides_plaintext() {
        let sealed = keyring()
            .seal("okta", "s3cret-value")
            .expect("sealing works");
        let json = serde_json::to_string(&sealed).expect("serializes");
        assert!(!json.contains("s3cret-value"), "{json}");
    }

    #[test]
    fn nonce_is_fresh_per_seal() {
        let keyring = keyring();
        let first = keyring.seal("okta", "same").expect("sealing works");
        let second = keyring.seal("okta", "same").expect("sealing works");
        assert_ne!(first, second);
    }

    #[test]
    fn ciphertext_of_another_provider_does_not_open() {
        let keyring = keyring();
        let sealed = keyring.seal("okta", "s3cret").expect("sealing works");
        assert!(matches!(
            keyring.open("entra", &sealed),
            Err(CryptoError::Corrupt { .. })
        ));
    }

    #[test]
    fn altered_ciphertext_does_not_open() {
        let keyring = keyring();
        let Ok(StoredSecret::Encrypted {
            key_id,
            nonce,
            ciphertext,
        }) = keyring.seal("okta", "s3cret")
        else {
            panic!("sealing returns an encrypted secret");
        };
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(ciphertext)
            .expect("base64");
        bytes[0] ^= 1;
        let altered = StoredSecret::Encrypted {
            key_id,
            nonce,
            ciphertext: base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        assert!(matches!(
            keyring.open("okta", &altered),
            Err(CryptoError::Corrupt { .. })
        ));
    }

    #[test]
    fn previous_key_still_opens_after_rotation() {
        let old = Keyring::from_bytes(Some([1; 32]), &[]);
        let sealed = old.seal("okta", "s3cret").expect("sealing works");

        let rotated = Keyring::from_bytes(Some([2; 32]), &[[1; 32]]);
        assert_eq!(rotated.open("okta", &sealed), Ok("s3cret".to_owned()));

        let forgotten = Keyring::from_bytes(Some([2; 32]), &[]);
        assert!(matches!(
            forgotten.open("okta", &sealed),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn sealing_without_key_is_refused() {
        let empty = Keyring::default();
        assert_eq!(empty.seal("okta", "s3cret"), Err(CryptoError::NoKey));
    }

    #[test]
    fn key_file_must_hold_32_bytes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let short = dir.path().join("short");
        std::fs::write(
            &short,
            base64::engine::general_purpose::STANDARD.encode([0; 16]),
        )?;
        let result = Keyring::load(Some(&format!("file:{}", short.display())), &[]);
        assert!(matches!(
            result,
            Err(KeyError::WrongLength { length: 16, .. })
        ));

        let good = dir.path().join("good");
        std::fs::write(
            &good,
            base64::engine::general_purpose::STANDARD.encode([9; 32]),
        )?;
        let keyring = Keyring::load(Some(&format!("file:{}", good.display())), &[])?;
        assert!(keyring.current_key_id().is_some());
        Ok(())
    }

    #[test]
    fn literal_key_in_configuration_is_refused() {
        let result = Keyring::load(Some("c2VjcmV0"), &[]);
        assert!(matches!(result, Err(KeyError::NotAReference { .. })));
    }
}
