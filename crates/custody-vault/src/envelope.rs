//! Envelope encryption: a fresh data key (DEK) per record seals the record with
//! XChaCha20-Poly1305; the current KEK wraps the DEK, also with XChaCha20-Poly1305.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand_core::{CryptoRng, OsRng, RngCore};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::blob::{
    ParseBlobError, Purpose, SealedBlob, BLOB_VERSION, MAX_PLAINTEXT, NONCE_LEN, RECORD_CHECK_LEN,
    TAG_LEN, WRAPPED_DEK_LEN,
};
use crate::keys::{KekId, KeySetId, SecretKey, VaultKeys};

/// Longest record id, in bytes.
pub const MAX_RECORD_ID_LEN: usize = 255;

const DATA_AD_DOMAIN: &[u8] = b"CoinPort/vault/data";
const WRAP_AD_DOMAIN: &[u8] = b"CoinPort/vault/wrap";
const RECORD_CHECK_DOMAIN: &[u8] = b"CoinPort/vault/record-check";

/// Why a record could not be sealed. Never contains the plaintext.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The record id is empty or longer than [`MAX_RECORD_ID_LEN`].
    #[error("record id is {len} bytes; it must be 1 to {MAX_RECORD_ID_LEN}")]
    RecordId {
        /// Its length.
        len: usize,
    },
    /// The plaintext is larger than [`MAX_PLAINTEXT`].
    #[error("plaintext is {len} bytes, more than the {MAX_PLAINTEXT}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The KYC record breaks a size or format rule.
    #[error(transparent)]
    Kyc(#[from] crate::kyc::KycError),
    /// The record could not be serialised.
    #[error("record could not be serialised")]
    Serialise,
    /// The AEAD refused to encrypt (cannot happen within the size limits).
    #[error("encryption failed")]
    Encrypt,
}

/// Why a blob could not be opened or re-wrapped. Never contains the plaintext or key
/// material.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The bytes are not a well-formed blob.
    #[error("malformed blob: {0}")]
    Malformed(#[from] ParseBlobError),
    /// The record id is empty or too long.
    #[error("record id is {len} bytes; it must be 1 to {MAX_RECORD_ID_LEN}")]
    RecordId {
        /// Its length.
        len: usize,
    },
    /// The blob holds something else than asked for.
    #[error("blob holds a {found}, expected a {expected}")]
    WrongPurpose {
        /// The purpose asked for.
        expected: Purpose,
        /// The purpose in the blob.
        found: Purpose,
    },
    /// The blob was sealed under another key file.
    #[error("blob was sealed under key set {found}, this key file is key set {expected}")]
    WrongKeySet {
        /// This key file's key set.
        expected: KeySetId,
        /// The blob's key set.
        found: KeySetId,
    },
    /// The blob was sealed for another record id: the row was moved or copied.
    #[error("blob was sealed for another record id (row moved or copied?)")]
    WrongRecord,
    /// The blob's KEK is not in the key file (removed too early, or an older key file).
    #[error("blob is wrapped under kek {kek_id}, which is not in the key file")]
    UnknownKek {
        /// The blob's KEK.
        kek_id: KekId,
    },
    /// The wrapped data key did not authenticate: the blob header was altered or the key
    /// file's KEK is damaged.
    #[error("data key did not authenticate under kek {kek_id}: blob altered or key damaged")]
    Unwrap {
        /// The blob's KEK.
        kek_id: KekId,
    },
    /// The ciphertext did not authenticate: the blob was altered.
    #[error("ciphertext did not authenticate: blob altered")]
    Decrypt,
    /// The decrypted bytes are not a valid record of the expected type.
    #[error("decrypted record does not decode as a {purpose}")]
    Decode {
        /// The purpose asked for.
        purpose: Purpose,
    },
}

fn check_record_id(record_id: &[u8]) -> Option<u8> {
    if record_id.is_empty() {
        return None;
    }
    u8::try_from(record_id.len()).ok()
}

