//! Personal data kept apart and erasable (crypto-shredding).
//!
//! Each person (a *subject*) has a random 256-bit key. Personal fields are encrypted with it
//! (XChaCha20-Poly1305, a random 192-bit nonce per seal, the subject id as associated data,
//! so a ciphertext moved to another person does not open). The key is stored wrapped by the
//! master key, which the server receives from outside the database (a file or the
//! environment). Erasing a person destroys the wrapped key: the events stay, and every copy
//! of the personal data, in the log, in read models, in backups of both, becomes unreadable.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use opora_domain::person::Sealed;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const CHECK_PLAINTEXT: &[u8] = b"opora master key check";
const CHECK_AAD: &[u8] = b"opora:master-key-check";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the master key must be 32 bytes, base64-encoded (44 characters); generate one with `opora master-key generate`")]
    BadMasterKey,
    #[error("the master key does not open this database's keys: it is not the key this database was set up with")]
    WrongMasterKey,
    #[error("sealed data is damaged or was sealed for another person")]
    Damaged,
    #[error("the personal data of this person has been erased")]
    Erased,
    #[error("could not serialise personal data: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("no randomness available from the operating system")]
    Random,
}

/// The key that wraps every personal key. Debug output never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| VaultError::BadMasterKey)?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| VaultError::BadMasterKey)?;
        Ok(Self(key))
    }
    pub fn generate() -> Result<Self, VaultError> {
        Ok(Self(random()?))
    }
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|_| VaultError::Random)?;
    Ok(bytes)
}

fn encrypt(key: &[u8; KEY_LEN], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| VaultError::Damaged)?,
    );
    Ok(out)
}

fn decrypt(key: &[u8; KEY_LEN], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_LEN {
        return Err(VaultError::Damaged);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| VaultError::Damaged)
}

fn wrap_aad(subject: Uuid) -> Vec<u8> {
    let mut aad = b"opora:personal-key:".to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// Seals and opens personal data; erases people.
#[derive(Clone)]
pub struct Vault {
    pool: PgPool,
    master: Arc<MasterKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault")
    }
}

