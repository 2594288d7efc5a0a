//! Signing keys generated at start, their JSON Web Key form, and compact JWS signing.
//!
//! The keys are made with the RustCrypto crates directly (`rsa`, `p256`, `ed25519-dalek`,
//! `hmac`) rather than with a JWT library: a hostile provider must put arbitrary bytes in
//! the header and payload (`alg: none`, HS256 keyed with an RSA public key, claims of the
//! wrong type), which typed JWT encoders refuse to produce. They are also independent of
//! the `openidconnect` crate under test, so a shared bug cannot hide itself.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::Sha256;
use thiserror::Error;

/// Size of the generated RSA keys, in bits.
const RSA_BITS: usize = 2048;

/// A key could not be generated or used.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("generating an RSA key failed: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("encoding the RSA public key as PEM failed: {0}")]
    Pem(String),
    #[error("no valid P-256 scalar after {0} random draws")]
    EcScalar(usize),
    #[error("key {kid} cannot sign with {alg:?}")]
    WrongAlgorithm { kid: String, alg: SigningAlg },
}

/// The asymmetric algorithms the provider signs ID tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Ps256,
    Es256,
    EdDsa,
}

impl SigningAlg {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

#[derive(Debug)]
enum Secret {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// One private key with its key id.
#[derive(Debug)]
pub struct KeyPair {
    kid: String,
    secret: Secret,
}

impl KeyPair {
    pub fn rsa(kid: &str) -> Result<Self, KeyError> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)?;
        Ok(Self {
            kid: kid.to_owned(),
            secret: Secret::Rsa(Box::new(key)),
        })
    }

    pub fn p256(kid: &str) -> Result<Self, KeyError> {
        // A random 32-byte string is a valid scalar unless it is zero or not below the
        // group order, which happens with a probability of about 2^-32.
        const DRAWS: usize = 8;
        for _ in 0..DRAWS {
            let bytes: [u8; 32] = rand::random();
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                return Ok(Self {
                    kid: kid.to_owned(),
                    secret: Secret::P256(key),
                });
            }
        }
        Err(KeyError::EcScalar(DRAWS))
    }

    pub fn ed25519(kid: &str) -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            kid: kid.to_owned(),
            secret: Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes)),
        }
    }

    /// The same private key published under another key id.
    pub fn with_kid(&self, kid: &str) -> Self {
        let secret = match &self.secret {
            Secret::Rsa(key) => Secret::Rsa(key.clone()),
            Secret::P256(key) => Secret::P256(key.clone()),
            Secret::Ed25519(key) => Secret::Ed25519(key.clone()),
        };
        Self {
            kid: kid.to_owned(),
            secret,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JSON Web Key with `use: sig`.
    pub fn jwk(&self) -> Value {
        match &self.secret {
            Secret::Rsa(key) => json!({
                "kty": "RSA",
                "use": "sig",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
            Secret::P256(key) => {
                // SEC1 uncompressed form: 0x04, then x and y, 32 bytes each.
                let point = key.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                json!({
                    "kty": "EC",
                    "use": "sig",
                    "kid": self.kid,
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(bytes.get(1..33).unwrap_or_default()),
                    "y": URL_SAFE_NO_PAD.encode(bytes.get(33..65).unwrap_or_default()),
                })
            }
            Secret::Ed25519(key) => json!({
                "kty": "OKP",
                "use": "sig",
                "kid": self.kid,
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            }),
        }
    }

    /// The RSA public key in PEM (SubjectPublicKeyInfo), as a key-confusion attacker
    /// would use it for an HMAC key.
    pub fn rsa_public_pem(&self) -> Result<String, KeyError> {
        let Secret::Rsa(key) = &self.secret else {
            return Err(KeyError::Pem(format!("key {} is not an RSA key", self.kid)));
        };
        key.to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|error| KeyError::Pem(error.to_string()))
    }

    /// Signs `message` (the JWS signing input) with `alg`.
    pub fn sign(&self, alg: SigningAlg, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match (&self.secret, alg) {
            (Secret::Rsa(key), SigningAlg::Rs256) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.as_ref().clone());
                Ok(signer.sign(message).to_vec())
            }
            (Secret::Rsa(key), SigningAlg::Ps256) => {
                let signer = rsa::pss::BlindedSigningKey::<Sha256>::new(key.as_ref().clone());
                Ok(signer
                    .sign_with_rng(&mut rsa::rand_core::OsRng, message)
                    .to_vec())
            }
            (Secret::P256(key), SigningAlg::Es256) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                Ok(signature.to_bytes().to_vec())
            }
            (Secret::Ed25519(key), SigningAlg::EdDsa) => {
                use ed25519_dalek::Signer as _;
                Ok(key.sign(message).to_bytes().to_vec())
            }
            _ => Err(KeyError::WrongAlgorithm {
                kid: self.kid.clone(),
                alg,
            }),
        }
    }
}

/// Computes HMAC-SHA256 of `message` under `key`, as an HS256 JWS signature.
pub fn hs256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this constructor cannot fail.
    match hmac::Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Returns `BASE64URL(header) . BASE64URL(payload)`, the JWS signing input.
pub fn signing_input(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

/// Appends `.BASE64URL(signature)` to the signing input.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