fn record_check(purpose: Purpose, record_id: &[u8], len: u8) -> [u8; RECORD_CHECK_LEN] {
    let digest = Sha256::new()
        .chain_update(RECORD_CHECK_DOMAIN)
        .chain_update([purpose.to_byte(), len])
        .chain_update(record_id)
        .finalize();
    let mut out = [0; RECORD_CHECK_LEN];
    out.copy_from_slice(&digest[..RECORD_CHECK_LEN]);
    out
}

fn data_ad(purpose: Purpose, record_id: &[u8], len: u8) -> Vec<u8> {
    let mut ad = Vec::with_capacity(DATA_AD_DOMAIN.len() + 3 + record_id.len());
    ad.extend_from_slice(DATA_AD_DOMAIN);
    ad.extend_from_slice(&[BLOB_VERSION, purpose.to_byte(), len]);
    ad.extend_from_slice(record_id);
    ad
}

fn wrap_ad(
    purpose: Purpose,
    set_id: KeySetId,
    kek_id: KekId,
    record_id: &[u8],
    len: u8,
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(WRAP_AD_DOMAIN.len() + 23 + record_id.len());
    ad.extend_from_slice(WRAP_AD_DOMAIN);
    ad.extend_from_slice(&[BLOB_VERSION, purpose.to_byte()]);
    ad.extend_from_slice(&set_id.0);
    ad.extend_from_slice(&kek_id.0.to_be_bytes());
    ad.push(len);
    ad.extend_from_slice(record_id);
    ad
}

fn cipher(key: &SecretKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key.expose_secret()))
}