impl Vault {
    /// Checks the master key against the database (and records a check value on first use).
    pub async fn open_with(pool: PgPool, master: MasterKey) -> Result<Self, VaultError> {
        let vault = Self {
            pool,
            master: Arc::new(master),
        };
        let check: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed FROM access.master_key_check")
                .fetch_optional(&vault.pool)
                .await?;
        match check {
            Some(sealed) => {
                let plain = vault
                    .open_with_master(&sealed, CHECK_AAD)
                    .map_err(|_| VaultError::WrongMasterKey)?;
                if plain != CHECK_PLAINTEXT {
                    return Err(VaultError::WrongMasterKey);
                }
            }
            None => {
                let sealed = vault.seal_with_master(CHECK_PLAINTEXT, CHECK_AAD)?;
                sqlx::query(
                    "INSERT INTO access.master_key_check (sealed) VALUES ($1) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(sealed)
                .execute(&vault.pool)
                .await?;
                // Someone else may have won the race with another key: check again.
                return Box::pin(Self::open_with(vault.pool, (*vault.master).clone())).await;
            }
        }
        Ok(vault)
    }

    /// Encrypts a small secret (a second factor's seed) directly with the master key.
    pub fn seal_with_master(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
        encrypt(&self.master.0, plaintext, aad)
    }

    pub fn open_with_master(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
        decrypt(&self.master.0, sealed, aad)
    }

    /// The subject's key, created on first use; `Erased` once the subject has been erased.
    async fn key_for_sealing(&self, subject: Uuid) -> Result<[u8; KEY_LEN], VaultError> {
        let fresh: [u8; KEY_LEN] = random()?;
        let wrapped = encrypt(&self.master.0, &fresh, &wrap_aad(subject))?;
        sqlx::query(
            "INSERT INTO access.personal_key (subject_id, wrapped) VALUES ($1, $2) \
             ON CONFLICT (subject_id) DO NOTHING",
        )
        .bind(subject)
        .bind(wrapped)
        .execute(&self.pool)
        .await?;
        self.key(subject).await?.ok_or(VaultError::Erased)
    }

    async fn key(&self, subject: Uuid) -> Result<Option<[u8; KEY_LEN]>, VaultError> {
        let wrapped: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT wrapped FROM access.personal_key WHERE subject_id = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        match wrapped.flatten() {
            None => Ok(None),
            Some(wrapped) => Ok(Some(self.unwrap_key(subject, &wrapped)?)),
        }
    }

    fn unwrap_key(&self, subject: Uuid, wrapped: &[u8]) -> Result<[u8; KEY_LEN], VaultError> {
        decrypt(&self.master.0, wrapped, &wrap_aad(subject))?
            .try_into()
            .map_err(|_| VaultError::Damaged)
    }

    /// Encrypts `value` (as JSON) for `subject`.
    pub async fn seal<T: Serialize>(&self, subject: Uuid, value: &T) -> Result<Sealed, VaultError> {
        let key = self.key_for_sealing(subject).await?;
        let plaintext = serde_json::to_vec(value)?;
        let sealed = encrypt(&key, &plaintext, subject.as_bytes())?;
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        Ok(Sealed {
            subject,
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        })
    }

    /// Opens sealed data; `None` when the subject has been erased (or never had a key).
    pub async fn open<T: DeserializeOwned>(
        &self,
        sealed: &Sealed,
    ) -> Result<Option<T>, VaultError> {
        match self.key(sealed.subject).await? {
            None => Ok(None),
            Some(key) => open_with_key(&key, sealed).map(Some),
        }
    }

    /// Opens many at once (one query for all the keys); erased ones give `None`.
    pub async fn open_many<T: DeserializeOwned>(
        &self,
        sealed: &[&Sealed],
    ) -> Result<Vec<Option<T>>, VaultError> {
        let subjects: Vec<Uuid> = sealed.iter().map(|s| s.subject).collect();
        let rows: Vec<(Uuid, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT subject_id, wrapped FROM access.personal_key WHERE subject_id = ANY($1)",
        )
        .bind(&subjects)
        .fetch_all(&self.pool)
        .await?;
        let mut keys = std::collections::HashMap::new();
        for (subject, wrapped) in rows {
            if let Some(wrapped) = wrapped {
                keys.insert(subject, self.unwrap_key(subject, &wrapped)?);
            }
        }
        sealed
            .iter()
            .map(|s| match keys.get(&s.subject) {
                None => Ok(None),
                Some(key) => open_with_key(key, s).map(Some),
            })
            .collect()
    }

    /// Destroys the subject's key. Returns false if it was already erased or never existed
    /// (a key is then recorded as erased, so no personal data can be sealed for it later).
    pub async fn erase(
        &self,
        subject: Uuid,
        actor: &str,
        reason: &str,
    ) -> Result<bool, VaultError> {
        let erased = sqlx::query(
            "UPDATE access.personal_key SET wrapped = NULL, erased_at = now(), erased_by = $2, \
                    erase_reason = $3 \
              WHERE subject_id = $1 AND wrapped IS NOT NULL",
        )
        .bind(subject)
        .bind(actor)
        .bind(reason)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if !erased {
            sqlx::query(
                "INSERT INTO access.personal_key \
                        (subject_id, wrapped, erased_at, erased_by, erase_reason) \
                 VALUES ($1, NULL, now(), $2, $3) ON CONFLICT (subject_id) DO NOTHING",
            )
            .bind(subject)
            .bind(actor)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        }
        Ok(erased)
    }
}

fn open_with_key<T: DeserializeOwned>(
    key: &[u8; KEY_LEN],
    sealed: &Sealed,
) -> Result<T, VaultError> {
    let mut bytes = BASE64
        .decode(&sealed.nonce)
        .map_err(|_| VaultError::Damaged)?;
    bytes.extend(
        BASE64
            .decode(&sealed.ciphertext)
            .map_err(|_| VaultError::Damaged)?,
    );
    let plaintext = decrypt(key, &bytes, sealed.subject.as_bytes())?;
    Ok(serde_json::from_slice(&plaintext)?)
}