impl VaultKeys {
    fn wrap<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        dek: &SecretKey,
        purpose: Purpose,
        record_id: &[u8],
        len: u8,
    ) -> Result<(KekId, [u8; NONCE_LEN], [u8; WRAPPED_DEK_LEN]), SealError> {
        let (kek_id, kek) = self.current();
        let mut nonce = [0; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ad = wrap_ad(purpose, self.set_id, *kek_id, record_id, len);
        let mut buf = [0u8; WRAPPED_DEK_LEN];
        buf[..32].copy_from_slice(dek.expose_secret());
        let tag = cipher(kek)
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &ad, &mut buf[..32])
            .map_err(|_| SealError::Encrypt)?;
        buf[32..].copy_from_slice(&tag);
        Ok((*kek_id, nonce, buf))
    }

    /// Checks everything that can be checked without keys, then unwraps the DEK.
    fn unwrap_dek(
        &self,
        purpose: Purpose,
        record_id: &[u8],
        blob: &SealedBlob,
    ) -> Result<(SecretKey, u8), OpenError> {
        let len = check_record_id(record_id).ok_or(OpenError::RecordId {
            len: record_id.len(),
        })?;
        if blob.purpose != purpose {
            return Err(OpenError::WrongPurpose {
                expected: purpose,
                found: blob.purpose,
            });
        }
        if blob.set_id != self.set_id {
            return Err(OpenError::WrongKeySet {
                expected: self.set_id,
                found: blob.set_id,
            });
        }
        if blob.record_check != record_check(purpose, record_id, len) {
            return Err(OpenError::WrongRecord);
        }
        let kek = self.kek(blob.kek_id).ok_or(OpenError::UnknownKek {
            kek_id: blob.kek_id,
        })?;
        let ad = wrap_ad(purpose, blob.set_id, blob.kek_id, record_id, len);
        let mut dek = SecretKey::from_bytes([0; 32]);
        let mut buf = Zeroizing::new([0u8; 32]);
        buf.copy_from_slice(&blob.wrapped_dek[..32]);
        cipher(kek)
            .decrypt_in_place_detached(
                XNonce::from_slice(&blob.wrap_nonce),
                &ad,
                &mut buf[..],
                blob.wrapped_dek[32..].into(),
            )
            .map_err(|_| OpenError::Unwrap {
                kek_id: blob.kek_id,
            })?;
        dek.set(&buf);
        Ok((dek, len))
    }

    /// Seals `plaintext` for `record_id` under a fresh data key wrapped by the current
    /// KEK.
    ///
    /// `record_id` is the stable id of the row the blob is stored in (a UUID's bytes, or a
    /// row id as text); opening under any other id fails. It is not secret and must not be
    /// personal data: the blob carries an 8-byte unkeyed hash of it.
    ///
    /// # Errors
    /// [`SealError::RecordId`], [`SealError::TooLarge`].
    pub fn seal(
        &self,
        purpose: Purpose,
        record_id: &[u8],
        plaintext: &[u8],
    ) -> Result<SealedBlob, SealError> {
        self.seal_with_rng(&mut OsRng, purpose, record_id, plaintext)
    }

    /// [`seal`](Self::seal) with the data key and nonces drawn from `rng` (pinned
    /// examples use a seeded RNG; production uses [`seal`](Self::seal)).
    ///
    /// # Errors
    /// As [`seal`](Self::seal).
    pub fn seal_with_rng<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        purpose: Purpose,
        record_id: &[u8],
        plaintext: &[u8],
    ) -> Result<SealedBlob, SealError> {
        let len = check_record_id(record_id).ok_or(SealError::RecordId {
            len: record_id.len(),
        })?;
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
            });
        }
        let dek = SecretKey::random(rng);
        let mut data_nonce = [0; NONCE_LEN];
        rng.fill_bytes(&mut data_nonce);
        // Room for the tag up front: no reallocation leaves a plaintext copy behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buf.extend_from_slice(plaintext);
        cipher(&dek)
            .encrypt_in_place(
                XNonce::from_slice(&data_nonce),
                &data_ad(purpose, record_id, len),
                &mut *buf,
            )
            .map_err(|_| SealError::Encrypt)?;
        let (kek_id, wrap_nonce, wrapped_dek) = self.wrap(rng, &dek, purpose, record_id, len)?;
        Ok(SealedBlob {
            purpose,
            set_id: self.set_id,
            kek_id,
            record_check: record_check(purpose, record_id, len),
            wrap_nonce,
            wrapped_dek,
            data_nonce,
            ciphertext: std::mem::take(&mut *buf),
        })
    }

    /// Opens a blob sealed for `record_id` with `purpose`, under any KEK still in the key
    /// file.
    ///
    /// # Errors
    /// [`OpenError`] saying why; the message never contains plaintext or key material.
    pub fn open(
        &self,
        purpose: Purpose,
        record_id: &[u8],
        blob: &SealedBlob,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (dek, len) = self.unwrap_dek(purpose, record_id, blob)?;
        let mut buf = Zeroizing::new(blob.ciphertext.clone());
        cipher(&dek)
            .decrypt_in_place(
                XNonce::from_slice(&blob.data_nonce),
                &data_ad(purpose, record_id, len),
                &mut *buf,
            )
            .map_err(|_| OpenError::Decrypt)?;
        Ok(buf)
    }

    /// Re-wraps the blob's data key under the current KEK without touching the nonce or
    /// ciphertext (key rotation). A blob already under the current KEK is re-wrapped too
    /// (with a fresh wrap nonce); the result opens exactly as the input did.
    ///
    /// Only the wrapped key is authenticated here; the ciphertext is checked when the
    /// blob is opened.
    ///
    /// # Errors
    /// As [`open`](Self::open), except [`OpenError::Decrypt`] and [`OpenError::Decode`].
    pub fn rewrap(
        &self,
        purpose: Purpose,
        record_id: &[u8],
        blob: &SealedBlob,
    ) -> Result<SealedBlob, OpenError> {
        self.rewrap_with_rng(&mut OsRng, purpose, record_id, blob)
    }

    /// [`rewrap`](Self::rewrap) with the wrap nonce drawn from `rng`.
    ///
    /// # Errors
    /// As [`rewrap`](Self::rewrap).
    pub fn rewrap_with_rng<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        purpose: Purpose,
        record_id: &[u8],
        blob: &SealedBlob,
    ) -> Result<SealedBlob, OpenError> {
        let (dek, len) = self.unwrap_dek(purpose, record_id, blob)?;
        let (kek_id, wrap_nonce, wrapped_dek) = self
            .wrap(rng, &dek, purpose, record_id, len)
            .map_err(|_| OpenError::Unwrap {
                kek_id: self.current_kek_id(),
            })?;
        Ok(SealedBlob {
            kek_id,
            wrap_nonce,
            wrapped_dek,
            ..blob.clone()
        })
    }
}
